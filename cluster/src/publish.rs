//! One publish, whichever node and port it arrives on: a worker's admin API and the leaders'
//! front door (`POST /api/v1/publish`, which fan out to the cluster) and a worker's node link
//! (`POST /internal/v1/publish`, that worker's sessions only) read the same [`Publish`] body
//! (to a client id or to a topic), count in the same [`Delivery`] and map it to a status the
//! same way. A topic publish goes only to workers whose [`Interest`] may hold the topic.
//!
//! [`Interest`]: crate::interest::Interest
//!
//! [`Fanout`] reaches the workers: a few at a time, each within its own deadline, so a slow or
//! silent worker costs one deadline and is named in the answer; it never holds up the others.
//! A draining worker is still asked (it holds sessions until it has closed each one), and a
//! worker membership has lost sight of (frozen, cut off) is named as not asked, so an answer
//! never says "nobody was there" about a worker it could not ask.
//!
//! A publish may carry an `id`: each worker delivers a given id once (it remembers ids for
//! [`RECENT_TTL`]), so a backend that retries after a `502` cannot deliver twice.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ews_http::link::{LinkKey, NodeRef};
use ews_http::reply::{self, Body};
use futures_util::stream::{self, StreamExt};
use http::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

use ews_proto::topic::Topic;
use ews_proto::StreamPosition;

use crate::command::{PresenceEvents, TopicCounts, PRESENCE_EVENTS_PATH, TOPICS_PATH};
use crate::link_client::{LinkClient, Proof};
use crate::presence::{self, Presence, PRESENCE_PATH};
use crate::{Member, Membership, Role};

/// Node-link path of the local-only publish a worker serves.
pub const PUBLISH_PATH: &str = "/internal/v1/publish";
/// Largest publish body accepted, in bytes.
pub const MAX_BODY: usize = 256 * 1024;
/// Workers contacted at once by one publish.
const CONCURRENCY: usize = 16;
/// Largest answer read from a worker.
const MAX_ANSWER: usize = 64 * 1024;
/// Largest topic list read from a worker (up to `MAX_TOPICS_LISTED` names with counts).
const MAX_TOPICS_ANSWER: usize = 4 * 1024 * 1024;
/// Longest publish `id`, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// How long a worker remembers a publish id (a retry within it is not delivered again).
pub const RECENT_TTL: Duration = Duration::from_secs(300);
/// Publish ids a worker remembers at most; past it the oldest are forgotten early.
const RECENT_MAX: usize = 100_000;

/// `{"clientId","msg"}`: push `msg` to every session of `clientId`; `{"topic","msg"}`: to
/// every session subscribed to `topic`; `{"clientIds":[…]}` or `{"topics":[…]}`: to each of up
/// to [`MAX_TARGETS`] (a session on two of the topics gets the message once per topic, each
/// push naming its topic). With `id`, delivered at most once per worker however often it is
/// sent (within [`RECENT_TTL`]). With `from`, receivers see it as the sender's client id:
/// workers set it for a client's own publish; a backend (it holds the admin token) may too.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "PublishBody", into = "PublishBody")]
pub struct Publish {
    pub target: Target,
    pub msg: String,
    pub id: Option<String>,
    pub from: Option<String>,
    /// On a topic with history: the message's place in the topic's stream, given by the node
    /// that appended it (the node link carries it; the admin API refuses it). One topic only.
    pub at: Option<StreamPosition>,
}

/// Most clients or topics one publish names.
pub const MAX_TARGETS: usize = 1000;

/// Whom a publish is for: one or more clients, or one or more topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Clients(Vec<String>),
    Topics(Vec<Topic>),
}

impl Target {
    pub fn client(c: impl Into<String>) -> Target {
        Target::Clients(vec![c.into()])
    }

    pub fn topic(t: Topic) -> Target {
        Target::Topics(vec![t])
    }
}

/// The body as it is written: exactly one of `clientId`, `topic`, `clientIds` and `topics`.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PublishBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topics: Option<Vec<String>>,
    msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<String>,
}

impl TryFrom<PublishBody> for Publish {
    type Error = String;

