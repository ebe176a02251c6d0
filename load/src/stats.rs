//! Counting what happened: latency histograms and error tallies shared by all connections.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histogram resolves (anything above is clamped): one minute.
const MAX_MICROS: u64 = 60_000_000;

/// A latency histogram in microseconds (3 significant digits), shared by every connection task.
/// Recording takes a short lock; at loopback message rates on a few cores it is never contended
/// enough to matter, and one histogram beats one per connection (~30 KiB each) at 15k connections.
pub struct Latency(Mutex<Histogram<u64>>);

impl Default for Latency {
    fn default() -> Self {
        // 1 µs .. 60 s at 3 significant figures: valid bounds, so creation cannot fail.
        let h = Histogram::new_with_bounds(1, MAX_MICROS, 3)
            .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"));
        Latency(Mutex::new(h))
    }
}

impl Latency {
    pub fn record(&self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, MAX_MICROS);
        if let Ok(mut h) = self.0.lock() {
            // In range by the clamp above.
            let _ = h.record(us);
        }
    }

    pub fn summary(&self) -> LatencySummary {
        let Ok(h) = self.0.lock() else {
            return LatencySummary::default();
        };
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
            mean_us: h.mean().round() as u64,
        }
    }
}

/// Percentiles of a [`Latency`], in microseconds.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: u64,
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={} p50={} p90={} p99={} max={} mean={}",
            self.count,
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.max_us),
            ms(self.mean_us)
        )
    }
}

fn ms(us: u64) -> String {
    format!("{:.3}ms", us as f64 / 1000.0)
}

/// Errors by kind (`connect: Connection refused`, `http 401`, `closed early`, ...), so a report
/// says what went wrong and how often without one line per failed connection.
#[derive(Default)]
pub struct Errors(Mutex<BTreeMap<String, u64>>);

impl Errors {
    pub fn add(&self, kind: impl Into<String>) {
        self.add_n(kind, 1);
    }

    pub fn add_n(&self, kind: impl Into<String>, n: u64) {
        if n == 0 {
            return;
        }
        if let Ok(mut m) = self.0.lock() {
            *m.entry(kind.into()).or_insert(0) += n;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn total(&self) -> u64 {
        self.0.lock().map(|m| m.values().sum()).unwrap_or(0)
    }
}

/// `part / whole` as a rate per second, 0 when nothing elapsed.
pub fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        count as f64 / s
    } else {
        0.0
    }
}

/// What went wrong in a run, as every report carries it (flattened into its JSON).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Failures {
    /// Error counts by kind.
    pub errors: BTreeMap<String, u64>,
    /// Failed units (connections or events, per mode) over attempted ones.
    pub error_ratio: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let l = Latency::default();
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        assert!((49_900..=50_100).contains(&s.p50_us), "{s:?}");
        assert!((89_900..=90_100).contains(&s.p90_us), "{s:?}");
        assert!((98_900..=99_100).contains(&s.p99_us), "{s:?}");
        assert!((99_900..=100_100).contains(&s.max_us), "{s:?}");
    }

    #[test]
    fn empty_and_out_of_range() {
        let l = Latency::default();
        assert_eq!(l.summary(), LatencySummary::default());
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(3600));
        let s = l.summary();
        assert_eq!(s.count, 2);
        assert!(s.max_us >= MAX_MICROS - MAX_MICROS / 1000);
    }

    #[test]
    fn errors_tally_by_kind() {
        let e = Errors::default();
        e.add("http 401");
        e.add("http 401");
        e.add("closed early");
        assert_eq!(e.total(), 3);
        assert_eq!(e.snapshot()["http 401"], 2);
    }

    #[test]
    fn rates() {
        assert_eq!(per_sec(10, Duration::from_secs(2)), 5.0);
        assert_eq!(per_sec(10, Duration::ZERO), 0.0);
    }
}
