//! The handler API: what a route does with its sessions. A team implements [`Handler`] for its
//! own type, registers it under a name with [`crate::NodeBuilder::handler`], and names it in
//! `--routes` like a built-in (`/chat=chat@key-hash`). The built-ins ([`Echo`], [`Greet`],
//! [`Ingest`]) are ordinary handlers on this API.
//!
//! A handler is shared by every session of its routes; what one session needs to remember lives
//! in its [`Handler::State`], made by [`Handler::on_open`] and handed back to every later call.
//! The session does not read the client's next message until `on_message` returns, so a handler
//! that waits (on its sink, on its backend, on a slow client's socket) slows that client down
//! and nobody else. Everything a session can do is on [`SessionCtx`]: send, close, subscribe,
//! publish, submit to the sink, and who the client is.
//!
//! A handler that may run on another worker than the socket (placements `@random`,
//! `@least-loaded`, `@key-hash`) is registered on every worker; the socket's worker carries its
//! messages to the chosen one over the node link, and what the handler sends comes back the
//! same way.

mod builtin;
mod ctx;
mod erased;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use ews_cluster::placement::Placement;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

pub use builtin::{Backend, Echo, Greet, Ingest};
pub(crate) use ctx::{subscribe, Core, Expiry, InFlight, Services};
pub use ctx::{BadClose, Claims, Closed, SessionCtx, SubscribeError};
pub(crate) use erased::{Erased, State};
pub use ews_proto::RpcError;

use crate::config::Routes;

/// What a route does with its sessions. The futures are `Send`: implement the methods with
/// `async fn`.
///
/// ```
/// use ews_worker::handler::{Handler, Msg, SessionCtx};
///
/// /// Counts the messages of each session and answers with the count.
/// struct Counter;
///
/// impl Handler for Counter {
///     type State = u64;
///
///     async fn on_open(&self, _: &mut SessionCtx<'_>) -> u64 {
///         0
///     }
///
///     async fn on_message(&self, ctx: &mut SessionCtx<'_>, seen: &mut u64, _: Msg) {
///         *seen += 1;
///         let _ = ctx.send(Msg::text(seen.to_string())).await;
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// What one session of this handler keeps between calls (`()` for none: a stateless handler
    /// costs an idle session nothing).
    type State: Send + 'static;

    /// A session has opened (the client has its `101`); the answer is the session's state.
    /// The token's claims are readable here ([`SessionCtx::claims`]): keep what you need.
    fn on_open(&self, ctx: &mut SessionCtx<'_>) -> impl Future<Output = Self::State> + Send;

    /// A text or binary message from the client. Pings, pongs and close frames are the
    /// session's business; so are `subscribe` and `unsubscribe` frames unless
    /// [`Handler::takes_control_frames`] says otherwise.
    fn on_message(
        &self,
        ctx: &mut SessionCtx<'_>,
        state: &mut Self::State,
        msg: Msg,
    ) -> impl Future<Output = ()> + Send;

    /// The session has ended (`reason` says how). Sending fails by now, but publishing and
    /// submitting still work: say goodbye to the room, flush what the state holds.
    fn on_close(
        &self,
        ctx: &mut SessionCtx<'_>,
        state: Self::State,
        reason: CloseReason,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, state, reason);
        async {}
    }

    /// A client's `{"type":"rpc","id","method","data"}`: the answer is the `reply`'s `data`, or
    /// its `error` (a [`RpcError`] with a code the client can branch on). The default takes no
    /// method: every call is answered `no_method`. A session asks one call at a time and reads
    /// nothing else from its client meanwhile, like `on_message`.
    fn on_rpc(
        &self,
        ctx: &mut SessionCtx<'_>,
        state: &mut Self::State,
        method: &str,
        data: serde_json::Value,
    ) -> impl Future<Output = Result<serde_json::Value, RpcError>> + Send {
        let _ = (ctx, state, data);
        let e = RpcError::no_method(method);
        async move { Err(e) }
    }

    /// Whether the session answers the client's own frames itself (the default): `subscribe`,
    /// `unsubscribe` and `publish` by the session, `rpc` through [`Handler::on_rpc`]; the
    /// handler's `on_message` never sees them. A handler whose clients send arbitrary text (an
    /// echo, a terminal) says `false` and sees every message (but a `refresh` is always the
    /// session's).
    fn takes_control_frames(&self) -> bool {
        true
    }
}

