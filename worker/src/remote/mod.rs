//! Remote sessions: a handler on another worker than the socket. This file places one (rank
//! the serving workers by the route's placement, open a session stream on the chosen one's
//! node link, fall back to the next if it refuses); [`hosted`] is the handler's side,
//! [`stream`] the socket's. The stream is one HTTP/2 stream on the one connection this node keeps to that peer
//! (hyper's pool multiplexes); its request is signed with the cluster key and its answer must
//! prove the key before a single client message is sent ([`ews_http::link_stream`] tags every
//! message after that).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ews_cluster::placement;
use ews_cluster::{Member, Membership, Role};
use ews_http::link::{Audience, LinkKey, NodeRef, REQUEST_HEADER};
use ews_http::link_stream::{self, FrameBody, LinkStream, StreamKeys};
use ews_http::{H2_CONNECTION_WINDOW, H2_KEEPALIVE, H2_STREAM_WINDOW};
use http::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::handler::ServedRoute;
use crate::ids::{ClientId, NodeId, SessionId};
use crate::session::Handling;

pub mod hosted;
mod stream;

pub use stream::{next, Command, FromRemote, RemoteHandler};

/// Node-link path that opens a session stream.
pub const SESSION_PATH: &str = "/internal/v1/session";
/// Messages queued for the stream before sending waits (the rest is HTTP/2 flow control's).
pub const STREAM_DEPTH: usize = 16;
/// Workers tried for one session before the client is told none is available.
const ATTEMPTS: usize = 2;
/// An idle pooled connection to a peer is closed after this (below the peer's idle limit).
const POOL_IDLE: Duration = Duration::from_secs(5);

/// Where a session's handler ended up.
pub struct Placed {
    pub node: NodeId,
    pub handling: Handling,
}

impl Placed {
    /// The route's handler, run by `node`, the one holding the socket.
    pub fn here(node: NodeId, route: &ServedRoute) -> Placed {
        Placed {
            node,
            handling: Handling::local(route.handler.clone()),
        }
    }
}

/// Who the session is, as the handler's worker is told when its stream opens.
pub struct Opening<'a> {
    pub client: Option<&'a ClientId>,
    pub session: SessionId,
    pub ack: bool,
    /// The token's claims as JSON, for the handler's `on_open`.
    pub claims: Option<&'a str>,
}

/// Why no worker took a session's handler: each tried worker's refusal.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct NoHandlerNode(Vec<String>);

/// Opens session streams on other workers for the routes that place their handler remotely.
pub struct Placer {
    membership: Arc<Membership>,
    key: Option<LinkKey>,
    client: Client<HttpConnector, FrameBody>,
    /// Bounds opening a stream (connect, request and answer).
    deadline: Duration,
    max_message: usize,
    /// Sessions placed per node since the view the loads come from (see [`placement::rank`]).
    placed: Mutex<(usize, HashMap<String, u64>)>,
}

