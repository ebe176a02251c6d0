//! The elasticity simulator: a load curve replayed through the scalers' own policy, with the
//! alarms, metric and group as AWS runs them.
//!
//! Model, one tick at a time (60 s by default):
//! 1. The Auto Scaling group follows the desired capacity: it launches nodes (in service after
//!    the boot delay, billed from launch) or terminates the newest node first (the group's
//!    `NewestInstance` policy), whose clients are forced to reconnect.
//! 2. A fraction of every node's clients churns (disconnects and reconnects).
//! 3. Clients arrive or leave to follow the curve; leavers are drawn in proportion to each node's
//!    share.
//! 4. Arriving and reconnecting clients are spread over in-service nodes by the ALB's round
//!    robin; with rebalancing on, a node entering service takes its even share at once.
//! 5. At each period end the period's most connected clients become a datapoint (doubled, or
//!    missing at zero, as [`MetricModel`] says), and the scaling mode acts on it:
//!    - **lambda**: each alarm goes to ALARM when `M of N` of its datapoints breach its current
//!      threshold. A transition into ALARM invokes the scaler, which runs [`decide`] exactly as
//!      the Lambda does and re-arms the alarm; the alarm re-evaluates the same datapoints
//!      `rearm_secs` later, so a load several steps away is followed one step per re-evaluation.
//!      At a bound the alarm stays in ALARM until the scheduled reconcile re-arms it.
//!    - **target tracking**: AWS's policy on clients per in-service worker ([`TargetTracking`]).
//!
//! Randomness (which clients leave or churn) comes from one seeded RNG: a run is reproducible.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::policy::{decide, thresholds, Direction, Thresholds};
use crate::scenario::LoadCurve;
pub use crate::sim_model::{AlarmWindow, MetricModel, Mode, Settings, TargetTracking};

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
    /// The alarms' thresholds (lambda mode).
    pub thresholds: Option<Thresholds>,
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
    /// Scaler Lambda invocations (lambda mode), the no-ops at a bound included.
    pub invocations: u64,
    /// Clients whose node was terminated by a scale-in, so they had to reconnect.
    pub forced_reconnects: u64,
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

/// One scaling alarm as CloudWatch keeps it: its last datapoints and its state.
struct Alarm {
    direction: Direction,
    window: AlarmWindow,
    datapoints: VecDeque<Option<u64>>,
    in_alarm: bool,
    /// When it last went into ALARM.
    since: u64,
}

impl Alarm {
    fn new(direction: Direction, window: AlarmWindow) -> Alarm {
        Alarm {
            direction,
            window,
            datapoints: VecDeque::new(),
            in_alarm: false,
            since: 0,
        }
    }

    fn push(&mut self, datapoint: Option<u64>) {
        self.datapoints.push_back(datapoint);
        while self.datapoints.len() > self.window.evaluation_periods {
            self.datapoints.pop_front();
        }
    }

    /// Whether `M of N` datapoints breach `t` (a missing one does not: `notBreaching`).
    fn breaching(&self, t: &Thresholds) -> bool {
        let count = self
            .datapoints
            .iter()
            .flatten()
            .filter(|&&v| match self.direction {
                Direction::Up => v as f64 > t.up,
                Direction::Down => (v as f64) < t.down,
            })
            .count();
        count >= self.window.datapoints_to_alarm
    }
}

/// The lambda mode's state: the group's desired capacity as the scalers see it, both alarms.
struct Scalers {
    thresholds: Thresholds,
    alarms: [Alarm; 2],
}

/// The target-tracking mode's state: whether each recent datapoint was above the target, or
/// below 90 % of it.
struct Tracker {
    policy: TargetTracking,
    high: VecDeque<bool>,
    low: VecDeque<bool>,
}

/// What the scaling side does with each period's datapoint.
enum Scaling {
    Lambda(Scalers),
    TargetTracking(Tracker),
}

/// The run's mutable scaling state and its record.
struct Group<'a> {
    cfg: &'a Settings,
    desired: u32,
    events: Vec<ScaleEvent>,
    invocations: u64,
}

