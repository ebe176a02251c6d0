//! The elasticity simulator: a load curve replayed through the scalers' own policy, with the
//! alarms, metric, group and workers as they run in AWS, faults included.
//!
//! Model, one tick at a time (10 s deployed, 60 s for the paper):
//! 1. A scheduled action in force raises the group's minimum (and the desired capacity to it).
//! 2. Spot workers are interrupted at random (seeded): two minutes' notice, during which the
//!    worker drains, and the group launches a replacement at once (Capacity Rebalancing).
//! 3. The group follows the desired capacity: it launches workers (in service after the boot
//!    delay, billed from launch) or removes one per step, chosen by the termination policy
//!    ([`Termination`]). A removed worker drains: its clients are closed (1012) evenly over the
//!    drain and reconnect elsewhere; it is billed until the deregistration delay after.
//! 4. A fraction of every worker's clients churns; clients arrive or leave to follow the curve.
//! 5. Arriving and reconnecting clients are spread over the in-service workers by the ALB's
//!    round robin. A worker at its capacity refuses (503): the refused client retries and lands
//!    on the next worker, or waits for the next tick if every worker is full. Each refusal is
//!    counted.
//! 6. Rebalancing as the worker does it: above the mean by the margin (or above the busy line
//!    and half the margin), a worker sheds at most `rate` sessions a second until it is within
//!    half the margin, never below the mean.
//! 7. At each period end the metric (total clients, and the busiest worker's) becomes a
//!    datapoint, which may never arrive (a gap) and reaches the alarms `delay_periods` late.
//!    The scaling mode acts on it:
//!    - **lambda**: each alarm goes to ALARM when `M of N` of its datapoints breach (a missing
//!      datapoint breaches nothing, unless read as zero as the old ALB alarm did). A transition
//!      into ALARM invokes the scaler, which may be lost or duplicated (seeded); the scaler
//!      runs [`decide`] and the [`Guards`](crate::policy::Guards) exactly as the Lambda does,
//!      and re-arms the alarm after a step, so it re-evaluates `rearm_secs` later. An alarm
//!      left in ALARM (at a bound, waiting on a guard, a failed or lost run) is re-armed by the
//!      scheduled reconcile once it has been so for `rearm_stuck_after_secs`.
//!    - **target tracking**: AWS's policy on clients per in-service worker ([`TargetTracking`]).
//!
//! Randomness (which clients leave or churn, faults, interruptions) comes from one seeded RNG:
//! a run is reproducible.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::policy::{decide, thresholds, Bounds, Direction, Thresholds};
use crate::scenario::LoadCurve;
pub use crate::sim_model::{
    AlarmWindow, Faults, MetricModel, Mode, Rebalance, Scheduled, Settings, Spot, TargetTracking,
    Termination,
};

/// Why a worker leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    ScaleIn,
    Interruption,
}

/// A worker on its way out: draining from `since`, empty by `empty_at`, gone at `gone_at`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drain {
    pub since: u64,
    pub empty_at: u64,
    pub gone_at: u64,
    pub cause: Cause,
    /// Clients it held when the drain began.
    pub held: u64,
}

/// One worker instance over its lifetime.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub id: u32,
    pub launched: u64,
    pub ready: u64,
    pub terminated: Option<u64>,
    pub conns: u64,
    pub spot: bool,
    pub draining: Option<Drain>,
}

impl Node {
    /// In service and taking clients.
    fn serving(&self, t: u64) -> bool {
        self.terminated.is_none() && self.draining.is_none() && self.ready <= t
    }

    /// Counted in the group's capacity (launched, not draining, not gone).
    fn live(&self) -> bool {
        self.terminated.is_none() && self.draining.is_none()
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
    /// Workers draining (still billed, taking no clients).
    pub draining: u32,
    /// `(node id, connections)` of each serving node, oldest first.
    pub conns: Vec<(u32, u64)>,
    /// The alarms' thresholds (lambda mode).
    pub thresholds: Option<Thresholds>,
    /// Connection attempts refused this tick (every worker tried was full).
    pub refused: u64,
}

impl Sample {
    pub fn connected(&self) -> u64 {
        self.conns.iter().map(|c| c.1).sum()
    }

    pub fn max_per_node(&self) -> u64 {
        self.conns.iter().map(|c| c.1).max().unwrap_or(0)
    }
}

/// What made the group change size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The total passed a threshold.
    Total,
    /// The busiest worker passed the busy line.
    Busiest,
    /// A scheduled action raised the minimum.
    Schedule,
    /// Target tracking.
    Tracking,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScaleEvent {
    pub t: u64,
    pub direction: Direction,
    pub from: u32,
    pub to: u32,
    pub trigger: Trigger,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub samples: Vec<Sample>,
    pub events: Vec<ScaleEvent>,
    pub nodes: Vec<Node>,
    pub duration_secs: u64,
    pub tick_secs: u64,
    pub price_per_hour: f64,
    pub spot_price_per_hour: Option<f64>,
    pub capacity: Option<u64>,
    /// Scaler Lambda invocations (lambda mode): no-ops, duplicates and failures included.
    pub invocations: u64,
    /// Invocations that failed (a failing SetDesiredCapacity).
    pub failed_invocations: u64,
    /// Clients closed by a scale-in's drain, who reconnected elsewhere.
    pub forced_reconnects: u64,
    /// Clients closed by a Spot interruption's drain, who reconnected elsewhere.
    pub interruption_reconnects: u64,
    /// Clients still connected when an interrupted worker was reclaimed.
    pub lost_to_interruptions: u64,
    /// Clients moved by rebalancing.
    pub rebalanced: u64,
    pub interruptions: u64,
}

impl Report {
    fn hours(&self, spot: bool) -> f64 {
        self.nodes
            .iter()
            .filter(|n| n.spot == spot)
            .map(|n| {
                let end = n.terminated.unwrap_or(self.duration_secs);
                end.saturating_sub(n.launched).max(60) as f64 / 3600.0
            })
            .sum()
    }

