//! History in the process: a standalone worker's. Lost with the process (a restart is a new
//! epoch for every stream), bounded per stream by its limits and in the number of streams.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::{
    decide, new_epoch, BoxFuture, Engine, Entry, HistoryError, Limits, Position, Recovery,
};

/// Streams kept at most by default: past it the stream touched least recently is dropped (its
/// clients then see a new epoch).
pub const MAX_STREAMS: usize = 100_000;

/// A stream's epoch and top offset outlive its messages (as on Redis): a client back after its
/// messages expired hears `expired`, not `epoch_changed`. At least this long.
const META_TTL: Duration = Duration::from_secs(24 * 3600);

pub struct MemoryEngine {
    streams: Mutex<HashMap<String, Stream>>,
    max_streams: usize,
}

struct Stream {
    epoch: String,
    top: u64,
    /// (offset, data, kept until).
    entries: VecDeque<(u64, String, Instant)>,
    /// Forgotten after this (its metadata's expiry).
    until: Instant,
}

impl Stream {
    fn fresh() -> Stream {
        Stream {
            epoch: new_epoch(),
            top: 0,
            entries: VecDeque::new(),
            until: Instant::now() + META_TTL,
        }
    }

    fn expire(&mut self, now: Instant) {
        while self
            .entries
            .front()
            .is_some_and(|(_, _, until)| *until <= now)
        {
            self.entries.pop_front();
        }
    }

    fn position(&self) -> Position {
        Position {
            offset: self.top,
            epoch: self.epoch.clone(),
        }
    }
}

impl Default for MemoryEngine {
    fn default() -> MemoryEngine {
        MemoryEngine::new(MAX_STREAMS)
    }
}

impl MemoryEngine {
    pub fn new(max_streams: usize) -> MemoryEngine {
        MemoryEngine {
            streams: Mutex::new(HashMap::new()),
            max_streams: max_streams.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stream>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Streams held now.
    pub fn streams(&self) -> usize {
        self.lock().len()
    }
}

/// Makes room for one more stream: the expired ones go first, then the one that would expire
/// soonest.
fn make_room(streams: &mut HashMap<String, Stream>, max: usize, now: Instant) {
    if streams.len() < max {
        return;
    }
    streams.retain(|_, s| s.until > now);
    while streams.len() >= max {
        let Some(oldest) = streams
            .iter()
            .min_by_key(|(_, s)| s.until)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        streams.remove(&oldest);
    }
}

impl Engine for MemoryEngine {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn append<'a>(
        &'a self,
        stream: &'a str,
        data: String,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Position, HistoryError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut streams = self.lock();
            if !streams.contains_key(stream) {
                make_room(&mut streams, self.max_streams, now);
            }
            let s = streams
                .entry(stream.to_string())
                .or_insert_with(Stream::fresh);
            s.expire(now);
            s.top += 1;
            s.until = now + limits.ttl.max(META_TTL);
            s.entries.push_back((s.top, data, now + limits.ttl));
            while s.entries.len() > limits.size {
                s.entries.pop_front();
            }
            Ok(s.position())
        })
    }

    fn recover<'a>(
        &'a self,
        stream: &'a str,
        from: &'a Position,
        max: usize,
    ) -> BoxFuture<'a, Result<Recovery, HistoryError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut streams = self.lock();
            let Some(s) = streams.get_mut(stream).filter(|s| s.until > now) else {
                streams.remove(stream);
                // Never written, or forgotten: a fresh epoch the client cannot be in.
                let top = Position {
                    offset: 0,
                    epoch: new_epoch(),
                };
                return Ok(decide(from, top, Vec::new(), max));
            };
            s.expire(now);
            let entries = s
                .entries
                .iter()
                .filter(|(o, _, _)| *o > from.offset)
                .take(max.saturating_add(1))
                .map(|(offset, data, _)| Entry {
                    offset: *offset,
                    data: data.clone(),
                })
                .collect();
            Ok(decide(from, s.position(), entries, max))
        })
    }

    fn top<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<Position, HistoryError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut streams = self.lock();
            match streams.get(stream).filter(|s| s.until > now) {
                Some(s) => Ok(s.position()),
                None => {
                    // Remembered from now on, so the epoch a subscriber is told holds for
                    // the appends that follow (until the stream's first message expires).
                    if !streams.contains_key(stream) {
                        make_room(&mut streams, self.max_streams, now);
                    }
                    let s = Stream::fresh();
                    let p = s.position();
                    streams.insert(stream.to_string(), s);
                    Ok(p)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Miss;

    const LIMITS: Limits = Limits {
        size: 3,
        ttl: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn offsets_grow_and_history_is_bounded_by_size_and_time() {
        let e = MemoryEngine::default();
        let start = e.top("t").await.unwrap();
        assert_eq!(start.offset, 0);
        for i in 1..=5 {
            let p = e.append("t", format!("m{i}"), LIMITS).await.unwrap();
            assert_eq!((p.offset, &p.epoch), (i, &start.epoch));
        }
        // Size 3: 3, 4 and 5 are kept; a client at 2 recovers them, one at 1 cannot.
        let two = Position {
            offset: 2,
            epoch: start.epoch.clone(),
        };
        match e.recover("t", &two, 100).await.unwrap() {
            Recovery::Recovered { missed, top } => {
                assert_eq!(
                    missed.iter().map(|m| m.offset).collect::<Vec<_>>(),
                    [3, 4, 5]
                );
                assert_eq!(top.offset, 5);
            }
            other => panic!("{other:?}"),
        }
        let one = Position { offset: 1, ..two };
        assert!(matches!(
            e.recover("t", &one, 100).await.unwrap(),
            Recovery::Lost {
                why: Miss::Expired,
                ..
            }
        ));
        // After their time to live the messages are gone, the stream's epoch is not.
        tokio::time::advance(Duration::from_secs(61)).await;
        let four = Position {
            offset: 4,
            epoch: start.epoch.clone(),
        };
        assert!(matches!(
            e.recover("t", &four, 100).await.unwrap(),
            Recovery::Lost {
                why: Miss::Expired,
                ..
            }
        ));
        // After the metadata's, the stream is gone: a new epoch.
        tokio::time::advance(META_TTL).await;
        assert!(matches!(
            e.recover("t", &four, 100).await.unwrap(),
            Recovery::Lost {
                why: Miss::EpochChanged,
                ..
            }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_number_of_streams_is_bounded() {
        let e = MemoryEngine::new(2);
        for t in ["a", "b", "c"] {
            e.append(t, "m".into(), LIMITS).await.unwrap();
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(e.streams(), 2);
        // "a" (the soonest to expire) made room for "c".
        assert_eq!(e.top("b").await.unwrap().offset, 1);
        assert_eq!(e.top("c").await.unwrap().offset, 1);
    }
}
