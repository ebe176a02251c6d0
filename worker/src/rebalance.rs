//! Connection rebalancing. A load balancer's round robin spreads only *new* connections: a worker
//! that joins a busy cluster gets none of the clients already connected, and the first workers keep
//! the most until clients leave (the paper's Table II). So a worker well above the cluster's mean
//! closes some of its sessions with 1012 (`rebalance`); their clients reconnect at once (the
//! client libraries treat 1012 as "come back now") and the load balancer spreads them over every
//! worker, the new one included.
//!
//! Rules, evaluated every second from the cluster view (every serving worker's proven connection
//! count, at most a second old) and this worker's count:
//! - a worker starts shedding when it holds more than `mean × (1 + margin)` on [`SUSTAIN`]
//!   checks in a row, its own count taken as the lowest of those checks: the peers' counts are
//!   a second old or more (more on a busy machine), so on a ramp that fills every worker evenly
//!   a live count is always ahead of the others' and would look like an imbalance that is not
//!   there;
//! - it sheds one session at a time, `--rebalance-rate` a second with ±50 % jitter, so closes
//!   (and the reconnects they cause) are spread out rather than a storm;
//! - it stops once it is down to `mean × (1 + margin / 2)`, and never goes below the mean: only
//!   the excess over the mean can ever be shed, whatever the view says;
//! - a worker near its capacity (above `--busy-fraction` of `--max-connections`) starts at the
//!   stop line instead: within the margin of a mean that a new, empty worker pulls down, the
//!   first workers could otherwise sit at 95 % of their capacity for hours while the new one
//!   holds a few clients, refusing arrivals and looking like a reason to add yet another.
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

    /// Above this fraction of --max-connections a worker sheds down to the stop line even within
    /// the margin (the busy-worker alarm's line in Terraform, `busy_fraction`).
    #[arg(long, env = "EWS_BUSY_FRACTION", default_value_t = 0.9, value_parser = fraction)]
    pub busy_fraction: f64,
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) && f > 0.0 => Ok(f),
        _ => Err(format!(
            "{s:?}: a fraction within 0..=1 (0.9 = 90 %), above 0"
        )),
    }
}

/// Where shedding starts and stops: the margin over the mean, and the busy line in clients.
#[derive(Debug, Clone, Copy)]
pub struct Lines {
    pub margin: f64,
    pub busy: Option<u64>,
}

const MARGINS: std::ops::RangeInclusive<f64> = 0.0..=10.0;
const RATES: std::ops::RangeInclusive<f64> = 0.0..=10_000.0;

fn margin(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if MARGINS.contains(&m) => Ok(m),
        _ => Err(format!("{s:?}: a fraction within 0..=10 (0.2 = 20 %)")),
    }
}

fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if RATES.contains(&r) => Ok(r),
        _ => Err(format!("{s:?}: closes per second within 0..=10000")),
    }
}

impl RebalanceArgs {
    /// The flags' bounds, for settings made in code.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let (m, r) = (self.rebalance_margin, self.rebalance_rate);
        if fraction(&self.busy_fraction.to_string()).is_err() {
            return Err(crate::config::ConfigError {
                setting: "--busy-fraction",
                problem: format!("{}: a fraction within 0..=1, above 0", self.busy_fraction),
            });
        }
        if !MARGINS.contains(&m) {
            return Err(crate::config::ConfigError {
                setting: "--rebalance-margin",
                problem: format!("{m}: a fraction within 0..=10"),
            });
        }
        if !RATES.contains(&r) {
            return Err(crate::config::ConfigError {
                setting: "--rebalance-rate",
                problem: format!("{r}: closes per second within 0..=10000"),
            });
        }
        Ok(())
    }
}

/// Checks in a row (a second apart) an imbalance must be seen on before shedding starts.
pub const SUSTAIN: u32 = 3;

/// When shedding starts: an imbalance seen on [`SUSTAIN`] checks in a row, judged with this
/// worker's count no newer than its peers' (the lowest of its last [`SUSTAIN`] checks).
#[derive(Debug, Default)]
struct Trigger {
    recent: std::collections::VecDeque<u64>,
    seen: u32,
}

impl Trigger {
    /// Sessions to shed now, given this worker's live count and its peers' (see [`excess`]).
    fn excess(&mut self, own_now: u64, others: &[u64], lines: Lines, shedding: bool) -> u64 {
        if self.recent.len() == SUSTAIN as usize {
            self.recent.pop_front();
        }
        self.recent.push_back(own_now);
        if shedding {
            // Going on needs no new evidence: the stop line and the mean bound it.
            return excess(own_now, others, lines, true);
        }
        let own = self.recent.iter().copied().min().unwrap_or(own_now);
        match excess(own, others, lines, false) {
            0 => {
                self.seen = 0;
                0
            }
            n => {
                self.seen += 1;
                if self.seen >= SUSTAIN {
                    n
                } else {
                    0
                }
            }
        }
    }
}