    fn try_from(b: PublishBody) -> Result<Publish, String> {
        let topics = |ts: Vec<String>| -> Result<Target, String> {
            ts.iter()
                .map(|t| Topic::parse(t).map_err(|e| format!("{t:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()
                .map(Target::Topics)
        };
        let target = match (b.client_id, b.topic, b.client_ids, b.topics) {
            (Some(c), None, None, None) if !c.is_empty() => Target::client(c),
            (None, Some(t), None, None) => topics(vec![t])?,
            (None, None, Some(cs), None) if (1..=MAX_TARGETS).contains(&cs.len()) => {
                if cs.iter().any(String::is_empty) {
                    return Err("a client id is not empty".into());
                }
                Target::Clients(cs)
            }
            (None, None, None, Some(ts)) if (1..=MAX_TARGETS).contains(&ts.len()) => topics(ts)?,
            (None, None, Some(_), None) | (None, None, None, Some(_)) => {
                return Err(format!("clientIds and topics name 1 to {MAX_TARGETS}"))
            }
            _ => return Err("give exactly one of clientId, topic, clientIds and topics".into()),
        };
        if b.id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > MAX_ID_LEN)
        {
            return Err(format!("an id is 1 to {MAX_ID_LEN} bytes"));
        }
        if b.from.as_ref().is_some_and(String::is_empty) {
            return Err("from is not empty".into());
        }
        let at = match (b.offset, b.epoch) {
            (None, None) => None,
            (Some(offset), Some(epoch))
                if matches!(&target, Target::Topics(t) if t.len() == 1)
                    || matches!(&target, Target::Clients(c) if c.len() == 1) =>
            {
                Some(StreamPosition { offset, epoch })
            }
            _ => return Err("offset and epoch go together, with one topic or client".into()),
        };
        Ok(Publish {
            target,
            msg: b.msg,
            id: b.id,
            from: b.from,
            at,
        })
    }
}

impl From<Publish> for PublishBody {
    fn from(p: Publish) -> PublishBody {
        let mut b = PublishBody {
            client_id: None,
            topic: None,
            client_ids: None,
            topics: None,
            msg: p.msg,
            id: p.id,
            from: p.from,
            offset: p.at.as_ref().map(|a| a.offset),
            epoch: p.at.map(|a| a.epoch),
        };
        match p.target {
            Target::Clients(mut cs) if cs.len() == 1 => b.client_id = cs.pop(),
            Target::Clients(cs) => b.client_ids = Some(cs),
            Target::Topics(mut ts) if ts.len() == 1 => {
                b.topic = ts.pop().map(|t| t.as_str().to_string())
            }
            Target::Topics(ts) => {
                b.topics = Some(ts.iter().map(|t| t.as_str().to_string()).collect())
            }
        }
        b
    }
}

/// A publish as history needs it: each topic that keeps history gets its own publish, stamped
/// with the message's position in that topic's stream (appended here, before any delivery);
/// the other topics (and client ids) stay together in one. An append that fails fails the
/// publish: a message with no place in its stream is not delivered.
pub async fn stamp(
    history: &ews_history::History,
    p: Publish,
) -> Result<Vec<Publish>, ews_history::HistoryError> {
    if p.at.is_some() {
        return Ok(vec![p]);
    }
    let kept = ews_history::Kept {
        msg: p.msg.clone(),
        from: p.from.clone(),
    };
    let topics = match &p.target {
        Target::Clients(clients) if history.clients => {
            let mut out = Vec::with_capacity(clients.len());
            for c in clients {
                let at = history
                    .append_to(&ews_history::History::client_stream(c), &kept)
                    .await?;
                out.push(Publish {
                    target: Target::client(c.clone()),
                    at: Some(StreamPosition {
                        offset: at.offset,
                        epoch: at.epoch,
                    }),
                    ..p.clone()
                });
            }
            return Ok(out);
        }
        Target::Topics(topics) if topics.iter().any(|t| history.keeps(t)) => topics,
        _ => return Ok(vec![p]),
    };
    let (keeping, rest): (Vec<Topic>, Vec<Topic>) =
        topics.iter().cloned().partition(|t| history.keeps(t));
    let mut out = Vec::with_capacity(keeping.len() + 1);
    for t in keeping {
        let at = history.append(&t, &kept).await?;
        out.push(Publish {
            target: Target::topic(t),
            at: Some(StreamPosition {
                offset: at.offset,
                epoch: at.epoch,
            }),
            ..p.clone()
        });
    }
    if !rest.is_empty() {
        out.push(Publish {
            target: Target::Topics(rest),
            ..p
        });
    }
    Ok(out)
}

/// What one node did with a publish: its counts, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum NodeOutcome {
    Counts {
        delivered: usize,
        dropped: usize,
        /// The node had already delivered this publish's `id`: nothing delivered again.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    Failed {
        error: String,
    },
}

/// What a publish reached: sessions that took the message, sessions whose outbound queue was
/// full, the workers that gave no answer, and each node's own outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Delivery {
    pub delivered: usize,
    pub dropped: usize,
    /// Nodes that had already delivered this publish's `id` (a retry).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicates: usize,
    /// Node ids of the workers that could not be asked (membership lost sight of them) or did
    /// not answer in time (or could not prove the key): they may hold the client or topic.
    #[serde(default)]
    pub failed: Vec<String>,
    /// Per node id: its counts or its failure.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, NodeOutcome>,
    /// Where history kept the message (a topic's or client's stream): a subscriber not reached
    /// now (away, moving) recovers it from there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<KeptAt>,
}

