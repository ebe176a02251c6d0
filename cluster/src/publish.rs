//! One publish, whichever node and port it arrives on: a worker's admin API and the leaders'
//! front door (`POST /api/v1/publish`, which fan out to the cluster) and a worker's node link
//! (`POST /internal/v1/publish`, that worker's sessions only) read the same [`Publish`] body,
//! count in the same [`Delivery`] and map it to a status the same way.
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

use crate::link_client::{LinkClient, Proof};
use crate::{Membership, Role};

/// Node-link path of the local-only publish a worker serves.
pub const PUBLISH_PATH: &str = "/internal/v1/publish";
/// Largest publish body accepted, in bytes.
pub const MAX_BODY: usize = 256 * 1024;
/// Workers contacted at once by one publish.
const CONCURRENCY: usize = 16;
/// Largest answer read from a worker.
const MAX_ANSWER: usize = 64 * 1024;

/// `{"clientId","msg"}`: push `msg` to every session of `clientId`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Publish {
    pub client_id: String,
    pub msg: String,
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

    /// Sends `p` to every serving worker but this node, recording each one's outcome in `into`.
    pub async fn publish(&self, p: &Publish, into: &mut Delivery) {
        let body = Bytes::from(serde_json::to_vec(p).unwrap_or_default());
        let view = self.membership.view();
        let targets: Vec<(String, Option<SocketAddr>)> = view
            .serving(Role::Worker)
            .filter(|m| !m.is_self)
            .map(|m| (m.node_id.clone(), m.internal_addr))
            .collect();
        let answers: Vec<(String, Result<Delivery, String>)> = stream::iter(targets)
            .map(|(id, addr)| {
                let body = body.clone();
                async move {
                    let outcome = match addr {
                        Some(a) => self.ask(a, body).await,
                        None => Err("no node-link address".to_string()),
                    };
                    (id, outcome)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (id, outcome) in answers {
            if let Err(e) = &outcome {
                tracing::warn!(node = %id, error = %e, "publish: worker failed");
            }
            into.add_node(&id, outcome);
        }
    }

    async fn ask(&self, addr: SocketAddr, body: Bytes) -> Result<Delivery, String> {
        // The worker proves the key; its counts are not decided from, so the proof need not
        // cover them.
        let answer = self
            .link
            .request(
                Method::POST,
                addr,
                PUBLISH_PATH,
                body,
                Proof::Key,
                MAX_ANSWER,
                self.deadline,
            )
            .await
            .map_err(|e| e.to_string())?;
        // 404 (no session there) and 503 (all full) still carry counts.
        let status = answer.status;
        if !(status.is_success()
            || status == StatusCode::NOT_FOUND
            || status == StatusCode::SERVICE_UNAVAILABLE)
        {
            return Err(format!("answered {status}"));
        }
        serde_json::from_slice::<Delivery>(&answer.body)
            .map_err(|e| format!("answer unreadable: {e}"))
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
    fn publish_refuses_unknown_fields() {
        assert!(serde_json::from_str::<Publish>(r#"{"clientId":"a","msg":"m"}"#).is_ok());
        assert!(serde_json::from_str::<Publish>(r#"{"clientId":"a","message":"m"}"#).is_err());
    }
}
