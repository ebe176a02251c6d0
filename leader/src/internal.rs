//! The node-link side of the internal port (TCP; gossip uses UDP on the same port number).
//!
//! Every request must carry the cluster secret (see [`ews_cluster::link`]). Routes live in
//! [`InternalRoutes::handle`]: the active leader's built-in queue is served here as the
//! WebSocket `/queue/{name}`, next to `/info`, which peers use to check the link.

use std::sync::Arc;

use ews_cluster::{link, ClusterSecret};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::http::{text, Body};

pub struct InternalRoutes {
    pub secret: Option<ClusterSecret>,
}

impl InternalRoutes {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if !link::authorized(req.headers(), self.secret.as_ref()) {
            return text(StatusCode::UNAUTHORIZED, "cluster secret required");
        }
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/info") => text(StatusCode::OK, "Success"),
            // Node-link services are added here, e.g. `/queue/{name}` (WebSocket upgrade of the
            // built-in queue, served by the active leader).
            _ => text(StatusCode::NOT_FOUND, "Not found"),
        }
    }
}
