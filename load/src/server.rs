//! What the server under test spent, from before/after readings of its `/proc` entry.

use serde::Serialize;

use crate::procfs::{self, Sample};

/// Reads the server when a PID was given; a failed reading (server gone) is reported, not fatal.
pub fn sample(pid: Option<u32>) -> Option<Sample> {
    let pid = pid?;
    match procfs::sample(pid) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("warning: cannot read server process: {e}");
            None
        }
    }
}

/// Server resource use across a phase, normalised by what the phase did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerUsage {
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    /// RSS growth divided by `per`: bytes per connection (idle) or per message.
    pub rss_delta_per_unit_bytes: f64,
    pub cpu_us: u64,
    /// CPU time divided by `per`: µs per handshake or per echoed message.
    pub cpu_us_per_unit: f64,
    /// What the figures are divided by.
    pub per: u64,
}

impl ServerUsage {
    pub fn between(before: Option<Sample>, after: Option<Sample>, per: u64) -> Option<Self> {
        let (b, a) = (before?, after?);
        let rss_delta = a.rss_bytes as f64 - b.rss_bytes as f64;
        let cpu_us = a.cpu.saturating_sub(b.cpu).as_micros() as u64;
        let div = per.max(1) as f64;
        Some(ServerUsage {
            rss_before_bytes: b.rss_bytes,
            rss_after_bytes: a.rss_bytes,
            rss_delta_per_unit_bytes: rss_delta / div,
            cpu_us,
            cpu_us_per_unit: cpu_us as f64 / div,
            per,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn normalises_by_units() {
        let b = Sample {
            rss_bytes: 10_000_000,
            cpu: Duration::from_millis(100),
        };
        let a = Sample {
            rss_bytes: 10_040_000,
            cpu: Duration::from_millis(300),
        };
        let u = ServerUsage::between(Some(b), Some(a), 10).unwrap();
        assert_eq!(u.rss_delta_per_unit_bytes, 4000.0);
        assert_eq!(u.cpu_us, 200_000);
        assert_eq!(u.cpu_us_per_unit, 20_000.0);
        assert!(ServerUsage::between(None, Some(a), 1).is_none());
    }
}