    /// Instance-hours billed: per second from launch to termination, at least a minute each
    /// (EC2 Linux billing).
    pub fn instance_hours(&self) -> f64 {
        self.hours(false) + self.hours(true)
    }

    pub fn spot_hours(&self) -> f64 {
        self.hours(true)
    }

    pub fn cost(&self) -> f64 {
        self.hours(false) * self.price_per_hour
            + self.hours(true) * self.spot_price_per_hour.unwrap_or(self.price_per_hour)
    }

    /// Clients connected, summed over every minute of the run.
    pub fn connection_minutes(&self) -> f64 {
        self.samples
            .iter()
            .map(|s| s.connected() as f64 * self.tick_secs as f64 / 60.0)
            .sum()
    }

    /// Dollars per million connection-minutes: what a connected client costs, whatever the
    /// curve.
    pub fn cost_per_million_connection_minutes(&self) -> f64 {
        let m = self.connection_minutes() / 1e6;
        if m > 0.0 {
            self.cost() / m
        } else {
            0.0
        }
    }

    /// Minutes during which some worker held more clients than its capacity.
    pub fn minutes_over_capacity(&self) -> f64 {
        let Some(cap) = self.capacity else { return 0.0 };
        self.samples
            .iter()
            .filter(|s| s.max_per_node() > cap)
            .count() as f64
            * self.tick_secs as f64
            / 60.0
    }

    /// Connection attempts refused by full workers.
    pub fn refused(&self) -> u64 {
        self.samples.iter().map(|s| s.refused).sum()
    }

    pub fn scale_ins(&self) -> usize {
        self.events
            .iter()
            .filter(|e| e.direction == Direction::Down)
            .count()
    }

    /// The most scale-in steps within any `window_secs`.
    pub fn most_scale_ins_within(&self, window_secs: u64) -> usize {
        let ins: Vec<u64> = self
            .events
            .iter()
            .filter(|e| e.direction == Direction::Down)
            .flat_map(|e| std::iter::repeat_n(e.t, e.from.saturating_sub(e.to) as usize))
            .collect();
        (0..ins.len())
            .map(|i| {
                ins[i..]
                    .iter()
                    .take_while(|&&t| t < ins[i] + window_secs)
                    .count()
            })
            .max()
            .unwrap_or(0)
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

/// A fixed fleet sized for the peak at `per_node` clients each, for `hours`.
pub fn static_fleet(peak: u64, per_node: u64, hours: f64, price_per_hour: f64) -> (u64, f64) {
    let nodes = peak.div_ceil(per_node.max(1));
    (nodes, nodes as f64 * hours * price_per_hour)
}

/// The smallest static fleet that serves `load` without a refusal or a worker over capacity,
/// simulated (round robin, rebalancing, churn as `cfg` says): the honest comparison for an
/// elastic run. `None` if even the group's maximum cannot.
pub fn best_static(cfg: &Settings, load: &LoadCurve) -> Option<(u32, Report)> {
    let lower = u32::try_from(
        load.peak()
            .div_ceil(cfg.capacity.unwrap_or(u64::MAX).max(1)),
    )
    .unwrap_or(u32::MAX)
    .max(1);
    (lower..=cfg.bounds.max.max(lower)).find_map(|n| {
        let fixed = Settings {
            bounds: Bounds { min: n, max: n },
            schedule: Vec::new(),
            spot: None,
            ..cfg.clone()
        };
        let r = run(&fixed, load);
        (r.refused() == 0 && r.minutes_over_capacity() == 0.0).then_some((n, r))
    })
}

/// The fleet a run starts with: what the scaling would have settled on for the first load.
fn initial_size(cfg: &Settings, clients: u64) -> u32 {
    let bounds = Bounds {
        min: cfg.min_at(0),
        max: cfg.bounds.max,
    };
    if !cfg.settled_start {
        return bounds.min;
    }
    match cfg.mode {
        Mode::TargetTracking(tt) => {
            bounds.clamp(u32::try_from(clients.div_ceil(tt.target.max(1))).unwrap_or(u32::MAX))
        }
        Mode::Lambda => (bounds.min..=bounds.max)
            .find(|&n| thresholds(n, bounds, cfg.steps).up >= clients as f64)
            .unwrap_or(bounds.max),
    }
}

/// Which metric an alarm watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    /// Total clients above the up threshold.
    Up,
    /// The busiest worker above the busy line.
    Busy,
    /// Total clients below the down threshold.
    Down,
}

/// One scaling alarm as CloudWatch keeps it: its last datapoints and its state.
struct Alarm {
    watch: Watch,
    window: AlarmWindow,
    datapoints: VecDeque<Option<u64>>,
    in_alarm: bool,
    /// When it last went into ALARM.
    since: u64,
    /// A re-arm's re-evaluation, pending.
    reeval_at: Option<u64>,
}

impl Alarm {
    fn new(watch: Watch, window: AlarmWindow) -> Alarm {
        Alarm {
            watch,
            window,
            datapoints: VecDeque::new(),
            in_alarm: false,
            since: 0,
            reeval_at: None,
        }
    }