/// A message between a client and its handler. Pings, pongs and close frames never reach a
/// handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Text(Text),
    Binary(Bytes),
}

/// UTF-8 text, shared without copying between the socket and the handler.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(Utf8Bytes);

impl Text {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(s.into())
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text(Utf8Bytes::from_static(s))
    }
}

impl Msg {
    /// A text message.
    pub fn text(s: impl Into<Text>) -> Msg {
        Msg::Text(s.into())
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Msg {
        Msg::Binary(b.into())
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Msg::Text(t) => Some(t.as_str()),
            Msg::Binary(_) => None,
        }
    }

    /// Payload bytes.
    pub fn len(&self) -> usize {
        match self {
            Msg::Text(t) => t.len(),
            Msg::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A client's data message; `None` for pings, pongs, close and raw frames.
    pub(crate) fn from_ws(m: Message) -> Option<Msg> {
        match m {
            Message::Text(t) => Some(Msg::Text(Text(t))),
            Message::Binary(b) => Some(Msg::Binary(b)),
            _ => None,
        }
    }

    pub(crate) fn into_ws(self) -> Message {
        match self {
            Msg::Text(t) => Message::Text(t.0),
            Msg::Binary(b) => Message::Binary(b),
        }
    }
}

/// How a session ended, as its handler's `on_close` hears it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the session or its connection ended.
    ClientLeft,
    /// The handler closed it ([`SessionCtx::close`]).
    Closed,
    /// The node is draining (a deploy, a scale-in): the client was told `1012` and reconnects
    /// elsewhere.
    Draining,
    /// The node moved the client to a less loaded worker (`1012 rebalance`).
    Moved,
    /// The client went silent past its ping deadline, or stopped reading.
    PeerSilent,
    /// The handler ran on another worker and that worker left (`1012`) or was lost (`1011`).
    HandlerNodeGone,
    /// The backend disconnected the client (`POST /api/v1/disconnect`).
    Disconnected,
    /// The token expired without a refresh (`4001 token expired`).
    TokenExpired,
    /// A protocol error, an oversized message or a broken connection; the label is the one
    /// counted in `ews_errors_total`.
    Failed(&'static str),
}

/// The built-in handler that hands a route's messages and rpcs to its backend hooks.
pub const BACKEND: &str = "backend";

impl CloseReason {
    /// The reason as a backend's `disconnect` hook hears it.
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::ClientLeft => "client_left",
            CloseReason::Closed => "closed",
            CloseReason::Draining => "draining",
            CloseReason::Moved => "moved",
            CloseReason::PeerSilent => "peer_silent",
            CloseReason::HandlerNodeGone => "handler_node_gone",
            CloseReason::Disconnected => "disconnected",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::Failed(kind) => kind,
        }
    }
}

/// A name a handler is registered and routed under (`--routes /path=NAME`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HandlerName(Arc<str>);

