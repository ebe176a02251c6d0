//! History: every message published to a stream (a topic, or a client id's direct pushes) gets
//! the stream's next **offset** (1, 2, 3, ...) and is kept for a while, so a client that was
//! away (a drain, a rebalance, a crash, a flaky network) asks for what it missed and gets
//! exactly that, in order. A stream's **epoch** names one unbroken history: it changes only
//! when the history itself was lost (an engine restarted empty, a stream evicted), and a client
//! whose position names another epoch is told it cannot recover rather than handed a gap.
//!
//! Two engines behind one [`Engine`] trait: [`MemoryEngine`] in the process (a standalone
//! worker), and [`RedisEngine`] on Redis or Valkey streams (a cluster: history outlives any
//! worker or leader), the way Centrifugo and the Socket.IO adapters keep theirs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

mod memory;
mod redis_engine;
mod service;

pub use memory::MemoryEngine;
pub use redis_engine::RedisEngine;
pub use service::{History, HistoryArgs, Kept};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a client is in a stream: the offset of the last message it has, in `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

/// One kept message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub data: String,
}

/// How much a stream keeps: at most `size` messages, each for at most `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub size: usize,
    pub ttl: Duration,
}

/// Why a client's position cannot be brought up to date from history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// The stream's history was lost since (its epoch changed).
    EpochChanged,
    /// What it missed is no longer kept (older than the history's size or time to live).
    Expired,
    /// It missed more than one recovery hands over.
    TooMany,
}

impl Miss {
    /// As the client is told it.
    pub fn as_str(self) -> &'static str {
        match self {
            Miss::EpochChanged => "epoch_changed",
            Miss::Expired => "expired",
            Miss::TooMany => "too_many",
        }
    }
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Everything after the client's position, in order (maybe nothing), and where the stream
    /// is now.
    Recovered { missed: Vec<Entry>, top: Position },
    /// The client must refetch its state; `top` is where the stream is now (its new position).
    Lost { why: Miss, top: Position },
}

impl Recovery {
    /// Where the stream stood when the recovery read it.
    pub fn top(&self) -> &Position {
        match self {
            Recovery::Recovered { top, .. } | Recovery::Lost { top, .. } => top,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The engine did not answer, or answered nonsense: nothing was appended or read.
    #[error("history engine unavailable: {0}")]
    Unavailable(String),
}

/// A history engine. Every call is bounded in time by the engine; an error means nothing
/// happened (an append that fails was not kept, and its message is not delivered either).
pub trait Engine: Send + Sync + 'static {
    /// `memory` or `redis`, for logs and metrics.
    fn name(&self) -> &'static str;

    /// Keeps `data` as `stream`'s next message: its offset, in the stream's epoch.
    fn append<'a>(
        &'a self,
        stream: &'a str,
        data: String,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Position, HistoryError>>;

    /// What `stream` holds after `from`, at most `max` messages.
    fn recover<'a>(
        &'a self,
        stream: &'a str,
        from: &'a Position,
        max: usize,
    ) -> BoxFuture<'a, Result<Recovery, HistoryError>>;

    /// Where `stream` is now (offset 0 in a fresh epoch for a stream never written).
    fn top<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<Position, HistoryError>>;
}

/// The decision every engine makes the same way: given the stream's `top` and the kept
/// `entries` after `from` (oldest first, at most `max + 1` of them), what `from` recovers.
pub(crate) fn decide(from: &Position, top: Position, entries: Vec<Entry>, max: usize) -> Recovery {
    if from.epoch != top.epoch {
        return Recovery::Lost {
            why: Miss::EpochChanged,
            top,
        };
    }
    if from.offset >= top.offset {
        // Up to date (a position ahead of the stream is one from this epoch's future: nothing
        // to hand over, and nothing it could have missed).
        return Recovery::Recovered {
            missed: Vec::new(),
            top,
        };
    }
    if top.offset - from.offset > max as u64 {
        return Recovery::Lost {
            why: Miss::TooMany,
            top,
        };
    }
    // Everything from `from + 1` to `top` must still be there, without a hole.
    let complete = entries.len() as u64 == top.offset - from.offset
        && entries
            .iter()
            .zip(from.offset + 1..)
            .all(|(e, want)| e.offset == want);
    if !complete {
        return Recovery::Lost {
            why: Miss::Expired,
            top,
        };
    }
    Recovery::Recovered {
        missed: entries,
        top,
    }
}

/// A fresh epoch: 8 random characters, short because every push carries it.
pub(crate) fn new_epoch() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64) -> Position {
        Position {
            offset,
            epoch: "e1".into(),
        }
    }

    fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        range
            .map(|offset| Entry {
                offset,
                data: format!("m{offset}"),
            })
            .collect()
    }

    #[test]
    fn a_position_recovers_what_followed_it_or_says_why_not() {
        let got = decide(&at(3), at(5), entries(4..=5), 10);
        assert_eq!(
            got,
            Recovery::Recovered {
                missed: entries(4..=5),
                top: at(5)
            }
        );
        assert!(matches!(
            decide(&at(5), at(5), vec![], 10),
            Recovery::Recovered { missed, .. } if missed.is_empty()
        ));
        let other = Position {
            offset: 3,
            epoch: "e0".into(),
        };
        assert!(matches!(
            decide(&other, at(5), entries(4..=5), 10),
            Recovery::Lost {
                why: Miss::EpochChanged,
                ..
            }
        ));
        // 4 was trimmed away: a hole is never handed over.
        assert!(matches!(
            decide(&at(3), at(6), entries(5..=6), 10),
            Recovery::Lost {
                why: Miss::Expired,
                ..
            }
        ));
        assert!(matches!(
            decide(&at(0), at(20), entries(1..=11), 10),
            Recovery::Lost {
                why: Miss::TooMany,
                ..
            }
        ));
    }
}