    fn push(&mut self, datapoint: Option<u64>) {
        self.datapoints.push_back(datapoint);
        while self.datapoints.len() > self.window.evaluation_periods {
            self.datapoints.pop_front();
        }
    }

    /// Whether `M of N` datapoints breach (a missing one does not).
    fn breaching(&self, t: &Thresholds, busy_line: f64) -> bool {
        let count = self
            .datapoints
            .iter()
            .flatten()
            .filter(|&&v| match self.watch {
                Watch::Up => v as f64 > t.up,
                Watch::Busy => v as f64 > busy_line,
                Watch::Down => (v as f64) < t.down,
            })
            .count();
        count >= self.window.datapoints_to_alarm
    }
}

/// The lambda mode's state: the thresholds and the three alarms.
struct Scalers {
    thresholds: Thresholds,
    busy_line: f64,
    alarms: Vec<Alarm>,
    last_in: Option<u64>,
    last_out: Option<u64>,
    /// A worker of the group is still booting (the Lambda sees it Pending).
    booting: bool,
    /// The group's last launch, a scale-out's or a replacement's (the Lambda reads it from the
    /// group's scaling activities).
    last_launch: Option<u64>,
    /// Failed runs in a row and the last one's time: the reconcile backs off re-arming.
    failures: u32,
    failed_at: u64,
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

/// A period's datapoints: total clients and the busiest worker's.
#[derive(Clone, Copy)]
struct Datapoints {
    total: Option<u64>,
    busiest: Option<u64>,
}

/// The run's mutable scaling state and its record.
struct Group<'a> {
    cfg: &'a Settings,
    desired: u32,
    events: Vec<ScaleEvent>,
    invocations: u64,
    failed: u64,
    rng: StdRng,
}

impl Group<'_> {
    fn bounds(&self, t: u64) -> Bounds {
        Bounds {
            min: self.cfg.min_at(t),
            max: self.cfg.bounds.max,
        }
    }

    fn step_to(&mut self, t: u64, to: u32, direction: Direction, trigger: Trigger) {
        if to != self.desired {
            self.events.push(ScaleEvent {
                t,
                direction,
                from: self.desired,
                to,
                trigger,
            });
            self.desired = to;
        }
    }

    /// Alarm `i` evaluated at `t`: into ALARM (and an invocation) on a breach.
    fn evaluate(&mut self, s: &mut Scalers, i: usize, t: u64) {
        if !s.alarms[i].breaching(&s.thresholds, s.busy_line) {
            s.alarms[i].in_alarm = false;
        } else if !s.alarms[i].in_alarm {
            s.alarms[i].in_alarm = true;
            s.alarms[i].since = t;
            self.invoke(s, i, t);
        }
    }

    /// The scaler invoked for alarm `i`'s transition into ALARM at `t`, as the Lambda runs:
    /// a step (then a re-arm, so the alarm re-evaluates `rearm_secs` later), or nothing and the
    /// alarm left in ALARM (at a bound, a guard waiting, a failed or lost run) for the
    /// reconcile to re-arm.
    fn invoke(&mut self, s: &mut Scalers, i: usize, t: u64) {
        let faults = self.cfg.faults;
        if self.rng.random::<f64>() < faults.lost_invocation {
            return;
        }
        self.invocations += 1;
        if self.rng.random::<f64>() < faults.duplicate_invocation {
            // The duplicate finds the event's key on the group: a no-op.
            self.invocations += 1;
        }
        let bounds = self.bounds(t);
        let watch = s.alarms[i].watch;
        let guard = match watch {
            Watch::Up => Ok(()),
            Watch::Busy if s.booting => Err(crate::policy::Wait { until: t as i64 }),
            Watch::Busy => self
                .cfg
                .guards
                .busy_scale_out(t as i64, s.last_out.max(s.last_launch).map(|x| x as i64)),
            Watch::Down => self.cfg.guards.scale_in(
                t as i64,
                s.last_in.map(|x| x as i64),
                s.last_out.map(|x| x as i64),
            ),
        };
        let direction = match watch {
            Watch::Up | Watch::Busy => Direction::Up,
            Watch::Down => Direction::Down,
        };
        let d = decide(self.desired, direction, bounds, self.cfg.steps);
        s.thresholds = thresholds(self.desired, bounds, self.cfg.steps);
        if guard.is_err() || !d.changes_capacity() {
            return;
        }
        if faults.failing_set_desired {
            self.failed += 1;
            s.failures += 1;
            s.failed_at = t;
            if faults.rearm_on_failure {
                s.alarms[i].in_alarm = false;
                s.alarms[i].reeval_at = Some(t + self.cfg.rearm_secs);
            }
            return;
        }
        let trigger = if watch == Watch::Busy {
            Trigger::Busiest
        } else {
            Trigger::Total
        };
        s.failures = 0;
        self.step_to(t, d.to, direction, trigger);
        match direction {
            Direction::Up => s.last_out = Some(t),
            Direction::Down => s.last_in = Some(t),
        }
        s.thresholds = d.thresholds;
        s.alarms[i].in_alarm = false;
        s.alarms[i].reeval_at = Some(t + self.cfg.rearm_secs);
    }

