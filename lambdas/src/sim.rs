//! The elasticity simulator: a load curve replayed through the scalers' own policy.
//!
//! Model, one tick at a time (60 s by default):
//! 1. The Auto Scaling group reconciles to the desired capacity: it launches nodes (in service
//!    after the boot delay, billed from launch) or terminates the newest node first, whose clients
//!    reconnect.
//! 2. A fraction of every node's clients churns (disconnects and reconnects).
//! 3. Clients arrive or leave to follow the curve; leavers are drawn in proportion to each node's
//!    share.
//! 4. Arriving and reconnecting clients are spread over in-service nodes by the ALB's round
//!    robin; with rebalancing on, a node entering service takes its even share at once.
//! 5. At each alarm period end the period's maximum of connected clients is a datapoint; each
//!    alarm goes to ALARM when `datapoints_to_alarm` of its last `evaluation_periods` datapoints
//!    breach its current threshold. A transition into ALARM runs [`decide`] exactly as the Lambda
//!    does: desired ± 1 within bounds, both thresholds re-derived, the alarm re-armed.
//!
//! Randomness (which clients leave or churn) comes from one seeded RNG: a run is reproducible.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::policy::{decide, thresholds, Bounds, Direction, Steps, Thresholds};
use crate::scenario::LoadCurve;

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub bounds: Bounds,
    pub steps: Steps,
    pub tick_secs: u64,
    /// Alarm period; a multiple of the tick.
    pub period_secs: u64,
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
    /// Launch to in service (EC2 boot plus service start).
    pub boot_secs: u64,
    /// Fraction of connected clients that reconnect per hour.
    pub churn_per_hour: f64,
    /// Move clients onto a node when it enters service, instead of only new arrivals.
    pub rebalance: bool,
    /// On-demand price of one node, dollars per hour.
    pub price_per_hour: f64,
    pub seed: u64,
}

/// One worker instance over its lifetime.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub id: u32,
    pub launched: u64,
    pub ready: u64,
    pub terminated: Option<u64>,
    pub conns: u64,
}

impl Node {
    fn in_service(&self, t: u64) -> bool {
        self.terminated.is_none() && self.ready <= t
    }
}

/// The state at the end of one tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub t: u64,
    /// Clients the curve wants connected.
    pub load: u64,
    pub desired: u32,
    pub booting: u32,
    /// `(node id, connections)` of each in-service node, oldest first.
    pub conns: Vec<(u32, u64)>,
    pub thresholds: Thresholds,
}

impl Sample {
    pub fn connected(&self) -> u64 {
        self.conns.iter().map(|c| c.1).sum()
    }

