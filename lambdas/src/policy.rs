//! The scaling policy: one pure module shared by the Lambdas and the simulator, so what the
//! simulator predicts is what the deployed functions do.
//!
//! **Thresholds follow from the capacity** alone, so a retried or repeated invocation converges
//! to the same thresholds. Two formulas ([`Formula`]):
//!
//! - `per-worker` (deployed): every worker is worth `step` clients. Up = n × step: the fleet is
//!   past its target on average. Down = (n − 1) × (step − hysteresis): one worker fewer would still
//!   sit `hysteresis` below the target each, so the gap between stepping out and back in grows
//!   with the fleet (at 9 workers a blip must lose 8 × hysteresis clients, not one hysteresis).
//! - `paper`: the paper's ±50,000 stepping made consistent. Up = (n − min + 1) × step (the first
//!   `min` workers count as one step); down = (n − min) × step − hysteresis.
//!
//! At `n == min` the scale-down threshold is ≤ 0, which a connection count can never be below:
//! the alarm is effectively off.
//!
//! **Guards** the alarms cannot express ([`Guards`]): at most one scale-in per cool-down (and
//! none within a cool-down of a scale-out), and a scale-out on the busiest worker only once the
//! worker added last has had time to boot and fill: adding workers while the last one is still
//! empty is the cascade that overshoots.

use serde::Serialize;

/// Which alarm fired, i.e. which way to step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// Inclusive node-count bounds of the worker group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
}

impl Bounds {
    /// The bounds to scale within: the optional overrides, but never outside the group's own
    /// `[min, max]` (AWS rejects a desired capacity outside them).
    pub fn effective(
        group_min: u32,
        group_max: u32,
        min_override: Option<u32>,
        max_override: Option<u32>,
    ) -> Bounds {
        let min = min_override
            .unwrap_or(group_min)
            .clamp(group_min, group_max);
        let max = max_override.unwrap_or(group_max).clamp(min, group_max);
        Bounds { min, max }
    }

    pub fn clamp(self, n: u32) -> u32 {
        n.clamp(self.min, self.max)
    }
}

/// Clients per node step and the scale-down gap, both in connections, and how thresholds
/// follow from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Steps {
    pub step: u64,
    pub hysteresis: u64,
    pub formula: Formula,
}

/// How the thresholds follow from the capacity (the module's doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Formula {
    /// Every worker is worth one step.
    #[default]
    PerWorker,
    /// The first `min` workers are worth one step together (the paper).
    Paper,
}

impl Formula {
    pub fn as_str(self) -> &'static str {
        match self {
            Formula::PerWorker => "per-worker",
            Formula::Paper => "paper",
        }
    }
}

impl std::str::FromStr for Formula {
    type Err = String;
    fn from_str(s: &str) -> Result<Formula, String> {
        match s {
            "per-worker" => Ok(Formula::PerWorker),
            "paper" => Ok(Formula::Paper),
            _ => Err("either per-worker or paper".into()),
        }
    }
}

/// Alarm thresholds for one capacity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Thresholds {
    /// Scale-up alarm: fires when connections are *greater than* this.
    pub up: f64,
    /// Scale-down alarm: fires when connections are *less than* this.
    pub down: f64,
}

/// The thresholds that belong to `n` nodes.
pub fn thresholds(n: u32, bounds: Bounds, steps: Steps) -> Thresholds {
    let (step, hysteresis) = (steps.step as f64, steps.hysteresis as f64);
    match steps.formula {
        Formula::Paper => {
            let above_min = f64::from(n.saturating_sub(bounds.min));
            Thresholds {
                up: (above_min + 1.0) * step,
                down: above_min * step - hysteresis,
            }
        }
        Formula::PerWorker => Thresholds {
            up: f64::from(n) * step,
            down: if n <= bounds.min {
                -hysteresis.max(1.0)
            } else {
                f64::from(n - 1) * (step - hysteresis)
            },
        },
    }
}