/// A stream position a published message was kept at.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct KeptAt {
    /// The topic, or `@` and the client id.
    pub stream: String,
    pub offset: u64,
    pub epoch: String,
}

impl Delivery {
    /// The counts of this node's own sessions.
    pub fn counts(delivered: usize, dropped: usize) -> Delivery {
        Delivery {
            delivered,
            dropped,
            ..Delivery::default()
        }
    }

    /// A node's answer to a publish whose `id` it had already delivered.
    pub fn duplicate() -> Delivery {
        Delivery {
            duplicates: 1,
            ..Delivery::default()
        }
    }

    /// Records where history kept the stamped `parts` of a publish.
    pub fn kept_at(&mut self, parts: &[Publish]) {
        for p in parts {
            let Some(at) = &p.at else { continue };
            let stream = match &p.target {
                Target::Topics(t) => t.first().map(|t| t.as_str().to_string()),
                Target::Clients(c) => c.first().map(|c| ews_history::History::client_stream(c)),
            };
            if let Some(stream) = stream {
                self.kept.push(KeptAt {
                    stream,
                    offset: at.offset,
                    epoch: at.epoch.clone(),
                });
            }
        }
    }

    /// 200 when any session took the message (now, or on an earlier try with the same `id`)
    /// or history kept it (whoever missed it recovers it: a retry would only keep it twice);
    /// otherwise 502 if a worker failed (the client may be there), 503 if every queue was
    /// full, 404 if no node has the client.
    pub fn status(&self) -> StatusCode {
        if self.delivered > 0 || self.duplicates > 0 || !self.kept.is_empty() {
            StatusCode::OK
        } else if !self.failed.is_empty() {
            StatusCode::BAD_GATEWAY
        } else if self.dropped > 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NOT_FOUND
        }
    }

    /// Adds another part's counts to these (the same node's deliveries to several targets).
    pub fn add_counts(&mut self, d: &Delivery) {
        self.delivered += d.delivered;
        self.dropped += d.dropped;
        self.duplicates += d.duplicates;
    }

    /// Records what node `id` answered (its own counts), or why it did not.
    pub fn add_node(&mut self, id: &str, outcome: Result<Delivery, String>) {
        let entry = match outcome {
            Ok(d) => {
                self.delivered += d.delivered;
                self.dropped += d.dropped;
                self.duplicates += d.duplicates;
                NodeOutcome::Counts {
                    delivered: d.delivered,
                    dropped: d.dropped,
                    duplicate: d.duplicates > 0,
                }
            }
            Err(error) => {
                self.failed.push(id.to_string());
                NodeOutcome::Failed { error }
            }
        };
        self.nodes.insert(id.to_string(), entry);
    }

    pub fn into_response(mut self) -> Response<Body> {
        self.failed.sort();
        reply::json(self.status(), &self)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The publish ids a worker has delivered lately (to at least one session): a retry of one is
/// answered as a duplicate. An id it delivered to nobody is not remembered, so a retry reaches
/// a session that arrived meanwhile.
pub struct RecentIds {
    ttl: Duration,
    max: usize,
    seen: std::collections::HashMap<String, tokio::time::Instant>,
    order: std::collections::VecDeque<(tokio::time::Instant, String)>,
}

impl Default for RecentIds {
    fn default() -> RecentIds {
        RecentIds::new(RECENT_TTL, RECENT_MAX)
    }
}

impl RecentIds {
    pub fn new(ttl: Duration, max: usize) -> RecentIds {
        RecentIds {
            ttl,
            max: max.max(1),
            seen: Default::default(),
            order: Default::default(),
        }
    }

    /// Whether `id` was remembered within the time to live.
    pub fn contains(&mut self, id: &str) -> bool {
        self.forget(tokio::time::Instant::now(), self.max);
        self.seen.contains_key(id)
    }

    /// Remembers `id` (delivered now), forgetting the oldest to stay within the count.
    pub fn remember(&mut self, id: &str) {
        let now = tokio::time::Instant::now();
        self.forget(now, self.max - 1);
        self.seen.insert(id.to_string(), now);
        self.order.push_back((now, id.to_string()));
    }

    /// Forgets ids past their time to live, and the oldest beyond `keep`.
    fn forget(&mut self, now: tokio::time::Instant, keep: usize) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < self.ttl && self.order.len() <= keep {
                break;
            }
            if let Some((at, old)) = self.order.pop_front() {
                // A newer remembering of the same id keeps it.
                if self.seen.get(&old) == Some(&at) {
                    self.seen.remove(&old);
                }
            }
        }
    }
}

