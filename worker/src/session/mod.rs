//! One WebSocket session: a small state machine ([`Machine`]) and the thin loop around it
//! ([`run`]). The loop waits for the next thing that happens to the session ([`Wake`]) and
//! hands it to the machine, which acts on it: read a message and let the route's handler act
//! on it, write acks, pushes and pings, close on drain, on a move or when the handler says so.
//! Everything happens in one task, and an idle session holds no timer: liveness rides on a
//! node-wide tick, so an idle session costs its socket, its buffers and this task's state only
//! (a timer exists only around a write and while it leaves).
//!
//! The handler may run on another worker ([`Handling::Remote`]): messages then go to it over
//! a node-link stream and what it sends comes back the same way, with the same back-pressure
//! as a local handler (a message waiting for the stream stops reading from the client), while
//! this loop keeps writing the handler's answers to the client, so neither side can wait on the
//! other forever. The same loop runs on the handler's node with the stream in the client's
//! place ([`Transport`] is either).

mod control;
mod publish;
mod recover;
#[cfg(test)]
mod tests;
mod token;

use std::future::{pending, poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ews_proto::{ClientControl, ServerFrame};
use ews_sink::BoxFuture;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::watch;
use tokio::time::{sleep, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::handler::{
    self, Claims, CloseReason, Core, Msg, Registered, Services, SessionCtx, State,
};
use crate::hooks;
use crate::lifecycle::{Edge, LifecycleLog};
use crate::metrics::Metrics;
use crate::remote::{self, FromRemote, RemoteHandler};
use ews_proto::hook::HookKind;

/// How long a peer has to answer our close frame before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// What every session on the node shares.
pub struct SessionEnv {
    pub services: Arc<Services>,
    /// Ticks once per ping interval: ping, and drop peers silent since the last tick.
    pub ticks: watch::Receiver<()>,
    /// Cancelled when the node starts draining.
    pub drain: CancellationToken,
    /// Sessions close at a random point in `[0, drain_spread)` after the drain starts.
    pub drain_spread: Duration,
    /// Events awaiting their receipt per session (at least 1: the configuration is validated).
    pub ack_window: usize,
    /// Verifies a `refresh`'s token (`None` with `--no-auth`).
    pub auth: Option<Arc<Authenticator>>,
    /// How long before its token expires a session hears `refresh_required`.
    pub refresh_lead: Duration,
    /// The liveness tick's period: an expiry closer than two of them gets a timer of its own.
    pub tick: Duration,
    /// Client publishes one session may send a second.
    pub publish_rate: usize,
    /// `--topics-open`: a refreshed token does not narrow what a session may join or publish.
    pub topics_open: bool,
}

impl SessionEnv {
    fn metrics(&self) -> &Metrics {
        &self.services.metrics
    }
}

/// What a session's socket is: the client's WebSocket, or (on the handler's node) the
/// node-link stream from the node holding it.
pub trait Transport:
    Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin + Send + 'static
{
}

impl<T> Transport for T where
    T: Stream<Item = Result<Message, WsError>>
        + Sink<Message, Error = WsError>
        + Unpin
        + Send
        + 'static
{
}

/// The writing half of a transport, as a handler's context holds it.
pub type Out = dyn Sink<Message, Error = WsError> + Send + Unpin;

/// Where the session's handler runs.
pub enum Handling {
    /// Here, with the session's state.
    Local {
        handler: Arc<Registered>,
        state: State,
    },
    /// On another worker (boxed: a local session, the common case, carries only a pointer's
    /// worth for it, so an idle session stays small).
    Remote(Box<RemoteHandler>),
}

impl Handling {
    pub fn local(handler: Arc<Registered>) -> Handling {
        Handling::Local {
            handler,
            state: Box::new(()),
        }
    }

    fn remote(&mut self) -> Option<&mut RemoteHandler> {
        match self {
            Handling::Remote(r) => Some(r),
            Handling::Local { .. } => None,
        }
    }
}

/// A session ready to run.
pub struct Session {
    pub handling: Handling,
    pub core: Core,
    /// The session answers `subscribe`/`unsubscribe` frames itself (the route's handler says).
    pub control: bool,
    /// The token's claims, for the handler's `on_open` only.
    pub claims: Option<Box<Claims>>,
}

/// Whether the session goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    End,
}

/// Where the session is in its life.
enum Phase {
    Open,
    /// It leaves when the timer fires: a drain (at a random point of the spread) or a move.
    Leaving(Pin<Box<Sleep>>, CloseReason),
    /// Its close frame is out: it waits for the peer's until the timer.
    Closing(Pin<Box<Sleep>>),
}

/// What happened to the session.
enum Wake {
    /// The oldest in-flight event's sink outcome.
    Receipt((u64, Option<String>), Result<(), ews_sink::SinkError>),
    Drain,
    Timer,
    /// The node-wide liveness tick (`false`: the ticker is gone).
    Tick(bool),
    /// Pushes are queued, or the node asked the session to move.
    Pushes,
    Remote(FromRemote),
    Client(Option<Result<Message, WsError>>),
    /// A client publish's answer, in the order they were sent.
    Published(String),
    /// The token's next deadline (warn, or end).
    Expiry,
}

/// Runs `session` over `ws` until it ends, the handler's `on_open` first and its `on_close`
/// last.
///
/// The session comes boxed: a task keeps what it captured for its whole life, so a session a
/// spawning block captured unboxed would sit in every idle session's task twice (there, and in
/// the machine made of it). The box is freed as the machine is made.
#[allow(clippy::boxed_local)] // the box is the point: see above
pub fn run<T: Transport>(
    ws: T,
    session: Box<Session>,
    env: &SessionEnv,
) -> impl Future<Output = ()> + Send + '_ {
    // Not an `async fn`: its arguments would stay in the task beside the machine made of them;
    // a block's capture is used in place.
    let mut m = Machine::new(ws, *session, env);
    async move {
        if m.open().await == Flow::Continue {
            loop {
                let wake = m.next().await;
                if m.step(wake).await == Flow::End {
                    break;
                }
            }
        }
        m.finish().await;
    }
}

