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
use ews_http::link::{Accepted, LinkKey, NodeRef};
use ews_http::reply::{self, Body};
use futures_util::stream::{self, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use ews_proto::topic::Topic;

use crate::link_client::{LinkClient, Proof};
use crate::presence::{self, Here, Presence, PRESENCE_PATH};
use crate::{Member, Membership, Role};

/// Node-link path of the local-only publish a worker serves.
pub const PUBLISH_PATH: &str = "/internal/v1/publish";
/// Largest publish body accepted, in bytes.
pub const MAX_BODY: usize = 256 * 1024;
/// Workers contacted at once by one publish.
const CONCURRENCY: usize = 16;
/// Largest answer read from a worker.
const MAX_ANSWER: usize = 64 * 1024;
/// Longest publish `id`, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// How long a worker remembers a publish id (a retry within it is not delivered again).
pub const RECENT_TTL: Duration = Duration::from_secs(300);
/// Publish ids a worker remembers at most; past it the oldest are forgotten early.
const RECENT_MAX: usize = 100_000;

/// `{"clientId","msg"}`: push `msg` to every session of `clientId`; `{"topic","msg"}`: to
/// every session subscribed to `topic`. With `id`, delivered at most once per worker however
/// often it is sent (within [`RECENT_TTL`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "PublishBody", into = "PublishBody")]
pub struct Publish {
    pub target: Target,
    pub msg: String,
    pub id: Option<String>,
}

/// Whom a publish is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Client(String),
    Topic(Topic),
}

/// The body as it is written: exactly one of `clientId` and `topic`.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PublishBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

impl TryFrom<PublishBody> for Publish {
    type Error = String;

    fn try_from(b: PublishBody) -> Result<Publish, String> {
        let target = match (b.client_id, b.topic) {
            (Some(c), None) if !c.is_empty() => Target::Client(c),
            (None, Some(t)) => Target::Topic(Topic::parse(&t).map_err(|e| e.to_string())?),
            _ => return Err("give exactly one of clientId and topic".into()),
        };
        if b.id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > MAX_ID_LEN)
        {
            return Err(format!("an id is 1 to {MAX_ID_LEN} bytes"));
        }
        Ok(Publish {
            target,
            msg: b.msg,
            id: b.id,
        })
    }
}

impl From<Publish> for PublishBody {
    fn from(p: Publish) -> PublishBody {
        let (client_id, topic) = match p.target {
            Target::Client(c) => (Some(c), None),
            Target::Topic(t) => (None, Some(t.as_str().to_string())),
        };
        PublishBody {
            client_id,
            topic,
            msg: p.msg,
            id: p.id,
        }
    }
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

    /// 200 when any session took the message (now, or on an earlier try with the same `id`);
    /// otherwise 502 if a worker failed (the client may be there), 503 if every queue was
    /// full, 404 if no node has the client.
    pub fn status(&self) -> StatusCode {
        if self.delivered > 0 || self.duplicates > 0 {
            StatusCode::OK
        } else if !self.failed.is_empty() {
            StatusCode::BAD_GATEWAY
        } else if self.dropped > 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NOT_FOUND
        }
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

/// Reads and parses a publish body: 413 past [`MAX_BODY`], 400 for anything not a [`Publish`],
/// 401 if `signed` (a node-link request) covers another body.
pub async fn read(
    req: Request<Incoming>,
    signed: Option<&Accepted>,
) -> Result<Publish, Response<Body>> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(reply::text(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
    };
    if signed.is_some_and(|s| !s.body_matches(&body)) {
        return Err(reply::text(
            StatusCode::UNAUTHORIZED,
            "the body does not match its signature",
        ));
    }
    serde_json::from_slice(&body).map_err(|e| reply::text(StatusCode::BAD_REQUEST, e.to_string()))
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
            Target::Client(_) => true,
            // A worker that does not say what it holds gets every topic.
            Target::Topic(t) => m.interest.as_ref().is_none_or(|i| i.may_contain(t)),
        };
        let answers = self
            .ask_workers(wanted, |to, addr| {
                let body = body.clone();
                async move {
                    let a = self
                        .ask(Method::POST, (&to, addr), PUBLISH_PATH.to_string(), body)
                        .await?;
                    // 404 (no session there) and 503 (all full) still carry counts.
                    if !(a.status.is_success()
                        || a.status == StatusCode::NOT_FOUND
                        || a.status == StatusCode::SERVICE_UNAVAILABLE)
                    {
                        return Err(format!("answered {}", a.status));
                    }
                    serde_json::from_slice::<Delivery>(&a.body)
                        .map_err(|e| format!("answer unreadable: {e}"))
                }
            })
            .await;
        for (id, outcome) in answers {
            if let Err(e) = &outcome {
                tracing::warn!(node = %id, error = %e, "publish: worker failed");
            }
            into.add_node(&id, outcome);
        }
    }

    /// Asks every worker but this node for its part of `q`, into `into`.
    pub async fn presence(&self, q: &presence::Query, into: &mut Presence) {
        let target = format!("{PRESENCE_PATH}?{}", q.to_query_string());
        let answers = self
            .ask_workers(
                |_| true,
                |to, addr| {
                    let target = target.clone();
                    async move {
                        let a = self
                            .ask(Method::GET, (&to, addr), target, Bytes::new())
                            .await?;
                        if !a.status.is_success() {
                            return Err(format!("answered {}", a.status));
                        }
                        serde_json::from_slice::<Here>(&a.body)
                            .map_err(|e| format!("answer unreadable: {e}"))
                    }
                },
            )
            .await;
        for (id, outcome) in answers {
            into.add_node(&id, outcome);
        }
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
                MAX_ANSWER,
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
        }
    }

    #[test]
    fn status_prefers_delivery_then_failure() {
        assert_eq!(d(1, 3, &["w2"]).status(), StatusCode::OK);
        assert_eq!(d(0, 3, &["w2"]).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(d(0, 3, &[]).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(d(0, 0, &[]).status(), StatusCode::NOT_FOUND);
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
        assert_eq!(p.target, Target::Client("a".into()));
        let p: Publish = serde_json::from_str(r#"{"clientId":"a","msg":"m","id":"x-1"}"#).unwrap();
        assert_eq!(p.id.as_deref(), Some("x-1"));
        let t: Publish = serde_json::from_str(r#"{"topic":"news.sport","msg":"m"}"#).unwrap();
        assert_eq!(t.target, Target::Topic(Topic::parse("news.sport").unwrap()));
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
        ] {
            assert!(serde_json::from_str::<Publish>(bad).is_err(), "{bad}");
        }
    }
}
