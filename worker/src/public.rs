//! The public port: `/info` for the load balancer, WebSocket upgrades on the configured routes,
//! the test page with `--standalone` or `--test-page`. Every refusal happens before the upgrade, as an HTTP status
//! the client (and the load balancer) can see.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ews_cluster::placement::Placement;
use ews_http::reply::{self, Body};
use ews_http::{Event, Events, Limits, WsUpgrade};
use ews_proto::topic::Grants;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::handler::{ServedRoute, SessionState};
use crate::metrics::Metrics;
use crate::registry::{Registry, SessionShared};
use crate::remote::{Placed, Placer};
use crate::session::{self, Handling, Session, SessionEnv};
use crate::{page, token};

/// Everything the public port needs, shared by all connections.
pub struct Public {
    pub routes: Arc<[ServedRoute]>,
    /// In a cluster: places the handlers of routes with a remote placement.
    pub placer: Option<Arc<Placer>>,
    /// `None` only with `--no-auth`.
    pub auth: Option<Authenticator>,
    /// Serve the test page (`/`, `/test-page.js`).
    pub test_page: bool,
    pub node: Arc<str>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub env: Arc<SessionEnv>,
    pub ws_config: WebSocketConfig,
    pub max_connections: usize,
    pub active: Arc<AtomicUsize>,
    pub outbound_queue: usize,
    pub handshake_timeout: Duration,
    pub sessions: TaskTracker,
    /// `--topics-open`: every session may join every topic.
    pub topics_open: bool,
}

/// The public port's limits: pending (not yet upgraded) connections up to the session capacity
/// (more could not become sessions anyway), each with one handshake timeout to upgrade. At that
/// cap a new connection closes the one waiting longest without a request (a socket that has not sent its request
/// yet), so the load balancer's `GET /info` is answered however many idle sockets there are.
pub fn limits(public: &Public) -> Limits {
    let metrics = public.metrics.clone();
    Limits {
        max_connections: public.max_connections,
        // Behind a load balancer every connection comes from its few addresses.
        max_per_source: None,
        header_read_timeout: public.handshake_timeout,
        request_timeout: public.handshake_timeout,
        events: Events::new(move |e| match e {
            Event::AcceptExhausted => metrics.error("accept_emfile"),
            Event::AcceptFailed => metrics.error("accept"),
            Event::HeaderTimeout | Event::RequestTimeout => metrics.handshake("timeout"),
            Event::Evicted => metrics.handshake("evicted"),
            Event::SourceLimit => metrics.handshake("source_limit"),
        }),
        http2: false,
    }
}

