//! The sessions open on this node, by id, by client id and by topic, so the admin API can list
//! them, push to a client or a topic, and answer presence. Each session's pushed messages wait in a small bounded queue; the overflow
//! policy is *drop the newest and tell the publisher*: a slow reader never makes the node buffer
//! without bound, and never stalls the publisher.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ews_proto::{ClientInfo, ServerFrame, StreamPosition, CLOSE_LAGGED};

use crate::ids::{ClientId, NodeId, SessionId};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use ews_cluster::command::{
    Disconnect, PresenceEvent, TopicChange, TopicCounts, MAX_TOPICS_LISTED,
};
use ews_cluster::presence::{About, Here, Query};
use ews_cluster::publish::{Delivery, Publish, RecentIds, Target};
use ews_proto::topic::Topic;
use tokio::sync::watch;

/// The part of a session other tasks can reach.
pub struct SessionShared {
    pub id: u64,
    pub client_id: Option<ClientId>,
    pub route: Arc<str>,
    pub peer: SocketAddr,
    pub connected_at_ms: i64,
    /// The node running the session's handler (this one unless its route places it elsewhere).
    pub handler_node: NodeId,
    outbound: Mutex<VecDeque<Utf8Bytes>>,
    capacity: usize,
    /// Set when the node moves the session elsewhere (rebalancing); read by the session on wake.
    moving: AtomicBool,
    /// Set (under the outbound lock) once the session has said goodbye: it takes no more pushes.
    /// Beside `moving`, so it costs an idle session no bytes.
    closed: AtomicBool,
    /// Its route announces presence: its topic joins and leaves are told to the topics'
    /// other such subscribers, and it hears theirs.
    pub presence: bool,
    /// The backend asked to close it (`POST /api/v1/disconnect`): the code and reason.
    kicked: OnceLock<Box<(u16, String)>>,
    /// What the route's `connect` hook said about the client, for presence (a pointer: an
    /// idle session without one carries 8 bytes for it).
    pub info: Option<ClientInfo>,
    pub wake: Notify,
}

impl SessionShared {
    /// A session's shared part. Registered sessions get theirs from [`Registry::register`]; a
    /// handler run for another node's socket has one of its own that nothing publishes to.
    pub fn new(
        id: SessionId,
        client_id: Option<ClientId>,
        route: Arc<str>,
        peer: SocketAddr,
        handler_node: NodeId,
        outbound_capacity: usize,
    ) -> SessionShared {
        SessionShared {
            id: id.0,
            client_id,
            route,
            peer,
            connected_at_ms: crate::ids::now_ms(),
            handler_node,
            outbound: Mutex::new(VecDeque::new()),
            capacity: outbound_capacity.max(1),
            moving: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            presence: false,
            kicked: OnceLock::new(),
            info: None,
            wake: Notify::new(),
        }
    }

    /// What its backend said about the client (see [`SessionShared::info`]).
    pub fn with_info(mut self, info: Option<ClientInfo>) -> SessionShared {
        self.info = info;
        self
    }

    /// The session's route announces presence (see [`SessionShared::presence`]).
    pub fn with_presence(mut self, presence: bool) -> SessionShared {
        self.presence = presence;
        self
    }

    /// Asks the session to close with `code` and `reason` (the first ask wins); false if it was
    /// already asked.
    pub fn kick(&self, code: u16, reason: &str) -> bool {
        let first = self
            .kicked
            .set(Box::new((code, reason.to_string())))
            .is_ok();
        if first {
            self.wake.notify_one();
        }
        first
    }

    /// The close the backend asked for, if it did.
    pub fn kicked(&self) -> Option<(u16, &str)> {
        self.kicked.get().map(|k| (k.0, k.1.as_str()))
    }

    /// Queues a pushed message: `Full` (dropped) when the queue is full, `Closed` once the
    /// session has said goodbye (it is no longer a receiver).
    pub fn push(&self, msg: Utf8Bytes) -> Pushed {
        let Ok(mut q) = self.outbound.lock() else {
            return Pushed::Closed;
        };
        if self.closed.load(Ordering::Acquire) {
            return Pushed::Closed;
        }
        if q.len() >= self.capacity {
            return Pushed::Full;
        }
        q.push_back(msg);
        drop(q);
        self.wake.notify_one();
        Pushed::Queued
    }

    pub fn pop(&self) -> Option<Utf8Bytes> {
        self.outbound.lock().ok()?.pop_front()
    }

