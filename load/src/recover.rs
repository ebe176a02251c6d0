//! `recover`: what a client move costs when topics keep history. N clients subscribe, spread
//! over `--topics` topics, on the worker at `--url`; then they lose that worker — it is drained
//! (`--drain-pid`: SIGTERM, and every client waits for its close, `1012`), or without a PID the
//! clients drop their connections themselves (a lost network); while they are away `--missed`
//! messages are published to every topic through `--publish-addr`; then all of them reconnect
//! at once (to `--reconnect-urls`, in turn) and resubscribe from their positions. Reported:
//! the time until the last client has recovered everything it missed, recoveries (history
//! reads) and recovered messages per second, each client's time to recovery (p50/p99), and
//! every message missing, duplicated or out of order (all must be 0), or a client told it could
//! not recover.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::admin::Admin;
use crate::connect::{ConnectArgs, ConnectSummary, Connector, Target, Ws};
use crate::stats::{per_sec, Errors, Failures, Latency, LatencySummary};
use crate::Outcome;

#[derive(clap::Args, Debug, Clone)]
pub struct RecoverArgs {
    /// WebSocket URL of the worker the clients start on (and lose).
    #[arg(long, env = "EWS_URL")]
    pub url: String,
    /// Where the clients come back, comma-separated, in turn; default: `--url`.
    #[arg(long, env = "EWS_RECONNECT_URLS", value_delimiter = ',')]
    pub reconnect_urls: Vec<String>,
    /// Admin address (`host:port`) of a node that stays up and publishes the missed messages
    /// (`POST /api/v1/publish`): a worker's admin port or a leader's front door.
    #[arg(long, env = "EWS_PUBLISH_ADDR")]
    pub publish_addr: std::net::SocketAddr,
    /// The admin token, if the admin port wants one.
    #[arg(long, env = "EWS_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Topics are this prefix plus 0, 1, ...; they must keep history (`--history-topics`).
    #[arg(long, env = "EWS_TOPIC_PREFIX", default_value = "bench.recover.")]
    pub topic_prefix: String,
    /// Topics the clients spread over (client i subscribes to topic i mod this).
    #[arg(long, env = "EWS_TOPICS", default_value_t = 100)]
    pub topics: u64,
    /// Messages published to every topic while the clients are away.
    #[arg(long, env = "EWS_MISSED", default_value_t = 100)]
    pub missed: u64,
    /// The worker's PID: it is sent SIGTERM (a drain), and every client waits for its close.
    /// Without it the clients drop their connections themselves.
    #[arg(long, env = "EWS_DRAIN_PID")]
    pub drain_pid: Option<u32>,
    /// Publish requests in flight at once (each topic's own messages go one after another).
    #[arg(long, env = "EWS_PUBLISH_CONCURRENCY", default_value_t = 16)]
    pub publish_concurrency: usize,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Serialize)]
pub struct RecoverReport {
    pub mode: &'static str,
    pub subscribers: u64,
    pub topics: u64,
    pub missed_per_client: u64,
    pub connect: ConnectSummary,
    /// `drain` (SIGTERM to the worker) or `dropped` (the clients closed their connections).
    pub away_by: &'static str,
    /// Close codes the clients got from the drained worker, and how many of each.
    pub close_codes: BTreeMap<String, u64>,
    /// From SIGTERM to the last client's close.
    pub drain_secs: f64,
    pub published: u64,
    pub publish_secs: f64,
    /// Clients whose resubscribe said `recovered: true` and handed them exactly what they missed.
    pub recovered: u64,
    /// Clients told `recovered: false`, by reason.
    pub unrecovered: BTreeMap<String, u64>,
    pub messages_recovered: u64,
    pub missing: u64,
    pub duplicate: u64,
    pub out_of_order: u64,
    /// From the first reconnect to the last client's complete recovery.
    pub time_to_last_recovered_secs: f64,
    /// Recoveries (one history read each) per second over that time.
    pub recoveries_per_sec: f64,
    pub messages_recovered_per_sec: f64,
    /// From the first reconnect to each client's complete recovery.
    pub time_to_recovered: LatencySummary,
    #[serde(flatten)]
    pub failures: Failures,
}

