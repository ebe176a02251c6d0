//! When to try again: exponential back-off with full jitter (a uniformly random wait between zero
//! and the exponential bound), so clients that lost one server together come back spread out;
//! after a `1012` (the server drains), soon but spread over a short window.

use std::time::Duration;

/// Retry timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Bound of the first retry.
    pub initial: Duration,
    /// Largest bound.
    pub max: Duration,
    /// After a `1012`: reconnect within this.
    pub drain_window: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            drain_window: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// The bound of retry number `attempt` (0 for the first).
    pub fn bound(&self, attempt: u32) -> Duration {
        self.initial
            .saturating_mul(1u32 << attempt.min(30))
            .min(self.max)
    }

    /// The wait before retry number `attempt`: uniformly random below its bound.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        jitter(self.bound(attempt))
    }

    /// The wait after the server said it is going away.
    pub fn drain_delay(&self) -> Duration {
        jitter(self.drain_window)
    }
}

fn jitter(bound: Duration) -> Duration {
    if bound.is_zero() {
        return bound;
    }
    Duration::from_nanos(rand::random_range(
        0..bound.as_nanos().min(u64::MAX as u128) as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_double_then_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            drain_window: Duration::from_secs(1),
        };
        let ms: Vec<u128> = (0..8).map(|n| b.bound(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.bound(u32::MAX), Duration::from_secs(5));
        for n in 0..10 {
            assert!(b.retry_delay(n) < b.bound(n));
        }
        assert!(b.drain_delay() < Duration::from_secs(1));
    }
}
