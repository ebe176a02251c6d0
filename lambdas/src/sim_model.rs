//! What the simulator models, as settings: the scaling mode, the alarms as CloudWatch evaluates
//! them, the metric as the deployment publishes it, the workers as they run (capacity,
//! rebalancing, drain), the faults AWS can inject. [`Settings::deployed`] is what `terraform/`
//! deploys by default (a test reads the Terraform variables to keep them one);
//! [`Settings::paper`] is the paper's set-up, which reproduces its Table II.

use crate::policy::{Bounds, Formula, Guards, Steps};

/// How the group is scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// `scaling_mode = "lambda"`: the scale-up, busy-worker and scale-down alarms, each
    /// invoking a scaler Lambda, which steps one node and rewrites the thresholds.
    Lambda,
    /// EC2 Auto Scaling target tracking (`scaling_mode = "target-tracking"`) on connected
    /// clients per in-service worker.
    TargetTracking(TargetTracking),
}

/// AWS's target-tracking policy as documented: scale out when the metric is above the target
/// for 3 one-minute datapoints, to the capacity that brings it back to the target; scale in
/// only after 15 datapoints below 90 % of the target, and not while an instance added earlier
/// is still warming up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetTracking {
    /// Clients per in-service worker (`target_clients_per_worker`).
    pub target: u64,
    /// `target_tracking_disable_scale_in`.
    pub disable_scale_in: bool,
}

impl TargetTracking {
    /// Datapoints above the target before a scale-out (AWS's high alarm: 3 of 3 minutes).
    pub const OUT_DATAPOINTS: usize = 3;
    /// Datapoints below [`Self::IN_FRACTION`] of the target before a scale-in (15 of 15).
    pub const IN_DATAPOINTS: usize = 15;
    pub const IN_FRACTION: f64 = 0.9;
}

/// `M of N`: an alarm goes to ALARM when `datapoints_to_alarm` of its last `evaluation_periods`
/// datapoints breach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlarmWindow {
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
}

impl AlarmWindow {
    /// `n of n`, as Terraform sets it (no `datapoints_to_alarm`, so AWS uses the period count).
    pub const fn all_of(n: usize) -> AlarmWindow {
        AlarmWindow {
            evaluation_periods: n,
            datapoints_to_alarm: n,
        }
    }
}

/// How the alarms' metric is made from the connected clients, and how it fails.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct MetricModel {
    /// Each client counted twice, as the ALB's raw `ActiveConnectionCount` does (client to ALB
    /// and ALB to worker).
    pub double_count: bool,
    /// A period without any client has no datapoint, as with the ALB's raw metric (published
    /// "only when requests are flowing").
    pub missing_at_zero: bool,
    /// A missing datapoint read as zero (`FILL(m, 0)`), as the ALB alarm did: a gap then looks
    /// like every client leaving. Off, a gap is missing: it breaches nothing.
    pub fill_gaps_with_zero: bool,
    /// Chance that a period's datapoint never arrives (a failed PutMetricData, a leader
    /// failing over), seeded.
    pub gap_probability: f64,
    /// Periods between a datapoint's period and the alarm seeing it (CloudWatch's ingestion and
    /// evaluation delay).
    pub delay_periods: usize,
}

impl MetricModel {
    /// The datapoint for a period whose most connected clients were `clients`, before gaps.
    pub fn datapoint(self, clients: u64) -> Option<u64> {
        if self.missing_at_zero && clients == 0 {
            return None;
        }
        Some(if self.double_count {
            clients.saturating_mul(2)
        } else {
            clients
        })
    }
}

/// The workers' rebalancing (`--rebalance-rate`, `--rebalance-margin`): a worker above the
/// mean by `margin` sheds `rate` sessions a second until it is within half the margin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rebalance {
    pub rate_per_sec: f64,
    pub margin: f64,
}

impl Rebalance {
    /// The worker's defaults.
    pub const WORKER: Rebalance = Rebalance {
        rate_per_sec: 20.0,
        margin: 0.2,
    };
}

/// Which in-service worker a scale-in removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    /// The group's `NewestInstance` policy: the last launched, however full.
    Newest,
    /// The custom termination policy Lambda: the worker holding the fewest clients.
    LeastLoaded,
}

/// Seeded faults of the scaling path.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Faults {
    /// Chance that an alarm's invocation never runs (the alarm stays in ALARM).
    pub lost_invocation: f64,
    /// Chance that an invocation is delivered twice (the second is a duplicate: a no-op).
    pub duplicate_invocation: f64,
    /// Every SetDesiredCapacity fails (AccessDenied, a scaling activity in progress forever).
    pub failing_set_desired: bool,
    /// The old failure path: a failed run re-arms its alarm, which fires again seconds later.
    pub rearm_on_failure: bool,
}