    pub fn max_per_node(&self) -> u64 {
        self.conns.iter().map(|c| c.1).max().unwrap_or(0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScaleEvent {
    pub t: u64,
    pub direction: Direction,
    pub from: u32,
    pub to: u32,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub samples: Vec<Sample>,
    pub events: Vec<ScaleEvent>,
    pub nodes: Vec<Node>,
    pub duration_secs: u64,
    pub price_per_hour: f64,
}

impl Report {
    /// Instance-hours billed: per second from launch to termination, at least a minute each
    /// (EC2 Linux on-demand billing).
    pub fn instance_hours(&self) -> f64 {
        self.nodes
            .iter()
            .map(|n| {
                let end = n.terminated.unwrap_or(self.duration_secs);
                end.saturating_sub(n.launched).max(60) as f64 / 3600.0
            })
            .sum()
    }

    pub fn cost(&self) -> f64 {
        self.instance_hours() * self.price_per_hour
    }

    pub fn max_nodes(&self) -> u32 {
        self.samples
            .iter()
            .map(|s| s.conns.len() as u32 + s.booting)
            .max()
            .unwrap_or(0)
    }

    /// The most clients any one node held at any time.
    pub fn peak_per_node(&self) -> u64 {
        self.samples
            .iter()
            .map(Sample::max_per_node)
            .max()
            .unwrap_or(0)
    }

    /// The first sample at which the curve reaches `level` clients.
    pub fn first_at(&self, level: u64) -> Option<&Sample> {
        self.samples.iter().find(|s| s.load >= level)
    }
}

/// The paper's comparison: a fixed fleet sized for the peak at `per_node` clients each, for
/// `hours`.
pub fn static_fleet(peak: u64, per_node: u64, hours: f64, price_per_hour: f64) -> (u64, f64) {
    let nodes = peak.div_ceil(per_node.max(1));
    (nodes, nodes as f64 * hours * price_per_hour)
}

struct Alarm {
    direction: Direction,
    datapoints: VecDeque<u64>,
    in_alarm: bool,
}

impl Alarm {
    fn new(direction: Direction) -> Alarm {
        Alarm {
            direction,
            datapoints: VecDeque::new(),
            in_alarm: false,
        }
    }

    /// Adds a datapoint and evaluates; true on a transition into ALARM.
    fn evaluate(&mut self, datapoint: u64, threshold: f64, cfg: &SimConfig) -> bool {
        self.datapoints.push_back(datapoint);
        while self.datapoints.len() > cfg.evaluation_periods {
            self.datapoints.pop_front();
        }
        let breaching = self
            .datapoints
            .iter()
            .filter(|&&v| match self.direction {
                Direction::Up => v as f64 > threshold,
                Direction::Down => (v as f64) < threshold,
            })
            .count();
        let now = breaching >= cfg.datapoints_to_alarm;
        let fired = now && !self.in_alarm;
        self.in_alarm = now;
        fired
    }
}

/// Replays `load` through the policy.
pub fn run(cfg: &SimConfig, load: &LoadCurve) -> Report {
    let tick = cfg.tick_secs.max(1);
    let period = cfg.period_secs.max(tick);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut nodes: Vec<Node> = (0..cfg.bounds.min)
        .map(|i| Node {
            id: i + 1,
            launched: 0,
            ready: 0,
            terminated: None,
            conns: 0,
        })
        .collect();
    let mut desired = cfg.bounds.min;
    let mut current = thresholds(desired, cfg.bounds, cfg.steps);
    let mut alarms = [Alarm::new(Direction::Up), Alarm::new(Direction::Down)];
    let mut pending: u64 = 0; // clients between connections
    let mut cursor: usize = 0; // the ALB's round-robin position
    let mut period_max: u64 = 0;
    let mut samples = Vec::new();
    let mut events = Vec::new();
    let duration = load.duration_secs();

    let mut t = 0;
    while t <= duration {
        // 1. The group follows the desired capacity.
        let active = nodes.iter().filter(|n| n.terminated.is_none()).count() as u32;
        for _ in active..desired {
            let id = nodes.len() as u32 + 1;
            nodes.push(Node {
                id,
                launched: t,
                ready: t + cfg.boot_secs,
                terminated: None,
                conns: 0,
            });
        }
        for _ in desired..active {
            if let Some(newest) = nodes.iter_mut().rev().find(|n| n.terminated.is_none()) {
                newest.terminated = Some(t);
                pending += std::mem::take(&mut newest.conns);
            }
        }
        let entering = nodes
            .iter()
            .any(|n| n.terminated.is_none() && n.ready <= t && n.ready + tick > t && n.ready > 0);

        // 2. Churn.
        let p = (cfg.churn_per_hour * tick as f64 / 3600.0).clamp(0.0, 1.0);
        if p > 0.0 {
            for n in nodes.iter_mut().filter(|n| n.in_service(t)) {
                let leave = random_round(n.conns as f64 * p, &mut rng).min(n.conns);
                n.conns -= leave;
                pending += leave;
            }
        }

        // 3. Arrivals and departures.
        let want = load.at(t);
        let connected: u64 = nodes.iter().map(|n| n.conns).sum();
        if want > connected + pending {
            pending += want - connected - pending;
        } else {
            let mut leave = connected + pending - want;
            let from_pending = leave.min(pending);
            pending -= from_pending;
            leave -= from_pending;
            depart(&mut nodes, leave, &mut rng);
        }

        // 4. Round robin over in-service nodes, then optional rebalancing.
        let serving: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].in_service(t))
            .collect();
        if !serving.is_empty() && pending > 0 {
            let k = serving.len() as u64;
            let each = pending / k;
            let extra = (pending % k) as usize;
            for (j, &i) in serving.iter().enumerate() {
                let pos = (j + serving.len() - cursor % serving.len()) % serving.len();
                nodes[i].conns += each + u64::from(pos < extra);
            }
            cursor = (cursor + extra) % serving.len();
            pending = 0;
        }
        if cfg.rebalance && entering && !serving.is_empty() {
            let total: u64 = serving.iter().map(|&i| nodes[i].conns).sum();
            let k = serving.len() as u64;
            for (j, &i) in serving.iter().enumerate() {
                nodes[i].conns = total / k + u64::from((j as u64) < total % k);
            }
        }

        // 5. Alarms at the end of each period.
        let connected: u64 = nodes.iter().map(|n| n.conns).sum();
        period_max = period_max.max(connected);
        if (t + tick).is_multiple_of(period) {
            for alarm in alarms.iter_mut() {
                let threshold = match alarm.direction {
                    Direction::Up => current.up,
                    Direction::Down => current.down,
                };
                if alarm.evaluate(period_max, threshold, cfg) {
                    let d = decide(desired, alarm.direction, cfg.bounds, cfg.steps);
                    if d.changes_capacity() {
                        events.push(ScaleEvent {
                            t,
                            direction: alarm.direction,
                            from: d.from,
                            to: d.to,
                        });
                    }
                    desired = d.to;
                    current = d.thresholds;
                    alarm.in_alarm = false; // re-armed by the Lambda
                }
            }
            period_max = 0;
        }

        samples.push(Sample {
            t,
            load: want,
            desired,
            booting: nodes
                .iter()
                .filter(|n| n.terminated.is_none() && n.ready > t)
                .count() as u32,
            conns: nodes
                .iter()
                .filter(|n| n.in_service(t))
                .map(|n| (n.id, n.conns))
                .collect(),
            thresholds: current,
        });
        t += tick;
    }

    Report {
        samples,
        events,
        nodes,
        duration_secs: duration,
        price_per_hour: cfg.price_per_hour,
    }
}

/// Removes `count` clients, each node losing in proportion to its share.
fn depart(nodes: &mut [Node], count: u64, rng: &mut StdRng) {
    let total: u64 = nodes.iter().map(|n| n.conns).sum();
    if count == 0 || total == 0 {
        return;
    }
    let count = count.min(total);
    let mut removed = 0;
    for n in nodes.iter_mut() {
        let share = (n.conns as u128 * count as u128 / total as u128) as u64;
        n.conns -= share;
        removed += share;
    }
    // Integer shares leave fewer than one client per node: take them one by one, weighted.
    while removed < count {
        let left: u64 = nodes.iter().map(|n| n.conns).sum();
        let mut pick = rng.random_range(0..left);
        for n in nodes.iter_mut() {
            if pick < n.conns {
                n.conns -= 1;
                break;
            }
            pick -= n.conns;
        }
        removed += 1;
    }
}

fn random_round(x: f64, rng: &mut StdRng) -> u64 {
    let floor = x.floor();
    floor as u64 + u64::from(rng.random::<f64>() < x - floor)
}

#[cfg(test)]
impl SimConfig {
    /// The paper's set-up: 2..10 nodes, 50,000-client steps, 1-minute alarms, t2.medium price,
    /// no boot delay and no churn. Tests vary it with struct update syntax.
    pub(crate) fn paper() -> SimConfig {
        SimConfig {
            bounds: Bounds { min: 2, max: 10 },
            steps: Steps {
                step: 50_000,
                hysteresis: 5_000,
            },
            tick_secs: 60,
            period_secs: 60,
            evaluation_periods: 1,
            datapoints_to_alarm: 1,
            boot_secs: 0,
            churn_per_hour: 0.0,
            rebalance: false,
            price_per_hour: 0.0464,
            seed: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn paper() -> SimConfig {
        SimConfig::paper()
    }

    fn thousands(s: &Sample) -> Vec<f64> {
        s.conns.iter().map(|c| c.1 as f64 / 1000.0).collect()
    }

    #[test]
    fn reproduces_table_ii() {
        let r = run(&paper(), &Scenario::Table2.curve());
        // The paper's Table II, thousands of connections per node.
        let table: [(u64, &[f64]); 3] = [
            (50_000, &[25.0, 25.0]),
            (100_000, &[42.0, 42.0, 16.0]),
            (150_000, &[54.5, 54.5, 28.5, 12.5]),
        ];
        for (load, want) in table {
            let got = thousands(r.first_at(load).unwrap());
            assert_eq!(got.len(), want.len(), "{load}: {got:?}");
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= 1.0, "{load}: {got:?} vs {want:?}");
            }
        }
        assert_eq!(r.events.len(), 2);
    }

