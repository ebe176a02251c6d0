//! `echo`: M round trips per connection against an echo route; latency, throughput and the
//! server's CPU per message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
pub struct EchoArgs {
    /// WebSocket URL of an echo route (loopback only).
    #[arg(long, env = "EWS_URL", default_value = "ws://127.0.0.1:8080/echo")]
    pub url: String,
    /// Round trips per connection.
    #[arg(long, env = "EWS_MESSAGES", default_value_t = 100)]
    pub messages: u64,
    /// Messages per second per connection; 0 = next message as soon as the echo arrives.
    #[arg(long, env = "EWS_RATE", default_value_t = 0.0)]
    pub rate: f64,
    /// Text payload size in bytes (at least 8: the payload starts with the message number).
    #[arg(long, env = "EWS_MESSAGE_SIZE", default_value_t = 32)]
    pub message_size: usize,
    /// A reply not back after this long fails the connection.
    #[arg(long, env = "EWS_REPLY_TIMEOUT_MS", default_value_t = 10_000)]
    pub reply_timeout_ms: u64,
    /// Ask this rpc method instead of echoing: each round trip is `{"type":"rpc","id":N,
    /// "method":…,"data":"<payload>"}` answered by a `reply` with the same id (its data or its
    /// error: a `no_method` answer is a round trip too, through the worker only).
    #[arg(long, env = "EWS_RPC")]
    pub rpc: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Serialize)]
pub struct EchoReport {
    pub mode: &'static str,
    pub url: String,
    pub connect: ConnectSummary,
    pub sent: u64,
    pub echoed: u64,
    pub elapsed_secs: f64,
    pub messages_per_sec: f64,
    pub round_trip: LatencySummary,
    /// Server CPU and RSS growth over the echo phase, per echoed message.
    pub server_per_message: Option<ServerUsage>,
    #[serde(flatten)]
    pub failures: Failures,
}

struct Shared {
    sent: AtomicU64,
    echoed: AtomicU64,
    latency: Latency,
    errors: Arc<Errors>,
}

pub async fn run(args: EchoArgs) -> Result<EchoReport, String> {
    if args.message_size < 8 {
        return Err("--message-size must be at least 8".into());
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err("--rate must be a non-negative number".into());
    }
    let target = Target::parse(&args.url, None, args.connect.allow_remote)?;
    let connector = Arc::new(Connector::new(&args.connect, target)?);
    let errors = Arc::new(Errors::default());
    let (conns, connect) = connector.open_all(&errors).await;

    let shared = Arc::new(Shared {
        sent: AtomicU64::new(0),
        echoed: AtomicU64::new(0),
        latency: Latency::default(),
        errors: errors.clone(),
    });
    let pid = args.connect.server_pid;
    let before = server::sample(pid);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (i, ws) in conns {
        tasks.spawn(round_trips(i, ws, args.clone(), shared.clone()));
    }
    let mut kept = Vec::new();
    while let Some(done) = tasks.join_next().await {
        kept.extend(done.ok().flatten());
    }
    let elapsed = start.elapsed();
    let after = server::sample(pid);
    close_all(kept).await;

    let echoed = shared.echoed.load(Ordering::Relaxed);
    Ok(EchoReport {
        mode: if args.rpc.is_some() { "rpc" } else { "echo" },
        url: args.url,
        sent: shared.sent.load(Ordering::Relaxed),
        echoed,
        elapsed_secs: elapsed.as_secs_f64(),
        messages_per_sec: per_sec(echoed, elapsed),
        round_trip: shared.latency.summary(),
        server_per_message: ServerUsage::between(before, after, echoed),
        // A connection stops at its first error, so this is the fraction of failed connections.
        failures: Failures {
            errors: errors.snapshot(),
            error_ratio: errors.total() as f64 / connect.attempted.max(1) as f64,
        },
        connect,
    })
}