    /// What is still queued, taken as the session closes: from here on it takes no push, so a
    /// push is either written before the close frame or not counted as delivered.
    pub fn close_outbound(&self) -> VecDeque<Utf8Bytes> {
        let Ok(mut q) = self.outbound.lock() else {
            return VecDeque::new();
        };
        self.closed.store(true, Ordering::Release);
        std::mem::take(&mut *q)
    }

    /// Asks the session to close with 1012 `rebalance`; false if it was already asked.
    pub fn request_move(&self) -> bool {
        let first = !self.moving.swap(true, Ordering::AcqRel);
        if first {
            self.wake.notify_one();
        }
        first
    }

    /// Whether the node asked the session to move.
    pub fn is_moving(&self) -> bool {
        self.moving.load(Ordering::Acquire)
    }
}

/// What became of one push to one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The session's queue was full: dropped, and the publisher told.
    Full,
    /// The session is closing: not a receiver any more.
    Closed,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: u64,
    pub client_id: Option<String>,
    pub route: String,
    pub peer: String,
    pub connected_at: i64,
    pub handler_node: String,
}

pub struct Registry {
    inner: Mutex<Inner>,
    /// Publish ids delivered lately: a retried publish is not delivered twice.
    recent: Mutex<RecentIds>,
    /// Bumped whenever a topic gains its first or loses its last subscriber on this node: what
    /// the node tells the cluster as its interest.
    topics_changed: watch::Sender<u64>,
    /// The `topics_changed` value the cluster has been told of (see [`Registry::advertised`]).
    advertised: watch::Sender<u64>,
    /// Set when a cluster routes topic publishes by this node's announced interest.
    announcing: AtomicBool,
    next_id: AtomicU64,
    /// Clients the backend disconnected with a ban, until when.
    banned: Mutex<HashMap<ClientId, tokio::time::Instant>>,
    /// Join/leave events of presence-announcing sessions, waiting for the next flush.
    presence_out: Mutex<Vec<PresenceEvent>>,
    /// Join/leave events dropped at a full `presence_out` since the last flush.
    presence_dropped: AtomicU64,
    pub presence_ready: Notify,
}

/// Most clients a node remembers as banned; past it the one banned soonest to end is forgotten.
const MAX_BANNED: usize = 100_000;
/// Most join/leave events waiting for a flush; past it new ones are dropped (and counted).
pub const MAX_PRESENCE_PENDING: usize = 100_000;

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            inner: Mutex::default(),
            recent: Mutex::default(),
            topics_changed: watch::Sender::new(0),
            advertised: watch::Sender::new(0),
            announcing: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            banned: Mutex::default(),
            presence_out: Mutex::default(),
            presence_dropped: AtomicU64::new(0),
            presence_ready: Notify::new(),
        }
    }
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<u64, Arc<SessionShared>>,
    by_client: HashMap<ClientId, Vec<u64>>,
    /// Subscribers per topic.
    by_topic: HashMap<Topic, HashSet<u64>>,
    /// Topics per session, for sessions that have any (an idle session without topics costs
    /// nothing here).
    topics_of: HashMap<u64, Vec<Topic>>,
}

/// A subscribe past the per-session limit.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyTopics;

impl Registry {
    /// A session id no other session of this node has had.
    pub fn new_id(&self) -> SessionId {
        SessionId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Lists `s` (made with an id from [`Registry::new_id`]): from now on publishes reach it.
    pub fn register(&self, s: SessionShared) -> Arc<SessionShared> {
        let s = Arc::new(s);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.by_id.insert(s.id, s.clone());
        if let Some(c) = &s.client_id {
            g.by_client.entry(c.clone()).or_default().push(s.id);
        }
        s
    }

    pub fn unregister(&self, s: &SessionShared) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.by_id.remove(&s.id);
        if let Some(c) = &s.client_id {
            if let Some(ids) = g.by_client.get_mut(c) {
                ids.retain(|&i| i != s.id);
                if ids.is_empty() {
                    g.by_client.remove(c);
                }
            }
        }
        let mut changed = false;
        let mut left = Vec::new();
        for t in g.topics_of.remove(&s.id).unwrap_or_default() {
            changed |= Inner::leave(&mut g.by_topic, &t, s.id);
            if let Some(e) = g.presence_change(s, &t, false) {
                left.push(e);
            }
        }
        drop(g);
        if changed {
            self.topics_changed.send_modify(|v| *v += 1);
        }
        self.announce(left);
    }

