//! The admin port (9090): health, the cluster view, Prometheus metrics and the publish front
//! door. Leaders accept no client WebSockets, here or anywhere.
//!
//! The front door: in AWS a backend calls `POST /api/v1/publish` on a leader (stable private DNS
//! names, where workers come and go on changing addresses) with the admin token, and the leader
//! fans the message out to every serving worker over the node links, each within its deadline,
//! answering with every worker's outcome (a topic publish only to workers with subscribers).
//! `GET /api/v1/presence?topic=T|clientId=C` asks every worker who is online, `GET
//! /api/v1/topics` which topics have subscribers; `POST /api/v1/disconnect`, `/api/v1/subscribe`
//! and `/api/v1/unsubscribe` act on a client's sessions wherever they are.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ews_cluster::command::{
    self, Disconnect, TopicChange, TopicCounts, DISCONNECT_PATH, SUBSCRIBE_PATH, UNSUBSCRIBE_PATH,
};
use ews_cluster::presence::{self, Presence};
use ews_cluster::publish::{Delivery, Fanout, Publish};
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
    /// Topics with history: a front-door publish to one is appended before it fans out.
    pub history: Option<std::sync::Arc<ews_history::History>>,
    /// Reaches the workers for a publish.
    pub fanout: Fanout,
}

impl Admin {
    pub async fn route(self: Arc<Self>, req: Request<Incoming>, _: SocketAddr) -> Response<Body> {
        let post = req.method() == Method::POST;
        if req.method() != Method::GET && !post {
            return reply::text(StatusCode::METHOD_NOT_ALLOWED, "Unhandled HTTP method");
        }
        let open = matches!(req.uri().path(), "/info" | "/metrics");
        if !open {
            if let Some(refusal) = admin_refusal(self.token.as_ref(), req.headers()) {
                return refusal;
            }
        }
        if post {
            return self.command(req).await;
        }
        match req.uri().path() {
            "/info" if self.draining.load(Ordering::Relaxed) => {
                reply::text(StatusCode::SERVICE_UNAVAILABLE, "draining")
            }
            "/info" => reply::text(StatusCode::OK, "Success"),
            "/api/v1/topics" => {
                let mut all = TopicCounts::default();
                self.fanout.topics(&mut all).await;
                all.into_response()
            }
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

    /// A backend's `POST`: publish, disconnect, subscribe or unsubscribe, fanned out to every
    /// worker that may hold its sessions, each worker's outcome in the answer.
    async fn command(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let mut all = Delivery::default();
        let sent = match path.as_str() {
            "/api/v1/publish" => match command::read::<Publish>(req, None).await {
                Ok(p) if p.at.is_some() => Err(reply::text(
                    StatusCode::BAD_REQUEST,
                    "offset and epoch are given by the cluster, not by a publisher",
                )),
                Ok(p) => {
                    // A topic with history: appended here first, then fanned out stamped.
                    let parts = match &self.history {
                        Some(h) => ews_cluster::publish::stamp(h, p).await,
                        None => Ok(vec![p]),
                    };
                    match parts {
                        Ok(parts) => {
                            for part in &parts {
                                self.fanout.publish(part, &mut all).await;
                            }
                            all.kept_at(&parts);
                        }
                        Err(e) => all.add_node("history", Err(e.to_string())),
                    }
                    Ok(())
                }
                Err(r) => Err(r),
            },
            "/api/v1/disconnect" => {
                self.everywhere::<Disconnect>(req, DISCONNECT_PATH, &mut all)
                    .await
            }
            "/api/v1/subscribe" => {
                self.everywhere::<TopicChange>(req, SUBSCRIBE_PATH, &mut all)
                    .await
            }
            "/api/v1/unsubscribe" => {
                self.everywhere::<TopicChange>(req, UNSUBSCRIBE_PATH, &mut all)
                    .await
            }
            _ => return reply::text(StatusCode::NOT_FOUND, "Not found"),
        };
        match sent {
            Ok(()) => all.into_response(),
            Err(r) => r,
        }
    }

    /// Reads a `T` and sends it to `path` on every worker.
    async fn everywhere<T: serde::de::DeserializeOwned + serde::Serialize>(
        &self,
        req: Request<Incoming>,
        path: &str,
        all: &mut Delivery,
    ) -> Result<(), Response<Body>> {
        let body: T = command::read(req, None).await?;
        self.fanout.deliver_json(path, &body, all).await;
        Ok(())
    }
}