pub async fn route(mut req: Request<Incoming>, peer: SocketAddr, p: Arc<Public>) -> Response<Body> {
    let path = req.uri().path();
    // The health check is `GET /info` only: any other method, there too, is unhandled.
    if path == "/info" && req.method() == Method::GET {
        return if p.env.drain.is_cancelled() {
            reply::text(StatusCode::SERVICE_UNAVAILABLE, "draining")
        } else {
            reply::text(StatusCode::OK, "Success")
        };
    }
    if req.method() != Method::GET {
        return reply::text(StatusCode::FORBIDDEN, "Unhandled HTTP method");
    }
    if !WsUpgrade::is_requested(req.headers()) {
        if let Some(resp) = page::serve(path, p.test_page) {
            return resp;
        }
        p.metrics.handshake("bad_request");
        return reply::text(StatusCode::BAD_REQUEST, "no websocket upgrade header");
    }
    let Some(route) = p.routes.iter().find(|r| &*r.path == path).cloned() else {
        p.metrics.handshake("not_found");
        return reply::text(StatusCode::NOT_FOUND, "no such WebSocket route");
    };
    let upgrade = match WsUpgrade::from_request(&mut req) {
        Ok(u) => u,
        Err(rejection) => {
            p.metrics.handshake("bad_request");
            return rejection.into_response();
        }
    };
    if p.env.drain.is_cancelled() {
        p.metrics.handshake("draining");
        return reply::text(StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    if p.active.load(Ordering::Relaxed) >= p.max_connections {
        p.metrics.handshake("over_capacity");
        return reply::text(StatusCode::SERVICE_UNAVAILABLE, "over capacity");
    }

    let query = req.uri().query();
    let ack = query.and_then(|q| token::query_param(q, "ack")) == Some("1");
    let found = token::find(req.headers(), query);
    let via_subprotocol = found.as_ref().is_some_and(|f| f.via_subprotocol);
    let identity = match &p.auth {
        None => None,
        Some(auth) => {
            let verdict = match &found {
                Some(f) => auth.verify(f.token).await,
                None => Err(crate::auth::AuthError("no token".into())),
            };
            match verdict {
                Ok(id) => Some(id),
                Err(e) => {
                    p.metrics.handshake("unauthorized");
                    tracing::info!(%peer, reason = %e, "token refused");
                    let mut r = reply::text(StatusCode::UNAUTHORIZED, "invalid token");
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer error=\"invalid_token\""),
                    );
                    return r;
                }
            }
        }
    };

    let (client_id, grants): (Option<Arc<str>>, Arc<Grants>) = match identity {
        _ if p.topics_open => (identity.map(|i| i.sub.into()), ANY.clone()),
        Some(i) if i.grants == Grants::None => (Some(i.sub.into()), NONE.clone()),
        Some(i) => (Some(i.sub.into()), Arc::new(i.grants)),
        None => (None, NONE.clone()),
    };

    // Reserve the slot now so concurrent upgrades cannot overshoot the capacity.
    let before = p.active.fetch_add(1, Ordering::AcqRel);
    if before >= p.max_connections {
        p.active.fetch_sub(1, Ordering::AcqRel);
        p.metrics.handshake("over_capacity");
        return reply::text(StatusCode::SERVICE_UNAVAILABLE, "over capacity");
    }
    p.metrics.connections_active.set(before as i64 + 1);
    // Where the handler runs: here, or on the worker the route's placement picks (the stream
    // to it is open before the client hears 101).
    let placed = match &p.placer {
        Some(placer) if route.placement != Placement::Local => {
            placer.place(&route, client_id.as_deref()).await
        }
        _ => Ok(Placed {
            node: p.node.clone(),
            handling: Handling::Local(route.handler.clone()),
        }),
    };
    let Placed { node, handling } = match placed {
        Ok(placed) => placed,
        Err(e) => {
            let now = p.active.fetch_sub(1, Ordering::AcqRel) - 1;
            p.metrics.connections_active.set(now as i64);
            p.metrics.handshake("no_handler_node");
            tracing::warn!(%peer, route = %route.path, error = %e, "no handler node");
            return reply::text(StatusCode::SERVICE_UNAVAILABLE, "no handler node available");
        }
    };
    // Listed (and reachable by publish) from the moment the 101 goes out.
    let shared = p.registry.register(
        client_id.clone(),
        route.path.clone(),
        peer,
        node.clone(),
        p.outbound_queue,
    );
    // Released however the session ends, also when the upgrade itself fails (the closure is
    // then dropped unrun).
    let slot = Slot {
        public: p.clone(),
        shared: shared.clone(),
    };
    p.metrics.handshake("ok");

    let upgrade = if via_subprotocol {
        upgrade.protocol(token::BEARER_PROTOCOL)
    } else {
        upgrade
    };
    let (mut response, upgrading) = upgrade.accept();
    if let Ok(v) = HeaderValue::from_str(&node) {
        response.headers_mut().insert(HANDLER_NODE, v);
    }
    let pp = p.clone();
    p.sessions.spawn(async move {
        let Some(ws) = upgrading.into_stream(pp.ws_config).await else {
            return; // `slot` goes with this task
        };
        let state = SessionState {
            id: shared.id,
            client_id,
            node: pp.node.clone(),
            last_seq: 0,
            grants,
        };
        let session = Session {
            handling,
            state,
            shared,
            ack,
        };
        session::run(ws, session, &pp.env).await;
        drop(slot);
    });
    response
}

/// Names the node running the session's handler on the `101`.
pub const HANDLER_NODE: header::HeaderName = header::HeaderName::from_static("x-ews-handler-node");

/// Grants shared by every session that has them, so most sessions allocate none of their own.
static NONE: LazyLock<Arc<Grants>> = LazyLock::new(|| Arc::new(Grants::None));
static ANY: LazyLock<Arc<Grants>> = LazyLock::new(|| Arc::new(Grants::Any));

/// One unit of session capacity and the session's registry entry, released when the session
/// ends however it ends.
struct Slot {
    public: Arc<Public>,
    shared: Arc<SessionShared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.public.registry.unregister(&self.shared);
        let now = self.public.active.fetch_sub(1, Ordering::AcqRel) - 1;
        self.public.metrics.connections_active.set(now as i64);
    }
}
