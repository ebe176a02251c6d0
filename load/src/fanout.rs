//! `fanout`: N subscribers of one topic spread over several workers, M messages published to
//! the topic through an admin port (a leader's front door, or a worker's): delivery latency from
//! the publish request to each subscriber's receipt (p50/p99), and pushes delivered per second.
//! Every subscriber must get every message; a missing one is an error.
//!
//! With `--publishers N`, the messages are published by N clients of their own instead (a
//! client `publish` frame each, in turn, spread over the workers like the subscribers): the
//! latency then runs from a client's publish to the other clients' receipts.
//!
//! `--protocol pusher` runs the same load against a Pusher-protocol server (the product peer of
//! the benchmarks): subscribers join a public channel, messages are published through its signed
//! HTTP events API on `--publish-addr`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::connect::{ConnectArgs, ConnectSummary, Connector, Target, Ws};
use crate::pusher::{self, PusherArgs};
use crate::stats::{per_sec, Errors, Failures, Latency, LatencySummary};
use crate::Outcome;

#[derive(clap::Args, Debug, Clone)]
pub struct FanoutArgs {
    /// WebSocket URLs of the workers' ingest routes, comma-separated; subscribers are spread
    /// over them in turn.
    #[arg(long, env = "EWS_URLS", value_delimiter = ',', required = true)]
    pub urls: Vec<String>,
    /// Admin address (`host:port`) that takes `POST /api/v1/publish` and
    /// `GET /api/v1/presence`: a leader's front door or a worker's admin port.
    #[arg(long, env = "EWS_PUBLISH_ADDR")]
    pub publish_addr: std::net::SocketAddr,
    /// The admin token, if the admin port wants one.
    #[arg(long, env = "EWS_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// The topic every subscriber joins (the workers must grant it: `--topics-open`, or a
    /// `--jwt-topics` claim in the minted tokens).
    #[arg(long, env = "EWS_TOPIC", default_value = "bench.fanout")]
    pub topic: String,
    /// Messages published.
    #[arg(long, env = "EWS_MESSAGES", default_value_t = 50)]
    pub messages: u64,
    /// Publish through this many client connections (`publish` frames, in turn) instead of the
    /// admin API; 0: the admin API. The workers must grant them publishing (`--topics-open`, or
    /// a `publish` claim).
    #[arg(long, env = "EWS_PUBLISHERS", default_value_t = 0)]
    pub publishers: u64,
    /// Pause between two publishes.
    #[arg(long, env = "EWS_INTERVAL_MS", default_value_t = 200)]
    pub interval_ms: u64,
    /// Wait after presence counts every subscriber, before the first publish: the workers'
    /// topic interest reaches the publishing node on its next probe of each (one gossip
    /// interval), while presence asks the workers directly.
    #[arg(long, env = "EWS_SETTLE_MS", default_value_t = 1000)]
    pub settle_ms: u64,
    /// What the server speaks: `ews` (topics, the admin publish API) or `pusher` (channels,
    /// the Pusher HTTP events API; `--topic` is the channel).
    #[arg(long, env = "EWS_PROTOCOL", value_enum, default_value = "ews")]
    pub protocol: Protocol,
    #[command(flatten)]
    pub pusher: PusherArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// The protocol of the server under test.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Ews,
    Pusher,
}

#[derive(Debug, Serialize)]
pub struct FanoutReport {
    pub mode: &'static str,
    /// `admin` (the admin API) or `clients` (client `publish` frames).
    pub via: &'static str,
    pub publishers: u64,
    pub topic: String,
    pub workers: usize,
    pub connect: ConnectSummary,
    pub subscribers: u64,
    pub published: u64,
    /// Pushes the publish answers counted as delivered.
    pub delivered_by_server: u64,
    /// Pushes the subscribers received.
    pub received: u64,
    pub expected: u64,
    pub elapsed_secs: f64,
    /// Pushes received per second, from the first publish to the last receipt.
    pub pushes_per_sec: f64,
    /// From the publish request leaving to a subscriber's receipt.
    pub latency: LatencySummary,
    #[serde(flatten)]
    pub failures: Failures,
}