/// Sends `messages` numbered payloads one at a time, each after the previous one came back.
async fn round_trips(i: u64, mut ws: Ws, args: EchoArgs, shared: Arc<Shared>) -> Option<(u64, Ws)> {
    let reply_timeout = Duration::from_millis(args.reply_timeout_ms);
    let mut ticker = (args.rate > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    for k in 0..args.messages {
        if let Some(t) = &mut ticker {
            t.tick().await;
        }
        let payload = payload(i, k, args.message_size);
        let frame = match &args.rpc {
            Some(method) => {
                serde_json::json!({"type": "rpc", "id": k, "method": method, "data": payload})
                    .to_string()
            }
            None => payload.clone(),
        };
        let t0 = Instant::now();
        if let Err(e) = ws.send(Message::text(frame)).await {
            shared.errors.add(format!("send: {e}"));
            return None;
        }
        shared.sent.fetch_add(1, Ordering::Relaxed);
        loop {
            match tokio::time::timeout(reply_timeout, ws.next()).await {
                Err(_) => {
                    shared.errors.add("echo timeout");
                    return None;
                }
                Ok(Some(Ok(Message::Text(t)))) if answers(&args, &t, k, &payload) => {
                    shared.latency.record(t0.elapsed());
                    shared.echoed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Some(Ok(Message::Text(_) | Message::Binary(_)))) => {
                    shared.errors.add("echo mismatch");
                    return None;
                }
                Ok(Some(Ok(Message::Close(_))) | None) => {
                    shared.errors.add("closed by server");
                    return None;
                }
                Ok(Some(Err(e))) => {
                    shared.errors.add(format!("read: {e}"));
                    return None;
                }
                // Pings are answered by the library; nothing else to do.
                Ok(Some(Ok(_))) => {}
            }
        }
    }
    Some((i, ws))
}

/// Whether `text` is the reply to round trip `k`: the payload itself, or the `reply` to rpc `k`.
fn answers(args: &EchoArgs, text: &str, k: u64, payload: &str) -> bool {
    if args.rpc.is_none() {
        return text == payload;
    }
    serde_json::from_str::<serde_json::Value>(text)
        .is_ok_and(|v| v["type"] == "reply" && v["id"] == k)
}

/// `<connection>:<message>` padded with `.` to `size` bytes, so a reply can be matched exactly.
fn payload(conn: u64, k: u64, size: usize) -> String {
    let mut s = format!("{conn}:{k}:");
    if s.len() < size {
        s.extend(std::iter::repeat_n('.', size - s.len()));
    }
    s
}

impl Outcome for EchoReport {
    fn human(&self) -> Vec<String> {
        let c = &self.connect;
        let mut out = vec![
            format!(
                "{} {}: {}/{} connections ({:.0} handshakes/s)",
                self.mode, self.url, c.established, c.attempted, c.handshakes_per_sec
            ),
            format!(
                "echoed {}/{} messages in {:.2} s: {:.0} msg/s",
                self.echoed, self.sent, self.elapsed_secs, self.messages_per_sec
            ),
            format!("round trip: {}", self.round_trip),
        ];
        if let Some(s) = &self.server_per_message {
            out.push(format!(
                "server: {:.2} CPU-µs per message ({:.3} CPU-s for {} messages)",
                s.cpu_us_per_unit,
                s.cpu_us as f64 / 1e6,
                s.per
            ));
        }
        out
    }

    fn failures(&self) -> &Failures {
        &self.failures
    }

    fn shortfall(&self) -> Option<String> {
        if self.connect.established == 0 {
            Some(no_connection(&self.connect, &self.failures.errors))
        } else if self.echoed == 0 {
            Some("no message was echoed back".into())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_unique_and_sized() {
        assert_eq!(payload(3, 7, 8), "3:7:....");
        assert_eq!(payload(3, 7, 32).len(), 32);
        assert_eq!(payload(123456, 654321, 8), "123456:654321:");
        assert_ne!(payload(1, 23, 16), payload(12, 3, 16));
    }
}
