//! The handler side of a remote session: another worker holds the client's socket and opened
//! a session stream here (`POST /internal/v1/session` on the node link, signed with the
//! cluster key). The route's handler runs in the same session loop as a local one, with the
//! stream in the socket's place: the same back-pressure, write timeout and drain (a draining
//! node closes its hosted sessions with 1012 spread over its drain window, and the socket's
//! node passes the close on to the client). Hosted sessions are bounded per node and counted in
//! the node's session tracker, so a drain waits for them like for its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ews_http::link::Accepted;
use ews_http::link_stream::{self, LinkBody, LinkStream, StreamKeys};
use ews_http::reply;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::task::TaskTracker;

use crate::handler::{Claims, Core, ServedRoute};
use crate::ids::{ClientId, NodeId, SessionId};
use crate::metrics::Metrics;
use crate::registry::SessionShared;
use crate::remote::STREAM_DEPTH;
use crate::session::{self, Handling, Session, SessionEnv};

pub struct Hosted {
    pub node: NodeId,
    pub routes: Arc<[ServedRoute]>,
    /// The node's session environment without liveness ticks: the socket's node pings the
    /// client; here the stream's end is the end.
    pub env: Arc<SessionEnv>,
    /// The node's session tracker (its drain waits for these too).
    pub sessions: TaskTracker,
    pub metrics: Arc<Metrics>,
    pub open: AtomicUsize,
    pub max: usize,
    pub max_message: usize,
}

/// What the opening request says about the session.
struct Opening {
    route: String,
    handler: String,
    from: String,
    session: u64,
    client: Option<String>,
    ack: bool,
    claims: Option<Box<Claims>>,
}

fn parse(query: Option<&str>) -> Result<Opening, String> {
    let (mut route, mut handler, mut from, mut client) = (None, None, None, None);
    let (mut session, mut ack, mut claims) = (0, false, None);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "route" => route = Some(v.into_owned()),
            "handler" => handler = Some(v.into_owned()),
            "from" => from = Some(v.into_owned()),
            "client" => client = Some(v.into_owned()),
            "session" => session = v.parse().map_err(|_| "session is not a number")?,
            "ack" => ack = v == "1",
            "claims" => {
                claims = Some(Box::new(
                    serde_json::from_str(&v).map_err(|e| format!("claims: {e}"))?,
                ))
            }
            _ => {}
        }
    }
    Ok(Opening {
        route: route.ok_or("no route")?,
        handler: handler.ok_or("no handler")?,
        from: from.ok_or("no from")?,
        session,
        client,
        ack,
        claims,
    })
}

impl Hosted {
    /// Answers a session stream's opening: `200` with the stream as the answer's body, or why
    /// not (`503` draining or full, `404` no such route here).
    pub fn accept(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        accepted: Option<&Accepted>,
    ) -> Response<LinkBody> {
        let refuse = |status, why: String| reply::text(status, why).map(LinkBody::from);
        let opening = match parse(req.uri().query()) {
            Ok(o) => o,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
        };
        if self.env.drain.is_cancelled() {
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "draining".into());
        }
        let Some(route) = self
            .routes
            .iter()
            .find(|r| *r.path == opening.route && r.handler.name.as_str() == opening.handler)
        else {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("no {} route {} here", opening.handler, opening.route),
            );
        };
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "hosted sessions at capacity".into(),
            );
        }
        let slot = HostedSlot(self.clone());
        self.metrics.hosted_sessions.inc();
        let (tx, body) = link_stream::outgoing(STREAM_DEPTH);
        let stream = LinkStream::new(
            tx,
            req.into_body(),
            StreamKeys::server(accepted),
            self.max_message,
        );
        tracing::debug!(from = %opening.from, route = %route.path, "hosting a remote session");
        let session = Box::new(self.session(route, opening, peer));
        let env = self.env.clone();
        self.sessions.spawn(async move {
            session::run(stream, session, &env).await;
            drop(slot);
        });
        Response::new(LinkBody::Stream(body))
    }

    /// The session the opening describes, its handler to run here. Not registered here: pushes
    /// and topics reach the session where its socket is.
    fn session(&self, route: &ServedRoute, opening: Opening, peer: SocketAddr) -> Session {
        let shared = Arc::new(SessionShared::new(
            SessionId(opening.session),
            opening.client.map(ClientId::from),
            route.path.clone(),
            peer,
            self.node.clone(),
            1,
        ));
        // The socket's worker answers the client's own topic and publish frames: nothing is
        // granted here.
        let rights = Arc::new(crate::auth::Rights::default());
        Session {
            handling: Handling::local(route.handler.clone()),
            core: Core::new(shared, rights, opening.ack, true),
            // The client's topic, publish and refresh frames are answered where its socket is;
            // its rpcs come here, to the handler's `on_rpc`.
            control: route.handler.handler.takes_control_frames(),
            claims: opening.claims,
        }
    }
}

/// One hosted session's place, released however it ends.
struct HostedSlot(Arc<Hosted>);

impl Drop for HostedSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.hosted_sessions.dec();
    }
}