struct Shared {
    received: AtomicU64,
    /// When the latest push arrived, ns since the epoch.
    last_receipt: AtomicU64,
    latency: Latency,
    errors: Arc<Errors>,
}

pub async fn run(args: FanoutArgs) -> Result<FanoutReport, String> {
    let errors = Arc::new(Errors::default());
    let (conns, connect) = open_spread(&args, args.connect.connections, "", &errors).await?;

    // Subscribe everyone, then wait until presence counts them all: by then every worker's
    // interest has reached the node that publishes.
    let mut subscribed = Vec::with_capacity(conns.len());
    let mut tasks = JoinSet::new();
    for ws in conns {
        let topic = args.topic.clone();
        tasks.spawn(subscribe(ws, topic, args.protocol));
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(ws)) => subscribed.push(ws),
            Ok(Err(e)) => errors.add(e),
            Err(e) => errors.add(format!("task: {e}")),
        }
    }
    let subscribers = subscribed.len() as u64;
    // A Pusher server acknowledged each subscription itself (one server, no interest to
    // spread); ours are counted cluster-wide first.
    if args.protocol == Protocol::Ews {
        wait_for_presence(&args, subscribers).await?;
    }
    // Publishers connect after the subscribers: none of them is one.
    let publishers = if args.publishers > 0 {
        let (pubs, _) = open_spread(&args, args.publishers, "pub-", &errors).await?;
        Some(Publishers::start(pubs, errors.clone()))
    } else {
        None
    };
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;

    let shared = Arc::new(Shared {
        received: AtomicU64::new(0),
        last_receipt: AtomicU64::new(0),
        latency: Latency::default(),
        errors: errors.clone(),
    });
    let stop = CancellationToken::new();
    let mut readers = JoinSet::new();
    for ws in subscribed {
        readers.spawn(read_pushes(
            ws,
            (args.topic.clone(), args.protocol),
            args.messages,
            shared.clone(),
            stop.clone(),
        ));
    }
    let start = Instant::now();
    let start_ns = now_nanos();
    let mut delivered_by_server = 0;
    for seq in 0..args.messages {
        let msg = format!("{seq}:{}", now_nanos());
        match &publishers {
            Some(p) => p.publish(seq, msg, &args.topic).await,
            None => match publish(&args, &msg).await {
                Ok(n) => delivered_by_server += n,
                Err(e) => errors.add(format!("publish: {e}")),
            },
        }
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    if let Some(p) = publishers {
        delivered_by_server += p.finish().await;
    }
    let expected = subscribers * args.messages;
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // From the first publish to the last push received (not to the end of the wait).
    let last = u128::from(shared.last_receipt.load(Ordering::Relaxed));
    let elapsed = if last > start_ns {
        Duration::from_nanos((last - start_ns) as u64)
    } else {
        start.elapsed()
    };
    stop.cancel();
    while readers.join_next().await.is_some() {}
    let received = shared.received.load(Ordering::Relaxed);
    if received < expected {
        errors.add_n("push missing", expected - received);
    }
    Ok(FanoutReport {
        mode: "fanout",
        via: if args.publishers > 0 {
            "clients"
        } else {
            "admin"
        },
        publishers: args.publishers,
        topic: args.topic,
        workers: args.urls.len(),
        subscribers,
        published: args.messages,
        delivered_by_server,
        received,
        expected,
        elapsed_secs: elapsed.as_secs_f64(),
        pushes_per_sec: per_sec(received, elapsed),
        latency: shared.latency.summary(),
        failures: Failures {
            errors: errors.snapshot(),
            error_ratio: errors.total() as f64 / expected.max(1) as f64,
        },
        connect,
    })
}