    /// Period end in lambda mode: every alarm takes its datapoint and evaluates.
    fn lambda_period(&mut self, s: &mut Scalers, d: Datapoints, t: u64) {
        for i in 0..s.alarms.len() {
            let v = match s.alarms[i].watch {
                Watch::Up | Watch::Down => d.total,
                Watch::Busy => d.busiest,
            };
            s.alarms[i].push(v);
            self.evaluate(s, i, t);
        }
    }

    /// Re-evaluations after re-arms that fall before `until`.
    fn reevaluations(&mut self, s: &mut Scalers, until: u64) {
        loop {
            let next = (0..s.alarms.len())
                .filter_map(|i| s.alarms[i].reeval_at.map(|at| (at, i)))
                .filter(|(at, _)| *at < until)
                .min();
            let Some((at, i)) = next else { return };
            s.alarms[i].reeval_at = None;
            self.evaluate(s, i, at);
        }
    }

    /// The scheduled reconcile: thresholds for the desired capacity, and an alarm stuck in
    /// ALARM re-armed (it re-evaluates `rearm_secs` later).
    fn reconcile(&mut self, s: &mut Scalers, t: u64) {
        s.thresholds = thresholds(self.desired, self.bounds(t), self.cfg.steps);
        if s.failures > 0 && t < s.failed_at + crate::policy::failure_backoff_secs(s.failures) {
            return;
        }
        for a in &mut s.alarms {
            if a.in_alarm && t.saturating_sub(a.since) >= self.cfg.rearm_stuck_after_secs {
                a.in_alarm = false;
                a.reeval_at = Some(t + self.cfg.rearm_secs);
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
            .bounds(t)
            .clamp(u32::try_from(clients.div_ceil(target)).unwrap_or(u32::MAX));
        let all = |q: &VecDeque<bool>, n: usize| q.len() == n && q.iter().all(|&b| b);
        if all(&tr.high, TargetTracking::OUT_DATAPOINTS) && needed > self.desired {
            self.step_to(t, needed, Direction::Up, Trigger::Tracking);
        } else if all(&tr.low, TargetTracking::IN_DATAPOINTS)
            && !tr.policy.disable_scale_in
            && !warming
            && needed < self.desired
        {
            self.step_to(t, needed, Direction::Down, Trigger::Tracking);
        }
    }
}

/// The run's clients and workers.
struct Fleet<'a> {
    cfg: &'a Settings,
    nodes: Vec<Node>,
    /// Clients between connections.
    pending: u64,
    /// The ALB's round-robin position.
    cursor: usize,
    forced: u64,
    interrupted_moved: u64,
    lost: u64,
    rebalanced: u64,
    interruptions: u64,
    /// Clients refused last tick and still waiting: their retries are not new refusals.
    waiting: u64,
}

impl<'a> Fleet<'a> {
    fn new(cfg: &'a Settings, nodes: Vec<Node>) -> Fleet<'a> {
        Fleet {
            cfg,
            nodes,
            pending: 0,
            cursor: 0,
            forced: 0,
            interrupted_moved: 0,
            lost: 0,
            rebalanced: 0,
            interruptions: 0,
            waiting: 0,
        }
    }

    fn launch(&mut self, t: u64) {
        let on_demand = self.nodes.iter().filter(|n| n.live() && !n.spot).count() as u32;
        let spot = self.cfg.spot.is_some_and(|s| on_demand >= s.on_demand_base);
        let id = self.nodes.len() as u32 + 1;
        self.nodes.push(Node {
            id,
            launched: t,
            ready: t + self.cfg.boot_secs,
            terminated: None,
            conns: 0,
            spot,
            draining: None,
        });
    }

    fn drain(&mut self, i: usize, t: u64, cause: Cause) {
        let cfg = self.cfg;
        let (drain, gone) = match (cause, cfg.spot) {
            (Cause::Interruption, Some(s)) => (cfg.drain_secs.min(s.notice_secs), s.notice_secs),
            _ => (cfg.drain_secs, cfg.drain_secs + cfg.deregistration_secs),
        };
        let n = &mut self.nodes[i];
        n.draining = Some(Drain {
            since: t,
            empty_at: t + drain,
            gone_at: t + gone,
            cause,
            held: n.conns,
        });
    }

    /// The worker a scale-in removes, by the termination policy.
    fn victim(&self) -> Option<usize> {
        let live = (0..self.nodes.len()).filter(|&i| self.nodes[i].live());
        match self.cfg.termination {
            Termination::Newest => live.max_by_key(|&i| (self.nodes[i].launched, i)),
            Termination::LeastLoaded => live.min_by_key(|&i| (self.nodes[i].conns, usize::MAX - i)),
        }
    }

    /// Steps 2 and 3: interruptions, the group following `desired`, drains progressing.
    fn follow(&mut self, desired: u32, t: u64, tick: u64, rng: &mut StdRng) {
        if let Some(s) = self.cfg.spot {
            let p = 1.0 - (-s.interruptions_per_hour * tick as f64 / 3600.0).exp();
            for i in 0..self.nodes.len() {
                if self.nodes[i].spot && self.nodes[i].live() && rng.random::<f64>() < p {
                    self.interruptions += 1;
                    self.drain(i, t, Cause::Interruption);
                }
            }
        }
        let live = self.nodes.iter().filter(|n| n.live()).count() as u32;
        for _ in live..desired {
            self.launch(t);
        }
        for _ in desired..live {
            if let Some(i) = self.victim() {
                self.drain(i, t, Cause::ScaleIn);
            }
        }
        for n in &mut self.nodes {
            let Some(d) = n.draining else { continue };
            if n.terminated.is_some() {
                continue;
            }
            // Closed evenly over the drain: what is due by the end of this tick.
            let span = d.empty_at.saturating_sub(d.since).max(1);
            let done = (t + tick).saturating_sub(d.since).min(span);
            let due = (u128::from(d.held) * u128::from(done) / u128::from(span)) as u64;
            let closed_so_far = d.held.saturating_sub(n.conns);
            let close = due.saturating_sub(closed_so_far).min(n.conns);
            n.conns -= close;
            self.pending += close;
            match d.cause {
                Cause::ScaleIn => self.forced += close,
                Cause::Interruption => self.interrupted_moved += close,
            }
            if t + tick > d.gone_at {
                n.terminated = Some(d.gone_at.max(t));
                let left = std::mem::take(&mut n.conns);
                self.pending += left;
                match d.cause {
                    Cause::ScaleIn => self.forced += left,
                    Cause::Interruption => self.lost += left,
                }
            }
        }
    }

    fn serving(&self, t: u64) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].serving(t))
            .collect()
    }