/// A scheduled action (`scheduled_capacity`): from `from_secs` to `to_secs` of each day the
/// group keeps at least `min` workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheduled {
    pub from_secs: u64,
    pub to_secs: u64,
    pub min: u32,
}

/// Spot workers above an On-Demand base (`spot`), interrupted at random with two minutes'
/// notice; the group's Capacity Rebalancing launches a replacement at the notice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spot {
    pub on_demand_base: u32,
    pub price_per_hour: f64,
    /// Interruptions per Spot worker-hour (seeded).
    pub interruptions_per_hour: f64,
    pub notice_secs: u64,
}

/// The paper's thresholds: ±50,000, the first `min` workers worth one step.
const PAPER_STEPS: Steps = Steps {
    step: 50_000,
    hysteresis: 5_000,
    formula: Formula::Paper,
};

/// Neither cool-down nor fill time: what the scalers did before the guards.
const NO_GUARDS: Guards = Guards {
    scale_in_cooldown_secs: 0,
    fill_secs: 0,
};

/// Everything a run depends on besides the load curve.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub mode: Mode,
    pub bounds: Bounds,
    pub steps: Steps,
    pub guards: Guards,
    /// The busy-worker alarm: scale out when the busiest worker holds more than this fraction
    /// of its capacity (`busy_fraction`); `None` in the paper's design.
    pub busy_fraction: Option<f64>,
    /// Clients one worker takes (`worker_max_clients`); past it a worker refuses with 503 and
    /// the client retries elsewhere. `None`: no limit (the paper).
    pub capacity: Option<u64>,
    pub tick_secs: u64,
    /// Alarm period; a multiple of the tick.
    pub period_secs: u64,
    pub up: AlarmWindow,
    /// The busy-worker alarm's window: two minutes, so one stale datapoint from before a new
    /// worker joined cannot fire it.
    pub busy: AlarmWindow,
    pub down: AlarmWindow,
    pub metric: MetricModel,
    /// After a re-arm (`SetAlarmState OK`) the alarm re-evaluates its datapoints this much later
    /// ("often within seconds", AWS): another step follows at once if the load still breaches
    /// the new threshold.
    pub rearm_secs: u64,
    /// The scheduled reconcile (`reconcile_minutes`); 0 = none.
    pub reconcile_secs: u64,
    /// An alarm in ALARM this long is re-armed by the reconcile (`REARM_STUCK_AFTER_SECS`).
    pub rearm_stuck_after_secs: u64,
    /// Launch to in service: boot, join, health check (`worker_instance_warmup_secs`). Target
    /// tracking also waits this long before counting a new worker.
    pub boot_secs: u64,
    /// A removed worker's drain (`drain_seconds`): its clients are closed with 1012, spread
    /// over this, and reconnect elsewhere.
    pub drain_secs: u64,
    /// After the drain until the instance is gone (the ALB's deregistration delay and the
    /// shutdown); billed.
    pub deregistration_secs: u64,
    pub termination: Termination,
    /// Fraction of connected clients that reconnect per hour.
    pub churn_per_hour: f64,
    /// Rebalancing onto new workers; `None` = only new and reconnecting clients reach them.
    pub rebalance: Option<Rebalance>,
    pub faults: Faults,
    pub schedule: Vec<Scheduled>,
    pub spot: Option<Spot>,
    /// Start with the fleet the scaling would have settled on for the first load, rather than
    /// at the minimum (the paper's runs start at the minimum).
    pub settled_start: bool,
    /// On-demand price of one node, dollars per hour.
    pub price_per_hour: f64,
    pub seed: u64,
}

