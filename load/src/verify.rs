//! `verify`: the seed's LoadTest with a delivery check. N clients of the client library
//! (`ews-client`) send M events each with per-event acks (`?ack=1`), reconnecting and resending
//! by id if the server drains; then the events are read back from the queue, the Kafka topic or
//! the SQS queue and matched by id (unique per event and run, the same on every copy). Reports
//! sent, acknowledged, received, duplicates and missing; any acknowledged event that is missing
//! fails the run.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ews_http::args::Secret;
use ews_http::link::LinkKey;
use ews_proto::StampedEvent;
use ews_queue::client::Credential;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::connect::{
    no_connection, ConnStream, ConnectArgs, ConnectSummary, Connector, Target, Ws,
};
use crate::stats::{per_sec, Errors, Failures};
use crate::Outcome;

#[derive(clap::Args, Debug, Clone)]
pub struct VerifyArgs {
    /// WebSocket URL of an ingest route (loopback only); `ack=1` is added.
    #[arg(long, env = "EWS_URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Events per connection.
    #[arg(long, env = "EWS_MESSAGES", default_value_t = 100)]
    pub messages: u64,
    /// Events per second per connection; 0 = as fast as acknowledgements allow.
    #[arg(long, env = "EWS_RATE", default_value_t = 10.0)]
    pub rate: f64,
    /// Events a connection may have unacknowledged before it waits.
    #[arg(long, env = "EWS_WINDOW", default_value_t = 256)]
    pub window: usize,
    /// After its last event, a connection waits this long for outstanding acks.
    #[arg(long, env = "EWS_ACK_TIMEOUT_MS", default_value_t = 30_000)]
    pub ack_timeout_ms: u64,
    /// Read the events back from this queue (`ws://host:port/queue/NAME`: an `ews-queue`, or the
    /// active leader's internal port with `--cluster-secret`).
    #[arg(
        long,
        env = "EWS_QUEUE_URL",
        required_unless_present_any = ["kafka_brokers", "sqs_queue_url"]
    )]
    pub queue_url: Option<String>,
    /// The cluster secret, to read from a leader's node link (it signs the connection; the
    /// secret itself is never sent).
    #[arg(long, env = "EWS_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<Secret>,
    /// The admin token, to read a standalone worker's embedded queue on its admin port
    /// (`ws://HOST:ADMIN_PORT/queue/events`).
    #[arg(
        long,
        env = "EWS_ADMIN_TOKEN",
        hide_env_values = true,
        conflicts_with = "cluster_secret"
    )]
    pub admin_token: Option<Secret>,
    /// Leave this run's events in the queue (by default they are deleted once counted; other
    /// messages, not this run's, never are).
    #[arg(long, env = "EWS_KEEP")]
    pub keep: bool,
    /// Read the events back from Kafka (`host:port,...`) instead of a queue.
    #[arg(long, env = "EWS_KAFKA_BROKERS", conflicts_with = "queue_url")]
    pub kafka_brokers: Option<String>,
    #[arg(long, env = "EWS_KAFKA_TOPIC", default_value = "events")]
    pub kafka_topic: String,
    /// Read the events back from this SQS queue (ReceiveMessage, then DeleteMessageBatch unless
    /// `--keep`). Region and credentials from the environment; `AWS_ENDPOINT_URL` for moto.
    #[arg(
        long,
        env = "EWS_SQS_QUEUE_URL",
        conflicts_with_all = ["queue_url", "kafka_brokers"]
    )]
    pub sqs_queue_url: Option<String>,
    /// Reading back stops once nothing new arrived for this long.
    #[arg(long, env = "EWS_READ_IDLE_MS", default_value_t = 3_000)]
    pub read_idle_ms: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub mode: &'static str,
    pub url: String,
    /// Unique per run; every event's `msg` starts with it.
    pub run: String,
    pub connect: ConnectSummary,
    pub sent: u64,
    pub acked: u64,
    pub nacked: u64,
    /// Distinct events of this run read back.
    pub received: u64,
    /// Extra copies read back (at-least-once delivery after a reconnect).
    pub duplicates: u64,
    /// Acknowledged but not read back: must be 0.
    pub missing: u64,
    /// Sent, never acknowledged, yet read back (durable, the ack was lost).
    pub received_unacked: u64,
    /// Messages of the queue that are not this run's: read, counted, never deleted.
    pub foreign: u64,
    /// Connections the client library opened again after losing one.
    pub reconnects: u64,
    /// Events it sent again on a new connection (a consumer may see them twice).
    pub resent: u64,
    pub send_secs: f64,
    /// Acknowledged events per second during the send phase.
    pub acked_per_sec: f64,
    pub missing_sample: Vec<String>,
    #[serde(flatten)]
    pub failures: Failures,
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    nacked: AtomicU64,
    /// Ids of the acknowledged events.
    acked: Mutex<HashSet<String>>,
    reconnects: AtomicU64,
    resent: AtomicU64,
}