    /// Subscribes session `id` to `topic` (again: no change); at most `max` topics a session.
    /// Subscribes session `id` to `topic`. The answer is the topic-set change to wait for with
    /// [`Registry::advertised`] before the session may say it is reachable cluster-wide.
    pub fn subscribe(&self, id: u64, topic: &Topic, max: usize) -> Result<u64, TooManyTopics> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mine = g.topics_of.entry(id).or_default();
        if mine.contains(topic) {
            return Ok(*self.topics_changed.borrow());
        }
        if mine.len() >= max {
            if mine.is_empty() {
                g.topics_of.remove(&id);
            }
            return Err(TooManyTopics);
        }
        mine.push(topic.clone());
        let subscribers = g.by_topic.entry(topic.clone()).or_default();
        subscribers.insert(id);
        let first = subscribers.len() == 1;
        if first {
            self.topics_changed.send_modify(|v| *v += 1);
        }
        // Read under the lock: a later change's number never stands for this one.
        let seq = *self.topics_changed.borrow();
        let joined = g
            .by_id
            .get(&id)
            .cloned()
            .and_then(|s| g.presence_change(&s, topic, true));
        drop(g);
        self.announce(joined);
        Ok(seq)
    }

    /// From now on this node's topic interest is announced to the cluster (a clustered worker
    /// with a cluster secret): [`Registry::advertised`] waits for the announcements.
    pub fn announce_interest(&self) {
        self.announcing.store(true, Ordering::Release);
    }

    /// Records that the cluster routes by the topic set as of change `seq`.
    pub fn mark_advertised(&self, seq: u64) {
        self.advertised.send_if_modified(|v| {
            let newer = seq > *v;
            if newer {
                *v = seq;
            }
            newer
        });
    }

    /// Resolves once every peer routes topic publishes by this node's topic set as of change
    /// `seq` (or the announcement gave up on the peers that did not answer, after
    /// `ews_cluster::ANNOUNCE_TIMEOUT`); at once outside a cluster.
    pub async fn advertised(&self, seq: u64) {
        if !self.announcing.load(Ordering::Acquire) {
            return;
        }
        let mut rx = self.advertised.subscribe();
        let wait = rx.wait_for(|v| *v >= seq);
        // The announcement bounds itself; this bound only guards against a reporter that
        // stopped (the node is shutting down).
        let _ = tokio::time::timeout(ews_cluster::ANNOUNCE_TIMEOUT * 2, wait).await;
    }

    /// Unsubscribes session `id` from `topic` (not subscribed: no change).
    pub fn unsubscribe(&self, id: u64, topic: &Topic) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mine) = g.topics_of.get_mut(&id) else {
            return;
        };
        let before = mine.len();
        mine.retain(|t| t != topic);
        if mine.len() == before {
            return;
        }
        if mine.is_empty() {
            g.topics_of.remove(&id);
        }
        let last = Inner::leave(&mut g.by_topic, topic, id);
        let left = g
            .by_id
            .get(&id)
            .cloned()
            .and_then(|s| g.presence_change(&s, topic, false));
        drop(g);
        if last {
            self.topics_changed.send_modify(|v| *v += 1);
        }
        self.announce(left);
    }

    /// Queues join/leave events for the next flush (past [`MAX_PRESENCE_PENDING`] dropped, and
    /// counted for the next flush to report).
    fn announce(&self, events: impl IntoIterator<Item = PresenceEvent>) {
        let mut q = self.presence_out.lock().unwrap_or_else(|p| p.into_inner());
        let before = q.len();
        for e in events {
            if q.len() < MAX_PRESENCE_PENDING {
                q.push(e);
            } else {
                self.presence_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if q.len() > before {
            self.presence_ready.notify_one();
        }
    }

    /// The join/leave events since the last call, coalesced (a client that joined and left a
    /// topic, or left and came back, since then is not announced at all), and how many were
    /// dropped at a full queue meanwhile.
    pub fn take_presence_events(&self) -> (Vec<PresenceEvent>, u64) {
        let events =
            std::mem::take(&mut *self.presence_out.lock().unwrap_or_else(|p| p.into_inner()));
        let dropped = self.presence_dropped.swap(0, Ordering::Relaxed);
        (coalesce(events), dropped)
    }

    /// Delivers join/leave events to this node's presence-announcing subscribers of each topic
    /// (not to the client the event is about); the answer counts the frames queued.
    pub fn deliver_presence(&self, events: &[PresenceEvent]) -> Delivery {
        // One look at the index for the whole batch; the frames are queued outside the lock.
        let batch: Vec<(Vec<Arc<SessionShared>>, &PresenceEvent)> = {
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            events
                .iter()
                .map(|e| {
                    let on_topic = g.by_topic.get(&e.topic).into_iter().flatten();
                    let targets = on_topic
                        .filter_map(|i| g.by_id.get(i))
                        .filter(|s| s.presence && s.client_id.as_deref() != Some(&e.client_id))
                        .cloned()
                        .collect();
                    (targets, e)
                })
                .collect()
        };
        let mut all = Delivery::default();
        for (targets, e) in batch {
            let (topic, client_id) = (e.topic.as_str().to_string(), e.client_id.clone());
            let info = e.info.clone();
            let frame = if e.joined {
                ServerFrame::Join {
                    topic,
                    client_id,
                    info,
                }
            } else {
                ServerFrame::Leave {
                    topic,
                    client_id,
                    info,
                }
            };
            all.add_counts(&deliver(targets, frame));
        }
        all
    }

    /// Asks one session (an arbitrary one: the index's hash order) that has not been asked yet
    /// to move (close with 1012 `rebalance`); false if there is none.
    pub fn move_one(&self) -> bool {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.by_id.values().any(|s| s.request_move())
    }

    /// Delivers a publish to this node's sessions (of its clients, or on its topics).
    pub fn publish(&self, p: &Publish) -> Delivery {
        let deliver = || {
            let mut all = Delivery::default();
            match &p.target {
                Target::Clients(cs) => cs
                    .iter()
                    .for_each(|c| all.add_counts(&self.push_from(c, p))),
                Target::Topics(ts) => ts
                    .iter()
                    .for_each(|t| all.add_counts(&self.topic_from(t, p))),
            }
            all
        };
        let Some(id) = &p.id else {
            return deliver();
        };
        // Held across the delivery: two copies of one id arriving at once deliver once.
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.contains(id) {
            return Delivery::duplicate();
        }
        let d = deliver();
        if d.delivered > 0 {
            recent.remember(id);
        }
        d
    }

    /// Pushes `msg` to every session subscribed to `topic` on this node.
    #[cfg(test)]
    pub fn publish_topic(&self, topic: &Topic, msg: &str) -> Delivery {
        self.publish(&Publish {
            target: Target::topic(topic.clone()),
            msg: msg.to_string(),
            id: None,
            from: None,
            at: None,
        })
    }

    fn topic_from(&self, topic: &Topic, p: &Publish) -> Delivery {
        deliver(
            self.subscribers(topic),
            ServerFrame::Push {
                msg: p.msg.clone(),
                topic: Some(topic.as_str().to_string()),
                from: p.from.clone(),
                offset: None,
                epoch: None,
            },
        )
    }

    /// Pushes a message of a topic with history (at `at` in its stream) to this node's
    /// subscribers. A subscriber whose queue is full cannot take it and would be left with a
    /// gap: it is closed (4010) to reconnect and recover the rest from history.
    pub fn publish_topic_at(&self, topic: &Topic, p: &Publish, at: &StreamPosition) -> Delivery {
        let frame = ServerFrame::Push {
            msg: p.msg.clone(),
            topic: Some(topic.as_str().to_string()),
            from: p.from.clone(),
            offset: Some(at.offset),
            epoch: Some(at.epoch.clone()),
        };
        lagging_deliver(self.subscribers(topic), frame)
    }

    /// Pushes a message to client `client_id` with history (at `at` in its stream) to its
    /// sessions here; one whose queue is full is closed (4010) to resume from history.
    pub fn push_client_at(&self, client_id: &str, p: &Publish, at: &StreamPosition) -> Delivery {
        let frame = ServerFrame::Push {
            msg: p.msg.clone(),
            topic: None,
            from: p.from.clone(),
            offset: Some(at.offset),
            epoch: Some(at.epoch.clone()),
        };
        lagging_deliver(self.sessions_of(client_id), frame)
    }

    /// Whether client `client_id` has a session here.
    pub fn has_sessions_of(&self, client_id: &str) -> bool {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.by_client.contains_key(client_id)
    }

    /// This node's subscribers of `topic`.
    fn subscribers(&self, topic: &Topic) -> Vec<Arc<SessionShared>> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match g.by_topic.get(topic) {
            Some(ids) => ids.iter().filter_map(|i| g.by_id.get(i).cloned()).collect(),
            None => Vec::new(),
        }
    }

    /// Whether any session here is subscribed to `topic`.
    pub fn has_subscribers(&self, topic: &Topic) -> bool {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.by_topic.contains_key(topic)
    }

    /// This node's sessions of `client_id`.
    fn sessions_of(&self, client_id: &str) -> Vec<Arc<SessionShared>> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let ids = g.by_client.get(client_id).map(Vec::as_slice).unwrap_or(&[]);
        ids.iter().filter_map(|i| g.by_id.get(i).cloned()).collect()
    }

    fn push_from(&self, client_id: &str, p: &Publish) -> Delivery {
        deliver(
            self.sessions_of(client_id),
            ServerFrame::Push {
                msg: p.msg.clone(),
                topic: None,
                from: p.from.clone(),
                offset: None,
                epoch: None,
            },
        )
    }

    /// Closes this node's sessions of the client as the backend asks (see [`Disconnect`]) and,
    /// with a ban, refuses its upgrades for that long; `delivered` counts the sessions asked.
    pub fn disconnect(&self, d: &Disconnect) -> Delivery {
        if d.ban_secs > 0 {
            self.ban(&d.client_id, Duration::from_secs(d.ban_secs));
        }
        let asked = self
            .sessions_of(&d.client_id)
            .iter()
            .filter(|s| s.kick(d.code, &d.reason))
            .count();
        Delivery::counts(asked, 0)
    }

    fn ban(&self, client: &str, secs: Duration) {
        let now = tokio::time::Instant::now();
        let mut b = self.banned.lock().unwrap_or_else(|p| p.into_inner());
        b.retain(|_, until| *until > now);
        if b.len() >= MAX_BANNED {
            if let Some(first) = b.iter().min_by_key(|(_, u)| **u).map(|(c, _)| c.clone()) {
                b.remove(&first);
            }
        }
        b.insert(ClientId::from(client.to_string()), now + secs);
    }

    /// How much longer `client` is refused, if the backend banned it.
    pub fn banned(&self, client: &ClientId) -> Option<Duration> {
        let b = self.banned.lock().unwrap_or_else(|p| p.into_inner());
        let left = b
            .get(client)?
            .checked_duration_since(tokio::time::Instant::now())?;
        (!left.is_zero()).then_some(left)
    }

    /// Subscribes this node's sessions of the client to the topic, the backend's decision (no
    /// grants apply), and tells each `subscribed`; `dropped` counts those at the topic limit.
    /// Waits until the cluster routes the topic here.
    pub async fn subscribe_client(&self, c: &TopicChange, max: usize) -> Delivery {
        let mut d = Delivery::default();
        let mut wait = None;
        for s in self.sessions_of(&c.client_id) {
            match self.subscribe(s.id, &c.topic, max) {
                Ok(seq) => {
                    wait = wait.max(Some(seq));
                    let f = ServerFrame::Subscribed {
                        topic: c.topic.as_str().to_string(),
                        offset: None,
                        epoch: None,
                        recovered: None,
                        reason: None,
                    };
                    // A full queue still leaves the session subscribed: it simply hears of it
                    // through the pushes that follow.
                    let _ = s.push(Utf8Bytes::from(f.to_text()));
                    d.delivered += 1;
                }
                Err(TooManyTopics) => d.dropped += 1,
            }
        }
        if let Some(seq) = wait {
            self.advertised(seq).await;
        }
        d
    }

    /// Unsubscribes this node's sessions of the client from the topic and tells each
    /// `unsubscribed` (also those that were not subscribed).
    pub fn unsubscribe_client(&self, c: &TopicChange) -> Delivery {
        let sessions = self.sessions_of(&c.client_id);
        for s in &sessions {
            self.unsubscribe(s.id, &c.topic);
            let f = ServerFrame::Unsubscribed {
                topic: c.topic.as_str().to_string(),
            };
            let _ = s.push(Utf8Bytes::from(f.to_text()));
        }
        Delivery::counts(sessions.len(), 0)
    }

    /// This node's topics with their subscriber counts (the largest [`MAX_TOPICS_LISTED`]).
    pub fn topic_counts(&self) -> TopicCounts {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(&Topic, usize)> = g.by_topic.iter().map(|(t, s)| (t, s.len())).collect();
        let truncated = all.len() > MAX_TOPICS_LISTED;
        if truncated {
            all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            all.truncate(MAX_TOPICS_LISTED);
        }
        TopicCounts {
            topics: all
                .into_iter()
                .map(|(t, n)| (t.as_str().to_string(), n))
                .collect(),
            truncated,
            failed: Vec::new(),
        }
    }

    /// The topics this node has subscribers for.
    pub fn topics(&self) -> Vec<Topic> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.by_topic.keys().cloned().collect()
    }

    /// Changes whenever [`Registry::topics`] does.
    pub fn watch_topics(&self) -> watch::Receiver<u64> {
        self.topics_changed.subscribe()
    }

    /// This node's sessions for a presence query.
    pub fn presence(&self, q: &Query) -> Here {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let ids: Vec<u64> = match &q.about {
            About::Topic(t) => g
                .by_topic
                .get(t)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default(),
            About::Client(c) => g.by_client.get(c.as_str()).cloned().unwrap_or_default(),
        };
        Here::of(
            q,
            ids.iter()
                .filter_map(|i| g.by_id.get(i))
                .map(|s| s.client_id.as_deref().map(|c| (c, s.info.as_ref()))),
        )
    }

    /// Pushes `msg` to every session of `client_id` on this node (none: all counts zero).
    #[cfg(test)]
    pub fn push(&self, client_id: &str, msg: &str) -> Delivery {
        self.publish(&Publish {
            target: Target::client(client_id),
            msg: msg.to_string(),
            id: None,
            from: None,
            at: None,
        })
    }

    pub fn list(&self) -> Vec<SessionInfo> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<SessionInfo> = g
            .by_id
            .values()
            .map(|s| SessionInfo {
                id: s.id,
                client_id: s.client_id.as_deref().map(str::to_string),
                route: s.route.to_string(),
                peer: s.peer.to_string(),
                connected_at: s.connected_at_ms,
                handler_node: s.handler_node.to_string(),
            })
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }
}