impl Settings {
    /// What `terraform/` deploys with its defaults: 2..10 c6i.large workers in eu-central-1 at
    /// 100,000 clients each, STEP 80,000 per worker, HYSTERESIS 8,000, the busy-worker alarm at
    /// 90 % of capacity, scale-up on 1 of 1 minute, scale-down on 3 of 3 with a 5-minute
    /// cool-down, a reconcile every 2 minutes, 120 s warmup, the least-loaded worker removed
    /// after a 30 s drain and 45 s deregistration delay, workers rebalancing; and the faults
    /// AWS may bring: a minute's metric delay, a gap in one datapoint of 200, one invocation
    /// of 200 lost and one duplicated.
    pub fn deployed() -> Settings {
        Settings {
            mode: Mode::Lambda,
            bounds: Bounds { min: 2, max: 10 },
            steps: Steps {
                step: 80_000,
                hysteresis: 8_000,
                formula: Formula::PerWorker,
            },
            guards: Guards {
                scale_in_cooldown_secs: 300,
                fill_secs: 300,
            },
            busy_fraction: Some(0.9),
            capacity: Some(100_000),
            tick_secs: 10,
            period_secs: 60,
            up: AlarmWindow::all_of(1),
            busy: AlarmWindow::all_of(2),
            down: AlarmWindow::all_of(3),
            metric: MetricModel {
                gap_probability: 0.005,
                delay_periods: 1,
                ..MetricModel::default()
            },
            rearm_secs: 10,
            reconcile_secs: 120,
            rearm_stuck_after_secs: 120,
            boot_secs: 120,
            drain_secs: 30,
            deregistration_secs: 45,
            termination: Termination::LeastLoaded,
            churn_per_hour: 0.0,
            rebalance: Some(Rebalance::WORKER),
            faults: Faults {
                lost_invocation: 0.005,
                duplicate_invocation: 0.005,
                ..Faults::default()
            },
            schedule: Vec::new(),
            spot: None,
            settled_start: true,
            // c6i.large on-demand in Terraform's default region, eu-central-1 (docs/deploy.md).
            price_per_hour: 0.101,
            seed: 1,
        }
    }

    /// The paper's set-up: STEP 50,000 on the paper's formula, both alarms on 1 of 1 minute,
    /// nodes in service at once and gone at once, the newest removed, no capacity limit, no
    /// guards, no rebalancing, no faults, t2.medium.
    pub fn paper() -> Settings {
        Settings {
            steps: PAPER_STEPS,
            guards: NO_GUARDS,
            busy_fraction: None,
            capacity: None,
            tick_secs: 60,
            down: AlarmWindow::all_of(1),
            metric: MetricModel::default(),
            boot_secs: 0,
            drain_secs: 0,
            deregistration_secs: 0,
            termination: Termination::Newest,
            rebalance: None,
            faults: Faults::default(),
            settled_start: false,
            price_per_hour: 0.0464,
            ..Settings::deployed()
        }
    }

    /// What `terraform/` deployed before this release, for comparison: the paper's formula at
    /// STEP 50,000, the ALB metric with gaps read as zero, no guards, no busy-worker alarm,
    /// the newest worker removed at once, a failed run re-arming its alarm.
    pub fn previous() -> Settings {
        Settings {
            steps: PAPER_STEPS,
            guards: NO_GUARDS,
            busy_fraction: None,
            metric: MetricModel {
                fill_gaps_with_zero: true,
                ..Settings::deployed().metric
            },
            termination: Termination::Newest,
            faults: Faults {
                rearm_on_failure: true,
                ..Settings::deployed().faults
            },
            reconcile_secs: 300,
            ..Settings::deployed()
        }
    }

    /// The target-tracking policy's default target: the step.
    pub fn default_target(&self) -> u64 {
        self.steps.step
    }

    /// The group's minimum at `t` seconds into the run (days from 0): the bound, raised by any
    /// scheduled action in force.
    pub fn min_at(&self, t: u64) -> u32 {
        let of_day = t % 86_400;
        self.schedule
            .iter()
            .filter(|s| (s.from_secs..s.to_secs).contains(&of_day))
            .map(|s| s.min.min(self.bounds.max))
            .fold(self.bounds.min, u32::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datapoints() {
        let plain = MetricModel::default();
        assert_eq!(plain.datapoint(0), Some(0));
        assert_eq!(plain.datapoint(7), Some(7));
        let raw_alb = MetricModel {
            double_count: true,
            missing_at_zero: true,
            ..MetricModel::default()
        };
        assert_eq!(raw_alb.datapoint(0), None);
        assert_eq!(raw_alb.datapoint(7), Some(14));
    }

    #[test]
    fn the_default_target_is_the_step() {
        assert_eq!(Settings::deployed().default_target(), 80_000);
    }

    #[test]
    fn a_schedule_raises_the_minimum_in_its_hours_only() {
        let cfg = Settings {
            schedule: vec![Scheduled {
                from_secs: 8 * 3600,
                to_secs: 20 * 3600,
                min: 5,
            }],
            ..Settings::deployed()
        };
        assert_eq!(cfg.min_at(7 * 3600), 2);
        assert_eq!(cfg.min_at(8 * 3600), 5);
        assert_eq!(cfg.min_at(86_400 + 9 * 3600), 5);
        assert_eq!(cfg.min_at(20 * 3600), 2);
    }
}
