//! History in the process: a standalone worker's. Lost with the process (a restart is a new
//! epoch for every stream), bounded per stream by its limits, in the number of streams, and in
//! bytes for the whole node: past the budget the streams written least recently lose their
//! messages first (their clients hear `expired`; the epoch survives).

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

/// The node's history budget by default: 256 MiB.
pub const MAX_BYTES: usize = 256 << 20;

/// What one kept message costs beside its text: its slot in the queue (offset, the text's
/// pointer, length and capacity, its deadline).
const ENTRY_OVERHEAD: usize = std::mem::size_of::<(u64, String, Instant)>();

/// What one stream costs beside its messages: its map slot, name and epoch (estimated; the
/// `stream_memory` example measures the real figure).
const STREAM_OVERHEAD: usize = 160;

pub struct MemoryEngine {
    state: Mutex<State>,
    max_streams: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct State {
    streams: HashMap<String, Stream>,
    /// What the streams hold, by the costs above.
    bytes: usize,
}

struct Stream {
    epoch: String,
    top: u64,
    /// (offset, data, kept until).
    entries: VecDeque<(u64, String, Instant)>,
    /// The entries' cost.
    bytes: usize,
    /// Forgotten after this (its metadata's expiry).
    until: Instant,
}

impl Stream {
    fn fresh() -> Stream {
        Stream {
            epoch: new_epoch(),
            top: 0,
            entries: VecDeque::new(),
            bytes: 0,
            until: Instant::now() + META_TTL,
        }
    }

    /// Drops the messages past their time to live: the bytes freed.
    fn expire(&mut self, now: Instant) -> usize {
        let mut freed = 0;
        while self
            .entries
            .front()
            .is_some_and(|(_, _, until)| *until <= now)
        {
            freed += self.pop();
        }
        freed
    }

    /// Drops the oldest message: the bytes freed.
    fn pop(&mut self) -> usize {
        let freed = self
            .entries
            .pop_front()
            .map_or(0, |(_, d, _)| d.len() + ENTRY_OVERHEAD);
        self.bytes -= freed;
        freed
    }

    fn cost(name: &str) -> usize {
        name.len() + STREAM_OVERHEAD
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
        MemoryEngine::new(MAX_STREAMS, MAX_BYTES)
    }
}

impl MemoryEngine {
    /// At most `max_streams` streams holding at most `max_bytes` in all.
    pub fn new(max_streams: usize, max_bytes: usize) -> MemoryEngine {
        MemoryEngine {
            state: Mutex::new(State::default()),
            max_streams: max_streams.max(1),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Streams held now.
    pub fn streams(&self) -> usize {
        self.lock().streams.len()
    }

    /// What the streams hold now, as counted against the budget.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl State {
    fn insert(&mut self, name: &str, s: Stream) -> &mut Stream {
        self.bytes += Stream::cost(name);
        self.streams.entry(name.to_string()).or_insert(s)
    }

    fn remove(&mut self, name: &str) {
        if let Some(s) = self.streams.remove(name) {
            self.bytes -= s.bytes + Stream::cost(name);
        }
    }

    /// Makes room for one more stream: the expired ones go first, then the one that would
    /// expire soonest.
    fn make_room(&mut self, max: usize, now: Instant) {
        if self.streams.len() < max {
            return;
        }
        let gone: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, s)| s.until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.remove(&k);
        }
        while self.streams.len() >= max {
            let Some(oldest) = self
                .streams
                .iter()
                .min_by_key(|(_, s)| s.until)
                .map(|(k, _)| k.clone())
            else {
                return;
            };
            self.remove(&oldest);
        }
    }