/// Opens `n` connections spread over the `--urls` in turn (client ids prefixed with `prefix`).
async fn open_spread(
    args: &FanoutArgs,
    n: u64,
    prefix: &str,
    errors: &Arc<Errors>,
) -> Result<(Vec<Ws>, ConnectSummary), String> {
    let k = args.urls.len() as u64;
    let mut conns: Vec<Ws> = Vec::new();
    let mut connect: Option<ConnectSummary> = None;
    for (i, url) in args.urls.iter().enumerate() {
        let share = n / k + u64::from((i as u64) < n % k);
        let target = Target::parse(url, None, args.connect.allow_remote)?;
        let c = ConnectArgs {
            connections: share,
            client_id_prefix: format!("{prefix}{}{i}-", args.connect.client_id_prefix),
            ..args.connect.clone()
        };
        let connector = Arc::new(Connector::new(&c, target)?);
        let (opened, summary) = connector.open_all(errors).await;
        conns.extend(opened.into_iter().map(|(_, ws)| ws));
        connect = Some(match connect {
            None => summary,
            Some(s) => ConnectSummary {
                attempted: s.attempted + summary.attempted,
                established: s.established + summary.established,
                failed: s.failed + summary.failed,
                elapsed_secs: s.elapsed_secs + summary.elapsed_secs,
                handshakes_per_sec: per_sec(
                    s.established + summary.established,
                    Duration::from_secs_f64(s.elapsed_secs + summary.elapsed_secs),
                ),
                ..s
            },
        });
    }
    Ok((conns, connect.ok_or("no --urls")?))
}

/// Client connections that publish in turn: each its own task, sending the `publish` frames it
/// is handed and counting what their answers say was delivered.
struct Publishers {
    inboxes: Vec<tokio::sync::mpsc::Sender<String>>,
    tasks: JoinSet<u64>,
}

impl Publishers {
    fn start(conns: Vec<Ws>, errors: Arc<Errors>) -> Publishers {
        let mut tasks = JoinSet::new();
        let mut inboxes = Vec::new();
        for mut ws in conns {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
            inboxes.push(tx);
            let errors = errors.clone();
            tasks.spawn(async move {
                let (mut asked, mut answered, mut delivered) = (0u64, 0u64, 0u64);
                let mut open = true;
                while open || asked > answered {
                    tokio::select! {
                        frame = rx.recv(), if open => match frame {
                            Some(f) => {
                                if let Err(e) = ws.send(Message::text(f)).await {
                                    errors.add(format!("publish: {e}"));
                                    return delivered;
                                }
                                asked += 1;
                            }
                            None => open = false,
                        },
                        m = ws.next(), if asked > answered => match m {
                            Some(Ok(Message::Text(t))) => {
                                let v: serde_json::Value =
                                    serde_json::from_str(t.as_str()).unwrap_or_default();
                                match v["type"].as_str() {
                                    Some("published") => {
                                        answered += 1;
                                        delivered += v["delivered"].as_u64().unwrap_or(0);
                                    }
                                    Some("error") => {
                                        answered += 1;
                                        errors.add(format!("publish refused: {}", v["error"]));
                                    }
                                    _ => {}
                                }
                            }
                            Some(Ok(_)) => {}
                            _ => {
                                errors.add("publisher closed");
                                return delivered;
                            }
                        },
                    }
                }
                let _ = ws.close(None).await;
                delivered
            });
        }
        Publishers { inboxes, tasks }
    }

    /// Has publisher `seq % N` publish `msg` to `topic`.
    async fn publish(&self, seq: u64, msg: String, topic: &str) {
        let i = (seq % self.inboxes.len().max(1) as u64) as usize;
        let frame = serde_json::json!({"type": "publish", "topic": topic, "msg": msg,
            "id": format!("p{seq}")});
        if let Some(tx) = self.inboxes.get(i) {
            let _ = tx.send(frame.to_string()).await;
        }
    }

    /// Waits for every answer (at most 30 s); the sessions they counted as delivered.
    async fn finish(mut self) -> u64 {
        self.inboxes.clear();
        let mut delivered = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Ok(Some(d)) = tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
            delivered += d.unwrap_or(0);
        }
        self.tasks.abort_all();
        delivered
    }
}

