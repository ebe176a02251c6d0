//! The admin port: metrics, the session API, publish (to a client or a topic) and presence. Never routed through the load
//! balancer. In a cluster it also serves the cluster view (`/members`) and publish reaches the
//! other workers through a [`Fanout`]; a standalone worker serves its embedded queue here
//! (`/queue/{name}`), so `ews-queue read` can read its events while it runs. Every route but
//! `/metrics` needs the admin token.

use std::net::SocketAddr;
use std::sync::Arc;

use ews_cluster::command::{self, Disconnect, TopicChange};
use ews_cluster::presence;
use ews_http::args::{admin_refusal, Secret};
use ews_http::reply::{self, Body};
use ews_queue::Broker;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::pubsub::PubSub;
use crate::registry::Registry;

pub struct Admin {
    /// Required on every route but `/metrics` and `/info`; `None` only on a loopback-bound port.
    pub token: Option<Secret>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    /// Publish and presence, here and (in a cluster) on every other worker.
    pub pubsub: Arc<PubSub>,
    /// The embedded queue broker (a standalone worker), served as `/queue/{name}` so its events
    /// can be read while the worker runs.
    pub broker: Option<Arc<Broker>>,
    /// Those queue connections.
    pub queue_connections: TaskTracker,
    /// Cancelled when the drain begins: `/info` turns 503, as on the public port.
    pub drain: tokio_util::sync::CancellationToken,
}

impl Admin {
    pub async fn route(self: Arc<Self>, req: Request<Incoming>, _: SocketAddr) -> Response<Body> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => return reply::metrics(self.metrics.render()),
            // Open, as on every admin port: an operator's liveness check.
            (&Method::GET, "/info") if self.drain.is_cancelled() => {
                return reply::text(StatusCode::SERVICE_UNAVAILABLE, "draining")
            }
            (&Method::GET, "/info") => return reply::text(StatusCode::OK, "Success"),
            _ => {}
        }
        if let Some(refusal) = admin_refusal(self.token.as_ref(), req.headers()) {
            return refusal;
        }
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/api/v1/sessions") => {
                reply::json(StatusCode::OK, &self.registry.list())
            }
            (&Method::POST, "/api/v1/publish") => {
                match command::read::<ews_cluster::publish::Publish>(req, None).await {
                    Ok(p) if p.at.is_some() => reply::text(
                        StatusCode::BAD_REQUEST,
                        "offset and epoch are given by the cluster, not by a publisher",
                    ),
                    Ok(p) => self.pubsub.publish(&p).await.into_response(),
                    Err(r) => r,
                }
            }
            (&Method::POST, "/api/v1/disconnect") => {
                match command::read::<Disconnect>(req, None).await {
                    Ok(d) => self.pubsub.disconnect(&d).await.into_response(),
                    Err(r) => r,
                }
            }
            (&Method::POST, path @ ("/api/v1/subscribe" | "/api/v1/unsubscribe")) => {
                let subscribe = path == "/api/v1/subscribe";
                match command::read::<TopicChange>(req, None).await {
                    Ok(c) => self
                        .pubsub
                        .change_topic(&c, subscribe)
                        .await
                        .into_response(),
                    Err(r) => r,
                }
            }
            (&Method::GET, "/api/v1/topics") => self.pubsub.topics().await.into_response(),
            (&Method::GET, "/api/v1/presence") => self.presence(req.uri().query()).await,
            (&Method::GET, "/members") => match self.pubsub.membership() {
                Some(m) => reply::with_type(StatusCode::OK, "application/json", m.view().to_json()),
                None => reply::text(StatusCode::NOT_FOUND, "not found"),
            },
            (&Method::GET, path) if path.starts_with("/queue/") => match &self.broker {
                Some(b) => ews_queue::server::upgrade(b, req, &self.queue_connections),
                None => reply::text(
                    StatusCode::NOT_FOUND,
                    "no embedded queue on this node (it sends events elsewhere)",
                ),
            },
            (&Method::GET, _) => reply::text(StatusCode::NOT_FOUND, "not found"),
            _ => reply::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
    }

    /// `GET /api/v1/presence?topic=T|clientId=C`: this node's sessions and, in a cluster, every
    /// other serving worker's.
    async fn presence(&self, query: Option<&str>) -> Response<Body> {
        match presence::Query::parse(query) {
            Ok(q) => self.pubsub.presence(&q).await.into_response(&q),
            Err(e) => reply::text(StatusCode::BAD_REQUEST, e),
        }
    }
}
