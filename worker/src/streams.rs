//! Topics with history, delivered in offset order on this node. Several nodes publish to one
//! topic at once and their fan-outs race, so pushes may reach a worker out of order or not at
//! all (a worker whose interest the cluster had not heard yet). The node remembers, per topic
//! it has subscribers for, the last position it delivered: the next offset is delivered, an
//! old one is dropped as a copy, and one past a gap waits while the gap is read back from
//! history and delivered first. Subscribing a session happens under the same per-topic lock,
//! so what history replays to it and what it gets live meet without a gap or a copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ews_cluster::publish::{Delivery, Publish, Target};
use ews_history::{History, Kept, Recovery};
use ews_proto::topic::Topic;
use ews_proto::StreamPosition;

use crate::registry::{Registry, TooManyTopics};

/// A node's history: which topics keep it and the engine, and the node's place in their streams.
pub type NodeHistory = (Arc<History>, Arc<Streams>);

/// A topic's last delivered position here (`None`: none pinned yet).
type Slot = Arc<Mutex<Option<StreamPosition>>>;

/// A stream this node delivers: a topic's, or the pushes to one client id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamKey {
    Topic(Topic),
    Client(String),
}

impl StreamKey {
    /// Its name in the history engine (`@` cannot begin a topic).
    pub fn name(&self) -> String {
        match self {
            StreamKey::Topic(t) => t.as_str().to_string(),
            StreamKey::Client(c) => ews_history::History::client_stream(c),
        }
    }

    fn target(&self) -> Target {
        match self {
            StreamKey::Topic(t) => Target::topic(t.clone()),
            StreamKey::Client(c) => Target::client(c.clone()),
        }
    }

    /// Whether any session here receives it.
    fn wanted(&self, registry: &Registry) -> bool {
        match self {
            StreamKey::Topic(t) => registry.has_subscribers(t),
            StreamKey::Client(c) => registry.has_sessions_of(c),
        }
    }
}

/// Remembered streams at least allowed before those nobody here receives are forgotten.
const PRUNE_ABOVE: usize = 1024;

#[derive(Default)]
pub struct Streams {
    topics: Mutex<Remembered>,
}

/// The streams' slots, and how many may be held before the next pruning: twice what the last
/// pruning kept (at least [`PRUNE_ABOVE`]), so a node with many live streams does not scan them
/// all on every new one.
#[derive(Default)]
struct Remembered {
    slots: HashMap<StreamKey, Slot>,
    prune_at: usize,
}

/// What became of one message at this node.
#[derive(Debug)]
enum Sequenced {
    Delivered(Delivery),
    /// Delivered before (or older than what was): dropped.
    Copy,
    /// Messages after `last` are missing before it.
    Gap(StreamPosition),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn position(p: &ews_history::Position) -> StreamPosition {
    StreamPosition {
        offset: p.offset,
        epoch: p.epoch.clone(),
    }
}

fn same(a: &StreamPosition, b: &ews_history::Position) -> bool {
    a.epoch == b.epoch
}

impl Streams {
    fn slot(&self, key: &StreamKey, registry: &Registry) -> Slot {
        let mut topics = lock(&self.topics);
        if let Some(s) = topics.slots.get(key) {
            return s.clone();
        }
        if topics.slots.len() >= topics.prune_at.max(PRUNE_ABOVE) {
            topics
                .slots
                .retain(|k, s| Arc::strong_count(s) > 1 || k.wanted(registry));
            topics.prune_at = topics.slots.len() * 2;
        }
        topics.slots.entry(key.clone()).or_default().clone()
    }

    /// Delivers `p` (at `at` in `topic`'s stream) if it is the next message here.
    fn sequence(
        &self,
        registry: &Registry,
        key: &StreamKey,
        p: &Publish,
        at: &StreamPosition,
        force: bool,
    ) -> Sequenced {
        let slot = self.slot(key, registry);
        let mut last = lock(&slot);
        if let Some(l) = last.as_ref().filter(|l| !force && l.epoch == at.epoch) {
            if at.offset <= l.offset {
                return Sequenced::Copy;
            }
            if at.offset > l.offset + 1 {
                return Sequenced::Gap(l.clone());
            }
        }
        // The next one, a new epoch (the history was lost: nothing to wait for), or the first
        // this node sees.
        *last = Some(at.clone());
        // Delivered under the topic's lock: two messages of one topic never overtake each other
        // on their way into the sessions' queues.
        Sequenced::Delivered(match key {
            StreamKey::Topic(t) => registry.publish_topic_at(t, p, at),
            StreamKey::Client(c) => registry.push_client_at(c, p, at),
        })
    }