impl HandlerName {
    /// Lower-case letters, digits, `-` and `_`, 1 to 64 of them.
    pub fn parse(name: &str) -> Result<HandlerName, String> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(HandlerName(name.into()))
        } else {
            Err(format!(
                "handler name {name:?}: 1 to 64 of a-z, 0-9, '-' and '_'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for HandlerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a registered handler may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Also on another worker than the socket (a route may place it `@random`, …).
    AnyWorker,
    /// Only where the socket is (a route naming it must be `local`).
    SocketWorker,
}

/// One registered handler (shared by its routes and their sessions: a session holds one
/// pointer to it).
pub(crate) struct Registered {
    pub name: HandlerName,
    pub reach: Reach,
    pub handler: Arc<dyn Erased>,
    /// The handler's name as a metric label (registered once per handler, so leaking it is
    /// bounded).
    pub label: &'static str,
}

/// The handlers a node can route to, by name. [`Handlers::default`] holds the built-ins:
/// `ingest` (socket worker only), `echo` and `greet`.
#[derive(Clone)]
pub struct Handlers(BTreeMap<HandlerName, Arc<Registered>>);

impl Default for Handlers {
    fn default() -> Handlers {
        let mut h = Handlers(BTreeMap::new());
        h.insert("echo", Echo, Reach::AnyWorker);
        h.insert("greet", Greet, Reach::AnyWorker);
        // Its sink already reaches the pipeline from any worker, and its acks and topics belong
        // to the socket's worker: a hop would only add latency.
        h.insert("ingest", Ingest, Reach::SocketWorker);
        // Its hooks are configured where the socket is.
        h.insert(BACKEND, Backend, Reach::SocketWorker);
        h
    }
}

impl Handlers {
    /// No handlers at all (not even the built-ins).
    pub fn empty() -> Handlers {
        Handlers(BTreeMap::new())
    }

    /// Registers `handler` under `name` (replacing one of that name). Panics on a name that
    /// [`HandlerName::parse`] refuses: names are written in code, not read from input.
    pub fn insert<H: Handler>(&mut self, name: &str, handler: H, reach: Reach) {
        #[allow(clippy::expect_used)]
        let name = HandlerName::parse(name).expect("a valid handler name");
        let label: &'static str = match self.0.get(&name) {
            Some(r) => r.label,
            None => Box::leak(name.as_str().to_string().into_boxed_str()),
        };
        let registered = Registered {
            name: name.clone(),
            reach,
            handler: Arc::new(handler),
            label,
        };
        self.0.insert(name, Arc::new(registered));
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(HandlerName::as_str)
    }

    pub(crate) fn get(&self, name: &HandlerName) -> Option<&Arc<Registered>> {
        self.0.get(name)
    }
}

/// A route of `--routes` with its registered handler, ready to serve.
#[derive(Clone)]
pub(crate) struct ServedRoute {
    pub path: Arc<str>,
    pub placement: Placement,
    pub handler: Arc<Registered>,
    /// Its sessions announce their topic joins and leaves.
    pub presence: bool,
    /// Its backend hooks (`--hooks-file`), if it has any.
    pub hooks: Option<Arc<crate::hooks::RouteHooks>>,
}

/// A route naming a handler the node cannot serve it with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("{path}: no handler named \"{name}\" (this node has: {known})")]
    Unknown {
        path: String,
        name: HandlerName,
        known: String,
    },
    #[error("{path}: the {name} handler runs where the socket is (placement local only)")]
    LocalOnly { path: String, name: HandlerName },
}

impl Handlers {
    /// The routes with their handlers, each checked: its handler is registered here, and placed
    /// elsewhere only if it may run on another worker.
    pub(crate) fn serve(&self, routes: &Routes) -> Result<Arc<[ServedRoute]>, RouteError> {
        routes
            .0
            .iter()
            .map(|r| {
                let Some(h) = self.get(&r.handler) else {
                    return Err(RouteError::Unknown {
                        path: r.path.clone(),
                        name: r.handler.clone(),
                        known: self.names().collect::<Vec<_>>().join(", "),
                    });
                };
                if r.placement != Placement::Local && h.reach == Reach::SocketWorker {
                    return Err(RouteError::LocalOnly {
                        path: r.path.clone(),
                        name: r.handler.clone(),
                    });
                }
                Ok(ServedRoute {
                    path: r.path.as_str().into(),
                    placement: r.placement,
                    handler: h.clone(),
                    presence: r.presence,
                    hooks: None,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_registered_handlers_placed_where_they_may_run() {
        let h = Handlers::default();
        let ok: Routes = "/ws=ingest,/g=greet@random".parse().unwrap();
        let served = h.serve(&ok).expect("served");
        assert_eq!(served[1].handler.name.as_str(), "greet");
        let unknown: Routes = "/c=chat".parse().unwrap();
        let e = h.serve(&unknown).err().expect("refused");
        assert!(e.to_string().contains("echo, greet, ingest"), "{e}");
        let local_only: Routes = "/ws=ingest@key-hash".parse().unwrap();
        assert!(matches!(
            h.serve(&local_only),
            Err(RouteError::LocalOnly { .. })
        ));
        assert!(HandlerName::parse("Chat Room").is_err());
    }
}
