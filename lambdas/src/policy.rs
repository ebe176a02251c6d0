//! The scaling policy: one pure function shared by both Lambdas and the simulator, so what the
//! simulator predicts is what the deployed functions do.
//!
//! The paper steps each alarm's threshold by ±50,000 from its *current* value, which drifts as
//! soon as one step is missed or repeated and leaves the scale-down alarm at 1,000,000 until the
//! first scale-up. Here both thresholds are a function of the capacity alone:
//!
//! - up   = (n − min + 1) × step: one more step of clients than the first `min` nodes were
//!   provisioned for, so the first scale-up happens above `step` clients (the paper's 50,000);
//! - down = (n − min) × step − hysteresis: below the level that justified the current node
//!   count, with a gap so a load hovering at a step boundary does not flap. At `n == min` it is
//!   ≤ 0, which a connection count can never be below: the alarm is effectively disabled.
//!
//! A retried or repeated invocation therefore converges to the same thresholds.

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

/// Clients per node step and the scale-down gap, both in connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Steps {
    pub step: u64,
    pub hysteresis: u64,
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
    let above_min = u64::from(n.saturating_sub(bounds.min));
    let up = (above_min + 1) as f64 * steps.step as f64;
    let down = above_min as f64 * steps.step as f64 - steps.hysteresis as f64;
    Thresholds { up, down }
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