impl Group<'_> {
    fn step_to(&mut self, t: u64, to: u32, direction: Direction) {
        if to != self.desired {
            self.events.push(ScaleEvent {
                t,
                direction,
                from: self.desired,
                to,
            });
            self.desired = to;
        }
    }

    /// A transition of `alarms[i]` into ALARM at `t`: the scaler steps and re-arms; the alarm
    /// re-evaluates `rearm_secs` later and fires again while the load breaches the new
    /// threshold. At a bound it stays in ALARM (no re-arm loop).
    fn invoke(&mut self, s: &mut Scalers, i: usize, t: u64) {
        let mut at = t;
        loop {
            self.invocations += 1;
            let direction = s.alarms[i].direction;
            let d = decide(self.desired, direction, self.cfg.bounds, self.cfg.steps);
            s.thresholds = d.thresholds;
            if !d.changes_capacity() {
                s.alarms[i].in_alarm = true;
                s.alarms[i].since = at;
                return;
            }
            self.step_to(at, d.to, direction);
            s.alarms[i].in_alarm = false;
            at += self.cfg.rearm_secs;
            if !s.alarms[i].breaching(&s.thresholds) {
                return;
            }
        }
    }

    /// Period end in lambda mode: both alarms take the datapoint and evaluate.
    fn lambda_period(&mut self, s: &mut Scalers, datapoint: Option<u64>, t: u64) {
        for i in 0..2 {
            s.alarms[i].push(datapoint);
            if !s.alarms[i].breaching(&s.thresholds) {
                s.alarms[i].in_alarm = false;
            } else if !s.alarms[i].in_alarm {
                self.invoke(s, i, t);
            }
        }
    }

    /// The scheduled reconcile: thresholds for the desired capacity (already so here: nothing
    /// else resizes the simulated group), and an alarm stuck in ALARM re-armed; it re-evaluates
    /// at once and invokes again if the breach persists.
    fn reconcile(&mut self, s: &mut Scalers, t: u64) {
        s.thresholds = thresholds(self.desired, self.cfg.bounds, self.cfg.steps);
        for i in 0..2 {
            let stuck = s.alarms[i].in_alarm
                && t.saturating_sub(s.alarms[i].since) >= self.cfg.rearm_stuck_after_secs;
            if stuck {
                s.alarms[i].in_alarm = false;
                if s.alarms[i].breaching(&s.thresholds) {
                    self.invoke(s, i, t + self.cfg.rearm_secs);
                }
            }
        }
    }

    /// Period end in target-tracking mode. `serving` counts in-service workers, `warming`
    /// whether any launched worker is not yet in service.
    fn track(
        &mut self,
        tr: &mut Tracker,
        datapoint: Option<u64>,
        serving: u32,
        warming: bool,
        t: u64,
    ) {
        let target = tr.policy.target.max(1);
        let per_worker = datapoint.map(|c| c as f64 / f64::from(serving.max(1)));
        let push = |q: &mut VecDeque<bool>, v: bool, n: usize| {
            q.push_back(v);
            while q.len() > n {
                q.pop_front();
            }
        };
        push(
            &mut tr.high,
            per_worker.is_some_and(|m| m > target as f64),
            TargetTracking::OUT_DATAPOINTS,
        );
        push(
            &mut tr.low,
            per_worker.is_some_and(|m| m < target as f64 * TargetTracking::IN_FRACTION),
            TargetTracking::IN_DATAPOINTS,
        );
        let Some(clients) = datapoint else { return };
        // Capacity × metric / target, i.e. the total over the target, within the bounds.
        let needed = self
            .cfg
            .bounds
            .clamp(u32::try_from(clients.div_ceil(target)).unwrap_or(u32::MAX));
        let all = |q: &VecDeque<bool>, n: usize| q.len() == n && q.iter().all(|&b| b);
        if all(&tr.high, TargetTracking::OUT_DATAPOINTS) && needed > self.desired {
            self.step_to(t, needed, Direction::Up);
        } else if all(&tr.low, TargetTracking::IN_DATAPOINTS)
            && !tr.policy.disable_scale_in
            && !warming
            && needed < self.desired
        {
            self.step_to(t, needed, Direction::Down);
        }
    }
}

