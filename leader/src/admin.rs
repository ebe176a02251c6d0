//! The admin port (9090): health, the cluster view and Prometheus metrics. Leaders accept no
//! client WebSockets, here or anywhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ews_cluster::ClusterView;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::http::{respond, text, Body};

pub struct Admin {
    pub view: watch::Receiver<Arc<ClusterView>>,
    pub registry: Registry,
    /// Set on SIGTERM: `/info` answers 503 from then on.
    pub draining: AtomicBool,
}

impl Admin {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "Unhandled HTTP method");
        }
        match req.uri().path() {
            "/info" if self.draining.load(Ordering::Relaxed) => {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining")
            }
            "/info" => text(StatusCode::OK, "Success"),
            "/members" => {
                let view = self.view.borrow().clone();
                respond(StatusCode::OK, "application/json", view.to_json())
            }
            "/metrics" => {
                let mut out = String::new();
                match prometheus_client::encoding::text::encode(&mut out, &self.registry) {
                    Ok(()) => respond(
                        StatusCode::OK,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        out,
                    ),
                    Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed"),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "Not found"),
        }
    }
}