/// The cluster's workers, reached over their node link.
pub struct Fanout {
    membership: Arc<Membership>,
    link: LinkClient,
    deadline: Duration,
}

impl Fanout {
    /// `deadline` bounds each worker's exchange (connect, request and answer).
    pub fn new(membership: Arc<Membership>, deadline: Duration) -> Fanout {
        Fanout {
            link: LinkClient::new(membership.secret().map(LinkKey::derive), deadline),
            membership,
            deadline,
        }
    }

    /// Sends `p` to every worker but this node that may hold sessions for it (serving or
    /// draining; for a topic, only those whose interest may hold it), recording each one's
    /// outcome in `into`, and names the workers membership has lost sight of as not asked.
    pub async fn publish(&self, p: &Publish, into: &mut Delivery) {
        let body = Bytes::from(serde_json::to_vec(p).unwrap_or_default());
        let wanted = |m: &Member| match &p.target {
            Target::Clients(_) => true,
            // A worker that does not say what it holds gets every topic.
            Target::Topics(ts) => m
                .interest
                .as_ref()
                .is_none_or(|i| ts.iter().any(|t| i.may_contain(t))),
        };
        self.deliver(PUBLISH_PATH, body, wanted, into).await;
    }

    /// Sends `body`, as JSON, to `path` on every worker but this node that may hold sessions
    /// (a disconnect, a server-side subscribe: about a client, which any worker may hold).
    pub async fn deliver_json(&self, path: &str, body: &impl Serialize, into: &mut Delivery) {
        let body = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        self.deliver(path, body, |_| true, into).await;
    }

    /// Sends `body` to `path` on every worker but this node that `wanted` picks and that may
    /// hold sessions, recording each one's [`Delivery`] in `into` (a publish, a disconnect, a
    /// server-side subscribe, join/leave events: whatever counts the sessions it reached).
    pub async fn deliver(
        &self,
        path: &str,
        body: Bytes,
        wanted: impl Fn(&Member) -> bool,
        into: &mut Delivery,
    ) {
        // 404 (no session there) and 503 (all full) still carry counts.
        let counts = |s: StatusCode| {
            s.is_success() || s == StatusCode::NOT_FOUND || s == StatusCode::SERVICE_UNAVAILABLE
        };
        let ask = (Method::POST, path, body);
        for (id, outcome) in self.ask_each(wanted, ask, MAX_ANSWER, counts).await {
            if let Err(e) = &outcome {
                tracing::warn!(node = %id, %path, error = %e, "worker failed");
            }
            into.add_node(&id, outcome);
        }
    }

    /// Every other worker's topics with their subscriber counts, into `into`.
    pub async fn topics(&self, into: &mut TopicCounts) {
        let ask = (Method::GET, TOPICS_PATH, Bytes::new());
        let answers = self
            .ask_each(|_| true, ask, MAX_TOPICS_ANSWER, |s| s.is_success())
            .await;
        for (id, outcome) in answers {
            into.add_node(&id, outcome);
        }
    }