/// Where a client stands in its topic's stream.
#[derive(Debug, Clone)]
struct Place {
    n: u64,
    topic: String,
    offset: u64,
    epoch: String,
}

/// What one client's recovery found.
#[derive(Debug, Default)]
struct Found {
    recovered: Option<bool>,
    reason: Option<String>,
    got: u64,
    missing: u64,
    duplicate: u64,
    out_of_order: u64,
}

pub async fn run(args: RecoverArgs) -> Result<RecoverReport, String> {
    if args.topics == 0 {
        return Err("--topics must be at least 1".into());
    }
    let errors = Arc::new(Errors::default());
    let first = Arc::new(Connector::new(
        &args.connect,
        Target::parse(&args.url, None, args.connect.allow_remote)?,
    )?);
    let (conns, connect) = first.open_all(&errors).await;
    if conns.is_empty() {
        return Err(crate::connect::no_connection(&connect, &errors.snapshot()));
    }

    // Subscribe everyone; each answer names where its topic's stream stands.
    let mut subscribed = Vec::with_capacity(conns.len());
    let mut tasks = JoinSet::new();
    for (n, ws) in conns {
        let topic = format!("{}{}", args.topic_prefix, n % args.topics);
        tasks.spawn(subscribe(ws, n, topic));
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(s)) => subscribed.push(s),
            Ok(Err(e)) => errors.add(e),
            Err(e) => errors.add(format!("task: {e}")),
        }
    }
    let subscribers = subscribed.len() as u64;
    if subscribers == 0 {
        return Err(format!("no client subscribed: {:?}", errors.snapshot()));
    }

    // Away: drained by the worker, or dropped by the clients.
    let drain_start = Instant::now();
    let (away_by, close_codes) = match args.drain_pid {
        Some(pid) => ("drain", drained(pid, subscribed.iter_mut()).await?),
        None => {
            for (ws, _) in subscribed.iter_mut() {
                // Dropping the socket below is the point; a failed close frame changes nothing.
                let _ = ws.close(None).await;
            }
            ("dropped", BTreeMap::new())
        }
    };
    let drain_secs = drain_start.elapsed().as_secs_f64();
    let places: Vec<Place> = subscribed.into_iter().map(|(_, p)| p).collect();

    // While they are away: `missed` messages to every topic, each topic's in order.
    let admin = Admin {
        addr: args.publish_addr,
        token: args.admin_token.clone(),
    };
    let publish_start = Instant::now();
    let published = publish_all(&args, &admin, &errors).await;
    let publish_secs = publish_start.elapsed().as_secs_f64();

    // Back, all at once.
    let urls = if args.reconnect_urls.is_empty() {
        vec![args.url.clone()]
    } else {
        args.reconnect_urls.clone()
    };
    let mut connectors = Vec::new();
    for u in &urls {
        connectors.push(Arc::new(Connector::new(
            &args.connect,
            Target::parse(u, None, args.connect.allow_remote)?,
        )?));
    }
    let latency = Arc::new(Latency::default());
    let last_done = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(Semaphore::new(args.connect.connect_concurrency.max(1)));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for place in places {
        let connector = connectors[(place.n % connectors.len() as u64) as usize].clone();
        let (sem, latency, last_done) = (sem.clone(), latency.clone(), last_done.clone());
        let missed = args.missed;
        tasks.spawn(async move {
            let found = {
                let Ok(_permit) = sem.acquire_owned().await else {
                    return Err("semaphore closed".to_string());
                };
                let ws = connector.open(place.n).await?;
                resubscribe(ws, &place, missed).await?
            };
            let took = start.elapsed();
            if found.recovered == Some(true) && found.missing == 0 {
                latency.record(took);
                last_done.fetch_max(took.as_micros() as u64, Ordering::Relaxed);
            }
            Ok(found)
        });
    }
    let mut report = Totals::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(found)) => report.add(found, &errors),
            Ok(Err(e)) => errors.add(e),
            Err(e) => errors.add(format!("task: {e}")),
        }
    }
    let to_last = Duration::from_micros(last_done.load(Ordering::Relaxed));
    for (kind, n) in [
        ("message missing", report.missing),
        ("message duplicated", report.duplicate),
        ("message out of order", report.out_of_order),
    ] {
        if n > 0 {
            errors.add_n(kind, n);
        }
    }
    Ok(RecoverReport {
        mode: "recover",
        subscribers,
        topics: args.topics,
        missed_per_client: args.missed,
        connect,
        away_by,
        close_codes,
        drain_secs,
        published,
        publish_secs,
        recovered: report.recovered,
        unrecovered: report.unrecovered,
        messages_recovered: report.messages,
        missing: report.missing,
        duplicate: report.duplicate,
        out_of_order: report.out_of_order,
        time_to_last_recovered_secs: to_last.as_secs_f64(),
        recoveries_per_sec: per_sec(report.recovered, to_last),
        messages_recovered_per_sec: per_sec(report.messages, to_last),
        time_to_recovered: latency.summary(),
        failures: Failures {
            errors: errors.snapshot(),
            error_ratio: errors.total() as f64 / subscribers.max(1) as f64,
        },
    })
}