impl Inner {
    /// The join (leave) event of session `s` joining (having left) `topic`, when its route
    /// announces presence and no other session of its client on this node is on the topic.
    fn presence_change(
        &self,
        s: &SessionShared,
        topic: &Topic,
        joined: bool,
    ) -> Option<PresenceEvent> {
        let client = s.client_id.as_ref().filter(|_| s.presence)?;
        let on_topic = self.by_topic.get(topic);
        let others = self
            .by_client
            .get(client)
            .into_iter()
            .flatten()
            .any(|&i| i != s.id && on_topic.is_some_and(|t| t.contains(&i)));
        (!others).then(|| PresenceEvent {
            topic: topic.clone(),
            client_id: client.to_string(),
            joined,
            info: s.info.clone(),
        })
    }

    /// Removes `id` from `topic`'s subscribers; true if it was the last one.
    fn leave(by_topic: &mut HashMap<Topic, HashSet<u64>>, topic: &Topic, id: u64) -> bool {
        let Some(subscribers) = by_topic.get_mut(topic) else {
            return false;
        };
        subscribers.remove(&id);
        if subscribers.is_empty() {
            by_topic.remove(topic);
            return true;
        }
        false
    }
}

/// Join/leave events with each (topic, client)'s changes netted out: the last event stands
/// unless it undoes the first (a join then a leave, a leave then a join), in which case nobody
/// needs to hear of either. Order of first appearance is kept.
fn coalesce(events: Vec<PresenceEvent>) -> Vec<PresenceEvent> {
    type Net = (usize, bool, bool, Option<ClientInfo>);
    let mut net: HashMap<(Topic, String), Net> = HashMap::new();
    for (i, e) in events.into_iter().enumerate() {
        net.entry((e.topic, e.client_id))
            .and_modify(|(_, _, last, info)| {
                *last = e.joined;
                *info = e.info.clone();
            })
            .or_insert((i, e.joined, e.joined, e.info));
    }
    let mut kept: Vec<(usize, PresenceEvent)> = net
        .into_iter()
        .filter(|(_, (_, first, last, _))| first == last)
        .map(|((topic, client_id), (i, _, joined, info))| {
            (
                i,
                PresenceEvent {
                    topic,
                    client_id,
                    joined,
                    info,
                },
            )
        })
        .collect();
    kept.sort_by_key(|(i, _)| *i);
    kept.into_iter().map(|(_, e)| e).collect()
}