    /// Tells every other worker that may hold one of the topics about `events` (best effort: a
    /// worker that does not answer misses them, and says so in the log).
    pub async fn presence_events(&self, events: &PresenceEvents) {
        let body = Bytes::from(serde_json::to_vec(events).unwrap_or_default());
        let wanted = |m: &Member| {
            m.interest
                .as_ref()
                .is_none_or(|i| events.events.iter().any(|e| i.may_contain(&e.topic)))
        };
        self.deliver(PRESENCE_EVENTS_PATH, body, wanted, &mut Delivery::default())
            .await;
    }

    /// Asks every worker but this node for its part of `q`, into `into`.
    pub async fn presence(&self, q: &presence::Query, into: &mut Presence) {
        let target = format!("{PRESENCE_PATH}?{}", q.to_query_string());
        let ask = (Method::GET, target.as_str(), Bytes::new());
        let answers = self
            .ask_each(|_| true, ask, MAX_ANSWER, |s| s.is_success())
            .await;
        for (id, outcome) in answers {
            into.add_node(&id, outcome);
        }
    }

    /// Sends one request to every worker `wanted` picks (see [`Fanout::ask_workers`]) and reads
    /// each answer as a `T` when `answered` accepts its status.
    async fn ask_each<T: serde::de::DeserializeOwned>(
        &self,
        wanted: impl Fn(&Member) -> bool,
        (method, target, body): (Method, &str, Bytes),
        max_answer: usize,
        answered: impl Fn(StatusCode) -> bool,
    ) -> Vec<(String, Result<T, String>)> {
        let answered = &answered;
        self.ask_workers(wanted, |to, addr| {
            let (method, body) = (method.clone(), body.clone());
            async move {
                let a = self
                    .ask(method, (&to, addr), target.to_string(), body, max_answer)
                    .await?;
                if !answered(a.status) {
                    return Err(format!("answered {}", a.status));
                }
                serde_json::from_slice::<T>(&a.body).map_err(|e| format!("answer unreadable: {e}"))
            }
        })
        .await
    }