/// What an alarm can't see: when the last steps happened. Times are seconds on any one clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Guards {
    /// No scale-in within this long of the last scale-in or scale-out (`SCALE_IN_COOLDOWN_SECS`).
    pub scale_in_cooldown_secs: u64,
    /// No scale-out on the busiest worker within this long of the last scale-out: a worker
    /// added then may still be booting or filling (`FILL_SECS`).
    pub fill_secs: u64,
}

/// Why a step is not taken now, and until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Wait {
    pub until: i64,
}

impl Guards {
    /// Whether a scale-in may happen at `now`, given the last scale-in and scale-out.
    pub fn scale_in(
        self,
        now: i64,
        last_in: Option<i64>,
        last_out: Option<i64>,
    ) -> Result<(), Wait> {
        let last = last_in.max(last_out);
        after(now, last, self.scale_in_cooldown_secs)
    }

    /// Whether the busiest worker may add one at `now`, given the last scale-out.
    pub fn busy_scale_out(self, now: i64, last_out: Option<i64>) -> Result<(), Wait> {
        after(now, last_out, self.fill_secs)
    }
}

/// How long the reconcile waits after the `failures`-th failed run in a row before it re-arms
/// the alarm again: a minute, doubling, at most an hour. A persistent error (AccessDenied, a
/// scaling activity that never ends) costs a handful of runs an hour, not one every few seconds.
pub fn failure_backoff_secs(failures: u32) -> u64 {
    60u64
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(3600)
}

fn after(now: i64, last: Option<i64>, secs: u64) -> Result<(), Wait> {
    match last {
        Some(t) if now < t.saturating_add(secs as i64) => Err(Wait {
            until: t.saturating_add(secs as i64),
        }),
        _ => Ok(()),
    }
}

/// What one alarm firing should do to the group.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub from: u32,
    pub to: u32,
    pub thresholds: Thresholds,
}

impl Decision {
    /// Whether the desired capacity changes (false at a bound).
    pub fn changes_capacity(&self) -> bool {
        self.from != self.to
    }
}

