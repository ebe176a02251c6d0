//! [`SessionCtx`]: everything a handler can do for and with its session.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ews_cluster::presence::{About, Presence, Query};
use ews_cluster::publish::{Delivery, Publish, Target};
use ews_proto::topic::Topic;
use ews_proto::{Event, StampedEvent};
use ews_sink::{Receipt, Sink, SinkError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::Msg;
use crate::auth::Rights;
use crate::hooks::SessionHooks;
use crate::ids::{ClientId, NodeId, SessionId};
use crate::lifecycle::LifecycleLog;
use crate::metrics::Metrics;
use crate::pubsub::PubSub;
use crate::registry::{Registry, SessionShared, TooManyTopics};
use crate::remote::Command;
use crate::session::{send, Flow, Out, SessionEnv};

/// The token's claims, as JSON (`sub`, `exp`, `topics` and whatever else the issuer put in).
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// What every session on the node shares: the services a [`SessionCtx`] reaches.
pub struct Services {
    pub node: NodeId,
    pub registry: Arc<Registry>,
    pub pubsub: Arc<PubSub>,
    pub sink: Arc<dyn Sink>,
    pub metrics: Arc<Metrics>,
    pub max_topics: usize,
    /// A write that does not complete in this time (a peer that stopped reading) ends the session.
    pub write_timeout: Duration,
    /// Writes the sessions' `connected` and `disconnected` records (`--lifecycle-events`).
    pub(crate) lifecycle: Option<Arc<LifecycleLog>>,
}

/// The session's own part of the session layer: what handlers change through their context
/// and the loop reads back.
pub struct Core {
    pub shared: Arc<SessionShared>,
    /// What the client may ask for itself (subscribe, publish), as its token says.
    pub rights: Arc<Rights>,
    /// When the session's token runs out (a socket's session on a worker that authenticates,
    /// unless sessions outlive their tokens).
    pub expiry: Option<Expiry>,
    /// The handler runs here for another worker's socket: topic changes are carried back to it.
    pub hosted: bool,
    /// The client asked for per-event acks (`?ack=1`).
    pub ack: bool,
    /// Sequence number of the last event the sink took.
    pub last_seq: u64,
    /// Events the sink took that the client waits to hear about, in order.
    pub inflight: VecDeque<InFlight>,
    /// The handler asked to close (sent once it returns). Boxed: rare, and an idle session
    /// carries it.
    pub close: Option<Box<CloseFrame>>,
    /// The socket can take no more writes.
    pub gone: bool,
    /// The route's backend hooks, on a hooked route only.
    pub hooks: Option<Box<SessionHooks>>,
}

/// When a session's token runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// The token's `exp`, seconds since the epoch, as the client is told it.
    pub exp: u64,
    /// `exp` on the runtime's clock: `refresh_required` goes out the lead time before it.
    pub at: tokio::time::Instant,
    /// The verifier's leeway, in seconds: the session ends this long after `at` without a
    /// refresh. (Seconds in a `u32`: every idle session carries this.)
    pub leeway_secs: u32,
    /// `refresh_required` went out for this token.
    pub told: bool,
}

impl Expiry {
    /// For a token with `exp`, verified with `leeway` seconds.
    pub fn new(exp: u64, leeway: u64) -> Expiry {
        let left = exp
            .saturating_mul(1000)
            .saturating_sub(crate::ids::now_ms().max(0) as u64);
        Expiry {
            exp,
            at: tokio::time::Instant::now() + Duration::from_millis(left),
            leeway_secs: u32::try_from(leeway).unwrap_or(u32::MAX),
            told: false,
        }
    }

    /// When the session ends without a refresh.
    pub fn end(&self) -> tokio::time::Instant {
        self.at + Duration::from_secs(u64::from(self.leeway_secs))
    }
}

/// An event the sink took and the client waits to hear about.
pub struct InFlight {
    pub seq: u64,
    pub id: Option<String>,
    pub receipt: Receipt,
}

impl Core {
    pub fn new(shared: Arc<SessionShared>, rights: Arc<Rights>, ack: bool, hosted: bool) -> Core {
        Core {
            shared,
            rights,
            expiry: None,
            hosted,
            ack,
            last_seq: 0,
            inflight: VecDeque::new(),
            close: None,
            gone: false,
            hooks: None,
        }
    }
}