    /// Back under `max` bytes, with a tenth to spare so one pass serves many appends: the
    /// messages of the streams written least recently go first (`keep` last: the stream just
    /// written), then, if names and epochs alone are too many, the streams themselves.
    fn trim(&mut self, max: usize, keep: &str) {
        if self.bytes <= max {
            return;
        }
        let goal = max - max / 10;
        let mut by_age: Vec<(Instant, String)> = self
            .streams
            .iter()
            .filter(|(k, s)| !s.entries.is_empty() && k.as_str() != keep)
            .map(|(k, s)| (s.until, k.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, k) in &by_age {
            if self.bytes <= goal {
                return;
            }
            if let Some(s) = self.streams.get_mut(k) {
                let freed = s.bytes;
                s.entries.clear();
                s.bytes = 0;
                self.bytes -= freed;
            }
        }
        if let Some(s) = self.streams.get_mut(keep) {
            while self.bytes > goal && s.entries.len() > 1 {
                self.bytes -= s.pop();
            }
        }
        while self.bytes > max {
            let Some(oldest) = self
                .streams
                .iter()
                .filter(|(k, _)| k.as_str() != keep)
                .min_by_key(|(_, s)| s.until)
                .map(|(k, _)| k.clone())
            else {
                return;
            };
            self.remove(&oldest);
        }
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
            let mut state = self.lock();
            if !state.streams.contains_key(stream) {
                state.make_room(self.max_streams, now);
                state.insert(stream, Stream::fresh());
            }
            let state = &mut *state;
            let Some(s) = state.streams.get_mut(stream) else {
                return Err(HistoryError::Unavailable("stream vanished".into()));
            };
            let mut freed = s.expire(now);
            s.top += 1;
            s.until = now + limits.ttl.max(META_TTL);
            let cost = data.len() + ENTRY_OVERHEAD;
            s.entries.push_back((s.top, data, now + limits.ttl));
            s.bytes += cost;
            while s.entries.len() > limits.size {
                freed += s.pop();
            }
            let at = s.position();
            state.bytes = state.bytes + cost - freed;
            state.trim(self.max_bytes, stream);
            Ok(at)
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
            let mut state = self.lock();
            let state = &mut *state;
            let Some(s) = state.streams.get_mut(stream).filter(|s| s.until > now) else {
                state.remove(stream);
                // Never written, or forgotten: a fresh epoch the client cannot be in.
                let top = Position {
                    offset: 0,
                    epoch: new_epoch(),
                };
                return Ok(decide(from, top, Vec::new(), max));
            };
            let freed = s.expire(now);
            state.bytes -= freed;
            let Some(s) = state.streams.get(stream) else {
                return Err(HistoryError::Unavailable("stream vanished".into()));
            };
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
            let mut state = self.lock();
            match state.streams.get(stream).filter(|s| s.until > now) {
                Some(s) => Ok(s.position()),
                None => {
                    // Remembered from now on, so the epoch a subscriber is told holds for
                    // the appends that follow (until the stream's first message expires).
                    state.remove(stream);
                    state.make_room(self.max_streams, now);
                    let s = Stream::fresh();
                    let p = s.position();
                    state.insert(stream, s);
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
        let e = MemoryEngine::new(2, MAX_BYTES);
        for t in ["a", "b", "c"] {
            e.append(t, "m".into(), LIMITS).await.unwrap();
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(e.streams(), 2);
        // "a" (the soonest to expire) made room for "c".
        assert_eq!(e.top("b").await.unwrap().offset, 1);
        assert_eq!(e.top("c").await.unwrap().offset, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_node_budget_takes_the_messages_of_the_streams_written_least_recently() {
        let max = 20 * (100 + ENTRY_OVERHEAD);
        let e = MemoryEngine::new(MAX_STREAMS, max);
        let msg = "x".repeat(100);
        let mut firsts = Vec::new();
        for t in 0..10 {
            let name = format!("t{t}");
            for _ in 0..3 {
                let p = e.append(&name, msg.clone(), LIMITS).await.unwrap();
                assert!(e.bytes() <= max, "{} over {max}", e.bytes());
                if p.offset == 1 {
                    firsts.push(p);
                }
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // The oldest streams lost their messages but kept their epoch: `expired`, not a
        // silent gap and not a new epoch; the newest still recover.
        let before = |p: &Position| Position {
            offset: 0,
            epoch: p.epoch.clone(),
        };
        assert!(matches!(
            e.recover("t0", &before(&firsts[0]), 100).await.unwrap(),
            Recovery::Lost {
                why: Miss::Expired,
                ..
            }
        ));
        match e.recover("t9", &before(&firsts[9]), 100).await.unwrap() {
            Recovery::Recovered { missed, .. } => assert_eq!(missed.len(), 3),
            other => panic!("{other:?}"),
        }
        // One stream alone larger than the budget keeps its newest messages within it.
        let small = MemoryEngine::new(MAX_STREAMS, 4 * (100 + ENTRY_OVERHEAD));
        let big = Limits {
            size: 100,
            ..LIMITS
        };
        for _ in 0..50 {
            small.append("one", msg.clone(), big).await.unwrap();
        }
        assert!(small.bytes() <= 4 * (100 + ENTRY_OVERHEAD));
        assert_eq!(small.top("one").await.unwrap().offset, 50);
    }

    #[tokio::test(start_paused = true)]
    async fn the_bytes_counted_follow_what_is_kept() {
        let e = MemoryEngine::default();
        e.append("a", "12345".into(), LIMITS).await.unwrap();
        e.append("a", "12345".into(), LIMITS).await.unwrap();
        let one = Stream::cost("a");
        assert_eq!(e.bytes(), one + 2 * (5 + ENTRY_OVERHEAD));
        // Past the time to live the messages are not counted once touched.
        tokio::time::advance(Duration::from_secs(61)).await;
        e.append("a", "1".into(), LIMITS).await.unwrap();
        assert_eq!(e.bytes(), one + 1 + ENTRY_OVERHEAD);
        // A forgotten stream costs nothing.
        tokio::time::advance(META_TTL + Duration::from_secs(1)).await;
        let gone = Position {
            offset: 1,
            epoch: "x".into(),
        };
        e.recover("a", &gone, 10).await.unwrap();
        assert_eq!(e.bytes(), 0);
    }
}
