//! What the simulator models, as settings: the scaling mode, the alarms as CloudWatch evaluates
//! them, the metric as the deployment publishes it. [`Settings::deployed`] is what
//! `terraform/` deploys by default (a test reads the Terraform variables to keep them one);
//! [`Settings::paper`] is the paper's set-up, which reproduces its Table II.

use crate::policy::{Bounds, Steps};

/// How the group is scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// The paper's design (`scaling_mode = "lambda"`): two alarms, each invoking its scaler
    /// Lambda, which steps one node and rewrites both thresholds.
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

/// How the alarms' metric is made from the connected clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MetricModel {
    /// Each client counted twice, as the ALB's raw `ActiveConnectionCount` does (client to ALB
    /// and ALB to worker); the deployed ALB alarm halves it.
    pub double_count: bool,
    /// A period without any client has no datapoint, read as not breaching, as with the ALB's
    /// raw metric (published "only when requests are flowing"); the deployed ALB alarm fills it
    /// with zero, and the cluster metric is published at zero too.
    pub missing_at_zero: bool,
}

impl MetricModel {
    /// The datapoint for a period whose most connected clients were `clients`.
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

/// Everything a run depends on besides the load curve.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub mode: Mode,
    pub bounds: Bounds,
    pub steps: Steps,
    pub tick_secs: u64,
    /// Alarm period; a multiple of the tick.
    pub period_secs: u64,
    pub up: AlarmWindow,
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
    /// Fraction of connected clients that reconnect per hour.
    pub churn_per_hour: f64,
    /// Move clients onto a node when it enters service, instead of only new arrivals.
    pub rebalance: bool,
    /// On-demand price of one node, dollars per hour.
    pub price_per_hour: f64,
    pub seed: u64,
}

impl Settings {
    /// What `terraform/` deploys with its defaults: 2..10 c6i.large workers in eu-central-1,
    /// STEP 50,000, HYSTERESIS 5,000, scale-up on 1 of 1 minute, scale-down on 3 of 3, a
    /// reconcile every 5 minutes, 120 s warmup, workers rebalancing.
    pub fn deployed() -> Settings {
        Settings {
            mode: Mode::Lambda,
            bounds: Bounds { min: 2, max: 10 },
            steps: Steps {
                step: 50_000,
                hysteresis: 5_000,
            },
            tick_secs: 60,
            period_secs: 60,
            up: AlarmWindow::all_of(1),
            down: AlarmWindow::all_of(3),
            metric: MetricModel::default(),
            rearm_secs: 10,
            reconcile_secs: 300,
            rearm_stuck_after_secs: 120,
            boot_secs: 120,
            churn_per_hour: 0.0,
            // Workers shed sessions onto a worker entering service (`--rebalance-rate`, on by
            // default in the worker).
            rebalance: true,
            // c6i.large on-demand in Terraform's default region, eu-central-1 (docs/deploy.md).
            price_per_hour: 0.101,
            seed: 1,
        }
    }

    /// The paper's set-up: t2.medium, both alarms on 1 of 1 minute, nodes in service at once.
    pub fn paper() -> Settings {
        Settings {
            down: AlarmWindow::all_of(1),
            boot_secs: 0,
            // The paper's workers took only new and reconnecting clients.
            rebalance: false,
            price_per_hour: 0.0464,
            ..Settings::deployed()
        }
    }

    /// The target-tracking policy's default target: 80 % of a step per worker.
    pub fn default_target(&self) -> u64 {
        self.steps.step * 4 / 5
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
        };
        assert_eq!(raw_alb.datapoint(0), None);
        assert_eq!(raw_alb.datapoint(7), Some(14));
    }

    #[test]
    fn the_default_target_is_what_terraform_sets() {
        assert_eq!(Settings::deployed().default_target(), 40_000);
    }
}
