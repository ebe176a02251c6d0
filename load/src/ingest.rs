//! `ingest`: each client sends `{"msg","clientId","timestamp"}` events at a rate (the seed's
//! LoadTest), optionally asking for per-event acks (`?ack=1`) and counting them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ews_proto::{Event, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::connect::{
    close_all, no_connection, ConnectArgs, ConnectSummary, Connector, Target, Ws,
};
use crate::server::{self, ServerUsage};
use crate::stats::{per_sec, Errors, Failures, Latency, LatencySummary};
use crate::Outcome;

#[derive(clap::Args, Debug, Clone)]
pub struct IngestArgs {
    /// WebSocket URL of an ingest route (loopback only).
    #[arg(long, env = "EWS_URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Events per connection.
    #[arg(long, env = "EWS_MESSAGES", default_value_t = 100)]
    pub messages: u64,
    /// Events per second per connection (the seed sends one per 100 ms); 0 = as fast as the
    /// server reads.
    #[arg(long, env = "EWS_RATE", default_value_t = 10.0)]
    pub rate: f64,
    /// Ask for a per-event ack (`?ack=1`) and wait for one per event.
    #[arg(long, env = "EWS_ACK")]
    pub ack: bool,
    /// After its last event, a connection waits this long for outstanding acks.
    #[arg(long, env = "EWS_ACK_TIMEOUT_MS", default_value_t = 10_000)]
    pub ack_timeout_ms: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub mode: &'static str,
    pub url: String,
    pub connect: ConnectSummary,
    /// Whether acks were asked for (`--ack`): then an event counts once acknowledged.
    pub ack: bool,
    pub sent: u64,
    pub acked: u64,
    pub nacked: u64,
    /// Error frames and frames that are neither ack nor nack.
    pub error_frames: u64,
    pub elapsed_secs: f64,
    pub events_per_sec: f64,
    /// Send to ack, when acks were asked for.
    pub ack_latency: LatencySummary,
    pub server_per_event: Option<ServerUsage>,
    #[serde(flatten)]
    pub failures: Failures,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    nacked: AtomicU64,
    error_frames: AtomicU64,
}

struct Shared {
    counters: Counters,
    latency: Latency,
    errors: Arc<Errors>,
    args: IngestArgs,
}

pub async fn run(args: IngestArgs) -> Result<IngestReport, String> {
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err("--rate must be a non-negative number".into());
    }
    let target = Target::parse(
        &args.url,
        args.ack.then_some("ack=1"),
        args.connect.allow_remote,
    )?;
    let connector = Arc::new(Connector::new(&args.connect, target)?);
    let errors = Arc::new(Errors::default());
    let (conns, connect) = connector.open_all(&errors).await;

    let shared = Arc::new(Shared {
        counters: Counters::default(),
        latency: Latency::default(),
        errors: errors.clone(),
        args: args.clone(),
    });
    let pid = args.connect.server_pid;
    let before = server::sample(pid);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (i, ws) in conns {
        let client = connector.client_id(i);
        tasks.spawn(send_events(i, client, ws, shared.clone()));
    }
    let mut kept = Vec::new();
    while let Some(done) = tasks.join_next().await {
        kept.extend(done.ok().flatten());
    }
    let elapsed = start.elapsed();
    let after = server::sample(pid);
    close_all(kept).await;

    let c = &shared.counters;
    let (sent, acked) = (
        c.sent.load(Ordering::Relaxed),
        c.acked.load(Ordering::Relaxed),
    );
    let planned = connect.attempted.saturating_mul(args.messages);
    let delivered = if args.ack { acked } else { sent };
    let error_frames = c.error_frames.load(Ordering::Relaxed);
    Ok(IngestReport {
        mode: "ingest",
        url: args.url,
        ack: args.ack,
        sent,
        acked,
        nacked: c.nacked.load(Ordering::Relaxed),
        error_frames,
        elapsed_secs: elapsed.as_secs_f64(),
        events_per_sec: per_sec(sent, elapsed),
        ack_latency: shared.latency.summary(),
        server_per_event: ServerUsage::between(before, after, sent),
        // Events that did not make it (never sent, or not acknowledged when acks were asked
        // for) plus events the server rejected, out of all planned.
        failures: Failures {
            errors: errors.snapshot(),
            error_ratio: ((planned - delivered.min(planned)) + error_frames) as f64
                / planned.max(1) as f64,
        },
        connect,
    })
}

