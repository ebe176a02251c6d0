//! Cluster-wide publish over the node link (TCP on the internal port, next to gossip on UDP).
//!
//! A worker in a cluster serves `POST /internal/v1/publish` on its internal port: the same body
//! as the admin API, delivered to local sessions only, guarded by the cluster secret. The admin
//! `POST /api/v1/publish` uses [`Peers::publish`] to fan the message out to every other serving
//! worker, a few at a time and with a short timeout each, so one slow or dead peer costs at most
//! that timeout and never stalls the others.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ews_cluster::{link, ClusterSecret, Membership, Role};
use futures_util::stream::{self, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::admin::{self, respond};
use crate::server::Body;
use crate::WorkerHandle;

/// Node-link path of the local-only publish.
pub const PUBLISH_PATH: &str = "/internal/v1/publish";
/// Peers contacted at once by one publish.
const FANOUT_CONCURRENCY: usize = 16;
/// Longest wait for one peer (connect, request and answer).
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds the node link on `listen`'s IP and the gossip port number (gossip may have picked the
/// port when `listen` asked for port 0) and serves it for the life of the process.
pub async fn start(
    membership: &Membership,
    listen: SocketAddr,
    worker: WorkerHandle,
) -> anyhow::Result<()> {
    let addr = SocketAddr::new(listen.ip(), membership.gossip_addr().port());
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the internal TCP port {addr}: {e}"))?;
    let secret = membership.secret().cloned();
    tracing::info!(internal = %addr, "node link listening");
    tokio::spawn(serve(listener, worker, secret));
    Ok(())
}

async fn serve(listener: TcpListener, worker: WorkerHandle, secret: Option<ClusterSecret>) {
    let secret = Arc::new(secret);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::debug!(error = %e, "node link accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (worker, secret) = (worker.clone(), secret.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (worker, secret) = (worker.clone(), secret.clone());
                async move { Ok::<_, Infallible>(route(req, &worker, secret.as_ref().as_ref()).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn route(
    req: Request<Incoming>,
    worker: &WorkerHandle,
    secret: Option<&ClusterSecret>,
) -> http::Response<Body> {
    if !link::authorized(req.headers(), secret) {
        return respond(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "cluster secret required",
        );
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/info") => respond(StatusCode::OK, "text/plain", "Success"),
        (&Method::POST, PUBLISH_PATH) => match admin::read_publish(req).await {
            Ok(p) => admin::local_response(worker.push(&p.client_id, &p.msg)),
            Err(r) => r,
        },
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
    }
}

/// Counts from one node, as the publish endpoints answer them.
#[derive(Debug, Default, Deserialize)]
struct Counts {
    delivered: usize,
    dropped: usize,
}

/// What a cluster-wide publish reached.
#[derive(Debug, Default, Serialize)]
pub struct FanoutResult {
    pub delivered: usize,
    pub dropped: usize,
    /// Node ids of the peers that did not answer with counts.
    pub failed: Vec<String>,
}

impl FanoutResult {
    /// 200 when any session took the message; otherwise 502 if a peer failed (the client may
    /// be there), 503 if every queue was full, 404 if no worker has the client.
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
}

/// The other workers of the cluster, reached over their node link.
pub struct Peers {
    membership: Arc<Membership>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Peers {
    pub fn new(membership: Arc<Membership>) -> Peers {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(PEER_TIMEOUT));
        Peers {
            membership,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Sends the publish `body` to every other serving worker; their counts summed.
    pub async fn publish(&self, body: Bytes) -> FanoutResult {
        let view = self.membership.view();
        let targets: Vec<(String, Option<String>)> = view
            .serving(Role::Worker)
            .filter(|m| !m.is_self)
            .map(|m| (m.node_id.clone(), m.internal_addr.clone()))
            .collect();
        let answers: Vec<(String, Option<Counts>)> = stream::iter(targets)
            .map(|(id, addr)| {
                let body = body.clone();
                async move {
                    let counts = match addr {
                        Some(a) => self.ask(&a, body).await,
                        None => None,
                    };
                    (id, counts)
                }
            })
            .buffer_unordered(FANOUT_CONCURRENCY)
            .collect()
            .await;
        let mut result = FanoutResult::default();
        for (id, counts) in answers {
            match counts {
                Some(c) => {
                    result.delivered += c.delivered;
                    result.dropped += c.dropped;
                }
                None => result.failed.push(id),
            }
        }
        result.failed.sort();
        result
    }

    async fn ask(&self, addr: &str, body: Bytes) -> Option<Counts> {
        let addr: SocketAddr = addr.parse().ok()?;
        let mut req = Request::post(format!("http://{addr}{PUBLISH_PATH}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .ok()?;
        if let Some((name, value)) = link::secret_header(self.membership.secret()) {
            req.headers_mut().insert(name, value);
        }
        let exchange = async {
            let resp = self.client.request(req).await.ok()?;
            let status = resp.status();
            // 404 (no session there) and 503 (all full) still carry counts.
            if !(status.is_success()
                || status == StatusCode::NOT_FOUND
                || status == StatusCode::SERVICE_UNAVAILABLE)
            {
                tracing::warn!(%addr, %status, "peer refused a publish");
                return None;
            }
            let bytes = Limited::new(resp.into_body(), 4096)
                .collect()
                .await
                .ok()?
                .to_bytes();
            serde_json::from_slice::<Counts>(&bytes).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn result(delivered: usize, dropped: usize, failed: &[&str]) -> FanoutResult {
        FanoutResult {
            delivered,
            dropped,
            failed: failed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn status_prefers_delivery_then_failure() {
        assert_eq!(result(1, 3, &["w2"]).status(), StatusCode::OK);
        assert_eq!(result(0, 3, &["w2"]).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(result(0, 3, &[]).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(result(0, 0, &[]).status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn peer_counts_parse_from_every_publish_answer() {
        let c: Counts = serde_json::from_str(r#"{"delivered":2,"dropped":1}"#).unwrap();
        assert_eq!((c.delivered, c.dropped), (2, 1));
        assert!(serde_json::from_str::<Counts>("not json").is_err());
    }
}
