//! The public port: `/info` for the load balancer, WebSocket upgrades on the configured routes,
//! the test page with `--standalone` or `--test-page`. Every refusal happens before the
//! upgrade, as an HTTP status the client (and the load balancer) can see: an upgrade passes
//! the admission steps of [`admit`] in order, and the first that refuses says why
//! ([`Refusal`]: a status and a metric label).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ews_cluster::placement::Placement;
use ews_http::reply::{self, Body};
use ews_http::Rejection;
use ews_http::{Event, Events, Limits, WsUpgrade};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthError, Authenticator, Rights};
use crate::handler::{Claims, Core, Expiry, ServedRoute};
use crate::hooks::{Caller, HookError, RouteHooks, SessionHooks};
use crate::ids::{ClientId, NodeId, SessionId};
use crate::metrics::Metrics;
use crate::registry::{Registry, SessionShared};
use crate::remote::{NoHandlerNode, Opening, Placed, Placer};
use crate::session::{self, Session, SessionEnv};
use crate::{page, token};
use ews_proto::hook::HookKind;
use ews_proto::ClientInfo;

/// Everything the public port needs, shared by all connections.
pub struct Public {
    pub routes: Arc<[ServedRoute]>,
    /// In a cluster: places the handlers of routes with a remote placement.
    pub placer: Option<Arc<Placer>>,
    /// `None` only with `--no-auth`.
    pub auth: Option<Arc<Authenticator>>,
    /// Serve the test page (`/`, `/test-page.js`).
    pub test_page: bool,
    pub node: NodeId,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub env: Arc<SessionEnv>,
    pub ws_config: WebSocketConfig,
    /// The node's session capacity; a session owns its permit until it ends.
    pub slots: Slots,
    pub outbound_queue: usize,
    pub handshake_timeout: Duration,
    pub sessions: TaskTracker,
    /// `--topics-open`: every session may join every topic.
    pub topics_open: bool,
    /// `--session-outlives-token`: no expiry is enforced after the upgrade.
    pub outlive_tokens: bool,
}