#[derive(Default)]
struct Totals {
    recovered: u64,
    unrecovered: BTreeMap<String, u64>,
    messages: u64,
    missing: u64,
    duplicate: u64,
    out_of_order: u64,
}

impl Totals {
    fn add(&mut self, f: Found, errors: &Errors) {
        self.messages += f.got;
        self.missing += f.missing;
        self.duplicate += f.duplicate;
        self.out_of_order += f.out_of_order;
        match f.recovered {
            Some(true) => self.recovered += 1,
            Some(false) => {
                let why = f.reason.unwrap_or_else(|| "no reason".into());
                errors.add(format!("not recovered: {why}"));
                *self.unrecovered.entry(why).or_default() += 1;
            }
            None => errors.add("no `recovered` in the answer"),
        }
    }
}

/// Subscribes without a position: where the topic's stream stands is the client's place.
async fn subscribe(mut ws: Ws, n: u64, topic: String) -> Result<(Ws, Place), String> {
    let frame = serde_json::json!({"type": "subscribe", "topic": topic}).to_string();
    ws.send(Message::text(frame))
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    loop {
        let v = next_json(&mut ws).await?;
        if v["type"] == "subscribed" && v["topic"] == topic.as_str() {
            let (Some(offset), Some(epoch)) = (v["offset"].as_u64(), v["epoch"].as_str()) else {
                return Err("subscribed without an offset: the topic keeps no history".into());
            };
            let epoch = epoch.to_string();
            return Ok((
                ws,
                Place {
                    n,
                    topic,
                    offset,
                    epoch,
                },
            ));
        }
        if v["type"] == "error" {
            return Err(format!("subscribe refused: {}", v["error"]));
        }
    }
}

/// SIGTERM to the worker, then every client's close: the close codes, counted.
async fn drained<'a>(
    pid: u32,
    conns: impl Iterator<Item = &'a mut (Ws, Place)>,
) -> Result<BTreeMap<String, u64>, String> {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map_err(|e| format!("kill -TERM {pid}: {e}"))?;
    if !status.success() {
        return Err(format!("kill -TERM {pid}: {status}"));
    }
    let mut codes = BTreeMap::new();
    let mut waits = Vec::new();
    for (ws, _) in conns {
        waits.push(async move {
            let read = tokio::time::timeout(Duration::from_secs(120), async {
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code).to_string(),
                        Some(Ok(Message::Close(None))) => return "no code".to_string(),
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return "dropped".to_string(),
                    }
                }
            });
            read.await.unwrap_or_else(|_| "not closed in 120 s".into())
        });
    }
    for code in futures_util::future::join_all(waits).await {
        *codes.entry(code).or_insert(0) += 1;
    }
    Ok(codes)
}

