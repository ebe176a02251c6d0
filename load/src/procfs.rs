//! The server's resource use, read from `/proc/<pid>` (Linux only; the server runs on this host
//! because every target is loopback).

use std::fs;
use std::time::Duration;

/// One reading of a process: resident memory and CPU time consumed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub rss_bytes: u64,
    pub cpu: Duration,
}

/// Reads RSS (from `statm`) and user+system CPU time (from `stat`) of `pid`.
pub fn sample(pid: u32) -> Result<Sample, String> {
    let statm = fs::read_to_string(format!("/proc/{pid}/statm"))
        .map_err(|e| format!("read /proc/{pid}/statm: {e}"))?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("read /proc/{pid}/stat: {e}"))?;
    Ok(Sample {
        rss_bytes: parse_statm_rss_pages(&statm)? * page_size(),
        cpu: ticks_to_duration(parse_stat_cpu_ticks(&stat)?, clock_ticks_per_sec()),
    })
}

/// Field 2 of `statm`: resident pages.
fn parse_statm_rss_pages(statm: &str) -> Result<u64, String> {
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| format!("unexpected statm: {statm:?}"))
}

/// `utime + stime` (fields 14 and 15 of `stat`), in clock ticks. The command name (field 2) may
/// contain spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Result<u64, String> {
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("unexpected stat: {stat:?}"))?;
    // After ")": field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("unexpected stat: {stat:?}"))
    };
    Ok(get(11)? + get(12)?)
}

fn ticks_to_duration(ticks: u64, per_sec: u64) -> Duration {
    Duration::from_micros(ticks.saturating_mul(1_000_000) / per_sec.max(1))
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "4242 (ews (worker) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat).unwrap(), 325);
        assert!(parse_stat_cpu_ticks("garbage").is_err());
        assert!(parse_stat_cpu_ticks("1 (x) S 1").is_err());
    }

    #[test]
    fn parses_statm() {
        assert_eq!(
            parse_statm_rss_pages("5000 1200 300 1 0 900 0\n").unwrap(),
            1200
        );
        assert!(parse_statm_rss_pages("").is_err());
    }

    #[test]
    fn ticks() {
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2500));
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(sample(u32::MAX).is_err());
    }
}
