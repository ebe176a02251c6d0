//! The admin port (9090): health, the cluster view, Prometheus metrics and the publish front
//! door. Leaders accept no client WebSockets, here or anywhere.
//!
//! The front door: in AWS a backend calls `POST /api/v1/publish` on a leader (stable private DNS
//! names, where workers come and go on changing addresses) with the admin token, and the leader
//! fans the message out to every serving worker over the node links, each within its deadline,
//! answering with every worker's outcome (a topic publish only to workers with subscribers).
//! `GET /api/v1/presence?topic=T|clientId=C` asks every worker who is online.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ews_cluster::presence::{self, Presence};
use ews_cluster::publish::{self, Delivery, Fanout};
use ews_cluster::ClusterView;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use ews_http::args::{admin_refusal, Secret};
use ews_http::reply::{self, Body};

pub struct Admin {
    /// Required on every route but `/info` and `/metrics`; `None` only on a loopback-bound port.
    pub token: Option<Secret>,
    pub view: watch::Receiver<Arc<ClusterView>>,
    pub registry: Registry,
    /// Set on SIGTERM: `/info` answers 503 from then on.
    pub draining: AtomicBool,
    /// Reaches the workers for a publish.
    pub fanout: Fanout,
}

impl Admin {
    pub async fn route(self: Arc<Self>, req: Request<Incoming>, _: SocketAddr) -> Response<Body> {
        let publish = (req.method(), req.uri().path()) == (&Method::POST, "/api/v1/publish");
        if req.method() != Method::GET && !publish {
            return reply::text(StatusCode::METHOD_NOT_ALLOWED, "Unhandled HTTP method");
        }
        let open = matches!(req.uri().path(), "/info" | "/metrics");
        if !open {
            if let Some(refusal) = admin_refusal(self.token.as_ref(), req.headers()) {
                return refusal;
            }
        }
        if publish {
            return match publish::read(req, None).await {
                Ok(p) => {
                    let mut all = Delivery::default();
                    self.fanout.publish(&p, &mut all).await;
                    all.into_response()
                }
                Err(r) => r,
            };
        }
        match req.uri().path() {
            "/info" if self.draining.load(Ordering::Relaxed) => {
                reply::text(StatusCode::SERVICE_UNAVAILABLE, "draining")
            }
            "/info" => reply::text(StatusCode::OK, "Success"),
            "/api/v1/presence" => match presence::Query::parse(req.uri().query()) {
                Ok(q) => {
                    let mut all = Presence::default();
                    self.fanout.presence(&q, &mut all).await;
                    all.into_response(&q)
                }
                Err(e) => reply::text(StatusCode::BAD_REQUEST, e),
            },
            "/members" => {
                let view = self.view.borrow().clone();
                reply::with_type(StatusCode::OK, "application/json", view.to_json())
            }
            "/metrics" => {
                let mut out = String::new();
                match prometheus_client::encoding::text::encode(&mut out, &self.registry) {
                    Ok(()) => reply::metrics(out),
                    Err(_) => {
                        reply::text(StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed")
                    }
                }
            }
            _ => reply::text(StatusCode::NOT_FOUND, "Not found"),
        }
    }
}
