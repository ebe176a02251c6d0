//! `idle`: open N connections and hold them, measuring what each costs the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::connect::{
    close_all, no_connection, ConnectArgs, ConnectSummary, Connector, Target, Ws,
};
use crate::server::{self, ServerUsage};
use crate::stats::Errors;
use crate::stats::Failures;
use crate::Outcome;

#[derive(clap::Args, Debug, Clone)]
pub struct IdleArgs {
    /// WebSocket URL (loopback only).
    #[arg(long, env = "EWS_URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// How long to hold the connections once they are all open.
    #[arg(long, env = "EWS_HOLD_SECS", default_value_t = 10)]
    pub hold_secs: u64,
    /// Wait this long after the last connection opened before reading the server's RSS.
    #[arg(long, env = "EWS_SETTLE_MS", default_value_t = 2000)]
    pub settle_ms: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Serialize)]
pub struct IdleReport {
    pub mode: &'static str,
    pub url: String,
    pub connect: ConnectSummary,
    /// Connections still open when the hold ended.
    pub held: u64,
    pub hold_secs: u64,
    /// Server RSS growth per established connection (after settling) and CPU per handshake.
    pub server_per_connection: Option<ServerUsage>,
    #[serde(flatten)]
    pub failures: Failures,
}

pub async fn run(args: IdleArgs) -> Result<IdleReport, String> {
    let target = Target::parse(&args.url, None, args.connect.allow_remote)?;
    let connector = Arc::new(Connector::new(&args.connect, target)?);
    let errors = Arc::new(Errors::default());
    let pid = args.connect.server_pid;

    let before = server::sample(pid);
    let (conns, connect) = connector.open_all(&errors).await;
    let connected_cpu = server::sample(pid);

    let hold_end = Instant::now() + Duration::from_secs(args.hold_secs);
    let mut holders = JoinSet::new();
    for (i, ws) in conns {
        holders.spawn(hold(i, ws, hold_end, errors.clone()));
    }
    let settle = Duration::from_millis(args.settle_ms).min(Duration::from_secs(args.hold_secs));
    tokio::time::sleep(settle).await;
    let settled = server::sample(pid);

    let mut kept = Vec::new();
    while let Some(done) = holders.join_next().await {
        kept.extend(done.ok().flatten());
    }
    let held = kept.len() as u64;
    close_all(kept).await;

    let server_per_connection = match (before, connected_cpu, settled) {
        (Some(b), Some(c), Some(s)) => {
            // RSS after settling, CPU up to the end of the connect phase (the handshakes).
            let mut u = ServerUsage::between(Some(b), Some(s), connect.established);
            if let (Some(u), Some(h)) = (
                &mut u,
                ServerUsage::between(Some(b), Some(c), connect.established),
            ) {
                u.cpu_us = h.cpu_us;
                u.cpu_us_per_unit = h.cpu_us_per_unit;
            }
            u
        }
        _ => None,
    };
    let attempts = connect.attempted;
    Ok(IdleReport {
        mode: "idle",
        url: args.url,
        connect,
        held,
        hold_secs: args.hold_secs,
        server_per_connection,
        failures: Failures {
            errors: errors.snapshot(),
            error_ratio: errors.total() as f64 / attempts.max(1) as f64,
        },
    })
}

/// Keeps one connection open until `end`, answering the server's pings (reading does that).
/// Returns it if it survived.
async fn hold(i: u64, mut ws: Ws, end: Instant, errors: Arc<Errors>) -> Option<(u64, Ws)> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end.into()) => return Some((i, ws)),
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(_))) | None => {
                    errors.add("closed by server during hold");
                    return None;
                }
                Some(Err(e)) => {
                    errors.add(format!("read: {e}"));
                    return None;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

impl Outcome for IdleReport {
    fn human(&self) -> Vec<String> {
        let c = &self.connect;
        let mut out = vec![
            format!(
                "idle {}: {}/{} connections open in {:.2} s ({:.0} handshakes/s), {} held for {} s",
                self.url,
                c.established,
                c.attempted,
                c.elapsed_secs,
                c.handshakes_per_sec,
                self.held,
                self.hold_secs
            ),
            format!("handshake latency: {}", c.handshake_latency),
        ];
        if let Some(s) = &self.server_per_connection {
            out.push(format!(
                "server: {:.0} B RSS per connection ({:.1} MiB -> {:.1} MiB), {:.1} CPU-µs per handshake",
                s.rss_delta_per_unit_bytes,
                s.rss_before_bytes as f64 / 1048576.0,
                s.rss_after_bytes as f64 / 1048576.0,
                s.cpu_us_per_unit
            ));
        }
        out
    }

    fn failures(&self) -> &Failures {
        &self.failures
    }

    fn shortfall(&self) -> Option<String> {
        (self.connect.established == 0).then(|| no_connection(&self.connect, &self.failures.errors))
    }
}
