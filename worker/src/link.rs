//! The node link: HTTP on the internal TCP port (gossip uses UDP on the same port number).
//!
//! A worker in a cluster serves `POST /internal/v1/publish` here: the same body as the admin
//! API, delivered to this node's sessions only. Requests are signed with the cluster key and
//! answers prove it back (`ews_http::link`); the secret itself never crosses the wire. [`Peers`] is the
//! other side: the admin publish fans a message out to every other serving worker, a few at a
//! time and with a short timeout each, so one slow or dead peer costs at most that timeout and
//! never stalls the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ews_cluster::{Membership, Role, STATE_PATH};
use ews_http::link::{self, LinkKey, Verifier, REQUEST_HEADER};
use ews_http::reply::{self, Body};
use futures_util::stream::{self, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::metrics::Metrics;
use crate::publish::{self, Delivery, Publish};
use crate::registry::Registry;

/// Node-link path of the local-only publish.
pub const PUBLISH_PATH: &str = "/internal/v1/publish";
/// Peers contacted at once by one publish.
const FANOUT_CONCURRENCY: usize = 16;
/// Longest wait for one peer (connect, request and answer).
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read from a peer.
const MAX_ANSWER: usize = 64 * 1024;

/// The node-link routes of a worker.
pub struct Link {
    /// `None` without a cluster secret (loopback development): the link is then open.
    pub verifier: Option<Verifier>,
    /// Answers `GET /internal/v1/state`, what peers decide from.
    pub membership: Arc<Membership>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
}

impl Link {
    /// Every request must be signed with the cluster key; every answer proves the key back.
    pub async fn route(self: Arc<Self>, req: Request<Incoming>, _: SocketAddr) -> Response<Body> {
        let accepted = match link::admit(self.verifier.as_ref(), &req) {
            Ok(a) => a,
            Err(refusal) => return refusal.into_response(),
        };
        let mut resp = match (req.method(), req.uri().path()) {
            (&Method::GET, "/info") => reply::text(StatusCode::OK, "Success"),
            // Proven over its body, so it returns here rather than below.
            (&Method::GET, STATE_PATH) => return self.membership.state_answer(accepted.as_ref()),
            (&Method::POST, PUBLISH_PATH) => match publish::read(req, accepted.as_ref()).await {
                Ok(p) => {
                    let d = self.registry.push(&p.client_id, &p.msg);
                    for _ in 0..d.dropped {
                        self.metrics.dropped("outbound_full");
                    }
                    d.into_response()
                }
                Err(r) => r,
            },
            _ => reply::text(StatusCode::NOT_FOUND, "not found"),
        };
        if let Some(a) = &accepted {
            a.prove(&mut resp);
        }
        resp
    }
}

/// The other workers of the cluster, reached over their node link.
pub struct Peers {
    membership: Arc<Membership>,
    link: Option<LinkKey>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Peers {
    pub fn new(membership: Arc<Membership>) -> Peers {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(PEER_TIMEOUT));
        Peers {
            link: membership.secret().map(LinkKey::derive),
            membership,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Sends `p` to every other serving worker; their counts summed, the silent ones named in
    /// `failed`.
    pub async fn publish(&self, p: &Publish) -> Delivery {
        let body = Bytes::from(serde_json::to_vec(p).unwrap_or_default());
        let view = self.membership.view();
        let targets: Vec<(String, Option<SocketAddr>)> = view
            .serving(Role::Worker)
            .filter(|m| !m.is_self)
            .map(|m| (m.node_id.clone(), m.internal_addr))
            .collect();
        let answers: Vec<(String, Option<Delivery>)> = stream::iter(targets)
            .map(|(id, addr)| {
                let body = body.clone();
                async move {
                    let counts = match addr {
                        Some(a) => self.ask(a, body).await,
                        None => None,
                    };
                    (id, counts)
                }
            })
            .buffer_unordered(FANOUT_CONCURRENCY)
            .collect()
            .await;
        let mut all = Delivery::default();
        for (id, counts) in answers {
            match counts {
                Some(c) => all.add(c),
                None => all.failed.push(id),
            }
        }
        all
    }

    async fn ask(&self, addr: SocketAddr, body: Bytes) -> Option<Delivery> {
        let challenge = self.link.as_ref().map(|key| {
            let (header, challenge) = key.sign(&Method::POST, PUBLISH_PATH, &body);
            (header, challenge)
        });
        let mut req = Request::post(format!("http://{addr}{PUBLISH_PATH}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .ok()?;
        let challenge = challenge.map(|(header, challenge)| {
            req.headers_mut().insert(REQUEST_HEADER, header);
            challenge
        });
        let exchange = async {
            let resp = self.client.request(req).await.ok()?;
            // A peer that cannot prove the key gets no credit (and was sent no secret).
            if let Some(c) = &challenge {
                if let Err(e) = c.verify(resp.status(), resp.headers()) {
                    tracing::warn!(%addr, error = %e, "peer refused: it cannot prove the cluster key");
                    return None;
                }
            }
            let status = resp.status();
            // 404 (no session there) and 503 (all full) still carry counts.
            if !(status.is_success()
                || status == StatusCode::NOT_FOUND
                || status == StatusCode::SERVICE_UNAVAILABLE)
            {
                tracing::warn!(%addr, %status, "peer refused a publish");
                return None;
            }
            let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .ok()?
                .to_bytes();
            serde_json::from_slice::<Delivery>(&bytes).ok()
        };
        match tokio::time::timeout(PEER_TIMEOUT, exchange).await {
            Ok(c) => c,
            Err(_) => {
                tracing::warn!(%addr, "peer publish timed out");
                None
            }
        }
    }
}
