//! The client side of every request one node makes on another's node link: signed with the
//! cluster key (when the cluster has one), bounded in time and size, and believed only once the
//! answer proves the key. Peer probes, the cluster publish and the leaders' takeover all ask
//! through it, so none of them can forget a step.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ews_http::link::{Audience, LinkKey, NodeRef, REQUEST_HEADER};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What the answer's proof must cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The cluster key only (the peer proves it knows the key; the body is counts).
    Key,
    /// The key and the body: for answers the asking node decides from.
    Body,
}

/// A peer's answer, proven.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Why a peer's answer is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkFailure {
    /// The peer answered but could not prove the cluster key: not a cluster node.
    #[error("cannot prove the cluster key: {0}")]
    Unproven(String),
    /// No usable answer (unreachable, too slow, unreadable).
    #[error("{0}")]
    Failed(String),
}

pub struct LinkClient {
    key: Option<LinkKey>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl LinkClient {
    /// Signs with `key` (`None`: a cluster without a secret, loopback development).
    pub fn new(key: Option<LinkKey>, connect_timeout: Duration) -> LinkClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        LinkClient {
            key,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// `method path` on the node link of `to` at `addr` with `body` (signed for `to` alone):
    /// the whole exchange within `deadline`, at most `max` bytes of answer, and the answer's
    /// `proof` checked.
    #[allow(clippy::too_many_arguments)]
    pub async fn request(
        &self,
        method: Method,
        (to, addr): (&NodeRef, SocketAddr),
        path: &str,
        body: Bytes,
        proof: Proof,
        max: usize,
        deadline: Duration,
    ) -> Result<Answer, LinkFailure> {
        let failed = |e: String| LinkFailure::Failed(e);
        let unproven = |e: ews_http::link::LinkError| LinkFailure::Unproven(e.to_string());
        let exchange = async {
            let challenge = self
                .key
                .as_ref()
                .map(|key| key.sign(&method, path, &body, Audience::Node(to)));
            let mut req = Request::builder()
                .method(method)
                .uri(format!("http://{addr}{path}"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body))
                .map_err(|e| failed(e.to_string()))?;
            let challenge = challenge.map(|(header, challenge)| {
                req.headers_mut().insert(REQUEST_HEADER, header);
                challenge
            });
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| failed(format!("request failed: {e}")))?;
            let (parts, body) = resp.into_parts();
            // A peer that cannot prove the key gets no credit (and was sent no secret).
            if let (Some(c), Proof::Key) = (&challenge, proof) {
                c.verify(parts.status, &parts.headers).map_err(unproven)?;
            }
            let body = Limited::new(body, max)
                .collect()
                .await
                .map_err(|e| failed(format!("answer unreadable: {e}")))?
                .to_bytes();
            if let (Some(c), Proof::Body) = (&challenge, proof) {
                c.verify_with_body(parts.status, &parts.headers, &body)
                    .map_err(unproven)?;
            }
            Ok(Answer {
                status: parts.status,
                body,
            })
        };
        tokio::time::timeout(deadline, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(failed(format!(
                    "no answer within {} ms",
                    deadline.as_millis()
                )))
            })
    }
}