/// The public port's limits: pending (not yet upgraded) connections up to the session capacity
/// (more could not become sessions anyway), each with one handshake timeout to upgrade. At that
/// cap a new connection closes the one waiting longest without a request (a socket that has not sent its request
/// yet), so the load balancer's `GET /info` is answered however many idle sockets there are.
pub fn limits(public: &Public) -> Limits {
    let metrics = public.metrics.clone();
    Limits {
        max_connections: public.slots.max(),
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

/// Why an upgrade was refused.
enum Refusal {
    NotGet,
    NoUpgradeHeader,
    NoRoute,
    BadUpgrade(Rejection),
    Draining,
    OverCapacity,
    Unauthorized(AuthError),
    /// The backend disconnected this client and refuses it for this long.
    Banned(Duration),
    /// The route's `connect` hook refused the client: the status (4xx) and reason it gave.
    HookRefused(StatusCode, String),
    /// The route's `connect` hook did not answer usably.
    BackendUnavailable(HookError),
    NoHandlerNode(NoHandlerNode),
}

impl Refusal {
    /// The `ews_handshakes_total{outcome}` label (`None`: not an upgrade attempt, not counted).
    fn label(&self) -> Option<&'static str> {
        Some(match self {
            Refusal::NotGet => return None,
            Refusal::NoUpgradeHeader | Refusal::BadUpgrade(_) => "bad_request",
            Refusal::NoRoute => "not_found",
            Refusal::Draining => "draining",
            Refusal::OverCapacity => "over_capacity",
            Refusal::Unauthorized(_) => "unauthorized",
            Refusal::Banned(_) => "banned",
            Refusal::HookRefused(..) => "hook_refused",
            Refusal::BackendUnavailable(_) => "backend_unavailable",
            Refusal::NoHandlerNode(_) => "no_handler_node",
        })
    }

    fn into_response(self) -> Response<Body> {
        match self {
            Refusal::NotGet => reply::text(StatusCode::FORBIDDEN, "Unhandled HTTP method"),
            Refusal::NoUpgradeHeader => {
                reply::text(StatusCode::BAD_REQUEST, "no websocket upgrade header")
            }
            Refusal::NoRoute => reply::text(StatusCode::NOT_FOUND, "no such WebSocket route"),
            Refusal::BadUpgrade(r) => r.into_response(),
            // Either way another worker behind the load balancer likely has room: come back in
            // a second (the load balancer's round robin picks the next worker) rather than wait.
            Refusal::Draining | Refusal::OverCapacity => {
                let why = if matches!(self, Refusal::Draining) {
                    "draining"
                } else {
                    "over capacity"
                };
                let mut r = reply::text(StatusCode::SERVICE_UNAVAILABLE, why);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Refusal::Unauthorized(_) => {
                let mut r = reply::text(StatusCode::UNAUTHORIZED, "invalid token");
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                r
            }
            Refusal::Banned(left) => {
                let mut r = reply::text(StatusCode::FORBIDDEN, "disconnected by the backend");
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            Refusal::NoHandlerNode(_) => {
                reply::text(StatusCode::SERVICE_UNAVAILABLE, "no handler node available")
            }
            Refusal::HookRefused(status, reason) => reply::text(status, reason),
            Refusal::BackendUnavailable(_) => {
                let mut r = reply::text(StatusCode::SERVICE_UNAVAILABLE, "backend unavailable");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                r
            }
        }
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
    if req.method() == Method::GET && !WsUpgrade::is_requested(req.headers()) {
        if let Some(resp) = page::serve(path, p.test_page) {
            return resp;
        }
    }
    match admit(&mut req, peer, &p).await {
        Ok(resp) => resp,
        Err(refusal) => {
            if let Some(label) = refusal.label() {
                p.metrics.handshake(label);
            }
            match &refusal {
                Refusal::Unauthorized(e) => tracing::info!(%peer, reason = %e, "token refused"),
                Refusal::NoHandlerNode(e) => {
                    tracing::warn!(%peer, path = %req.uri().path(), error = %e, "no handler node")
                }
                Refusal::BackendUnavailable(e) => {
                    tracing::warn!(%peer, path = %req.uri().path(), error = %e, "connect hook failed")
                }
                _ => {}
            }
            refusal.into_response()
        }
    }
}

/// Who the client is, as its token says.
struct Who {
    client: Option<ClientId>,
    rights: Arc<Rights>,
    /// The token's `exp`, when the session is held to it.
    exp: Option<u64>,
    claims: Option<Box<Claims>>,
    via_subprotocol: bool,
    ack: bool,
    /// What the `connect` hook said about the client, for presence.
    info: Option<ClientInfo>,
}

/// The admission steps, in order: a WebSocket upgrade on a known route, a serving node, a free
/// session slot, a valid token, a node for the handler. Then the session starts.
async fn admit(
    req: &mut Request<Incoming>,
    peer: SocketAddr,
    p: &Arc<Public>,
) -> Result<Response<Body>, Refusal> {
    if req.method() != Method::GET {
        return Err(Refusal::NotGet);
    }
    if !WsUpgrade::is_requested(req.headers()) {
        return Err(Refusal::NoUpgradeHeader);
    }
    let route = p
        .routes
        .iter()
        .find(|r| *r.path == *req.uri().path())
        .cloned()
        .ok_or(Refusal::NoRoute)?;
    let upgrade = WsUpgrade::from_request(req).map_err(Refusal::BadUpgrade)?;
    if p.env.drain.is_cancelled() {
        return Err(Refusal::Draining);
    }
    let permit = Permit::take(p).ok_or(Refusal::OverCapacity)?;
    let mut who = authenticate(req, p).await?;
    if let Some(left) = who.client.as_ref().and_then(|c| p.registry.banned(c)) {
        return Err(Refusal::Banned(left));
    }
    let id = p.registry.new_id();
    let hooks = match &route.hooks {
        Some(h) => Some(connect_hook(p, h, &mut who, id).await?),
        None => None,
    };
    let Placed { node, handling } = place(p, &route, &who, id).await?;
    // Listed (and reachable by publish) from the moment the 101 goes out; released however the
    // session ends, also when the upgrade itself fails.
    let shared = SessionShared::new(
        id,
        who.client.clone(),
        route.path.clone(),
        peer,
        node.clone(),
        p.outbound_queue,
    )
    .with_presence(route.presence)
    .with_info(who.info.take());
    let control = route.handler.handler.takes_control_frames();
    let shared = register(p, shared, control).await;
    let slot = Slot {
        shared: shared.clone(),
        permit,
    };
    p.metrics.handshake("ok");
    let upgrade = if who.via_subprotocol {
        upgrade.protocol(token::BEARER_PROTOCOL)
    } else {
        upgrade
    };
    let (mut response, upgrading) = upgrade.accept();
    if let Ok(v) = HeaderValue::from_str(&node) {
        response.headers_mut().insert(HANDLER_NODE, v);
    }
    let mut core = Core::new(shared, who.rights, who.ack, false);
    if let Some(exp) = who.exp {
        let leeway = p.auth.as_ref().map_or(0, |a| a.leeway());
        core.expiry = Some(Expiry::new(exp, leeway));
    }
    core.hooks = hooks;
    let session = Session {
        handling,
        core,
        control: route.handler.handler.takes_control_frames(),
        claims: who.claims,
    };
    let pp = p.clone();
    // Boxed: see `session::run`.
    let session = Box::new(session);
    p.sessions.spawn(async move {
        let Some(ws) = upgrading.into_stream(pp.ws_config).await else {
            return; // `slot` goes with this task
        };
        session::run(ws, session, &pp.env).await;
        drop(slot);
    });
    Ok(response)
}

/// Lists the session. With history for client ids (on a route whose sessions answer control
/// frames), it becomes a receiver of its client's stream under that stream's lock, and its
/// first frame is `position`: where the stream stands, every push after it queued behind it.
async fn register(p: &Public, shared: SessionShared, control: bool) -> Arc<SessionShared> {
    let history = p.env.services.pubsub.history.as_ref();
    let clients = history.filter(|(h, _)| h.clients && control);
    let (Some((history, streams)), Some(client)) = (clients, shared.client_id.clone()) else {
        return p.registry.register(shared);
    };
    let key = crate::streams::StreamKey::Client(client.to_string());
    let top = match history.engine().top(&key.name()).await {
        Ok(top) => top,
        Err(e) => {
            tracing::warn!(error = %e, "history unavailable at connect: no position");
            return p.registry.register(shared);
        }
    };
    let joined = streams.pin(&p.registry, &key, &top, |here| {
        let s = p.registry.register(shared);
        let frame = ews_proto::ServerFrame::Position {
            offset: here.offset,
            epoch: here.epoch.clone(),
        };
        let _ = s.push(frame.to_text().into());
        Ok::<_, std::convert::Infallible>(s)
    });
    match joined {
        Ok((s, _)) => s,
        Err(never) => match never {},
    }
}

/// The route's `connect` hook: the backend refuses the client (a 4xx it chooses) or accepts
/// it, maybe granting topics beyond the token's and an earlier end than its `exp`. A hook that
/// fails refuses with 503 and `Retry-After`: an unchecked client is not let in.
async fn connect_hook(
    p: &Public,
    hooks: &Arc<RouteHooks>,
    who: &mut Who,
    id: SessionId,
) -> Result<Box<SessionHooks>, Refusal> {
    let caller = Caller {
        client: who.client.as_ref().map(|c| c.as_str()),
        node: &p.node,
        session: id.0,
        claims: who.claims.as_deref(),
    };
    let answer = hooks
        .call(HookKind::Connect, &caller, |_| {})
        .await
        .map_err(Refusal::BackendUnavailable)?;
    if let Some(a) = answer {
        if !a.accepted() {
            let status = a
                .status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .filter(StatusCode::is_client_error)
                .unwrap_or(StatusCode::FORBIDDEN);
            return Err(Refusal::HookRefused(status, a.into_reason()));
        }
        (who.rights, who.exp) = crate::hooks::apply_grants(who.rights.clone(), who.exp, &a)
            .map_err(Refusal::BackendUnavailable)?;
        who.info = a.info;
    }
    Ok(Box::new(SessionHooks {
        route: hooks.clone(),
        claims: who.claims.clone(),
    }))
}

/// Verifies the client's token (none with `--no-auth`) and reads what it grants.
async fn authenticate(req: &Request<Incoming>, p: &Public) -> Result<Who, Refusal> {
    let query = req.uri().query();
    let ack = query.and_then(|q| token::query_param(q, "ack")) == Some("1");
    let found = token::find(req.headers(), query);
    let via_subprotocol = found.as_ref().is_some_and(|f| f.via_subprotocol);
    let identity = match &p.auth {
        None => None,
        Some(auth) => {
            let token = found.as_ref().map(|f| f.token);
            let token = token.ok_or_else(|| Refusal::Unauthorized(AuthError("no token".into())))?;
            Some(auth.verify(token).await.map_err(Refusal::Unauthorized)?)
        }
    };
    let who = match identity {
        None => Who {
            client: None,
            rights: Rights::default().for_session(p.topics_open),
            exp: None,
            claims: None,
            via_subprotocol,
            ack,
            info: None,
        },
        Some(i) => Who {
            client: Some(ClientId::from(i.sub)),
            rights: i.rights.for_session(p.topics_open),
            exp: (!p.outlive_tokens).then_some(i.exp),
            claims: Some(i.claims),
            via_subprotocol,
            ack,
            info: None,
        },
    };
    Ok(who)
}

/// Where the handler runs: here, or on the worker the route's placement picks (the stream to
/// it is open before the client hears 101).
async fn place(
    p: &Public,
    route: &ServedRoute,
    who: &Who,
    id: SessionId,
) -> Result<Placed, Refusal> {
    let Some(placer) = p
        .placer
        .as_ref()
        .filter(|_| route.placement != Placement::Local)
    else {
        return Ok(Placed::here(p.node.clone(), route));
    };
    let claims = who
        .claims
        .as_ref()
        .and_then(|c| serde_json::to_string(c).ok());
    let opening = Opening {
        client: who.client.as_ref(),
        session: id,
        ack: who.ack,
        claims: claims.as_deref(),
    };
    placer
        .place(route, &opening)
        .await
        .map_err(Refusal::NoHandlerNode)
}

/// The node's session capacity: one permit per session it may hold.
#[derive(Clone)]
pub struct Slots {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Slots {
    pub fn new(max: usize) -> Slots {
        Slots {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Most sessions the node holds.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Sessions open now (permits taken).
    pub fn in_use(&self) -> usize {
        self.max.saturating_sub(self.permits.available_permits())
    }
}

/// One unit of session capacity, taken before the token is checked (so concurrent upgrades
/// cannot overshoot) and given back however the upgrade or the session ends; the
/// `ews_connections_active` gauge follows it both ways.
struct Permit {
    public: Arc<Public>,
    _permit: OwnedSemaphorePermit,
}

impl Permit {
    fn take(p: &Arc<Public>) -> Option<Permit> {
        let permit = p.slots.permits.clone().try_acquire_owned().ok()?;
        p.metrics.connections_active.set(p.slots.in_use() as i64);
        Some(Permit {
            public: p.clone(),
            _permit: permit,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // The semaphore gets the permit back after this body: count it as gone already.
        let now = self.public.slots.in_use().saturating_sub(1);
        self.public.metrics.connections_active.set(now as i64);
    }
}

/// Names the node running the session's handler on the `101`.
pub const HANDLER_NODE: header::HeaderName = header::HeaderName::from_static("x-ews-handler-node");

/// A session's registry entry and its unit of capacity, released when the session ends
/// however it ends.
struct Slot {
    shared: Arc<SessionShared>,
    permit: Permit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.permit.public.registry.unregister(&self.shared);
    }
}