async fn subscribe(mut ws: Ws, topic: String, protocol: Protocol) -> Result<Ws, String> {
    let frame = match protocol {
        Protocol::Ews => serde_json::json!({"type": "subscribe", "topic": topic}).to_string(),
        Protocol::Pusher => pusher::subscribe(&topic),
    };
    ws.send(Message::text(frame))
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                if protocol == Protocol::Pusher {
                    // The connection's greeting comes first; then the answer.
                    match pusher::subscription(&v, &topic) {
                        Some(Ok(())) => return Ok(ws),
                        Some(Err(e)) => return Err(format!("subscribe refused: {e}")),
                        None => continue,
                    }
                }
                if v["type"] == "subscribed" {
                    return Ok(ws);
                }
                return Err(format!("subscribe refused: {}", v["error"]));
            }
            Ok(Some(Ok(_))) => {}
            Ok(_) => return Err("closed while subscribing".into()),
            Err(_) => return Err("no answer to subscribe".into()),
        }
    }
}

async fn wait_for_presence(args: &FanoutArgs, subscribers: u64) -> Result<(), String> {
    let path = format!("/api/v1/presence?topic={}", args.topic);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = admin(args).request("GET", &path, "").await?;
        let sessions = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["sessions"].as_u64())
            .unwrap_or(0);
        if status == 200 && sessions >= subscribers {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "presence counts {sessions} of {subscribers} subscribers after 60 s ({status})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Publishes `msg`; the sessions the answer counts as delivered (a Pusher server counts none).
async fn publish(args: &FanoutArgs, msg: &str) -> Result<u64, String> {
    if args.protocol == Protocol::Pusher {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (target, body) = pusher::publish_request(&args.pusher, &args.topic, msg, now);
        let (status, answer) = admin(args).request("POST", &target, &body).await?;
        if status != 200 {
            return Err(format!("status {status}: {answer}"));
        }
        return Ok(0);
    }
    admin(args).publish(&args.topic, msg).await
}

fn admin(args: &FanoutArgs) -> Admin {
    Admin {
        addr: args.publish_addr,
        token: args.admin_token.clone(),
    }
}

/// Counts this subscriber's pushes on `topic` and their latency, until it has `messages` or
/// `stop`.
async fn read_pushes(
    mut ws: Ws,
    (topic, protocol): (String, Protocol),
    messages: u64,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut got = 0;
    while got < messages {
        let msg = tokio::select! {
            _ = stop.cancelled() => return,
            m = ws.next() => m,
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                let received = now_nanos();
                let Ok(v) = serde_json::from_str::<serde_json::Value>(t.as_str()) else {
                    shared.errors.add("unreadable frame");
                    continue;
                };
                let data = match protocol {
                    Protocol::Ews if v["type"] == "push" && v["topic"] == topic.as_str() => {
                        v["msg"].as_str()
                    }
                    Protocol::Ews => continue,
                    Protocol::Pusher => match pusher::event_data(&v, &topic) {
                        Some(d) => Some(d),
                        None => continue,
                    },
                };
                let sent = data
                    .and_then(|m| m.split_once(':'))
                    .and_then(|(_, ns)| ns.parse::<u128>().ok());
                if let Some(sent) = sent {
                    let d = Duration::from_nanos(received.saturating_sub(sent) as u64);
                    shared.latency.record(d);
                }
                got += 1;
                shared.received.fetch_add(1, Ordering::Relaxed);
                shared
                    .last_receipt
                    .fetch_max(received as u64, Ordering::Relaxed);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                shared.errors.add(format!("read: {e}"));
                return;
            }
            None => {
                shared.errors.add("closed by server");
                return;
            }
        }
    }
    let _ = ws.close(None).await;
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl Outcome for FanoutReport {
    fn human(&self) -> Vec<String> {
        vec![
            format!(
                "fanout {}: {} subscribers on {} workers ({}/{} connected)",
                self.topic,
                self.subscribers,
                self.workers,
                self.connect.established,
                self.connect.attempted
            ),
            format!(
                "published {} messages: {}/{} pushes received ({} counted by the server) in \
                 {:.2} s: {:.0} pushes/s",
                self.published,
                self.received,
                self.expected,
                self.delivered_by_server,
                self.elapsed_secs,
                self.pushes_per_sec
            ),
            format!("publish to receipt: {}", self.latency),
        ]
    }

    fn failures(&self) -> &Failures {
        &self.failures
    }

    fn shortfall(&self) -> Option<String> {
        (self.received == 0).then(|| "no push received".to_string())
    }
}