pub async fn run(args: VerifyArgs) -> Result<VerifyReport, String> {
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err("--rate must be a non-negative number".into());
    }
    let run_id = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let target = Target::parse(&args.url, Some("ack=1"), args.connect.allow_remote)?;
    let connector = Arc::new(Connector::new(&args.connect, target)?);
    let errors = Arc::new(Errors::default());
    let (conns, connect) = connector.open_all(&errors).await;

    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (i, ws) in conns {
        let prefix = format!("{run_id}:{}:", connector.client_id(i));
        tasks.spawn(send(
            i,
            prefix,
            ws,
            connector.clone(),
            args.clone(),
            tally.clone(),
            errors.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
    let send_time = start.elapsed();

    let idle = Duration::from_millis(args.read_idle_ms);
    let run_prefix = format!("{run_id}:");
    // Only this run's events are deleted (and only without `--keep`): whatever else the queue
    // holds is another consumer's, read and counted but left there.
    let this_run = |body: &[u8]| {
        serde_json::from_slice::<StampedEvent>(body).is_ok_and(|e| e.msg.starts_with(&run_prefix))
    };
    let delete = |body: &[u8]| !args.keep && this_run(body);
    let nothing_acked = tally.acked.lock().map(|a| a.is_empty()).unwrap_or(true);
    let bodies = match (&args.queue_url, &args.kafka_brokers, &args.sqs_queue_url) {
        // Nothing of this run can be there: the queue is not even read.
        _ if nothing_acked => Vec::new(),
        (Some(url), _, _) => read_queue(url, &args, idle, &delete, &errors).await?,
        (None, Some(brokers), _) => {
            ews_sink::kafka::read_topic(brokers, &args.kafka_topic, idle, Duration::from_secs(600))
                .await
                .map_err(|e| e.to_string())?
        }
        (None, None, Some(url)) => {
            // Generous: an emulator (moto) takes seconds per receive on a deep queue.
            let client = ews_sink::sqs::client(Duration::from_secs(120)).await;
            ews_sink::sqs::read_queue(&client, url, idle, &delete)
                .await
                .map_err(|e| e.to_string())?
        }
        (None, None, None) => {
            return Err("give --queue-url, --kafka-brokers or --sqs-queue-url".into())
        }
    };
    // Copies of one event, counted by the id it carries (as a consumer would deduplicate).
    let mut copies: HashMap<String, u64> = HashMap::new();
    let mut foreign = 0;
    for body in bodies {
        match serde_json::from_slice::<StampedEvent>(&body) {
            Ok(e) if e.msg.starts_with(&run_prefix) => {
                *copies.entry(e.id.unwrap_or(e.msg)).or_default() += 1
            }
            // Another consumer's message (or not an event at all): left in the queue.
            _ => foreign += 1,
        }
    }
    let acked = tally
        .acked
        .lock()
        .map(|a| a.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    let mut missing: Vec<String> = acked
        .iter()
        .filter(|m| !copies.contains_key(*m))
        .cloned()
        .collect();
    missing.sort();
    let duplicates = copies.values().map(|n| n - 1).sum();
    let received_unacked = copies.keys().filter(|m| !acked.contains(*m)).count() as u64;
    Ok(VerifyReport {
        mode: "verify",
        url: args.url,
        run: run_id,
        connect,
        sent: tally.sent.load(Ordering::Relaxed),
        acked: acked.len() as u64,
        nacked: tally.nacked.load(Ordering::Relaxed),
        received: copies.len() as u64,
        duplicates,
        missing: missing.len() as u64,
        received_unacked,
        foreign,
        reconnects: tally.reconnects.load(Ordering::Relaxed),
        resent: tally.resent.load(Ordering::Relaxed),
        send_secs: send_time.as_secs_f64(),
        acked_per_sec: per_sec(acked.len() as u64, send_time),
        failures: Failures {
            errors: errors.snapshot(),
            error_ratio: missing.len() as f64 / acked.len().max(1) as f64,
        },
        missing_sample: missing.into_iter().take(10).collect(),
    })
}

/// One client, through the client library users get (`ews-client`): sends its events (msg =
/// `<run>:<client>:<n>`) with at most `window` unacknowledged, recording the ids acknowledged.
/// If the server drains or the connection drops, the library reconnects through the same
/// connector and resends what was not acknowledged, with the same ids.
async fn send(
    i: u64,
    prefix: String,
    ws: Ws,
    connector: Arc<Connector>,
    args: VerifyArgs,
    tally: Arc<Tally>,
    errors: Arc<Errors>,
) {
    let options = ews_client::Options {
        buffer: args.window.max(1),
        ..ews_client::Options::new(prefix.trim_end_matches(':'))
    };
    let (client, _pushes) =
        ews_client::Client::start(ConnectorDial { connector, n: i }, Some(ws), options);
    let period = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let mut next_send = tokio::time::Instant::now();
    let mut answers = FuturesUnordered::new();
    let mut acked = Vec::new();
    let mut record = |answer: Result<ews_client::Ack, ews_client::SendError>| match answer {
        Ok(ack) => acked.push(ack.id),
        Err(ews_client::SendError::Nack(e)) => {
            tally.nacked.fetch_add(1, Ordering::Relaxed);
            errors.add(format!("nack: {e}"));
        }
        Err(e) => errors.add(e.to_string()),
    };
    for n in 0..args.messages {
        tokio::time::sleep_until(next_send).await;
        let timestamp = ews_proto::now_ms();
        // Waits while `window` events are unacknowledged: the back-pressure.
        let pending = tokio::select! {
            p = client.send(format!("{prefix}{n}"), timestamp) => p,
            Some(answer) = answers.next(), if !answers.is_empty() => {
                record(answer);
                client.send(format!("{prefix}{n}"), timestamp).await
            }
        };
        match pending {
            Ok(p) => {
                tally.sent.fetch_add(1, Ordering::Relaxed);
                answers.push(p);
            }
            Err(e) => {
                errors.add(format!("send: {e}"));
                break;
            }
        }
        while let Some(Some(answer)) = answers.next().now_or_never() {
            record(answer);
        }
        match period {
            Some(p) => next_send += p,
            None => next_send = tokio::time::Instant::now(),
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(args.ack_timeout_ms);
    while !answers.is_empty() {
        match tokio::time::timeout_at(deadline, answers.next()).await {
            Ok(Some(answer)) => record(answer),
            Ok(None) => break,
            Err(_) => {
                errors.add_n("ack missing", answers.len() as u64);
                break;
            }
        }
    }
    let stats = client.stats();
    tally.reconnects.fetch_add(
        stats.opens.load(Ordering::Relaxed).saturating_sub(1),
        Ordering::Relaxed,
    );
    tally
        .resent
        .fetch_add(stats.resent.load(Ordering::Relaxed), Ordering::Relaxed);
    client.close().await;
    if let Ok(mut all) = tally.acked.lock() {
        all.extend(acked);
    }
}

/// How the client library reconnects in a verify run: through the run's own connector (its
/// source addresses, TLS and a freshly minted token).
struct ConnectorDial {
    connector: Arc<Connector>,
    n: u64,
}

impl ews_client::Dial for ConnectorDial {
    type Stream = ConnStream;
    fn dial(&self) -> ews_client::BoxFuture<'_, Result<Ws, ews_client::DialError>> {
        Box::pin(async move {
            self.connector.open(self.n).await.map_err(|kind| {
                match kind.strip_prefix("http ").and_then(|s| s.parse().ok()) {
                    Some(status) => ews_client::DialError::Refused(status),
                    None => ews_client::DialError::Failed(kind),
                }
            })
        })
    }
}

/// Reads every message of the queue at `url` until nothing new arrives for `idle`, deleting
/// those `delete` picks.
async fn read_queue(
    url: &str,
    args: &VerifyArgs,
    idle: Duration,
    delete: &dyn Fn(&[u8]) -> bool,
    errors: &Errors,
) -> Result<Vec<Vec<u8>>, String> {
    let link = args.cluster_secret.as_ref().map(LinkKey::derive);
    let credential = Credential::choose(link.as_ref(), args.admin_token.as_ref());
    let opts = ews_queue::client::ReadOptions {
        delete: true,
        idle: Some(idle),
        max: None,
    };
    let mut out = Vec::new();
    if let Err(e) = ews_queue::client::read(url, credential, opts, |_, body, _| {
        let taken = if delete(body.as_bytes()) {
            ews_queue::client::Taken::Take
        } else {
            ews_queue::client::Taken::Keep
        };
        out.push(body.into_bytes());
        taken
    })
    .await
    {
        // A connection that never opened is a usage error; one that broke mid-read is counted
        // and what was read still counts.
        if out.is_empty() && matches!(e, ews_queue::QueueError::Connect(_)) {
            return Err(format!("queue {url}: {e}"));
        }
        errors.add(format!("queue read: {e}"));
    }
    Ok(out)
}

impl Outcome for VerifyReport {
    fn human(&self) -> Vec<String> {
        let c = &self.connect;
        let mut out = vec![
            format!(
                "verify {} (run {}): {}/{} connections",
                self.url, self.run, c.established, c.attempted
            ),
            format!(
                "sent {}, acknowledged {} ({:.0}/s over {:.2} s), nacked {}",
                self.sent, self.acked, self.acked_per_sec, self.send_secs, self.nacked
            ),
            format!(
                "received {} (duplicates {}, received unacknowledged {}), missing {}",
                self.received, self.duplicates, self.received_unacked, self.missing
            ),
        ];
        if self.foreign > 0 {
            out.push(format!(
                "other messages in the queue: {} (not this run's: read, left there)",
                self.foreign
            ));
        }
        if self.reconnects > 0 {
            out.push(format!(
                "reconnects {}, events resent {}",
                self.reconnects, self.resent
            ));
        }
        if !self.missing_sample.is_empty() {
            out.push(format!("missing, e.g.: {}", self.missing_sample.join(", ")));
        }
        out
    }

    fn failures(&self) -> &Failures {
        &self.failures
    }

    fn shortfall(&self) -> Option<String> {
        let c = &self.connect;
        if c.established == 0 {
            Some(no_connection(c, &self.failures.errors))
        } else if self.acked == 0 {
            Some(format!("none of {} events was acknowledged", self.sent))
        } else if self.received == 0 {
            Some(format!(
                "nothing of this run was read back ({} acknowledged)",
                self.acked
            ))
        } else if c.established < c.attempted {
            // A verifier that checked some clients must not pass for all of them.
            Some(format!(
                "only {}/{} connections were established",
                c.established, c.attempted
            ))
        } else {
            None
        }
    }
}