/// `missed` messages to every topic, through the admin API: the number published.
async fn publish_all(args: &RecoverArgs, admin: &Admin, errors: &Arc<Errors>) -> u64 {
    let published = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(Semaphore::new(args.publish_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for t in 0..args.topics {
        let topic = format!("{}{t}", args.topic_prefix);
        let (admin, errors, published, sem) = (
            admin.clone(),
            errors.clone(),
            published.clone(),
            sem.clone(),
        );
        let missed = args.missed;
        tasks.spawn(async move {
            let Ok(_permit) = sem.acquire_owned().await else {
                return;
            };
            for i in 0..missed {
                match admin.publish(&topic, &format!("m{i}")).await {
                    Ok(_) => {
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.add(format!("publish: {e}"));
                        return;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    published.load(Ordering::Relaxed)
}

/// Resubscribes from `place`: the pushes up to `subscribed` are what history handed over, each
/// checked against the offsets the client should get (the next `missed` after its own).
async fn resubscribe(mut ws: Ws, place: &Place, missed: u64) -> Result<Found, String> {
    let frame = serde_json::json!({"type": "subscribe", "topic": place.topic,
        "since": {"offset": place.offset, "epoch": place.epoch}});
    ws.send(Message::text(frame.to_string()))
        .await
        .map_err(|e| format!("resubscribe: {e}"))?;
    let mut found = Found::default();
    let mut last = place.offset;
    loop {
        let v = next_json(&mut ws).await?;
        match v["type"].as_str() {
            Some("push") if v["topic"] == place.topic.as_str() => {
                let Some(offset) = v["offset"].as_u64() else {
                    return Err("push without an offset".into());
                };
                if offset <= last {
                    found.duplicate += 1;
                } else {
                    if offset != last + 1 {
                        found.out_of_order += 1;
                    }
                    found.got += 1;
                    last = offset;
                }
            }
            Some("subscribed") if v["topic"] == place.topic.as_str() => {
                found.recovered = v["recovered"].as_bool();
                found.reason = v["reason"].as_str().map(str::to_string);
                break;
            }
            Some("error") => return Err(format!("resubscribe refused: {}", v["error"])),
            _ => {}
        }
    }
    if found.recovered == Some(true) {
        found.missing = missed.saturating_sub(found.got);
    }
    // Done with it: close politely, without waiting for the server's answer.
    let _ = ws.close(None).await;
    Ok(found)
}

/// The next text frame as JSON (10 s at most).
async fn next_json(ws: &mut Ws) -> Result<serde_json::Value, String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return serde_json::from_str(t.as_str()).map_err(|_| "unreadable frame".into())
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(format!("read: {e}")),
            Ok(None) => return Err("closed by server".into()),
            Err(_) => return Err("no answer within 10 s".into()),
        }
    }
}

impl Outcome for RecoverReport {
    fn human(&self) -> Vec<String> {
        vec![
            format!(
                "recover: {} clients on {} topics, away by {} ({:.2} s; closes {:?}), {} \
                 messages missed each ({} published in {:.2} s)",
                self.subscribers,
                self.topics,
                self.away_by,
                self.drain_secs,
                self.close_codes,
                self.missed_per_client,
                self.published,
                self.publish_secs
            ),
            format!(
                "recovered {} clients, {} messages, in {:.2} s to the last: {:.0} recoveries/s, \
                 {:.0} messages/s; not recovered {:?}",
                self.recovered,
                self.messages_recovered,
                self.time_to_last_recovered_secs,
                self.recoveries_per_sec,
                self.messages_recovered_per_sec,
                self.unrecovered
            ),
            format!(
                "missing {}, duplicate {}, out of order {}",
                self.missing, self.duplicate, self.out_of_order
            ),
            format!("reconnect to recovered: {}", self.time_to_recovered),
        ]
    }

    fn failures(&self) -> &Failures {
        &self.failures
    }

    fn shortfall(&self) -> Option<String> {
        (self.recovered == 0).then(|| "no client recovered".to_string())
    }
}