    /// Round robin over the serving workers; a full worker refuses and the client retries on
    /// another. Returns the refusals; what no worker can take stays pending.
    fn place(&mut self, serving: &[usize], count: u64) -> u64 {
        let cap = self.cfg.capacity.unwrap_or(u64::MAX);
        let mut left = count;
        let mut refused = 0;
        let mut first = true;
        while left > 0 {
            let open: Vec<usize> = if first {
                serving.to_vec()
            } else {
                serving
                    .iter()
                    .copied()
                    .filter(|&i| self.nodes[i].conns < cap)
                    .collect()
            };
            if open.is_empty() {
                break;
            }
            let k = open.len() as u64;
            let (each, extra) = (left / k, (left % k) as usize);
            let mut placed = 0;
            for (j, &i) in open.iter().enumerate() {
                let pos = (j + open.len() - self.cursor % open.len()) % open.len();
                let share = each + u64::from(pos < extra);
                let take = share.min(cap.saturating_sub(self.nodes[i].conns));
                self.nodes[i].conns += take;
                placed += take;
                if self.cfg.capacity.is_some() {
                    refused += share - take;
                }
            }
            self.cursor = (self.cursor + extra) % open.len();
            left -= placed;
            if placed == 0 && !first {
                break;
            }
            first = false;
        }
        self.pending += left;
        refused
    }

    /// Rebalancing as the workers do it, then the shed clients placed again.
    fn rebalance(&mut self, serving: &[usize], tick: u64) -> u64 {
        let Some(rb) = self.cfg.rebalance else {
            return 0;
        };
        if serving.len() < 2 {
            return 0;
        }
        let total: u64 = serving.iter().map(|&i| self.nodes[i].conns).sum();
        let mean = total as f64 / serving.len() as f64;
        let budget = (rb.rate_per_sec * tick as f64).round() as u64;
        // The worker's busy line (`--busy-fraction` of `--max-connections`): above it a worker
        // sheds from the stop line on.
        let busy = match (self.cfg.busy_fraction, self.cfg.capacity) {
            (Some(f), Some(c)) => f * c as f64,
            _ => f64::INFINITY,
        };
        let mut shed = 0;
        for &i in serving {
            let n = &mut self.nodes[i];
            let (c, stop_line) = (n.conns as f64, mean * (1.0 + rb.margin / 2.0));
            if c > mean * (1.0 + rb.margin) || (c > busy && c > stop_line) {
                let stop = stop_line.max(mean).ceil() as u64;
                let k = n.conns.saturating_sub(stop).min(budget);
                n.conns -= k;
                shed += k;
            }
        }
        self.rebalanced += shed;
        self.place(serving, shed)
    }
}