/// The session's state and what it does on each [`Wake`].
struct Machine<'e, T> {
    ws: T,
    env: &'e SessionEnv,
    core: Core,
    handling: Handling,
    control: bool,
    claims: Option<Box<Claims>>,
    phase: Phase,
    /// The peer sent something since the last tick.
    heard: bool,
    ticks: watch::Receiver<()>,
    ticking: bool,
    /// How the session ended (first cause wins).
    why: Option<CloseReason>,
    /// The close code of the first close frame exchanged, ours or the peer's.
    code: Option<u16>,
    /// Client publishes on their way (made on the first).
    publishing: Option<Box<publish::Publishing>>,
    /// Armed only when the token's next deadline is near (an idle session holds no timer).
    expiry_timer: Option<Pin<Box<Sleep>>>,
}

impl<'e, T: Transport> Machine<'e, T> {
    fn new(ws: T, s: Session, env: &'e SessionEnv) -> Machine<'e, T> {
        let mut ticks = env.ticks.clone();
        ticks.mark_unchanged();
        Machine {
            ws,
            env,
            core: s.core,
            handling: s.handling,
            control: s.control,
            claims: s.claims,
            phase: Phase::Open,
            heard: true,
            ticks,
            ticking: true,
            why: None,
            code: None,
            publishing: None,
            expiry_timer: None,
        }
    }

    fn ended(&mut self, why: CloseReason) -> Flow {
        self.why.get_or_insert(why);
        Flow::End
    }

    /// The session's `connected` record (where its socket is), then the local handler's
    /// `on_open`; a remote session counts itself.
    async fn open(&mut self) -> Flow {
        if let Some(log) = self.lifecycle() {
            log.write(&self.core.shared, Edge::Connected).await;
        }
        if self.core.expiry.is_some() && self.token_deadline().await == Flow::End {
            return Flow::End;
        }
        let claims = self.claims.take();
        match &mut self.handling {
            Handling::Local { handler, state } => {
                let mut ctx =
                    SessionCtx::new(&mut self.ws, &mut self.core, self.env, handler.label);
                ctx.claims = claims.as_deref();
                *state = handler.handler.open(&mut ctx).await;
                self.after_handler().await
            }
            Handling::Remote(_) => {
                self.env.metrics().remote_sessions.inc();
                Flow::Continue
            }
        }
    }

    /// The node's lifecycle log, for a session whose socket is here (a handler hosted for
    /// another worker's socket writes none: that worker does).
    fn lifecycle(&self) -> Option<Arc<LifecycleLog>> {
        let log = self.env.services.lifecycle.as_ref()?;
        (!self.core.hosted).then(|| log.clone())
    }

    /// The local handler's `on_close`, with how the session ended; then the session's
    /// `disconnected` record (after its last event) and the route's `disconnect` hook, if it
    /// has one (one attempt, within the backend's deadline).
    async fn finish(&mut self) {
        let why = self.why.take().unwrap_or(CloseReason::ClientLeft);
        let label = why.label();
        self.core.gone = true;
        match &mut self.handling {
            Handling::Local { handler, state } => {
                let state = std::mem::replace(state, Box::new(()));
                let mut ctx =
                    SessionCtx::new(&mut self.ws, &mut self.core, self.env, handler.label);
                handler.handler.close(&mut ctx, state, why).await;
            }
            Handling::Remote(r) => {
                let m = self.env.metrics();
                m.remote_sessions.dec();
                m.remote_closed(r.end);
            }
        }
        if let Some(log) = self.lifecycle() {
            let edge = Edge::Disconnected(label, self.code);
            log.write(&self.core.shared, edge).await;
        }
        if self.core.hooks.is_some() {
            self.disconnect_hook(label).await;
        }
    }

    /// Boxed: only sessions of hooked routes make this call.
    fn disconnect_hook(&mut self, reason: &'static str) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let node = &self.env.services.node;
            let call = hooks::session_call(&self.core, node, HookKind::Disconnect, |r| {
                r.reason = Some(reason.to_string())
            });
            // Answered for the record: a failure is counted (ews_hook_calls_total) and logged.
            let _ = call.await;
        })
    }

    /// Waits for the next thing that happens to the session. Only waits: every action is
    /// [`Machine::step`]'s.
    async fn next(&mut self) -> Wake {
        let reading = !self.acks_full()
            && !self.publishing.as_ref().is_some_and(|p| p.full())
            && !matches!(&self.handling, Handling::Remote(r) if r.pending.is_some());
        let publishing = self
            .publishing
            .as_ref()
            .is_some_and(|p| !p.in_flight.is_empty());
        let remote_active =
            matches!(&self.handling, Handling::Remote(r) if r.open || r.pending.is_some());
        let open = matches!(self.phase, Phase::Open);
        let inflight = &mut self.core.inflight;
        tokio::select! {
            biased;
            (event, res) = next_receipt(inflight), if !inflight.is_empty() => Wake::Receipt(event, res),
            _ = self.env.drain.cancelled(), if open => Wake::Drain,
            _ = phase_timer(&mut self.phase), if !open => Wake::Timer,
            r = self.ticks.changed(), if self.ticking => Wake::Tick(r.is_ok()),
            _ = self.core.shared.wake.notified() => Wake::Pushes,
            from = remote::next(&mut self.handling), if remote_active => Wake::Remote(from),
            Some(f) = next_published(&mut self.publishing), if publishing => Wake::Published(f),
            _ = expiry_timer(&mut self.expiry_timer), if self.expiry_timer.is_some() => Wake::Expiry,
            msg = self.ws.next(), if reading => Wake::Client(msg),
        }
    }

    /// A full ack window: the client is not read until a receipt frees a place.
    fn acks_full(&self) -> bool {
        self.core.inflight.len() >= self.env.ack_window
    }

    /// Acts on `wake`.
    async fn step(&mut self, wake: Wake) -> Flow {
        match wake {
            Wake::Receipt(event, res) => self.receipt(event, res).await,
            Wake::Drain => {
                let spread = self.env.drain_spread.as_millis() as u64;
                let delay = if spread == 0 {
                    0
                } else {
                    rand::random_range(0..spread)
                };
                self.leave(Duration::from_millis(delay), CloseReason::Draining);
                Flow::Continue
            }
            Wake::Timer => match std::mem::replace(&mut self.phase, Phase::Open) {
                Phase::Leaving(_, why) => {
                    let reason = if why == CloseReason::Moved {
                        "rebalance"
                    } else {
                        "server draining"
                    };
                    self.goodbye(close_frame(CloseCode::Restart, reason), why)
                        .await
                }
                Phase::Closing(_) | Phase::Open => Flow::End,
            },
            Wake::Tick(false) => {
                self.ticking = false;
                Flow::Continue
            }
            // While a full ack window pauses reading, the peer's pongs wait unread: only a
            // peer we are listening to can be judged silent.
            Wake::Tick(true) if !self.heard && !self.acks_full() => {
                self.env.metrics().error("dead_peer");
                self.ended(CloseReason::PeerSilent)
            }
            Wake::Tick(true) => {
                self.heard = false;
                if self.core.expiry.is_some() && self.token_deadline().await == Flow::End {
                    return Flow::End;
                }
                self.write(Message::Ping(Default::default())).await
            }
            Wake::Expiry => {
                self.expiry_timer = None;
                self.token_deadline().await
            }
            Wake::Published(text) => self.write(Message::text(text)).await,
            Wake::Pushes => self.pushes().await,
            Wake::Remote(from) => self.remote_did(from).await,
            Wake::Client(None) => self.ended(CloseReason::ClientLeft),
            Wake::Client(Some(Err(e))) => {
                let (kind, code) = on_error(&mut self.ws, e, self.env).await;
                self.code = self.code.or(code);
                self.ended(CloseReason::Failed(kind))
            }
            Wake::Client(Some(Ok(msg))) => {
                self.heard = true;
                if let Message::Close(Some(f)) = &msg {
                    self.code.get_or_insert(f.code.into());
                }
                self.env.metrics().frame_in(msg.len());
                match Msg::from_ws(msg) {
                    Some(msg) if matches!(self.phase, Phase::Closing(_)) => {
                        drop(msg);
                        Flow::Continue
                    }
                    Some(msg) => self.client_message(msg).await,
                    // Pings are answered and close frames echoed by tungstenite on the next
                    // read or write.
                    None => Flow::Continue,
                }
            }
        }
    }

    /// Leaves after `delay` (unless already leaving or closing).
    fn leave(&mut self, delay: Duration, why: CloseReason) {
        if matches!(self.phase, Phase::Open) {
            self.phase = Phase::Leaving(Box::pin(sleep(delay)), why);
        }
    }

    /// A message from the client: the session's own frames, else the handler's.
    async fn client_message(&mut self, msg: Msg) -> Flow {
        // The client's own frames, for handlers that leave them to the session (an echo pays
        // nothing), but a `refresh` always: topics, publishes and refreshes where the socket
        // is, rpcs where the handler runs (a hosted session's are forwarded by the socket's).
        let (local, hosted) = (
            matches!(self.handling, Handling::Local { .. }),
            self.core.hosted,
        );
        let own = control::own_frame(&msg).filter(|(own, _)| match own {
            control::Own::Refresh => !hosted,
            control::Own::Rpc => self.control && local,
            control::Own::Topic | control::Own::Publish | control::Own::Resume => {
                self.control && !hosted
            }
        });
        if let Some((own, text)) = own {
            return self.own_frame(own, text).await;
        }
        match &mut self.handling {
            Handling::Local { handler, state } => {
                let mut ctx =
                    SessionCtx::new(&mut self.ws, &mut self.core, self.env, handler.label);
                handler.handler.message(&mut ctx, state, msg).await;
                self.after_handler().await
            }
            // Sent on as soon as the stream has room; meanwhile the client is not read.
            Handling::Remote(r) => {
                if r.open {
                    r.pending = Some(msg.into_ws());
                }
                Flow::Continue
            }
        }
    }

    /// One of the session's own frames. Boxed: rare, so it adds nothing to an idle session's
    /// task.
    fn own_frame<'a>(&'a mut self, own: control::Own, text: &'a str) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            match control::parse(text, own) {
                Ok(frame) => self.parsed(frame).await,
                Err(error) => self.write(Message::text(error.to_text())).await,
            }
        })
    }

    async fn parsed(&mut self, frame: ClientControl) -> Flow {
        let services = &self.env.services;
        match frame {
            ClientControl::Resume { since } => self.resume(since).await,
            ClientControl::Subscribe { topic, since } => {
                if let Some(h) = self.history_of(&topic) {
                    return self.subscribe_recovering(topic, since, h).await;
                }
                let reply = control::topic(&self.core, services, true, topic).await;
                self.write(reply).await
            }
            ClientControl::Unsubscribe { topic } => {
                let reply = control::topic(&self.core, services, false, topic).await;
                self.write(reply).await
            }
            ClientControl::Publish { topic, msg, id } => {
                let rate = self.env.publish_rate;
                let p = self
                    .publishing
                    .get_or_insert_with(|| Box::new(publish::Publishing::new(rate)));
                match p.start(&self.core, services, (topic, msg, id)) {
                    Ok(()) => Flow::Continue,
                    Err(refused) => self.write(Message::text(refused.to_text())).await,
                }
            }
            ClientControl::Rpc { id, method, data } => self.rpc(id, method, data).await,
            ClientControl::Refresh { token } => self.refresh(token).await,
        }
    }

    /// A client's `rpc`, answered by the local handler's `on_rpc`.
    async fn rpc(&mut self, id: u64, method: String, data: serde_json::Value) -> Flow {
        let Handling::Local { handler, state } = &mut self.handling else {
            return Flow::Continue;
        };
        let mut ctx = SessionCtx::new(&mut self.ws, &mut self.core, self.env, handler.label);
        let answer = handler.handler.rpc(&mut ctx, state, method, data).await;
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(e) if e.code == "no_method" => "no_method",
            Err(_) => "error",
        };
        self.env.metrics().client_request("rpc", outcome);
        let (data, error) = match answer {
            Ok(d) => (Some(d), None),
            Err(e) => (None, Some(e)),
        };
        let reply = ServerFrame::Reply { id, data, error };
        if self.write(Message::text(reply.to_text())).await == Flow::End {
            return Flow::End;
        }
        self.after_handler().await
    }

    /// What the handler left to do: end (its socket broke) or close (it asked to).
    async fn after_handler(&mut self) -> Flow {
        if self.core.gone {
            return self.ended(CloseReason::Failed("write"));
        }
        match self.core.close.take() {
            Some(frame) => self.goodbye(*frame, CloseReason::Closed).await,
            None => Flow::Continue,
        }
    }

    /// Pushes for the client; a move the node asked for; a disconnect the backend asked for.
    async fn pushes(&mut self) -> Flow {
        while let Some(text) = self.core.shared.pop() {
            if self.write(Message::Text(text)).await == Flow::End {
                return Flow::End;
            }
        }
        if let Some((code, reason)) = self.core.shared.kicked() {
            if !matches!(self.phase, Phase::Closing(_)) {
                let frame = close_frame(CloseCode::from(code), reason);
                return self.goodbye(frame, CloseReason::Disconnected).await;
            }
        }
        // Asked to move (rebalance): leave as a drain does, at once, acks first.
        if self.core.shared.is_moving() {
            self.leave(Duration::ZERO, CloseReason::Moved);
        }
        Flow::Continue
    }

    /// What the remote handler's stream did.
    fn remote_did(&mut self, from: FromRemote) -> BoxFuture<'_, Flow> {
        Box::pin(async move {
            let FromRemote::Next(msg) = from else {
                return Flow::Continue;
            };
            let open = matches!(msg, Some(Ok(ref m)) if !m.is_close());
            if let (false, Some(r)) = (open, self.handling.remote()) {
                r.finish();
            }
            if matches!(self.phase, Phase::Closing(_)) {
                return Flow::Continue;
            }
            match msg {
                Some(Ok(Message::Frame(f))) => match remote::Command::from_frame(&f) {
                    Some(c) => self.command(c).await,
                    None => Flow::Continue,
                },
                Some(Ok(Message::Close(frame))) => {
                    self.set_end("handler_left");
                    let frame =
                        frame.unwrap_or_else(|| close_frame(CloseCode::Restart, "handler left"));
                    self.goodbye(frame, CloseReason::HandlerNodeGone).await
                }
                Some(Ok(msg)) => self.write(msg).await,
                // The stream itself is fine; one message was longer than it carries.
                Some(Err(WsError::Capacity(e))) => {
                    self.set_end("too_big");
                    self.goodbye(
                        close_frame(CloseCode::Size, &too_long(&e)),
                        CloseReason::Failed("message_too_big"),
                    )
                    .await
                }
                Some(Err(_)) | None => {
                    self.set_end("handler_lost");
                    self.goodbye(
                        close_frame(CloseCode::Error, "handler node lost"),
                        CloseReason::HandlerNodeGone,
                    )
                    .await
                }
            }
        })
    }

    fn set_end(&mut self, end: &'static str) {
        if let Some(r) = self.handling.remote() {
            r.end = end;
        }
    }

    /// A topic change the remote handler asked for, applied here where the socket is.
    async fn command(&mut self, c: remote::Command) -> Flow {
        match c {
            remote::Command::Subscribe(topic) => {
                match handler::subscribe(&self.core, &self.env.services, &topic).await {
                    Ok(()) => Flow::Continue,
                    Err(e) => {
                        let f = control::refused(&e, topic.as_str().to_string());
                        self.write(Message::text(f.to_text())).await
                    }
                }
            }
            remote::Command::Unsubscribe(topic) => {
                self.env
                    .services
                    .registry
                    .unsubscribe(self.core.shared.id, &topic);
                Flow::Continue
            }
        }
    }

    /// Says goodbye with `frame`: every event already taken is answered first (so a client
    /// resends only what the sink really does not have), then every push taken so far goes out
    /// (none is taken after), then the close frame; the peer has [`CLOSE_GRACE`] to answer it.
    ///
    /// Boxed, like every path a session takes rarely: an idle session's task is only as large
    /// as what it does often.
    fn goodbye(&mut self, frame: CloseFrame, why: CloseReason) -> BoxFuture<'_, Flow> {
        Box::pin(async move {
            self.why.get_or_insert(why);
            self.code.get_or_insert(frame.code.into());
            let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
            self.phase = Phase::Closing(Box::pin(sleep(CLOSE_GRACE)));
            while !self.core.inflight.is_empty() {
                let Ok((event, res)) =
                    tokio::time::timeout_at(deadline, next_receipt(&mut self.core.inflight)).await
                else {
                    break;
                };
                if self.receipt(event, res).await == Flow::End {
                    return Flow::End;
                }
            }
            for text in self.core.shared.close_outbound() {
                if self.write(Message::Text(text)).await == Flow::End {
                    return Flow::End;
                }
            }
            self.write(Message::Close(Some(frame))).await
        })
    }

    async fn receipt(
        &mut self,
        (seq, id): (u64, Option<String>),
        res: Result<(), ews_sink::SinkError>,
    ) -> Flow {
        let frame = match res {
            Ok(()) => {
                self.env.metrics().event("acked");
                ServerFrame::Ack { seq, id }
            }
            Err(e) => {
                self.env.metrics().event("nacked");
                ServerFrame::Nack {
                    seq,
                    error: e.to_string(),
                    id,
                }
            }
        };
        self.write(Message::text(frame.to_text())).await
    }

    async fn write(&mut self, msg: Message) -> Flow {
        let s = &self.env.services;
        let flow = send(&mut self.ws, msg, &s.metrics, s.write_timeout).await;
        if flow == Flow::End {
            self.core.gone = true;
            self.why.get_or_insert(CloseReason::Failed("write"));
        }
        flow
    }
}

fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.to_string().into(),
    }
}

/// The next client publish's answer (never, with none on its way).
async fn next_published(p: &mut Option<Box<publish::Publishing>>) -> Option<String> {
    match p {
        Some(p) => p.in_flight.next().await,
        None => pending().await,
    }
}

/// Fires when the token's timer does (never without one).
async fn expiry_timer(t: &mut Option<Pin<Box<Sleep>>>) {
    match t {
        Some(t) => t.await,
        None => pending().await,
    }
}

/// Fires when the leaving or closing phase's timer does (never while open).
async fn phase_timer(phase: &mut Phase) {
    match phase {
        Phase::Leaving(t, _) | Phase::Closing(t) => t.await,
        Phase::Open => pending().await,
    }
}

/// The close reason for a message the node link does not carry.
fn too_long(e: &tokio_tungstenite::tungstenite::error::CapacityError) -> String {
    use tokio_tungstenite::tungstenite::error::CapacityError;
    match e {
        CapacityError::MessageTooLong { size, .. } => {
            format!("message of {size} bytes is over the node link's limit")
        }
        _ => "message over the node link's limit".to_string(),
    }
}

/// The oldest in-flight event's outcome (acknowledgements go out in order).
async fn next_receipt(
    inflight: &mut std::collections::VecDeque<handler::InFlight>,
) -> ((u64, Option<String>), Result<(), ews_sink::SinkError>) {
    let res = poll_fn(|cx| match inflight.front_mut() {
        Some(e) => Pin::new(&mut e.receipt).poll(cx),
        None => std::task::Poll::Pending,
    })
    .await;
    let event = inflight
        .pop_front()
        .map(|e| (e.seq, e.id))
        .unwrap_or((0, None));
    (event, res)
}

