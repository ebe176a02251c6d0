//! The node-link side of the internal port (TCP; gossip uses UDP on the same port number).
//!
//! Every request must be signed with the cluster key and every answer proves the key back
//! (`ews_http::link`; the secret never crosses the wire). The active leader's built-in queue is
//! served here as the WebSocket `/queue/{name}`, next to `/info`, which peers use to check the
//! link.

use std::net::SocketAddr;
use std::sync::Arc;

use ews_cluster::{ClusterView, Membership, STATE_PATH};
use ews_http::link::{self, Verifier};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::watch;

use ews_http::reply::{self, Body};
use tokio_util::task::TaskTracker;

pub struct InternalRoutes {
    /// `None` without a cluster secret (loopback development): the port is then open.
    pub verifier: Option<Verifier>,
    /// The built-in queue broker, served only while this leader is the active one.
    pub queue: ews_queue::args::LazyBroker,
    pub view: watch::Receiver<Arc<ClusterView>>,
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
        if (req.method(), req.uri().path()) == (&Method::GET, STATE_PATH) {
            // Proven over its body: peers decide from it.
            return self.membership.state_answer(accepted.as_ref());
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
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/info") => reply::text(StatusCode::OK, "Success"),
            (&Method::GET, path) if path.starts_with("/queue/") => {
                if !self.view.borrow().is_active_leader() {
                    // The worker's queue sink retries and re-resolves the active leader.
                    return reply::text(StatusCode::SERVICE_UNAVAILABLE, "not the active leader");
                }
                match self.queue.get() {
                    Ok(broker) => ews_queue::server::upgrade(&broker, req, &self.connections),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot open the built-in queue");
                        reply::text(StatusCode::SERVICE_UNAVAILABLE, "queue unavailable")
                    }
                }
            }
            _ => reply::text(StatusCode::NOT_FOUND, "Not found"),
        }
    }
}