/// The session's socket is closed (or closing): nothing more can be sent on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session is closed")]
pub struct Closed;

/// A close a handler may not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadClose {
    #[error("close code {0} is not one a handler sends (1000, 1008, 1011, 4000-4999)")]
    Code(u16),
    #[error("a close reason is at most 123 bytes, not {0}")]
    ReasonTooLong(usize),
}

/// Why a subscribe was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("a session holds at most {0} topics")]
    TooManyTopics(usize),
}

/// What a handler can do with its session, handed to every call. Borrowed for the call only: to
/// reach a session later (from a task of its own), a handler publishes to its client id or to
/// a topic the session joined.
pub struct SessionCtx<'a> {
    pub(crate) out: &'a mut Out,
    pub(crate) core: &'a mut Core,
    pub(crate) services: &'a Services,
    pub(crate) claims: Option<&'a Claims>,
    pub(crate) label: &'static str,
}

impl<'a> SessionCtx<'a> {
    /// The context of a session's handler call (claims: none, unless its `on_open`).
    pub(crate) fn new(
        out: &'a mut Out,
        core: &'a mut Core,
        env: &'a SessionEnv,
        label: &'static str,
    ) -> SessionCtx<'a> {
        SessionCtx {
            out,
            core,
            services: &env.services,
            claims: None,
            label,
        }
    }

    /// The authenticated client (the token's `sub`); `None` with `--no-auth`.
    pub fn client_id(&self) -> Option<&ClientId> {
        self.core.shared.client_id.as_ref()
    }

    /// This session's id on the node holding its socket.
    pub fn session_id(&self) -> SessionId {
        SessionId(self.core.shared.id)
    }

    /// The node running this handler.
    pub fn node_id(&self) -> &NodeId {
        &self.services.node
    }

    /// The route the client connected to.
    pub fn route(&self) -> &str {
        &self.core.shared.route
    }

    /// Calls the route's backend `hook` (`Ok(None)`: the route has none).
    pub(crate) async fn hook(
        &mut self,
        hook: ews_proto::hook::HookKind,
        fill: impl FnOnce(&mut ews_proto::hook::HookRequest),
    ) -> Result<Option<ews_proto::hook::HookResponse>, crate::hooks::HookError> {
        crate::hooks::session_call(self.core, &self.services.node, hook, fill).await
    }

    /// The token's claims, during [`super::Handler::on_open`] only (keep in the state what you
    /// need later: an idle session does not carry its token). `None` with `--no-auth`.
    pub fn claims(&self) -> Option<&Claims> {
        self.claims
    }

    /// Sends `msg` to the client and waits until the socket took it (back-pressure: a client
    /// that does not read holds up its own handler, at most the write timeout, then the session
    /// ends).
    pub async fn send(&mut self, msg: Msg) -> Result<(), Closed> {
        if self.core.close.is_some() {
            return Err(Closed);
        }
        self.write(msg.into_ws()).await
    }

    /// Closes the session with `code` and `reason` once this call returns: acknowledgements and
    /// pushes already taken go out first. Codes: 1000 (normal), 1008 (policy), 1011 (error),
    /// or an application's own 4000–4999; a reason longer than the 123 bytes a close frame
    /// holds is refused too.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), BadClose> {
        if !matches!(code, 1000 | 1008 | 1011 | 4000..=4999) {
            return Err(BadClose::Code(code));
        }
        if reason.len() > 123 {
            return Err(BadClose::ReasonTooLong(reason.len()));
        }
        self.core.close.get_or_insert(Box::new(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_string().into(),
        }));
        Ok(())
    }

    /// Joins `topic`: from when this returns, a publish to it anywhere in the cluster reaches
    /// this client. The session's own code decides, so the token's grants (which bound what a
    /// *client* may ask) do not apply. On a handler placed on another worker, the join is
    /// carried to the socket's worker in order with what the handler sends.
    pub async fn subscribe(&mut self, topic: &Topic) -> Result<(), SubscribeError> {
        if self.core.hosted {
            let _ = self.command(Command::Subscribe(topic.clone())).await;
            return Ok(());
        }
        subscribe(self.core, self.services, topic).await
    }

    /// Leaves `topic` (not joined: nothing happens).
    pub async fn unsubscribe(&mut self, topic: &Topic) {
        if self.core.hosted {
            let _ = self.command(Command::Unsubscribe(topic.clone())).await;
            return;
        }
        self.services
            .registry
            .unsubscribe(self.core.shared.id, topic);
    }

    /// Publishes `msg` to every session on `topic`, cluster-wide (as `POST /api/v1/publish`
    /// does); the answer says what it reached. The future does not borrow the context: a
    /// handler may also spawn it.
    pub fn publish(
        &self,
        topic: &Topic,
        msg: impl Into<String>,
    ) -> impl Future<Output = Delivery> + Send + 'static {
        self.deliver(Target::topic(topic.clone()), msg.into())
    }

    /// Pushes `msg` to every session of client `client`, cluster-wide.
    pub fn push_to_client(
        &self,
        client: &ClientId,
        msg: impl Into<String>,
    ) -> impl Future<Output = Delivery> + Send + 'static {
        self.deliver(Target::client(client.to_string()), msg.into())
    }

    fn deliver(&self, target: Target, msg: String) -> impl Future<Output = Delivery> + 'static {
        let pubsub = self.services.pubsub.clone();
        let p = Publish {
            target,
            msg,
            id: None,
            from: None,
            at: None,
        };
        async move { pubsub.publish(&p).await }
    }

    /// Who is on `topic`, cluster-wide: the session count and the first page of client ids.
    pub fn presence(&self, topic: &Topic) -> impl Future<Output = Presence> + Send + 'static {
        let pubsub = self.services.pubsub.clone();
        let q = Query::first(About::Topic(topic.clone()));
        async move {
            let mut all = pubsub.presence(&q).await;
            all.finish(&q);
            all
        }
    }

    /// The node's configured sink (`--sink`), for events of the handler's own making.
    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.services.sink
    }

    /// Stamps `event` as the client's (the authenticated id wins over the one it names), hands
    /// it to the sink and, when the client asked for acks, sends the `ack` (or `nack`) once the
    /// sink says, in order. The answer is the event's sequence number in this session; while
    /// the client's ack window is full, the session reads no more from it.
    pub async fn submit(&mut self, event: Event) -> Result<u64, SinkError> {
        let seq = self.core.last_seq + 1;
        let shared = &self.core.shared;
        let stamped = StampedEvent {
            id: event.id.clone(),
            msg: event.msg,
            client_id: shared
                .client_id
                .as_ref()
                .map(ClientId::to_string)
                .unwrap_or(event.client_id),
            timestamp: event.timestamp,
            node: self.services.node.to_string(),
            session: shared.id,
            seq,
            received_at: crate::ids::now_ms(),
        };
        let receipt = self.services.sink.submit(stamped.into()).await?;
        self.core.last_seq = seq;
        if self.core.ack {
            self.core.inflight.push_back(InFlight {
                seq,
                id: event.id,
                receipt,
            });
        }
        Ok(seq)
    }

    /// Counts `what` for this handler (`ews_handler_events_total{handler,event}`).
    pub fn count(&self, what: &'static str) {
        self.services.metrics.handler_event(self.label, what);
    }

    async fn command(&mut self, c: Command) -> Result<(), Closed> {
        self.write(c.into_message()).await
    }

    async fn write(&mut self, msg: Message) -> Result<(), Closed> {
        if self.core.gone {
            return Err(Closed);
        }
        let s = self.services;
        match send(self.out, msg, &s.metrics, s.write_timeout).await {
            Flow::Continue => Ok(()),
            Flow::End => {
                self.core.gone = true;
                Err(Closed)
            }
        }
    }
}

/// Joins `topic` for the session of `core` and waits until the cluster can route it there.
pub(crate) async fn subscribe(
    core: &Core,
    services: &Services,
    topic: &Topic,
) -> Result<(), SubscribeError> {
    let registry = &services.registry;
    match registry.subscribe(core.shared.id, topic, services.max_topics) {
        Ok(seq) => {
            services.metrics.subscription("ok");
            // Reachable from every node once this returns: a publish through the front door
            // right after it is delivered.
            registry.advertised(seq).await;
            Ok(())
        }
        Err(TooManyTopics) => {
            services.metrics.subscription("too_many");
            Err(SubscribeError::TooManyTopics(services.max_topics))
        }
    }
}