/// Replays `load` through the configured scaling.
pub fn run(cfg: &Settings, load: &LoadCurve) -> Report {
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
    let mut group = Group {
        cfg,
        desired: cfg.bounds.min,
        events: Vec::new(),
        invocations: 0,
    };
    let mut scaling = match cfg.mode {
        Mode::Lambda => Scaling::Lambda(Scalers {
            thresholds: thresholds(cfg.bounds.min, cfg.bounds, cfg.steps),
            alarms: [
                Alarm::new(Direction::Up, cfg.up),
                Alarm::new(Direction::Down, cfg.down),
            ],
        }),
        Mode::TargetTracking(policy) => Scaling::TargetTracking(Tracker {
            policy,
            high: VecDeque::new(),
            low: VecDeque::new(),
        }),
    };
    let mut pending: u64 = 0; // clients between connections
    let mut forced: u64 = 0;
    let mut cursor: usize = 0; // the ALB's round-robin position
    let mut period_max: u64 = 0;
    let mut samples = Vec::new();
    let duration = load.duration_secs();

    let mut t = 0;
    while t <= duration {
        // 1. The group follows the desired capacity.
        let desired = group.desired;
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
                let moved = std::mem::take(&mut newest.conns);
                pending += moved;
                forced += moved;
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

        // 5. The metric at each period end, and the scaling mode acting on it.
        let connected: u64 = nodes.iter().map(|n| n.conns).sum();
        period_max = period_max.max(connected);
        let end = t + tick;
        if end.is_multiple_of(period) {
            let datapoint = cfg.metric.datapoint(period_max);
            match &mut scaling {
                Scaling::Lambda(s) => {
                    group.lambda_period(s, datapoint, t);
                    if cfg.reconcile_secs > 0 && end.is_multiple_of(cfg.reconcile_secs) {
                        group.reconcile(s, t);
                    }
                }
                Scaling::TargetTracking(tr) => {
                    let warming = nodes.iter().any(|n| n.terminated.is_none() && n.ready > t);
                    group.track(tr, datapoint, serving.len() as u32, warming, t);
                }
            }
            period_max = 0;
        }

        samples.push(Sample {
            t,
            load: want,
            desired: group.desired,
            booting: nodes
                .iter()
                .filter(|n| n.terminated.is_none() && n.ready > t)
                .count() as u32,
            conns: nodes
                .iter()
                .filter(|n| n.in_service(t))
                .map(|n| (n.id, n.conns))
                .collect(),
            thresholds: match &scaling {
                Scaling::Lambda(s) => Some(s.thresholds),
                Scaling::TargetTracking(_) => None,
            },
        });
        t += tick;
    }

    Report {
        samples,
        events: group.events,
        nodes,
        duration_secs: duration,
        price_per_hour: cfg.price_per_hour,
        invocations: group.invocations,
        forced_reconnects: forced,
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
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn paper() -> Settings {
        Settings::paper()
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
        let cfg = Settings {
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
        let cfg = Settings {
            churn_per_hour: 0.3,
            boot_secs: 120,
            ..paper()
        };
        let a = run(&cfg, &Scenario::Case2.curve());
        let b = run(&cfg, &Scenario::Case2.curve());
        assert_eq!(a.samples, b.samples);
        let c = run(&Settings { seed: 2, ..cfg }, &Scenario::Case2.curve());
        assert_ne!(a.samples, c.samples);
    }

    #[test]
    fn every_client_is_accounted_for() {
        let cfg = Settings {
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

    /// A load far above the thresholds: each step re-arms the alarm, which re-evaluates within
    /// seconds and fires again while the load breaches the new threshold; at the bound the alarm
    /// stays in ALARM and only the reconcile re-arms it (one no-op invocation each time).
    #[test]
    fn a_far_breach_steps_per_re_evaluation_then_rests_at_the_bound() {
        let cfg = Settings {
            boot_secs: 300,
            ..Settings::deployed()
        };
        let curve = LoadCurve::new(vec![(0, 1_000_000), (3600, 1_000_000)]).unwrap();
        let r = run(&cfg, &curve);
        let times: Vec<u64> = r.events.iter().map(|e| e.t).collect();
        assert_eq!(times, [0, 10, 20, 30, 40, 50, 60, 70]);
        assert_eq!(r.events.last().unwrap().to, 10);
        // 8 steps, the first no-op at the bound, then one per reconcile (every 300 s, from
        // 300 s: 12 in the hour).
        assert_eq!(r.invocations, 8 + 1 + 12);
        let no_reconcile = run(
            &Settings {
                reconcile_secs: 0,
                ..cfg
            },
            &curve,
        );
        assert_eq!(no_reconcile.invocations, 9);
    }

    /// 100,000 ± 6,000 clients on a 10-minute cycle for 4 hours, around the 3-node scale-down
    /// threshold: with one datapoint for both alarms the group flaps; with the deployed 3 of 3
    /// for scale-down it does not.
    #[test]
    fn the_deployed_scale_down_window_stops_flapping() {
        let points: Vec<(u64, u64)> = (0..=240)
            .map(|m| {
                let phase = (m % 10) as f64 / 10.0 * std::f64::consts::TAU;
                (m * 60, (100_000.0 + 6_000.0 * phase.sin()).round() as u64)
            })
            .collect();
        let curve = LoadCurve::new(points).unwrap();
        let paper = run(&Settings::paper(), &curve);
        let deployed = run(&Settings::deployed(), &curve);
        assert!(paper.events.len() >= 40, "{}", paper.events.len());
        assert!(deployed.events.len() <= 4, "{:?}", deployed.events);
    }

    /// Without FILL, the ALB publishes nothing at zero traffic, which the alarm reads as not
    /// breaching: the group never scales back down. The deployed alarm fills it with zero.
    #[test]
    fn missing_data_at_zero_traffic_keeps_the_group_up() {
        let curve = LoadCurve::new(vec![
            (0, 0),
            (1800, 200_000),
            (3600, 200_000),
            (3660, 0),
            (4 * 3600, 0),
        ])
        .unwrap();
        let filled = run(&Settings::deployed(), &curve);
        assert_eq!(filled.samples.last().unwrap().desired, 2);
        let raw = run(
            &Settings {
                metric: MetricModel {
                    double_count: false,
                    missing_at_zero: true,
                },
                ..Settings::deployed()
            },
            &curve,
        );
        assert!(raw.samples.last().unwrap().desired > 2);
    }

    /// The raw ALB metric counts each client twice: the group scales out at half the load.
    #[test]
    fn double_counting_doubles_the_fleet() {
        let curve = LoadCurve::new(vec![(0, 120_000), (3600, 120_000)]).unwrap();
        let right = run(&Settings::deployed(), &curve);
        let doubled = run(
            &Settings {
                metric: MetricModel {
                    double_count: true,
                    missing_at_zero: false,
                },
                ..Settings::deployed()
            },
            &curve,
        );
        assert_eq!(right.samples.last().unwrap().desired, 4);
        assert_eq!(doubled.samples.last().unwrap().desired, 6);
    }

    /// Target tracking: out to the capacity the target asks for after 3 minutes above it, in
    /// after 15 minutes below 90 % of it, never past the bounds; with scale-in disabled it stays.
    #[test]
    fn target_tracking_follows_the_target() {
        // Churn, so the workers added later hold clients when the scale-in comes.
        let tt = |disable_scale_in| Settings {
            mode: Mode::TargetTracking(TargetTracking {
                target: 40_000,
                disable_scale_in,
            }),
            churn_per_hour: 0.5,
            ..Settings::deployed()
        };
        let curve = LoadCurve::new(vec![
            (0, 50_000),
            (600, 50_000),
            (601, 300_000),
            (2 * 3600, 300_000),
            (2 * 3600 + 1, 60_000),
            (4 * 3600, 60_000),
        ])
        .unwrap();
        let r = run(&tt(false), &curve);
        // 300,000 / 40,000 -> 8 workers, in one step, 3 minutes after the rise.
        let out = &r.events[0];
        assert_eq!((out.direction, out.from, out.to), (Direction::Up, 2, 8));
        // The first datapoint above the target is the tick at 660 s, the third at 780 s.
        assert_eq!(out.t, 780);
        // 60,000 / 40,000 -> 2 workers once 15 minutes were below 36,000 per worker.
        let back = r.events.last().unwrap();
        assert_eq!((back.direction, back.to), (Direction::Down, 2));
        assert!(back.t >= 2 * 3600 + 14 * 60, "{back:?}");
        assert!(r.forced_reconnects > 0);
        let kept = run(&tt(true), &curve);
        assert_eq!(kept.samples.last().unwrap().desired, 8);
        assert_eq!(kept.forced_reconnects, 0);
        assert!(r.samples.iter().all(|s| s.thresholds.is_none()));
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
