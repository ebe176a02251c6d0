//! A circuit breaker per backend: after `failures` calls in a row fail, calls fail at once for
//! `open_for` (the backend gets room to recover and clients an immediate answer instead of a
//! timeout each); then one call at a time probes it (half-open) until one succeeds.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The breaker's state, as the `ews_hook_breaker_state` gauge shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

pub struct Breaker {
    failures: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    failed_in_a_row: u32,
    /// Open until then.
    open_until: Option<Instant>,
    /// A probe is on its way (half-open lets one through at a time).
    probing: bool,
}

/// Leave to call: a normal call, or the one probe of a half-open circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Call,
    Probe,
}

impl Breaker {
    pub fn new(failures: u32, open_for: Duration) -> Breaker {
        Breaker {
            failures: failures.max(1),
            open_for,
            inner: Mutex::new(Inner {
                failed_in_a_row: 0,
                open_until: None,
                probing: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call may go now (`None`: the circuit is open, fail at once).
    pub fn admit(&self) -> Option<Admit> {
        let mut i = self.lock();
        match i.open_until {
            None => Some(Admit::Call),
            Some(until) if Instant::now() < until => None,
            Some(_) if i.probing => None,
            Some(_) => {
                i.probing = true;
                Some(Admit::Probe)
            }
        }
    }

    /// A call's outcome; the answer is the state after it.
    pub fn record(&self, admit: Admit, ok: bool) -> State {
        let mut i = self.lock();
        if admit == Admit::Probe {
            i.probing = false;
        }
        if ok {
            i.failed_in_a_row = 0;
            i.open_until = None;
            return State::Closed;
        }
        i.failed_in_a_row = i.failed_in_a_row.saturating_add(1);
        if admit == Admit::Probe || i.failed_in_a_row >= self.failures {
            i.open_until = Some(Instant::now() + self.open_for);
            return State::Open;
        }
        State::Closed
    }

    #[cfg(test)]
    fn state(&self) -> State {
        let i = self.lock();
        match i.open_until {
            None => State::Closed,
            Some(until) if Instant::now() < until => State::Open,
            Some(_) => State::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_in_a_row_then_probes_one_at_a_time() {
        let b = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            let a = b.admit().expect("closed");
            assert_eq!(b.record(a, false), State::Closed);
        }
        // A success resets the count.
        let a = b.admit().expect("closed");
        b.record(a, true);
        for _ in 0..3 {
            let a = b.admit().expect("closed");
            b.record(a, false);
        }
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.admit(), None, "open: fail at once");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.state(), State::HalfOpen);
        let probe = b.admit().expect("one probe");
        assert_eq!(probe, Admit::Probe);
        assert_eq!(b.admit(), None, "one probe at a time");
        // A failed probe opens it again for the whole time.
        assert_eq!(b.record(probe, false), State::Open);
        assert_eq!(b.admit(), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = b.admit().expect("probe");
        assert_eq!(b.record(probe, true), State::Closed);
        assert_eq!(b.admit(), Some(Admit::Call));
    }
}
