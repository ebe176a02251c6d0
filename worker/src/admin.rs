//! The admin port: metrics and the session API. Never routed through the load balancer.
//! Other parts of the node (cluster membership) add their own routes through [`AdminRoute`].

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::link::Peers;
use crate::metrics::Metrics;
use crate::registry::{PushResult, Registry};
use crate::server::Body;

const MAX_PUBLISH_BODY: usize = 256 * 1024;

/// An extra GET route on the admin port: `(path, produce the response)`.
pub type AdminRoute = (&'static str, Arc<dyn Fn() -> Response<Body> + Send + Sync>);

pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub extra: Vec<AdminRoute>,
    /// The other workers, in a cluster: publish reaches their sessions too.
    pub peers: Option<Arc<Peers>>,
}

pub async fn serve(listener: TcpListener, admin: Arc<Admin>, stop: CancellationToken) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    admin.metrics.error("admin_accept");
                    tracing::debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let a = admin.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let a = a.clone();
                async move { Ok::<_, Infallible>(route(req, &a).await) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(tcp), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response<Body> {
    respond(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Publish {
    pub client_id: String,
    pub msg: String,
}

async fn route(req: Request<Incoming>, a: &Admin) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            a.metrics.render(),
        ),
        (&Method::GET, "/api/v1/sessions") => json(StatusCode::OK, &a.registry.list()),
        (&Method::POST, "/api/v1/publish") => publish(req, a).await,
        (&Method::GET, p) => match a.extra.iter().find(|(r, _)| *r == p) {
            Some((_, f)) => f(),
            None => respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
        },
        _ => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed",
        ),
    }
}

/// `POST /api/v1/publish {"clientId","msg"}`: 200 when at least one session of the client took
/// the message, 404 when the client has no session, 503 when every one was full. In a cluster
/// the other workers are asked too and the answer adds `failed` (peers that did not answer);
/// 502 when nothing was delivered and some peer failed.
async fn publish(req: Request<Incoming>, a: &Admin) -> Response<Body> {
    let p = match read_publish(req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let local = a.registry.push(&p.client_id, &p.msg);
    if let Some(r) = &local {
        for _ in 0..r.dropped {
            a.metrics.dropped("outbound_full");
        }
    }
    let Some(peers) = &a.peers else {
        return local_response(local);
    };
    let body = Bytes::from(serde_json::to_vec(&p).unwrap_or_default());
    let mut all = peers.publish(body).await;
    if let Some(r) = local {
        all.delivered += r.delivered;
        all.dropped += r.dropped;
    }
    json(all.status(), &all)
}

/// Reads and parses a publish body (bounded).
pub(crate) async fn read_publish(req: Request<Incoming>) -> Result<Publish, Response<Body>> {
    let body = match Limited::new(req.into_body(), MAX_PUBLISH_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                "body too large",
            ))
        }
    };
    serde_json::from_slice(&body)
        .map_err(|e| respond(StatusCode::BAD_REQUEST, "text/plain", e.to_string()))
}

/// The answer for this node's sessions alone.
pub(crate) fn local_response(r: Option<PushResult>) -> Response<Body> {
    match r {
        None => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"delivered": 0, "dropped": 0}),
        ),
        Some(r) => {
            let status = if r.delivered > 0 {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(status, &r)
        }
    }
}
