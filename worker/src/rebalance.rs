//! Connection rebalancing. A load balancer's round robin spreads only *new* connections: a worker
//! that joins a busy cluster gets none of the clients already connected, and the first workers keep
//! the most until clients leave (the paper's Table II). So a worker well above the cluster's mean
//! closes some of its sessions with 1012 (`rebalance`); their clients reconnect at once (the
//! client libraries treat 1012 as "come back now") and the load balancer spreads them over every
//! worker, the new one included.
//!
//! Rules, evaluated every second from the cluster view (every serving worker's proven connection
//! count, at most a second old) and this worker's live count:
//! - a worker starts shedding when it holds more than `mean × (1 + margin)`;
//! - it sheds one session at a time, `--rebalance-rate` a second with ±50 % jitter, so closes
//!   (and the reconnects they cause) are spread out rather than a storm;
//! - it stops once it is down to `mean × (1 + margin / 2)`, and never goes below the mean: only
//!   the excess over the mean can ever be shed, whatever the view says.
//!
//! Reconnects land on every worker, the shedding ones included, so the spread shrinks by rounds
//! until every worker is within the margin.

use std::sync::Arc;
use std::time::Duration;

use ews_cluster::{Membership, Role};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::WorkerHandle;

/// The rebalancing flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RebalanceArgs {
    /// Shed sessions when this worker holds more than the cluster's mean by this fraction
    /// (0.2 = 20 % above the mean); shedding stops at half of it, never below the mean.
    #[arg(long, env = "EWS_REBALANCE_MARGIN", default_value_t = 0.2, value_parser = margin)]
    pub rebalance_margin: f64,

    /// Sessions a worker closes per second at most while it sheds (jittered); 0 turns
    /// rebalancing off.
    #[arg(long, env = "EWS_REBALANCE_RATE", default_value_t = 20.0, value_parser = rate)]
    pub rebalance_rate: f64,
}

fn margin(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if (0.0..=10.0).contains(&m) => Ok(m),
        _ => Err(format!("{s:?}: a fraction within 0..=10 (0.2 = 20 %)")),
    }
}

fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=10_000.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?}: closes per second within 0..=10000")),
    }
}

/// How many sessions a worker holding `own` may shed now, given the other serving workers'
/// counts: 0 unless it is above `mean × (1 + margin)` (or already shedding and above
/// `mean × (1 + margin / 2)`), and never more than its excess over the mean.
pub fn excess(own: u64, others: &[u64], margin: f64, shedding: bool) -> u64 {
    if others.is_empty() {
        return 0;
    }
    let total: u64 = own + others.iter().sum::<u64>();
    let mean = total as f64 / (others.len() + 1) as f64;
    let start = mean * (1.0 + margin);
    let stop = mean * (1.0 + margin / 2.0);
    let own_f = own as f64;
    if own_f > start || (shedding && own_f > stop) {
        // Down to the stop line, and never below the mean (the epsilon keeps 100 × 1.1 at 110).
        let floor = (stop.max(mean) - 1e-9).ceil() as u64;
        own.saturating_sub(floor)
    } else {
        0
    }
}

/// Runs until `stop`: every second, or after each close while shedding.
pub async fn run(
    args: RebalanceArgs,
    membership: Arc<Membership>,
    registry: Arc<Registry>,
    worker: WorkerHandle,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    if args.rebalance_rate <= 0.0 {
        return;
    }
    let gap = Duration::from_secs_f64(1.0 / args.rebalance_rate);
    let mut shedding = false;
    loop {
        let pause = if worker.is_draining() {
            Duration::from_secs(1)
        } else {
            let view = membership.view();
            let others: Vec<u64> = view
                .serving(Role::Worker)
                .filter(|m| !m.is_self)
                .map(|m| m.conns)
                .collect();
            let own = worker.connections() as u64;
            let n = excess(own, &others, args.rebalance_margin, shedding);
            if n > 0 && registry.move_one() {
                if !shedding {
                    tracing::info!(
                        own,
                        workers = others.len() + 1,
                        excess = n,
                        "rebalancing: shedding sessions"
                    );
                }
                shedding = true;
                metrics.rebalanced();
                gap.mul_f64(rand::random_range(0.5..1.5))
            } else {
                if shedding {
                    tracing::info!(own, "rebalancing: within the margin");
                }
                shedding = false;
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_only_above_the_margin_and_never_below_the_mean() {
        // A third worker joins two with 150 each: mean 100, start above 120, stop at 110.
        assert_eq!(excess(150, &[150, 0], 0.2, false), 40);
        assert_eq!(
            excess(0, &[150, 150], 0.2, false),
            0,
            "below the mean: never sheds"
        );
        assert_eq!(
            excess(120, &[120, 60], 0.2, false),
            0,
            "at the start line: not yet"
        );
        assert_eq!(
            excess(115, &[115, 70], 0.2, true),
            5,
            "shedding goes on to the stop line"
        );
        assert_eq!(
            excess(115, &[115, 70], 0.2, false),
            0,
            "but does not start there"
        );
        // With no margin the floor is the mean itself.
        assert_eq!(excess(150, &[50], 0.0, false), 50);
        assert_eq!(
            excess(150, &[], 0.2, false),
            0,
            "alone: nothing to balance with"
        );
    }

    #[test]
    fn flags_are_checked() {
        assert!(margin("0.2").is_ok() && margin("-1").is_err() && margin("x").is_err());
        assert!(rate("0").is_ok() && rate("20").is_ok() && rate("-2").is_err());
    }
}
