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

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ews_http::link::{Accepted, LinkKey};
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

/// `{"clientId","msg"}`: push `msg` to every session of `clientId`; `{"topic","msg"}`: to
/// every session subscribed to `topic`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "PublishBody", into = "PublishBody")]
pub struct Publish {
    pub target: Target,
    pub msg: String,
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
}

impl TryFrom<PublishBody> for Publish {
    type Error = String;

    fn try_from(b: PublishBody) -> Result<Publish, String> {
        let target = match (b.client_id, b.topic) {
            (Some(c), None) if !c.is_empty() => Target::Client(c),
            (None, Some(t)) => Target::Topic(Topic::parse(&t).map_err(|e| e.to_string())?),
            _ => return Err("give exactly one of clientId and topic".into()),
        };
        Ok(Publish { target, msg: b.msg })
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
        }
    }
}

/// What one node did with a publish: its counts, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum NodeOutcome {
    Counts { delivered: usize, dropped: usize },
    Failed { error: String },
}

/// What a publish reached: sessions that took the message, sessions whose outbound queue was
/// full, the workers that gave no answer, and each node's own outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Delivery {
    pub delivered: usize,
    pub dropped: usize,
    /// Node ids of the workers that did not answer in time (or could not prove the key).
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

    /// 200 when any session took the message; otherwise 502 if a worker failed (the client may
    /// be there), 503 if every queue was full, 404 if no node has the client.
    pub fn status(&self) -> StatusCode {
        if self.delivered > 0 {
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
                NodeOutcome::Counts {
                    delivered: d.delivered,
                    dropped: d.dropped,
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

    /// Sends `p` to every serving worker but this node (for a topic, only those whose interest
    /// may hold it), recording each one's outcome in `into`.
    pub async fn publish(&self, p: &Publish, into: &mut Delivery) {
        let body = Bytes::from(serde_json::to_vec(p).unwrap_or_default());
        let wanted = |m: &Member| match &p.target {
            Target::Client(_) => true,
            // A worker that does not say what it holds gets every topic.
            Target::Topic(t) => m.interest.as_ref().is_none_or(|i| i.may_contain(t)),
        };
        let answers = self
            .ask_workers(wanted, |addr| {
                let body = body.clone();
                async move {
                    let a = self
                        .ask(Method::POST, addr, PUBLISH_PATH.to_string(), body)
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

    /// Asks every serving worker but this node for its part of `q`, into `into`.
    pub async fn presence(&self, q: &presence::Query, into: &mut Presence) {
        let target = format!("{PRESENCE_PATH}?{}", q.to_query_string());
        let answers = self
            .ask_workers(
                |_| true,
                |addr| {
                    let target = target.clone();
                    async move {
                        let a = self.ask(Method::GET, addr, target, Bytes::new()).await?;
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

    /// Runs `ask` against every serving worker but this node that `wanted` picks,
    /// [`CONCURRENCY`] at a time.
    async fn ask_workers<T, F, Fut>(
        &self,
        wanted: impl Fn(&Member) -> bool,
        ask: F,
    ) -> Vec<(String, Result<T, String>)>
    where
        F: Fn(SocketAddr) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let view = self.membership.view();
        let targets: Vec<(String, Option<SocketAddr>)> = view
            .serving(Role::Worker)
            .filter(|m| !m.is_self && wanted(m))
            .map(|m| (m.node_id.clone(), m.internal_addr))
            .collect();
        stream::iter(targets)
            .map(|(id, addr)| {
                let outcome = addr.map(&ask);
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
            .await
    }

    async fn ask(
        &self,
        method: Method,
        addr: SocketAddr,
        target: String,
        body: Bytes,
    ) -> Result<crate::link_client::Answer, String> {
        // The worker proves the key; its counts are not decided from, so the proof need not
        // cover them.
        self.link
            .request(
                method,
                addr,
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
        ] {
            assert!(serde_json::from_str::<Publish>(bad).is_err(), "{bad}");
        }
    }
}
