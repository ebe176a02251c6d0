//! The node-link side of the internal port (TCP; gossip uses UDP on the same port number).
//!
//! Every request must be signed with the cluster key and every answer proves the key back
//! (`ews_http::link`; the secret never crosses the wire). Served here:
//! * `/queue/{name}`: the built-in queue, only while this leader holds the active term; the
//!   connection closes the moment the term ends, so workers' sinks move to the new active one;
//! * `/internal/v1/queues` and `/internal/v1/drain/{name}`: what a standby still holds, read
//!   by the active leader to take it over (`takeover`);
//! * `/internal/v1/state` (GET: what peers decide from; POST: a peer's new state) and `/info`
//!   (link check).

use std::net::SocketAddr;
use std::sync::Arc;

use ews_cluster::{Membership, STATE_PATH};
use ews_http::link::{self, Accepted, Verifier};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use ews_http::reply::{self, Body};
use tokio_util::task::TaskTracker;

use crate::activity::Activity;
use crate::takeover::{QueueDepth, DRAIN_PREFIX, QUEUES_PATH};

pub struct InternalRoutes {
    /// `None` without a cluster secret (loopback development): the port is then open.
    pub verifier: Option<Verifier>,
    /// The built-in queue broker, opened on first use.
    pub queue: Arc<ews_queue::args::LazyBroker>,
    /// The active term, if this leader holds one.
    pub activity: Activity,
    /// The queue connections served over this port.
    pub connections: TaskTracker,
    /// Answers `GET /internal/v1/state`, what peers decide from.
    pub membership: Arc<Membership>,
}

impl InternalRoutes {
    pub async fn route(self: Arc<Self>, req: Request<Incoming>, _: SocketAddr) -> Response<Body> {
        let accepted = match link::admit(self.verifier.as_ref(), &req) {
            Ok(a) => a,
            Err(refusal) => return refusal.into_response(),
        };
        match (req.method(), req.uri().path()) {
            // Proven over their bodies: peers decide from them.
            (&Method::GET, STATE_PATH) => return self.membership.state_answer(accepted.as_ref()),
            // A worker's new topic interest: the front door routes by it before the worker
            // tells its client `subscribed`.
            (&Method::POST, STATE_PATH) => {
                return self.membership.accept_state(accepted.as_ref(), req).await
            }
            (&Method::GET, QUEUES_PATH) => return self.queues(accepted.as_ref()),
            _ => {}
        }
        let mut resp = self.answer(req);
        // Every answer proves the key, the queue's 101 included: a worker sends no event to a
        // node that cannot.
        if let Some(a) = &accepted {
            a.prove(&mut resp);
        }
        resp
    }

    fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        if req.method() != Method::GET {
            return reply::text(StatusCode::NOT_FOUND, "Not found");
        }
        if path == "/info" {
            return reply::text(StatusCode::OK, "Success");
        }
        let (name, stop) = if let Some(name) = ews_queue::server::queue_name(&path) {
            let Some(term) = self.activity.borrow().clone() else {
                // The worker's queue sink retries and follows the active leader.
                return reply::text(StatusCode::SERVICE_UNAVAILABLE, "not the active leader");
            };
            (name.to_string(), term.ended)
        } else if let Some(name) = path
            .strip_prefix(DRAIN_PREFIX)
            .filter(|n| ews_queue::valid_name(n))
        {
            if self.activity.borrow().is_some() {
                // The active leader's queue is read by consumers, not taken over.
                return reply::text(StatusCode::CONFLICT, "this leader is active");
            }
            (name.to_string(), CancellationToken::new())
        } else {
            return reply::text(StatusCode::NOT_FOUND, "Not found");
        };
        match self.queue.get() {
            Ok(broker) => {
                ews_queue::server::upgrade_queue(&broker, &name, req, &self.connections, stop)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open the built-in queue");
                reply::text(StatusCode::SERVICE_UNAVAILABLE, "queue unavailable")
            }
        }
    }

    /// `GET /internal/v1/queues`: every queue this leader holds and its depth.
    fn queues(&self, accepted: Option<&Accepted>) -> Response<Body> {
        let depths: Vec<QueueDepth> = match self.queue.get() {
            Ok(b) => b
                .depths()
                .into_iter()
                .map(|(name, depth)| QueueDepth { name, depth })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the built-in queue");
                return reply::text(StatusCode::SERVICE_UNAVAILABLE, "queue unavailable");
            }
        };
        let body = serde_json::to_vec(&depths).unwrap_or_default();
        let mut resp = reply::with_type(StatusCode::OK, "application/json", body.clone());
        if let Some(a) = accepted {
            a.prove_with_body(&mut resp, &body);
        }
        resp
    }
}