/// Writes `msg`, at most `timeout` (a peer that stopped reading ends the session).
pub async fn send(out: &mut Out, msg: Message, metrics: &Metrics, timeout: Duration) -> Flow {
    let len = msg.len();
    match tokio::time::timeout(timeout, out.send(msg)).await {
        Ok(Ok(())) => {
            metrics.frame_out(len);
            Flow::Continue
        }
        Ok(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => Flow::End,
        // A message the transport (a node-link stream) does not carry: the session ends with
        // 1009 and the reason, which reaches the client.
        Ok(Err(WsError::Capacity(e))) => {
            metrics.error("message_too_big");
            let frame = close_frame(CloseCode::Size, &too_long(&e));
            let _ = tokio::time::timeout(timeout, out.send(Message::Close(Some(frame)))).await;
            Flow::End
        }
        Ok(Err(_)) => {
            metrics.error("write");
            Flow::End
        }
        Err(_) => {
            metrics.error("write_timeout");
            Flow::End
        }
    }
}

/// Maps a read error to the close code RFC 6455 asks for, sends it if the socket still can;
/// the answer is the error's metric label.
/// Counts `e`, sends the close frame it calls for, and says what kind of error it was and the
/// close code sent, if any.
async fn on_error<T: Transport>(
    ws: &mut T,
    e: WsError,
    env: &SessionEnv,
) -> (&'static str, Option<u16>) {
    let (kind, code) = match &e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => return ("closed", None),
        WsError::Capacity(_) => ("message_too_big", Some(CloseCode::Size)),
        WsError::Protocol(_) => ("protocol", Some(CloseCode::Protocol)),
        WsError::Utf8(_) => ("invalid_utf8", Some(CloseCode::Invalid)),
        WsError::Io(_) => ("io", None),
        _ => ("other", None),
    };
    env.metrics().error(kind);
    if let Some(code) = code {
        let frame = close_frame(code, kind);
        let _ = tokio::time::timeout(CLOSE_GRACE, ws.send(Message::Close(Some(frame)))).await;
    }
    (kind, code.map(u16::from))
}