    #[test]
    fn rebalancing_evens_out_the_nodes() {
        let cfg = SimConfig {
            rebalance: true,
            ..paper()
        };
        let r = run(&cfg, &Scenario::Table2.curve());
        let at = r.first_at(150_000).unwrap();
        assert!(at.max_per_node() - at.conns.iter().map(|c| c.1).min().unwrap() < 13_000);
        assert!(r.peak_per_node() < run(&paper(), &Scenario::Table2.curve()).peak_per_node());
    }

    #[test]
    fn deterministic_per_seed() {
        let cfg = SimConfig {
            churn_per_hour: 0.3,
            boot_secs: 120,
            ..paper()
        };
        let a = run(&cfg, &Scenario::Case2.curve());
        let b = run(&cfg, &Scenario::Case2.curve());
        assert_eq!(a.samples, b.samples);
        let c = run(&SimConfig { seed: 2, ..cfg }, &Scenario::Case2.curve());
        assert_ne!(a.samples, c.samples);
    }

    #[test]
    fn every_client_is_accounted_for() {
        let cfg = SimConfig {
            churn_per_hour: 0.5,
            boot_secs: 180,
            ..paper()
        };
        let curve = LoadCurve::new(vec![
            (0, 0),
            (3600, 400_000),
            (7200, 400_000),
            (10_800, 10_000),
            (14_400, 10_000),
        ])
        .unwrap();
        let r = run(&cfg, &curve);
        for s in &r.samples {
            assert!(s.connected() <= s.load, "{s:?}");
            assert!(s.conns.len() as u32 + s.booting <= 10);
            assert!(s.conns.len() >= 2);
        }
        let last = r.samples.last().unwrap();
        assert_eq!(last.connected(), 10_000);
        assert_eq!(r.max_nodes(), 9);
        // Scales back down to the minimum once the load is gone.
        assert_eq!(last.desired, 2);
        assert!(r.events.iter().any(|e| e.direction == Direction::Down));
    }

    #[test]
    fn sustained_breach_steps_once_per_period() {
        let cfg = SimConfig {
            boot_secs: 300,
            ..paper()
        };
        let curve = LoadCurve::new(vec![(0, 1_000_000), (3600, 1_000_000)]).unwrap();
        let r = run(&cfg, &curve);
        let times: Vec<u64> = r.events.iter().map(|e| e.t).collect();
        assert_eq!(times, [0, 60, 120, 180, 240, 300, 360, 420]);
        assert_eq!(r.events.last().unwrap().to, 10);
    }

    #[test]
    fn billing_and_static_fleet() {
        let r = run(&paper(), &Scenario::Case1.curve());
        assert_eq!(r.max_nodes(), 2);
        assert!((r.instance_hours() - 6.0).abs() < 1e-9);
        assert!((r.cost() - 0.2784).abs() < 1e-9);
        let (n, cost) = static_fleet(50_000, 4000, 3.0, 0.0464);
        assert_eq!(n, 13);
        assert!((cost - 1.8096).abs() < 1e-9);
    }
}
