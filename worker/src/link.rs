//! The node link: HTTP on the internal TCP port (gossip uses UDP on the same port number).
//!
//! A worker in a cluster serves `POST /internal/v1/publish` here (the same body as the admin
//! API, delivered to this node's sessions only), the same for `disconnect`, `subscribe` and
//! `unsubscribe`, `GET /internal/v1/topics` (this node's topics), `POST
//! /internal/v1/presence-events` (another node's join/leave events, for this node's
//! subscribers) and `GET /internal/v1/presence` (this node's
//! sessions for a topic or client id) and `POST /internal/v1/session` (a session stream: this
//! node runs the handler of a session another worker holds the socket of; HTTP/2, one stream
//! per session) and `POST /internal/v1/state` (a peer's new state, so topic publishes from
//! here reach it at once) and `POST /internal/v1/lost` (the active leader wrote this
//! generation off: end every session and exit). Requests are signed with the cluster key and
//! answers prove it back (`ews_http::link`); the secret itself never crosses the wire. The other
//! side, the fan-out of a cluster publish, is `ews_cluster::publish::Fanout`.

use std::net::SocketAddr;
use std::sync::Arc;

use ews_cluster::command::{
    self, Disconnect, Lost, PresenceEvents, TopicChange, DISCONNECT_PATH, LOST_PATH,
    PRESENCE_EVENTS_PATH, SUBSCRIBE_PATH, TOPICS_PATH, UNSUBSCRIBE_PATH,
};
use ews_cluster::presence::{self, PRESENCE_PATH};
use ews_cluster::publish::{Publish, PUBLISH_PATH};
use ews_cluster::{Membership, STATE_PATH};
use ews_http::link::{self, Verifier};
use ews_http::link_stream::LinkBody;
use ews_http::reply;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::pubsub::deliver_here;
use crate::registry::Registry;
use crate::remote::hosted::Hosted;
use crate::remote::SESSION_PATH;
use crate::streams::NodeHistory;

/// The node-link routes of a worker.
pub struct Link {
    /// `None` without a cluster secret (loopback development): the link is then open.
    pub verifier: Option<Verifier>,
    /// Answers `GET /internal/v1/state`, what peers decide from.
    pub membership: Arc<Membership>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// Runs handlers for sessions other workers hold.
    pub hosted: Arc<Hosted>,
    /// Topics one session may hold (a server-side subscribe is bound by it too).
    pub max_topics: usize,
    /// Topics with history: a stamped publish is delivered in its stream's order.
    pub history: Option<NodeHistory>,
    /// Cancelled when the active leader says it wrote this generation off (`POST
    /// /internal/v1/lost`): the node then ends its sessions and exits.
    pub lost: CancellationToken,
}

impl Link {
    /// Every request must be signed with the cluster key; every answer proves the key back.
    pub async fn route(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<LinkBody> {
        let accepted = match link::admit(self.verifier.as_ref(), &req) {
            Ok(a) => a,
            Err(refusal) => return refusal.into_response().map(LinkBody::from),
        };
        if (req.method(), req.uri().path()) == (&Method::POST, SESSION_PATH) {
            let mut resp = self.hosted.accept(req, peer, accepted.as_ref());
            if let Some(a) = &accepted {
                a.prove(&mut resp);
            }
            return resp;
        }
        let mut resp = match (req.method(), req.uri().path()) {
            (&Method::GET, "/info") => reply::text(StatusCode::OK, "Success"),
            // Proven over its body, so it returns here rather than below.
            (&Method::GET, STATE_PATH) => {
                return self
                    .membership
                    .state_answer(accepted.as_ref())
                    .map(LinkBody::from)
            }
            // A peer's new state (proven by the membership).
            (&Method::POST, STATE_PATH) => {
                return self
                    .membership
                    .accept_state(accepted.as_ref(), req)
                    .await
                    .map(LinkBody::from)
            }
            (&Method::POST, PUBLISH_PATH) => {
                match command::read::<Publish>(req, accepted.as_ref()).await {
                    Ok(p) => {
                        let d = deliver_here(&self.registry, self.history.as_ref(), &p).await;
                        for _ in 0..d.dropped {
                            self.metrics.dropped("outbound_full");
                        }
                        d.into_response()
                    }
                    Err(r) => r,
                }
            }
            (&Method::POST, LOST_PATH) => match command::read::<Lost>(req, accepted.as_ref()).await
            {
                Ok(l) if l.generation == self.membership.own_state().generation => {
                    tracing::error!("the active leader wrote this generation off as lost");
                    self.lost.cancel();
                    reply::text(StatusCode::OK, "ending every session")
                }
                Ok(_) => reply::text(StatusCode::CONFLICT, "not this generation"),
                Err(r) => r,
            },
            (&Method::POST, DISCONNECT_PATH) => {
                match command::read::<Disconnect>(req, accepted.as_ref()).await {
                    Ok(d) => self.registry.disconnect(&d).into_response(),
                    Err(r) => r,
                }
            }
            (&Method::POST, path @ (SUBSCRIBE_PATH | UNSUBSCRIBE_PATH)) => {
                let subscribe = path == SUBSCRIBE_PATH;
                match command::read::<TopicChange>(req, accepted.as_ref()).await {
                    Ok(c) if subscribe => self
                        .registry
                        .subscribe_client(&c, self.max_topics)
                        .await
                        .into_response(),
                    Ok(c) => self.registry.unsubscribe_client(&c).into_response(),
                    Err(r) => r,
                }
            }
            (&Method::GET, TOPICS_PATH) => {
                reply::json(StatusCode::OK, &self.registry.topic_counts())
            }
            (&Method::POST, PRESENCE_EVENTS_PATH) => {
                match command::read::<PresenceEvents>(req, accepted.as_ref()).await {
                    Ok(e) => self.registry.deliver_presence(&e.events).into_response(),
                    Err(r) => r,
                }
            }
            (&Method::GET, PRESENCE_PATH) => match presence::Query::parse(req.uri().query()) {
                Ok(q) => self.registry.presence(&q).into_response(),
                Err(e) => reply::text(StatusCode::BAD_REQUEST, e),
            },
            _ => reply::text(StatusCode::NOT_FOUND, "not found"),
        };
        if let Some(a) = &accepted {
            a.prove(&mut resp);
        }
        resp.map(LinkBody::from)
    }
}