/// Replays `load` through the configured scaling.
pub fn run(cfg: &Settings, load: &LoadCurve) -> Report {
    let tick = cfg.tick_secs.max(1);
    let period = cfg.period_secs.max(tick);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut fleet = Fleet::new(cfg, Vec::new());
    let min0 = initial_size(cfg, load.at(0));
    for _ in 0..min0 {
        fleet.launch(0);
    }
    for n in &mut fleet.nodes {
        n.ready = 0;
    }
    let mut group = Group {
        cfg,
        desired: min0,
        events: Vec::new(),
        invocations: 0,
        failed: 0,
        rng: StdRng::seed_from_u64(cfg.seed.wrapping_add(0x5ca1e)),
    };
    let mut scaling = match cfg.mode {
        Mode::Lambda => {
            let mut alarms = vec![Alarm::new(Watch::Up, cfg.up)];
            if cfg.busy_fraction.is_some() {
                alarms.push(Alarm::new(Watch::Busy, cfg.busy));
            }
            alarms.push(Alarm::new(Watch::Down, cfg.down));
            Scaling::Lambda(Scalers {
                thresholds: thresholds(min0, group.bounds(0), cfg.steps),
                busy_line: match (cfg.busy_fraction, cfg.capacity) {
                    (Some(f), Some(c)) => f * c as f64,
                    _ => f64::INFINITY,
                },
                alarms,
                last_in: None,
                last_out: None,
                booting: false,
                last_launch: None,
                failures: 0,
                failed_at: 0,
            })
        }
        Mode::TargetTracking(policy) => Scaling::TargetTracking(Tracker {
            policy,
            high: VecDeque::new(),
            low: VecDeque::new(),
        }),
    };
    let mut in_flight: VecDeque<Datapoints> = VecDeque::new();
    let mut samples = Vec::new();
    let duration = load.duration_secs();

    let mut t = 0;
    while t <= duration {
        // 1. Scheduled minimum.
        let min = cfg.min_at(t);
        if group.desired < min {
            group.step_to(t, min, Direction::Up, Trigger::Schedule);
        }
        // 2-3. The group follows the desired capacity; drains progress.
        fleet.follow(group.desired, t, tick, &mut rng);

        // 4. Churn, arrivals and departures.
        let p = (cfg.churn_per_hour * tick as f64 / 3600.0).clamp(0.0, 1.0);
        if p > 0.0 {
            for n in fleet.nodes.iter_mut().filter(|n| n.serving(t)) {
                let leave = random_round(n.conns as f64 * p, &mut rng).min(n.conns);
                n.conns -= leave;
                fleet.pending += leave;
            }
        }
        let want = load.at(t);
        let connected: u64 = fleet.nodes.iter().map(|n| n.conns).sum();
        if want > connected + fleet.pending {
            fleet.pending = want - connected;
        } else {
            let mut leave = connected + fleet.pending - want;
            let from_pending = leave.min(fleet.pending);
            fleet.pending -= from_pending;
            leave -= from_pending;
            depart(&mut fleet.nodes, leave, &mut rng);
        }

        // 5-6. Round robin with refusals, then rebalancing.
        let serving = fleet.serving(t);
        let pending = std::mem::take(&mut fleet.pending);
        let attempts = fleet.place(&serving, pending) + fleet.rebalance(&serving, tick);
        // A client refused before and refused again is one client refused.
        let refused = attempts.saturating_sub(fleet.waiting);
        fleet.waiting = fleet.pending;

        // 7. The metric at each period end, and the scaling mode acting on it.
        let end = t + tick;
        if let Scaling::Lambda(s) = &mut scaling {
            s.booting = fleet.nodes.iter().any(|n| n.live() && n.ready > t);
            s.last_launch = fleet
                .nodes
                .iter()
                .map(|n| n.launched)
                .filter(|&l| l > 0)
                .max();
            group.reevaluations(s, end);
        }
        if end.is_multiple_of(period) {
            let total: u64 = fleet.nodes.iter().map(|n| n.conns).sum();
            let busiest = serving
                .iter()
                .map(|&i| fleet.nodes[i].conns)
                .max()
                .unwrap_or(0);
            let quietest = serving
                .iter()
                .map(|&i| fleet.nodes[i].conns)
                .min()
                .unwrap_or(0);
            // The busy alarm's metric math: the busiest worker, while the fleet is evenly busy
            // (a worker still filling keeps it at zero).
            let busiest = if quietest * 2 >= busiest { busiest } else { 0 };
            let gap = rng.random::<f64>() < cfg.metric.gap_probability;
            let fill = |v: Option<u64>| match v {
                None if cfg.metric.fill_gaps_with_zero => Some(0),
                v => v,
            };
            in_flight.push_back(Datapoints {
                total: fill(cfg.metric.datapoint(total).filter(|_| !gap)),
                busiest: fill(Some(busiest).filter(|_| !gap)),
            });
            if in_flight.len() > cfg.metric.delay_periods {
                let d = in_flight.pop_front().unwrap_or(Datapoints {
                    total: None,
                    busiest: None,
                });
                match &mut scaling {
                    Scaling::Lambda(s) => {
                        group.lambda_period(s, d, t);
                        if cfg.reconcile_secs > 0 && end.is_multiple_of(cfg.reconcile_secs) {
                            group.reconcile(s, t);
                        }
                        group.reevaluations(s, end);
                    }
                    Scaling::TargetTracking(tr) => {
                        let warming = fleet
                            .nodes
                            .iter()
                            .any(|n| n.terminated.is_none() && n.ready > t);
                        group.track(tr, d.total, serving.len() as u32, warming, t);
                    }
                }
            }
        }

        samples.push(Sample {
            t,
            load: want,
            desired: group.desired,
            booting: fleet
                .nodes
                .iter()
                .filter(|n| n.live() && n.ready > t)
                .count() as u32,
            draining: fleet
                .nodes
                .iter()
                .filter(|n| n.terminated.is_none() && n.draining.is_some())
                .count() as u32,
            conns: fleet
                .nodes
                .iter()
                .filter(|n| n.serving(t))
                .map(|n| (n.id, n.conns))
                .collect(),
            thresholds: match &scaling {
                Scaling::Lambda(s) => Some(s.thresholds),
                Scaling::TargetTracking(_) => None,
            },
            refused,
        });
        t += tick;
    }

    Report {
        samples,
        events: group.events,
        nodes: fleet.nodes,
        duration_secs: duration,
        tick_secs: tick,
        price_per_hour: cfg.price_per_hour,
        spot_price_per_hour: cfg.spot.map(|s| s.price_per_hour),
        capacity: cfg.capacity,
        invocations: group.invocations,
        failed_invocations: group.failed,
        forced_reconnects: fleet.forced,
        interruption_reconnects: fleet.interrupted_moved,
        lost_to_interruptions: fleet.lost,
        rebalanced: fleet.rebalanced,
        interruptions: fleet.interruptions,
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
    use crate::policy::{Formula, Guards, Steps};
    use crate::scenario::Scenario;

    fn paper() -> Settings {
        Settings::paper()
    }

    /// The deployed settings without the seeded faults, for tests that count exact events.
    fn deployed_clean() -> Settings {
        Settings {
            metric: MetricModel {
                gap_probability: 0.0,
                ..Settings::deployed().metric
            },
            faults: Faults::default(),
            ..Settings::deployed()
        }
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
    fn rebalancing_at_the_workers_rate_evens_out_the_nodes() {
        let cfg = Settings {
            rebalance: Some(Rebalance::WORKER),
            ..paper()
        };
        let r = run(&cfg, &Scenario::Table2.curve());
        // At 20 a second the fourth worker fills over minutes, not at once ...
        let at = r.first_at(150_000).unwrap();
        assert!(at.conns[3].1 < at.conns[0].1, "{:?}", at.conns);
        // ... and no worker ends above the mean by more than the margin (37,500 × 1.2), where
        // the paper's first workers held 54,500.
        let last = r.samples.last().unwrap();
        assert!(last.max_per_node() <= 45_000, "{:?}", last.conns);
        assert!(r.rebalanced > 0);
        assert!(r.peak_per_node() < run(&paper(), &Scenario::Table2.curve()).peak_per_node());
    }

    #[test]
    fn deterministic_per_seed() {
        let cfg = Settings {
            churn_per_hour: 0.3,
            ..Settings::deployed()
        };
        let a = run(&cfg, &Scenario::Day.curve());
        let b = run(&cfg, &Scenario::Day.curve());
        assert_eq!(a.samples, b.samples);
        let c = run(&Settings { seed: 2, ..cfg }, &Scenario::Day.curve());
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
        assert_eq!(last.desired, 2);
        assert!(r.events.iter().any(|e| e.direction == Direction::Down));
    }

    /// A worker never holds more than its capacity: past it, clients are refused and counted,
    /// and they get in once capacity arrives.
    #[test]
    fn capacity_refuses_rather_than_overloads() {
        let r = run(&Settings::deployed(), &Scenario::Flash.curve());
        assert!(r.peak_per_node() <= 100_000);
        assert_eq!(r.minutes_over_capacity(), 0.0);
        assert!(r.refused() > 0);
        let last = r.samples.last().unwrap();
        assert_eq!(last.connected(), last.load);
        // Without a limit, the same crowd overloads the first workers.
        let unlimited = run(
            &Settings {
                capacity: None,
                busy_fraction: None,
                ..Settings::deployed()
            },
            &Scenario::Flash.curve(),
        );
        assert!(unlimited.peak_per_node() > 100_000);
        assert_eq!(unlimited.refused(), 0);
    }

    /// All clients gone for three minutes, read as such: the old alarms step in once per
    /// re-evaluation, seconds apart, down to the minimum; the deployed guards allow one scale-in
    /// per cool-down.
    #[test]
    fn a_drop_cascades_only_without_the_cool_down() {
        let old = run(
            &Settings {
                faults: Faults {
                    rearm_on_failure: true,
                    ..Faults::default()
                },
                ..Settings::previous()
            },
            &Scenario::Blip.curve(),
        );
        assert!(old.most_scale_ins_within(600) >= 5, "{:?}", old.events);
        let new = run(&deployed_clean(), &Scenario::Blip.curve());
        assert!(new.most_scale_ins_within(600) <= 1, "{:?}", new.events);
        assert!(new.max_nodes() >= 9);
    }

    /// A three-minute gap in the metric: read as zero (FILL) it cascades; read as missing it
    /// changes nothing.
    #[test]
    fn a_gap_is_missing_not_zero() {
        let curve = LoadCurve::new(vec![(0, 680_000), (3 * 3600, 680_000)]).unwrap();
        let gaps = |fill| Settings {
            metric: MetricModel {
                gap_probability: 0.5,
                fill_gaps_with_zero: fill,
                ..Settings::deployed().metric
            },
            faults: Faults::default(),
            ..Settings::deployed()
        };
        let missing = run(&gaps(false), &curve);
        assert!(missing.events.is_empty(), "{:?}", missing.events);
        let zero = run(&gaps(true), &curve);
        assert!(zero.scale_ins() > 0);
    }

    /// A scaler whose SetDesiredCapacity always fails, under a load that keeps its alarm in
    /// ALARM for an hour: re-armed after each failure it runs every few seconds; left in ALARM
    /// it runs when the reconcile re-arms it, backing off to hourly.
    #[test]
    fn a_failing_scaler_does_not_loop() {
        let curve = LoadCurve::new(vec![(0, 100_000), (60, 300_000), (3600, 300_000)]).unwrap();
        let failing = |rearm_on_failure| Settings {
            faults: Faults {
                failing_set_desired: true,
                rearm_on_failure,
                ..Faults::default()
            },
            ..deployed_clean()
        };
        let looping = run(&failing(true), &curve);
        assert!(looping.invocations >= 300, "{}", looping.invocations);
        let backing_off = run(&failing(false), &curve);
        assert!(backing_off.invocations <= 10, "{}", backing_off.invocations);
        assert!(backing_off.failed_invocations >= 1);
        assert!(backing_off.events.is_empty());
    }

    /// Least-loaded termination removes the emptiest worker; the newest may be full.
    #[test]
    fn least_loaded_termination_picks_the_emptiest() {
        let cfg = deployed_clean();
        let node = |id: u32, launched, conns| Node {
            id,
            launched,
            ready: launched,
            terminated: None,
            conns,
            spot: false,
            draining: None,
        };
        let nodes = vec![node(1, 0, 70_000), node(2, 10, 20_000), node(3, 20, 90_000)];
        let mut fleet = Fleet::new(&cfg, nodes);
        assert_eq!(fleet.victim(), Some(1));
        let newest = Settings {
            termination: Termination::Newest,
            ..deployed_clean()
        };
        fleet.cfg = &newest;
        assert_eq!(fleet.victim(), Some(2));
        // Draining workers are no candidates.
        fleet.cfg = &cfg;
        fleet.drain(1, 0, Cause::ScaleIn);
        assert_eq!(fleet.victim(), Some(0));
    }

    /// Spot workers interrupted at random drain within the notice: every client reconnects,
    /// none is lost, and a replacement is launched at the notice.
    #[test]
    fn spot_interruptions_lose_no_client() {
        let cfg = Settings {
            spot: Some(Spot {
                on_demand_base: 1,
                price_per_hour: 0.035,
                interruptions_per_hour: 0.5,
                notice_secs: 120,
            }),
            ..Settings::deployed()
        };
        let r = run(&cfg, &Scenario::Day.curve());
        assert!(r.interruptions >= 5, "{}", r.interruptions);
        assert!(r.interruption_reconnects > 0);
        assert_eq!(r.lost_to_interruptions, 0);
        assert!(r.spot_hours() > 0.0);
        assert!(r.cost() < run(&Settings::deployed(), &Scenario::Day.curve()).cost());
        // A drain window longer than the notice is cut to fit it: still nothing is lost.
        let slow = Settings {
            drain_secs: 300,
            ..cfg
        };
        assert_eq!(run(&slow, &Scenario::Day.curve()).lost_to_interruptions, 0);
    }

    #[test]
    fn a_schedule_keeps_capacity_before_the_peak() {
        let cfg = Settings {
            schedule: vec![Scheduled {
                from_secs: 17 * 3600,
                to_secs: 21 * 3600,
                min: 6,
            }],
            ..Settings::deployed()
        };
        let r = run(&cfg, &Scenario::Day.curve());
        for s in r
            .samples
            .iter()
            .filter(|s| (17 * 3600..21 * 3600).contains(&s.t))
        {
            assert!(s.desired >= 6, "{s:?}");
        }
        assert!(r.events.iter().any(|e| e.trigger == Trigger::Schedule));
        assert_eq!(r.refused(), 0);
    }

    /// Target tracking: out to the capacity the target asks for after 3 minutes above it, in
    /// after 15 minutes below 90 % of it, never past the bounds; with scale-in disabled it stays.
    #[test]
    fn target_tracking_follows_the_target() {
        let tt = |disable_scale_in| Settings {
            mode: Mode::TargetTracking(TargetTracking {
                target: 40_000,
                disable_scale_in,
            }),
            churn_per_hour: 0.5,
            tick_secs: 60,
            capacity: None,
            metric: MetricModel::default(),
            faults: Faults::default(),
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
        assert_eq!(out.t, 780);
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
        // The best static fleet for the flash crowd: 400,000 at 100,000 each is 4 workers.
        let (n, best) = best_static(&Settings::deployed(), &Scenario::Flash.curve()).unwrap();
        assert_eq!(n, 4);
        assert_eq!(best.refused(), 0);
    }

    #[test]
    fn per_worker_steps_on_the_paper_preset_too() {
        let cfg = Settings {
            steps: Steps {
                step: 50_000,
                hysteresis: 5_000,
                formula: Formula::PerWorker,
            },
            guards: Guards {
                scale_in_cooldown_secs: 0,
                fill_secs: 0,
            },
            ..paper()
        };
        let r = run(&cfg, &Scenario::Table2.curve());
        // Up at n × 50,000: 100,000 for two workers, 150,000 for three.
        assert_eq!(r.events.len(), 1, "{:?}", r.events);
    }
}