/// How many sessions a worker holding `own` may shed now, given the other serving workers'
/// counts: 0 unless it is above `mean × (1 + margin)` (or already shedding, or above the busy
/// line, and above `mean × (1 + margin / 2)`), and never more than its excess over the mean.
pub fn excess(own: u64, others: &[u64], lines: Lines, shedding: bool) -> u64 {
    if others.is_empty() {
        return 0;
    }
    let total: u64 = own + others.iter().sum::<u64>();
    let mean = total as f64 / (others.len() + 1) as f64;
    let start = mean * (1.0 + lines.margin);
    let stop = mean * (1.0 + lines.margin / 2.0);
    let own_f = own as f64;
    let busy = lines.busy.is_some_and(|b| own > b);
    if own_f > start || ((shedding || busy) && own_f > stop) {
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
    max_connections: usize,
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
    let lines = Lines {
        margin: args.rebalance_margin,
        busy: Some((max_connections as f64 * args.busy_fraction) as u64),
    };
    let mut shedding = false;
    let mut trigger = Trigger::default();
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
            let n = trigger.excess(own, &others, lines, shedding);
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

    const M20: Lines = Lines {
        margin: 0.2,
        busy: None,
    };
    const M0: Lines = Lines {
        margin: 0.0,
        busy: None,
    };

    /// Four workers at 95 of 100 beside a newer one at 35: within the margin of the mean (83,
    /// start line 99.6), but past the busy line (90) each sheds to the stop line (91.3).
    #[test]
    fn a_worker_near_its_capacity_sheds_from_the_stop_line() {
        let others = [95, 95, 95, 35];
        assert_eq!(excess(95, &others, M20, false), 0);
        let busy = Lines {
            margin: 0.2,
            busy: Some(90),
        };
        assert_eq!(excess(95, &others, busy, false), 3);
        // Below the busy line nothing changes.
        assert_eq!(excess(85, &[85, 85, 60], busy, false), 0);
    }

    #[test]
    fn sheds_only_above_the_margin_and_never_below_the_mean() {
        // A third worker joins two with 150 each: mean 100, start above 120, stop at 110.
        assert_eq!(excess(150, &[150, 0], M20, false), 40);
        assert_eq!(
            excess(0, &[150, 150], M20, false),
            0,
            "below the mean: never sheds"
        );
        assert_eq!(
            excess(120, &[120, 60], M20, false),
            0,
            "at the start line: not yet"
        );
        assert_eq!(
            excess(115, &[115, 70], M20, true),
            5,
            "shedding goes on to the stop line"
        );
        assert_eq!(
            excess(115, &[115, 70], M20, false),
            0,
            "but does not start there"
        );
        // With no margin the floor is the mean itself.
        assert_eq!(excess(150, &[50], M0, false), 50);
        assert_eq!(
            excess(150, &[], M20, false),
            0,
            "alone: nothing to balance with"
        );
    }

    /// Two workers filled evenly at 170 clients a second each, each seeing the other's count a
    /// second late: never an imbalance. A worker joining empty beside two full ones: shedding
    /// starts on the third check.
    #[test]
    fn an_even_ramp_never_triggers_and_a_real_imbalance_does_after_it_is_sustained() {
        let mut t = Trigger::default();
        for second in 1..=60u64 {
            let own = 170 * second;
            let peer_seen = 170 * (second - 1);
            assert_eq!(
                t.excess(own, &[peer_seen], M20, false),
                0,
                "second {second}"
            );
        }
        let mut t = Trigger::default();
        let fired: Vec<u64> = (0..4)
            .map(|_| t.excess(150, &[150, 0], M20, false))
            .collect();
        assert_eq!(fired, [0, 0, 40, 40]);
        // A blip that goes away resets the count.
        let mut t = Trigger::default();
        assert_eq!(t.excess(150, &[150, 0], M20, false), 0);
        assert_eq!(t.excess(50, &[100, 100], M20, false), 0);
        for _ in 0..4 {
            assert_eq!(
                t.excess(150, &[150, 0], M20, false),
                0,
                "its low check still counts"
            );
        }
        assert_eq!(t.excess(150, &[150, 0], M20, false), 40);
        // Once shedding, each check goes on at once down to the stop line.
        assert_eq!(t.excess(115, &[115, 70], M20, true), 5);
    }

    #[test]
    fn flags_are_checked() {
        assert!(margin("0.2").is_ok() && margin("-1").is_err() && margin("x").is_err());
        assert!(rate("0").is_ok() && rate("20").is_ok() && rate("-2").is_err());
    }
}