/// [`deliver`] for a message with history: a receiver whose queue is full cannot take it and
/// would be left with a gap, so it is closed (4010) to reconnect and recover from history.
fn lagging_deliver(targets: Vec<Arc<SessionShared>>, frame: ServerFrame) -> Delivery {
    deliver_to(targets, frame, |s| {
        s.kick(CLOSE_LAGGED, "lagged: reconnect and recover");
    })
}

/// Queues `frame` for each of `targets`, counting who took it and whose queue was full.
fn deliver(targets: Vec<Arc<SessionShared>>, frame: ServerFrame) -> Delivery {
    deliver_to(targets, frame, |_| {})
}

/// Queues `frame` (serialised once) for each of `targets`; `full` hears of each one whose queue
/// could not take it.
fn deliver_to(
    targets: Vec<Arc<SessionShared>>,
    frame: ServerFrame,
    full: impl Fn(&SessionShared),
) -> Delivery {
    let mut r = Delivery::default();
    if targets.is_empty() {
        return r;
    }
    let frame = Utf8Bytes::from(frame.to_text());
    for s in targets {
        match s.push(frame.clone()) {
            Pushed::Queued => r.delivered += 1,
            Pushed::Full => {
                r.dropped += 1;
                full(&s);
            }
            Pushed::Closed => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(delivered: usize, dropped: usize) -> Delivery {
        Delivery::counts(delivered, dropped)
    }

    /// A session of `client` on `/ws`, registered in `r`, with room for `capacity` pushes.
    fn session(r: &Registry, client: &str, capacity: usize) -> Arc<SessionShared> {
        let peer: SocketAddr = ([127, 0, 0, 1], 1).into();
        let s = SessionShared::new(
            r.new_id(),
            Some(client.into()),
            "/ws".into(),
            peer,
            "w".into(),
            capacity,
        );
        r.register(s)
    }

    #[test]
    fn push_is_bounded_per_session() {
        let r = Registry::default();
        let a = session(&r, "alice", 2);
        assert_eq!(r.push("bob", "x"), counts(0, 0));
        assert_eq!(r.push("alice", "1"), counts(1, 0));
        assert_eq!(r.push("alice", "2"), counts(1, 0));
        assert_eq!(r.push("alice", "3"), counts(0, 1));
        assert!(a.pop().is_some());
        assert_eq!(r.list().len(), 1);
        r.unregister(&a);
        assert!(r.list().is_empty());
        assert_eq!(r.push("alice", "4"), counts(0, 0));
    }

    /// Outside a cluster nothing is announced: no wait. Announcing, a subscriber waits until
    /// its change is marked advertised (or the bound passes).
    #[tokio::test(start_paused = true)]
    async fn subscribed_waits_for_its_change_to_be_announced() {
        let r = Arc::new(Registry::default());
        r.advertised(5).await;
        r.announce_interest();
        let waiting = tokio::spawn({
            let r = r.clone();
            async move { r.advertised(2).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        r.mark_advertised(1);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert!(!waiting.is_finished(), "change 1 is not change 2");
        r.mark_advertised(2);
        tokio::time::timeout(std::time::Duration::from_millis(10), waiting)
            .await
            .expect("released by its change")
            .unwrap();
        // Already announced: at once.
        tokio::time::timeout(std::time::Duration::from_millis(1), r.advertised(2))
            .await
            .expect("at once");
    }

    #[test]
    fn topics_index_sessions_and_follow_them_out() {
        let r = Registry::default();
        let mut changes = r.watch_topics();
        let a = session(&r, "alice", 4);
        let b = session(&r, "bob", 4);
        let news = Topic::parse("news").unwrap();
        let chat = Topic::parse("chat").unwrap();
        // Each answer is the topic-set change a subscriber waits to see announced.
        assert_eq!(r.subscribe(a.id, &news, 2), Ok(1));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert_eq!(r.subscribe(b.id, &news, 2), Ok(1));
        assert_eq!(r.subscribe(a.id, &news, 2), Ok(1), "again: no change");
        assert!(
            !changes.has_changed().unwrap(),
            "news already had subscribers"
        );
        assert_eq!(r.subscribe(a.id, &chat, 2), Ok(2));
        let three = Topic::parse("three").unwrap();
        assert_eq!(r.subscribe(a.id, &three, 2), Err(TooManyTopics));
        assert_eq!(r.publish_topic(&news, "n"), counts(2, 0));
        assert_eq!(r.publish_topic(&three, "x"), counts(0, 0));
        assert_eq!(
            a.pop().as_deref(),
            Some(r#"{"type":"push","msg":"n","topic":"news"}"#)
        );
        let here = r.presence(&Query::first(About::Topic(news.clone())));
        assert_eq!(
            (here.sessions, here.clients.clone()),
            (2, vec!["alice".to_string(), "bob".to_string()])
        );
        r.unsubscribe(b.id, &news);
        assert_eq!(
            r.presence(&Query::first(About::Topic(news.clone())))
                .sessions,
            1
        );
        changes.mark_unchanged();
        r.unregister(&a);
        assert!(
            changes.has_changed().unwrap(),
            "news and chat lost their last subscriber"
        );
        assert!(r.topics().is_empty());
        assert_eq!(r.publish_topic(&news, "n"), counts(0, 0));
        assert_eq!(
            r.presence(&Query::first(About::Client("bob".into())))
                .sessions,
            1
        );
    }

    #[test]
    fn presence_sessions_announce_joins_and_leaves_coalesced_to_the_others() {
        let r = Registry::default();
        let room = Topic::parse("room").unwrap();
        let peer: SocketAddr = ([127, 0, 0, 1], 1).into();
        let info = |name: &str| {
            let v = serde_json::json!({ "name": name });
            ClientInfo::try_from(v.as_object().cloned().unwrap()).unwrap()
        };
        let with_presence = |client: &str| {
            r.register(
                SessionShared::new(
                    r.new_id(),
                    Some(client.into()),
                    "/c".into(),
                    peer,
                    "w".into(),
                    8,
                )
                .with_presence(true)
                .with_info(Some(info(client))),
            )
        };
        let a = with_presence("alice");
        let b = with_presence("bob");
        let quiet = session(&r, "carol", 8);
        r.subscribe(a.id, &room, 4).unwrap();
        r.subscribe(quiet.id, &room, 4).unwrap();
        // Bob joins and leaves within one flush: nobody hears of it.
        r.subscribe(b.id, &room, 4).unwrap();
        r.unsubscribe(b.id, &room);
        let events = r.take_presence_events().0;
        assert_eq!(
            events,
            vec![PresenceEvent {
                topic: room.clone(),
                client_id: "alice".into(),
                joined: true,
                info: Some(info("alice")),
            }]
        );
        r.subscribe(b.id, &room, 4).unwrap();
        let events = r.take_presence_events().0;
        // Delivered to presence sessions on the topic other than the subject: alice only.
        assert_eq!(r.deliver_presence(&events).delivered, 1);
        assert_eq!(
            a.pop().as_deref(),
            Some(r#"{"type":"join","topic":"room","clientId":"bob","info":{"name":"bob"}}"#)
        );
        assert_eq!(quiet.pop(), None, "a route without presence hears nothing");
        // A second session of bob's on the topic is no new join; its last one leaving is a leave.
        let b2 = with_presence("bob");
        r.subscribe(b2.id, &room, 4).unwrap();
        assert!(r.take_presence_events().0.is_empty());
        r.unregister(&b);
        assert!(r.take_presence_events().0.is_empty());
        r.unregister(&b2);
        let left = r.take_presence_events().0;
        assert_eq!((left.len(), left[0].joined), (1, false));
    }

    #[test]
    fn one_publish_reaches_many_topics_and_many_clients_naming_its_sender() {
        let r = Registry::default();
        let a = session(&r, "alice", 8);
        let b = session(&r, "bob", 8);
        let (x, y) = (Topic::parse("x").unwrap(), Topic::parse("y").unwrap());
        r.subscribe(a.id, &x, 4).unwrap();
        r.subscribe(a.id, &y, 4).unwrap();
        r.subscribe(b.id, &y, 4).unwrap();
        let p = Publish {
            target: Target::Topics(vec![x, y]),
            msg: "m".into(),
            id: None,
            from: Some("carol".into()),
            at: None,
        };
        // Alice is on both topics: one push per topic.
        assert_eq!(r.publish(&p), counts(3, 0));
        assert_eq!(
            a.pop().as_deref(),
            Some(r#"{"type":"push","msg":"m","topic":"x","from":"carol"}"#)
        );
        let to_clients = Publish {
            target: Target::Clients(vec!["alice".into(), "bob".into(), "nobody".into()]),
            msg: "n".into(),
            id: None,
            from: None,
            at: None,
        };
        assert_eq!(r.publish(&to_clients), counts(2, 0));
    }

    #[tokio::test]
    async fn the_backend_subscribes_a_clients_sessions_and_lists_topics() {
        let r = Registry::default();
        let a = session(&r, "alice", 8);
        let _second = session(&r, "alice", 8);
        let news = Topic::parse("news").unwrap();
        let change = TopicChange {
            client_id: "alice".into(),
            topic: news.clone(),
        };
        assert_eq!(r.subscribe_client(&change, 1).await, counts(2, 0));
        assert_eq!(
            a.pop().as_deref(),
            Some(r#"{"type":"subscribed","topic":"news"}"#)
        );
        assert_eq!(r.topic_counts().topics["news"], 2);
        // At its topic limit a session is not subscribed: counted as dropped.
        let other = TopicChange {
            client_id: "alice".into(),
            topic: Topic::parse("other").unwrap(),
        };
        assert_eq!(r.subscribe_client(&other, 1).await, counts(0, 2));
        assert_eq!(r.unsubscribe_client(&change), counts(2, 0));
        assert!(r.topic_counts().topics.is_empty());
    }
}
