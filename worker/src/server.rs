//! The public port: `/info` for the load balancer, WebSocket upgrades on the configured routes,
//! the test page in standalone mode. Every refusal happens before the upgrade, as an HTTP status
//! the client (and the load balancer) can see.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::handler::{Handler, SessionState};
use crate::metrics::Metrics;
use crate::registry::{Registry, SessionShared};
use crate::session::{self, Session, SessionEnv};
use crate::{limits, page, token};

pub type Body = Full<Bytes>;

/// Everything the public port needs, shared by all connections.
pub struct Public {
    pub routes: Vec<(String, Arc<dyn Handler>)>,
    /// `None` only with `--no-auth`.
    pub auth: Option<Authenticator>,
    pub standalone: bool,
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
}

/// Accepts until `stop` is cancelled. Out of descriptors (EMFILE) it backs off instead of
/// spinning: the pending connection stays in the kernel backlog until a descriptor frees up.
pub async fn serve(listener: TcpListener, public: Arc<Public>, stop: CancellationToken) {
    let mut exhausted = false;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, peer)) => {
                if std::mem::take(&mut exhausted) {
                    tracing::info!("accept: descriptors available again");
                }
                let _ = tcp.set_nodelay(true);
                let public = public.clone();
                tokio::spawn(serve_conn(tcp, peer, public));
            }
            Err(e) if limits::is_resource_exhaustion(&e) => {
                public.metrics.error("accept_emfile");
                if !std::mem::replace(&mut exhausted, true) {
                    tracing::warn!(error = %e, "accept: out of resources, backing off");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                public.metrics.error("accept");
                tracing::debug!(error = %e, "accept failed");
            }
        }
    }
}

async fn serve_conn(tcp: tokio::net::TcpStream, peer: SocketAddr, public: Arc<Public>) {
    let p = public.clone();
    let svc = service_fn(move |req| {
        let p = p.clone();
        async move { Ok::<_, Infallible>(route(req, peer, p).await) }
    });
    // A connection lives at most one handshake timeout unless it upgrades, which bounds idle
    // keep-alive and slow (slowloris) clients. (Not `keep_alive(false)`: hyper would then
    // answer the 101 with `Connection: close`.)
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(public.handshake_timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(tcp), svc)
        .with_upgrades();
    match tokio::time::timeout(public.handshake_timeout, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            if e.is_timeout() {
                public.metrics.handshake("timeout");
            }
            tracing::debug!(error = %e, "http connection error");
        }
        Err(_) => public.metrics.handshake("timeout"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
                .unwrap_or(false)
        })
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

async fn route(mut req: Request<Incoming>, peer: SocketAddr, p: Arc<Public>) -> Response<Body> {
    let path = req.uri().path();
    // The health check is `GET /info` only: any other method, there too, is unhandled.
    if path == "/info" && req.method() == Method::GET {
        return if p.env.drain.is_cancelled() {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining")
        } else {
            text(StatusCode::OK, "Success")
        };
    }
    if req.method() != Method::GET {
        return text(StatusCode::FORBIDDEN, "Unhandled HTTP method");
    }
    if !is_upgrade(&req) {
        if p.standalone && path == "/" {
            let mut r = Response::new(Full::new(Bytes::from_static(page::HTML.as_bytes())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            return r;
        }
        p.metrics.handshake("bad_request");
        return text(StatusCode::BAD_REQUEST, "no websocket upgrade header");
    }
    let Some((route, handler)) = p.routes.iter().find(|(r, _)| r == path) else {
        p.metrics.handshake("not_found");
        return text(StatusCode::NOT_FOUND, "no such WebSocket route");
    };
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = key.filter(|_| version_ok) else {
        p.metrics.handshake("bad_request");
        return text(StatusCode::BAD_REQUEST, "bad WebSocket handshake");
    };
    if p.env.drain.is_cancelled() {
        p.metrics.handshake("draining");
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    if p.active.load(Ordering::Relaxed) >= p.max_connections {
        p.metrics.handshake("over_capacity");
        return text(StatusCode::SERVICE_UNAVAILABLE, "over capacity");
    }

    let query = req.uri().query();
    let ack = query.and_then(|q| token::query_param(q, "ack")) == Some("1");
    let found = token::find(req.headers(), query);
    let via_subprotocol = found.as_ref().is_some_and(|f| f.via_subprotocol);
    let client_id: Option<Arc<str>> = match &p.auth {
        None => None,
        Some(auth) => {
            let verdict = match &found {
                Some(f) => auth.verify(f.token).await,
                None => Err(crate::auth::AuthError("no token".into())),
            };
            match verdict {
                Ok(sub) => Some(sub.into()),
                Err(e) => {
                    p.metrics.handshake("unauthorized");
                    tracing::info!(%peer, reason = %e, "token refused");
                    let mut r = text(StatusCode::UNAUTHORIZED, "invalid token");
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer error=\"invalid_token\""),
                    );
                    return r;
                }
            }
        }
    };

    // Reserve the slot now so concurrent upgrades cannot overshoot the capacity.
    let before = p.active.fetch_add(1, Ordering::AcqRel);
    if before >= p.max_connections {
        p.active.fetch_sub(1, Ordering::AcqRel);
        p.metrics.handshake("over_capacity");
        return text(StatusCode::SERVICE_UNAVAILABLE, "over capacity");
    }
    p.metrics.connections_active.set(before as i64 + 1);
    // Listed (and reachable by publish) from the moment the 101 goes out.
    let shared = p.registry.register(
        client_id.clone(),
        route.as_str().into(),
        peer,
        p.outbound_queue,
    );
    let slot = Slot {
        public: p.clone(),
        shared: shared.clone(),
    };
    p.metrics.handshake("ok");

    let on_upgrade = hyper::upgrade::on(&mut req);
    let handler = handler.clone();
    let pp = p.clone();
    p.sessions.spawn(async move {
        let _slot = slot;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(pp.ws_config),
        )
        .await;
        let state = SessionState {
            id: shared.id,
            client_id,
            node: pp.node.clone(),
            last_seq: 0,
        };
        let session = Session {
            handler,
            state,
            shared: shared.clone(),
            ack,
        };
        session::run(ws, session, &pp.env).await;
    });

    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if via_subprotocol {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(token::BEARER_PROTOCOL),
        );
    }
    r
}

/// One unit of session capacity and the session's registry entry, released when the session
/// ends however it ends (also when the upgrade itself fails).
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