    /// Runs `ask` against every worker but this node that `wanted` picks and that holds
    /// sessions (serving, or draining with sessions left), [`CONCURRENCY`] at a time; a picked
    /// worker membership has lost sight of is not asked and answers as a failure that says so.
    async fn ask_workers<T, F, Fut>(
        &self,
        wanted: impl Fn(&Member) -> bool,
        ask: F,
    ) -> Vec<(String, Result<T, String>)>
    where
        F: Fn(NodeRef, SocketAddr) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let view = self.membership.view();
        let mut lost = Vec::new();
        let mut targets = Vec::new();
        for m in view.members.iter() {
            if m.is_self || m.role != Role::Worker || !wanted(m) {
                continue;
            }
            if m.holds_sessions() {
                targets.push((m.node_id.clone(), m.node_ref(), m.internal_addr));
            } else if m.lost {
                let why = format!(
                    "not asked: unreachable (last heard {} ms ago)",
                    m.last_heard_ms
                );
                lost.push((m.node_id.clone(), Err(why)));
            }
        }
        let mut answers: Vec<(String, Result<T, String>)> = stream::iter(targets)
            .map(|(id, to, addr)| {
                let outcome = addr.map(|addr| ask(to, addr));
                async move {
                    let outcome = match outcome {
                        Some(fut) => fut.await,
                        None => Err("no node-link address".to_string()),
                    };
                    (id, outcome)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        answers.extend(lost);
        answers
    }

    async fn ask(
        &self,
        method: Method,
        to: (&NodeRef, SocketAddr),
        target: String,
        body: Bytes,
        max_answer: usize,
    ) -> Result<crate::link_client::Answer, String> {
        // The worker proves the key; its counts are not decided from, so the proof need not
        // cover them.
        self.link
            .request(
                method,
                to,
                &target,
                body,
                Proof::Key,
                max_answer,
                self.deadline,
            )
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(delivered: usize, dropped: usize, failed: &[&str]) -> Delivery {
        Delivery {
            delivered,
            dropped,
            duplicates: 0,
            failed: failed.iter().map(|s| s.to_string()).collect(),
            nodes: BTreeMap::new(),
            kept: Vec::new(),
        }
    }

    #[test]
    fn status_prefers_delivery_then_failure() {
        assert_eq!(d(1, 3, &["w2"]).status(), StatusCode::OK);
        assert_eq!(d(0, 3, &["w2"]).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(d(0, 3, &[]).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(d(0, 0, &[]).status(), StatusCode::NOT_FOUND);
        // Nobody there now, but history kept it: whoever missed it recovers it.
        let mut kept = d(0, 0, &[]);
        kept.kept.push(KeptAt {
            stream: "room.1".into(),
            offset: 7,
            epoch: "e".into(),
        });
        assert_eq!(kept.status(), StatusCode::OK);
        // A retry the nodes had already delivered: delivered, not "nobody there".
        let mut retry = Delivery::default();
        retry.add_node("w1", Ok(Delivery::duplicate()));
        retry.add_node("w2", Ok(Delivery::counts(0, 0)));
        assert_eq!(retry.status(), StatusCode::OK);
        assert_eq!(
            serde_json::to_string(&retry.nodes["w1"]).unwrap(),
            r#"{"delivered":0,"dropped":0,"duplicate":true}"#
        );
    }

    #[tokio::test(start_paused = true)]
    async fn recent_ids_remember_for_their_time_and_their_count() {
        let mut r = RecentIds::new(Duration::from_secs(60), 3);
        assert!(!r.contains("a"));
        r.remember("a");
        assert!(r.contains("a"));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!r.contains("a"), "forgotten after its time to live");
        for id in ["a", "b", "c", "d"] {
            r.remember(id);
        }
        assert!(!r.contains("a"), "the oldest goes first past the count");
        assert!(r.contains("b") && r.contains("d"));
    }

    #[test]
    fn every_node_is_reported() {
        let mut all = Delivery::default();
        all.add_node("w1", Ok(Delivery::counts(2, 1)));
        all.add_node("w3", Err("no answer within 1000 ms".into()));
        let text = serde_json::to_string(&all).unwrap();
        assert_eq!(
            text,
            r#"{"delivered":2,"dropped":1,"failed":["w3"],"nodes":{"w1":{"delivered":2,"dropped":1},"w3":{"error":"no answer within 1000 ms"}}}"#
        );
        let back: Delivery = serde_json::from_str(&text).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn a_local_answer_parses_without_nodes() {
        let c: Delivery = serde_json::from_str(r#"{"delivered":2,"dropped":1}"#).unwrap();
        assert_eq!(c, d(2, 1, &[]));
        assert!(serde_json::from_str::<Delivery>("not json").is_err());
    }

    #[test]
    fn publish_names_exactly_one_target() {
        let p: Publish = serde_json::from_str(r#"{"clientId":"a","msg":"m"}"#).unwrap();
        assert_eq!(p.target, Target::client("a"));
        let p: Publish = serde_json::from_str(r#"{"clientId":"a","msg":"m","id":"x-1"}"#).unwrap();
        assert_eq!(p.id.as_deref(), Some("x-1"));
        let t: Publish = serde_json::from_str(r#"{"topic":"news.sport","msg":"m"}"#).unwrap();
        assert_eq!(t.target, Target::topic(Topic::parse("news.sport").unwrap()));
        let many: Publish =
            serde_json::from_str(r#"{"topics":["a","b"],"msg":"m","from":"alice"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&many).unwrap(),
            r#"{"topics":["a","b"],"msg":"m","from":"alice"}"#
        );
        let clients: Publish =
            serde_json::from_str(r#"{"clientIds":["a","b"],"msg":"m"}"#).unwrap();
        assert_eq!(
            clients.target,
            Target::Clients(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"topic":"news.sport","msg":"m"}"#
        );
        for bad in [
            r#"{"clientId":"a","message":"m"}"#,
            r#"{"clientId":"a","topic":"b","msg":"m"}"#,
            r#"{"msg":"m"}"#,
            r#"{"clientId":"","msg":"m"}"#,
            r#"{"topic":"news.*","msg":"m"}"#,
            r#"{"topic":"news","msg":"m","id":""}"#,
            r#"{"topics":[],"msg":"m"}"#,
            r#"{"topics":["a","b c"],"msg":"m"}"#,
            r#"{"clientIds":["a",""],"msg":"m"}"#,
            r#"{"clientIds":["a"],"topic":"b","msg":"m"}"#,
            r#"{"topic":"a","msg":"m","from":""}"#,
        ] {
            assert!(serde_json::from_str::<Publish>(bad).is_err(), "{bad}");
        }
    }
}