impl Placer {
    pub fn new(membership: Arc<Membership>, deadline: Duration, max_message: usize) -> Placer {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(deadline));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .http2_initial_stream_window_size(H2_STREAM_WINDOW)
            .http2_initial_connection_window_size(H2_CONNECTION_WINDOW)
            .http2_keep_alive_interval(H2_KEEPALIVE)
            .http2_keep_alive_timeout(H2_KEEPALIVE)
            .http2_keep_alive_while_idle(true)
            .http2_max_send_buf_size(64 * 1024)
            .build(connector);
        Placer {
            key: membership.secret().map(LinkKey::derive),
            membership,
            client,
            deadline,
            max_message,
            placed: Mutex::new((0, HashMap::new())),
        }
    }

    /// Where the handler of a new session on `route` (for `client_id`) runs: here, or on the
    /// first ranked worker that accepts a stream.
    pub async fn place(
        &self,
        route: &ServedRoute,
        who: &Opening<'_>,
    ) -> Result<Placed, NoHandlerNode> {
        let view = self.membership.view();
        let own = self.membership.node_id();
        let ranked: Vec<Member> = {
            let mut placed = self.placed.lock().unwrap_or_else(|p| p.into_inner());
            let version = Arc::as_ptr(&view) as usize;
            if placed.0 != version {
                *placed = (version, HashMap::new());
            }
            let counts = &placed.1;
            let workers = view.serving(Role::Worker);
            placement::rank(
                route.placement,
                workers,
                who.client.map(ClientId::as_str),
                |id| counts.get(id).copied().unwrap_or(0),
            )
            .into_iter()
            .take(ATTEMPTS)
            .cloned()
            .collect()
        };
        let mut refusals = Vec::new();
        for m in ranked {
            if m.is_self || m.node_id == own {
                return Ok(self.here(route));
            }
            let Some(addr) = m.internal_addr else {
                continue;
            };
            match self.open((&m.node_ref(), addr), route, who).await {
                Ok(stream) => {
                    self.count(&m.node_id);
                    return Ok(Placed {
                        node: m.node_id.as_str().into(),
                        handling: Handling::Remote(Box::new(RemoteHandler::new(
                            stream.sink,
                            stream.source,
                        ))),
                    });
                }
                Err(e) => {
                    tracing::warn!(node = %m.node_id, route = %route.path, error = %e, "remote handler refused");
                    refusals.push(format!("{}: {e}", m.node_id));
                }
            }
        }
        // A route placed elsewhere still serves when this worker is the only one left.
        if refusals.is_empty() {
            return Ok(self.here(route));
        }
        Err(NoHandlerNode(refusals))
    }

    fn here(&self, route: &ServedRoute) -> Placed {
        self.count(self.membership.node_id());
        Placed::here(self.membership.node_id().into(), route)
    }

    fn count(&self, node: &str) {
        let mut placed = self.placed.lock().unwrap_or_else(|p| p.into_inner());
        *placed.1.entry(node.to_string()).or_default() += 1;
    }

    /// Opens a session stream for `route` on the worker whose node link is `addr`.
    async fn open(
        &self,
        (to, addr): (&NodeRef, std::net::SocketAddr),
        route: &ServedRoute,
        who: &Opening<'_>,
    ) -> Result<LinkStream, String> {
        // In the signed target: the handler's worker trusts what the cluster key vouches for.
        let target = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query
                .append_pair("route", &route.path)
                .append_pair("handler", route.handler.name.as_str())
                .append_pair("from", self.membership.node_id())
                .append_pair("session", &who.session.to_string());
            if let Some(c) = who.client {
                query.append_pair("client", c);
            }
            if who.ack {
                query.append_pair("ack", "1");
            }
            if let Some(c) = who.claims {
                query.append_pair("claims", c);
            }
            format!("{SESSION_PATH}?{}", query.finish())
        };
        let (tx, body) = link_stream::outgoing(STREAM_DEPTH);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{addr}{target}"))
            .body(body)
            .map_err(|e| e.to_string())?;
        // The body is a stream, unknown when signing: it is signed as empty and every message
        // carries its own tag instead.
        let challenge = self.key.as_ref().map(|k| {
            let (header, challenge) = k.sign(&Method::POST, &target, b"", Audience::Node(to));
            req.headers_mut().insert(REQUEST_HEADER, header);
            challenge
        });
        let resp = tokio::time::timeout(self.deadline, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {} ms", self.deadline.as_millis()))?
            .map_err(|e| format!("request failed: {e}"))?;
        let (parts, incoming) = resp.into_parts();
        if let Some(c) = &challenge {
            c.verify(parts.status, &parts.headers)
                .map_err(|e| format!("cannot prove the cluster key: {e}"))?;
        }
        if parts.status != StatusCode::OK {
            return Err(format!("answered {}", parts.status));
        }
        Ok(LinkStream::new(
            tx,
            incoming,
            StreamKeys::opener(challenge.as_ref()),
            self.max_message,
        ))
    }
}