    /// Delivers a message of a topic with history here, in order: a copy is dropped, a gap
    /// before it is read back from history and delivered first. If history cannot fill the
    /// gap (unavailable, expired), the message is delivered anyway: its subscribers see the
    /// jump in offsets and recover or hear that they cannot.
    pub async fn deliver(
        &self,
        registry: &Registry,
        history: &History,
        key: &StreamKey,
        p: &Publish,
        at: &StreamPosition,
    ) -> Delivery {
        let name = key.name();
        for _ in 0..3 {
            let last = match self.sequence(registry, key, p, at, false) {
                Sequenced::Delivered(d) => return d,
                Sequenced::Copy => return Delivery::default(),
                Sequenced::Gap(last) => last,
            };
            let from = ews_history::Position {
                offset: last.offset,
                epoch: last.epoch.clone(),
            };
            let missed = match history
                .engine()
                .recover(&name, &from, history.recover_max)
                .await
            {
                Ok(Recovery::Recovered { missed, .. }) => missed,
                Ok(Recovery::Lost { why, .. }) => {
                    tracing::warn!(stream = name, %why, "a gap history cannot fill");
                    break;
                }
                Err(e) => {
                    tracing::warn!(stream = name, error = %e, "cannot fill a gap");
                    break;
                }
            };
            let before = missed.into_iter().filter(|m| m.offset < at.offset);
            self.replay(registry, key, before, &at.epoch);
        }
        match self.sequence(registry, key, p, at, true) {
            Sequenced::Delivered(d) => d,
            _ => Delivery::default(),
        }
    }

    /// Subscribes session `id` to `topic` at the node's position in its stream, `read` being
    /// where history stood when the session's recovery read it: the node's position is the
    /// answer (what the session gets live follows it; what it needs up to it comes from
    /// history). A node without a position takes `read`.
    pub fn subscribe_at(
        &self,
        registry: &Registry,
        (id, max): (u64, usize),
        topic: &Topic,
        read: &ews_history::Position,
    ) -> Result<(u64, StreamPosition), TooManyTopics> {
        self.pin(registry, &StreamKey::Topic(topic.clone()), read, |_| {
            registry.subscribe(id, topic, max)
        })
    }

    /// Runs `join` (which makes a session a receiver of `key`) under the stream's lock, at the
    /// node's position (a node without one takes `read`, where history stood): deliveries
    /// before it reached the session no longer, those after it will.
    pub fn pin<T, E>(
        &self,
        registry: &Registry,
        key: &StreamKey,
        read: &ews_history::Position,
        join: impl FnOnce(&StreamPosition) -> Result<T, E>,
    ) -> Result<(T, StreamPosition), E> {
        let slot = self.slot(key, registry);
        let mut last = lock(&slot);
        let here = match last.as_ref() {
            Some(l) if same(l, read) => l.clone(),
            // None yet, or another epoch: history's word is the newer one.
            _ => {
                let p = position(read);
                *last = Some(p.clone());
                p
            }
        };
        let joined = join(&here)?;
        Ok((joined, here))
    }

    /// After a subscribe: what history holds past this node's position, delivered (messages
    /// published while the cluster had not heard of this node's interest yet).
    pub async fn catch_up(&self, registry: &Registry, history: &History, key: &StreamKey) {
        let name = key.name();
        let Ok(top) = history.engine().top(&name).await else {
            return;
        };
        let here = lock(&self.slot(key, registry)).clone();
        let Some(here) = here.filter(|h| same(h, &top) && h.offset < top.offset) else {
            return;
        };
        let from = ews_history::Position {
            offset: here.offset,
            epoch: here.epoch,
        };
        let Ok(Recovery::Recovered { missed, .. }) = history
            .engine()
            .recover(&name, &from, history.recover_max)
            .await
        else {
            return;
        };
        self.replay(registry, key, missed, &top.epoch);
    }

    /// Delivers messages read back from history (of `epoch`) in their order.
    fn replay(
        &self,
        registry: &Registry,
        key: &StreamKey,
        missed: impl IntoIterator<Item = ews_history::Entry>,
        epoch: &str,
    ) {
        for m in missed {
            let Some(kept) = Kept::parse(&m.data) else {
                continue;
            };
            let p = Publish {
                target: key.target(),
                msg: kept.msg,
                id: None,
                from: kept.from,
                at: None,
            };
            let at = StreamPosition {
                offset: m.offset,
                epoch: epoch.to_string(),
            };
            let _ = self.sequence(registry, key, &p, &at, false);
        }
    }
}