/// Steps `desired` by one node in `direction`, clamped into `bounds`, and derives the thresholds
/// for the result. A desired capacity already outside the bounds is pulled back inside.
pub fn decide(desired: u32, direction: Direction, bounds: Bounds, steps: Steps) -> Decision {
    let stepped = match direction {
        Direction::Up => desired.saturating_add(1),
        Direction::Down => desired.saturating_sub(1),
    };
    let to = bounds.clamp(stepped);
    Decision {
        from: desired,
        to,
        thresholds: thresholds(to, bounds, steps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAPER: Bounds = Bounds { min: 2, max: 10 };
    const STEPS: Steps = Steps {
        step: 50_000,
        hysteresis: 5_000,
        formula: Formula::Paper,
    };

    #[test]
    fn thresholds_at_every_capacity_of_the_paper_group() {
        let expected = [
            (2, 50_000.0, -5_000.0),
            (3, 100_000.0, 45_000.0),
            (4, 150_000.0, 95_000.0),
            (5, 200_000.0, 145_000.0),
            (6, 250_000.0, 195_000.0),
            (7, 300_000.0, 245_000.0),
            (8, 350_000.0, 295_000.0),
            (9, 400_000.0, 345_000.0),
            (10, 450_000.0, 395_000.0),
        ];
        for (n, up, down) in expected {
            let t = thresholds(n, PAPER, STEPS);
            assert_eq!((t.up, t.down), (up, down), "n = {n}");
        }
    }

    #[test]
    fn scale_down_is_disabled_at_min_even_without_hysteresis() {
        let steps = Steps {
            step: 50_000,
            hysteresis: 0,
            formula: Formula::Paper,
        };
        // A connection count is never < 0.
        assert_eq!(thresholds(2, PAPER, steps).down, 0.0);
        assert!(thresholds(2, PAPER, STEPS).down < 0.0);
    }

    #[test]
    fn a_step_up_then_down_is_consistent() {
        // After scaling to n + 1, the load that caused it (> up(n)) is not below down(n + 1)
        // unless it falls by at least the hysteresis.
        for n in 2..10 {
            let up_n = thresholds(n, PAPER, STEPS).up;
            let down_next = thresholds(n + 1, PAPER, STEPS).down;
            assert_eq!(up_n - down_next, STEPS.hysteresis as f64, "n = {n}");
        }
    }

    #[test]
    fn steps_by_one_within_bounds() {
        for n in 2..10 {
            let d = decide(n, Direction::Up, PAPER, STEPS);
            assert_eq!(d.to, n + 1);
            assert!(d.changes_capacity());
            assert_eq!(d.thresholds, thresholds(n + 1, PAPER, STEPS));
        }
        for n in 3..=10 {
            assert_eq!(decide(n, Direction::Down, PAPER, STEPS).to, n - 1);
        }
    }

    #[test]
    fn never_goes_past_a_bound() {
        let up = decide(10, Direction::Up, PAPER, STEPS);
        assert_eq!(up.to, 10);
        assert!(!up.changes_capacity());
        let down = decide(2, Direction::Down, PAPER, STEPS);
        assert_eq!(down.to, 2);
        assert!(!down.changes_capacity());
        // Out of bounds already (moto does not enforce them): pulled back in.
        assert_eq!(decide(14, Direction::Up, PAPER, STEPS).to, 10);
        assert_eq!(decide(0, Direction::Down, PAPER, STEPS).to, 2);
        assert_eq!(decide(u32::MAX, Direction::Up, PAPER, STEPS).to, 10);
    }

    #[test]
    fn per_worker_thresholds_widen_their_gap_with_the_fleet() {
        let steps = Steps {
            step: 80_000,
            hysteresis: 8_000,
            formula: Formula::PerWorker,
        };
        assert_eq!(thresholds(2, PAPER, steps).up, 160_000.0);
        assert!(thresholds(2, PAPER, steps).down < 0.0);
        for n in 3..=10 {
            let t = thresholds(n, PAPER, steps);
            assert_eq!(t.up, f64::from(n) * 80_000.0);
            assert_eq!(t.down, f64::from(n - 1) * 72_000.0);
            // The load that stepped out to n (just above up(n - 1)) is 8,000 × (n - 1) above
            // the threshold that would step back in.
            let gap = thresholds(n - 1, PAPER, steps).up - t.down;
            assert_eq!(gap, f64::from(n - 1) * 8_000.0, "n = {n}");
        }
        assert_eq!("per-worker".parse::<Formula>(), Ok(Formula::PerWorker));
        assert_eq!("paper".parse::<Formula>(), Ok(Formula::Paper));
        assert!("both".parse::<Formula>().is_err());
    }

    #[test]
    fn guards_space_scale_ins_and_wait_for_a_new_worker_to_fill() {
        let g = Guards {
            scale_in_cooldown_secs: 300,
            fill_secs: 600,
        };
        assert_eq!(g.scale_in(1000, None, None), Ok(()));
        assert_eq!(g.scale_in(1000, Some(800), None), Err(Wait { until: 1100 }));
        assert_eq!(g.scale_in(1100, Some(800), None), Ok(()));
        // A scale-out is followed by a cool-down too: no stepping straight back.
        assert_eq!(
            g.scale_in(1000, Some(100), Some(900)),
            Err(Wait { until: 1200 })
        );
        assert_eq!(g.busy_scale_out(1000, Some(500)), Err(Wait { until: 1100 }));
        assert_eq!(g.busy_scale_out(1000, Some(400)), Ok(()));
        assert_eq!(g.busy_scale_out(1000, None), Ok(()));
        let backoff: Vec<u64> = (1..=8).map(failure_backoff_secs).collect();
        assert_eq!(backoff, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }

    #[test]
    fn overrides_stay_inside_the_group_bounds() {
        assert_eq!(Bounds::effective(2, 10, None, None), PAPER);
        assert_eq!(
            Bounds::effective(2, 10, Some(3), Some(6)),
            Bounds { min: 3, max: 6 }
        );
        assert_eq!(Bounds::effective(2, 10, Some(1), Some(20)), PAPER);
        assert_eq!(
            Bounds::effective(2, 10, Some(8), Some(4)),
            Bounds { min: 8, max: 8 }
        );
    }
}