/// Sends this client's events at the configured rate while reading replies; with acks, waits for
/// the outstanding ones after the last event (bounded by the ack timeout).
async fn send_events(i: u64, client: String, ws: Ws, shared: Arc<Shared>) -> Option<(u64, Ws)> {
    let args = &shared.args;
    let c = &shared.counters;
    let (mut tx, mut rx) = ws.split();
    let period = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let mut next_send = tokio::time::Instant::now();
    // Send instants of events not yet acknowledged, oldest first (acks come back in order).
    let mut in_flight: VecDeque<Instant> = VecDeque::new();
    let mut sent = 0u64;
    let mut answered = 0u64;
    let mut ack_deadline = tokio::time::Instant::now();
    loop {
        let sending = sent < args.messages;
        if !sending && (!args.ack || answered >= sent) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_send), if sending => {
                let event = Event {
                    id: None,
                    msg: format!("{client}:{sent}"),
                    client_id: client.to_string(),
                    timestamp: ews_proto::now_ms(),
                };
                if let Err(e) = tx.send(Message::text(event.to_text())).await {
                    shared.errors.add(format!("send: {e}"));
                    return None;
                }
                sent += 1;
                c.sent.fetch_add(1, Ordering::Relaxed);
                if args.ack {
                    in_flight.push_back(Instant::now());
                }
                if let Some(p) = period {
                    next_send += p;
                }
                if sent == args.messages {
                    ack_deadline = tokio::time::Instant::now()
                        + Duration::from_millis(args.ack_timeout_ms);
                }
            }
            _ = tokio::time::sleep_until(ack_deadline), if !sending => {
                shared.errors.add_n("ack missing", sent - answered);
                break;
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerFrame>(t.as_str()) {
                    Ok(ServerFrame::Ack { .. }) => {
                        answered += 1;
                        c.acked.fetch_add(1, Ordering::Relaxed);
                        if let Some(t0) = in_flight.pop_front() {
                            shared.latency.record(t0.elapsed());
                        }
                    }
                    Ok(ServerFrame::Nack { error, .. }) => {
                        answered += 1;
                        in_flight.pop_front();
                        c.nacked.fetch_add(1, Ordering::Relaxed);
                        shared.errors.add(format!("nack: {error}"));
                    }
                    Ok(ServerFrame::Error { error, detail, .. }) => {
                        c.error_frames.fetch_add(1, Ordering::Relaxed);
                        shared.errors.add(format!("error frame: {error:?}: {detail}"));
                    }
                    // Anything else (a push to this client meanwhile, a backend's subscribe, a
                    // token's `refresh_required`) is not part of the test.
                    Ok(_) => {}
                    Err(_) => {
                        c.error_frames.fetch_add(1, Ordering::Relaxed);
                        shared.errors.add("unexpected frame");
                    }
                },
                Some(Ok(Message::Close(_))) | None => {
                    shared.errors.add("closed by server");
                    return None;
                }
                Some(Err(e)) => {
                    shared.errors.add(format!("read: {e}"));
                    return None;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    tx.reunite(rx).ok().map(|ws| (i, ws))
}

impl Outcome for IngestReport {
    fn human(&self) -> Vec<String> {
        let c = &self.connect;
        let mut out = vec![
            format!(
                "ingest {}: {}/{} connections ({:.0} handshakes/s)",
                self.url, c.established, c.attempted, c.handshakes_per_sec
            ),
            format!(
                "sent {} events in {:.2} s ({:.0} events/s); acked {}, nacked {}, error frames {}",
                self.sent,
                self.elapsed_secs,
                self.events_per_sec,
                self.acked,
                self.nacked,
                self.error_frames
            ),
        ];
        if self.ack_latency.count > 0 {
            out.push(format!("ack latency: {}", self.ack_latency));
        }
        if let Some(s) = &self.server_per_event {
            out.push(format!("server: {:.2} CPU-µs per event", s.cpu_us_per_unit));
        }
        out
    }

    fn failures(&self) -> &Failures {
        &self.failures
    }

    fn shortfall(&self) -> Option<String> {
        if self.connect.established == 0 {
            Some(no_connection(&self.connect, &self.failures.errors))
        } else if self.sent == 0 {
            Some("no event was sent".into())
        } else if self.ack && self.acked == 0 {
            Some(format!("none of {} events was acknowledged", self.sent))
        } else {
            None
        }
    }
}
