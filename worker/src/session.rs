//! One WebSocket session: read a message, let the route's handler act on it, write replies,
//! pushes, acks and pings, close on drain. Everything happens in one task, and an idle session
//! holds no timer: liveness rides on a node-wide tick, so an idle session costs its socket, its
//! buffers and this task's state only (a timer exists only around a write and during drain).
//!
//! The handler may run on another worker ([`Handling::Remote`]): messages then go to it over
//! a node-link stream and what it sends comes back the same way, with the same back-pressure
//! as a local handler (a message waiting for the stream stops reading from the client), while
//! this loop keeps writing the handler's answers to the client, so neither side can wait on the
//! other forever. The same loop runs on the handler's node with the stream in the client's
//! place ([`Transport`] is either).

use std::collections::VecDeque;
use std::future::{pending, poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use ews_http::link_stream::{LinkSink, LinkSource};
use ews_proto::ServerFrame;
use ews_sink::Receipt;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::watch;
use tokio::time::{sleep, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::handler::{Handler, Outcome, SessionState};
use crate::metrics::Metrics;
use crate::registry::SessionShared;

/// How long a peer has to answer our close frame before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// What every session on the node shares.
pub struct SessionEnv {
    pub metrics: Arc<Metrics>,
    /// Ticks once per ping interval: ping, and drop peers silent since the last tick.
    pub ticks: watch::Receiver<()>,
    /// Cancelled when the node starts draining.
    pub drain: CancellationToken,
    /// Sessions close at a random point in `[0, drain_spread)` after the drain starts.
    pub drain_spread: Duration,
    pub ack_window: usize,
    /// A write that does not complete in this time (a peer that stopped reading) ends the session.
    pub write_timeout: Duration,
}

/// What a session's socket is: the client's WebSocket, or (on the handler's node) the
/// node-link stream from the node holding it.
pub trait Transport:
    Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin
{
}

impl<T> Transport for T where
    T: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin
{
}

/// Where the session's handler runs.
pub enum Handling {
    Local(Arc<dyn Handler>),
    /// On another worker (boxed: a local session, the common case, carries only a pointer's
    /// worth for it, so an idle session stays small).
    Remote(Box<RemoteHandler>),
}

impl Handling {
    fn remote(&mut self) -> Option<&mut RemoteHandler> {
        match self {
            Handling::Remote(r) => Some(r),
            Handling::Local(_) => None,
        }
    }

    fn is_remote(&self) -> bool {
        matches!(self, Handling::Remote(_))
    }
}

/// A handler on another worker: the session stream's two halves, the client message waiting
/// for room on it, and whether the handler still sends.
pub struct RemoteHandler {
    sink: LinkSink,
    source: LinkSource,
    pending: Option<Message>,
    open: bool,
}

impl RemoteHandler {
    pub fn new(sink: LinkSink, source: LinkSource) -> RemoteHandler {
        RemoteHandler {
            sink,
            source,
            pending: None,
            open: true,
        }
    }
}

/// What the remote handler's stream did.
enum FromRemote {
    /// The waiting client message went onto the stream: read the client again.
    Sent,
    /// A message for the client, or the stream's end (`None`, or an error).
    Next(Option<Result<Message, WsError>>),
}

/// The next thing the remote handler's stream does for the session: take the waiting client
/// message once it has room, or bring a message (or its end). Both in one future, so the
/// handler's answers keep flowing while the client is held back; a small one (a reference), so
/// a local session pays nothing for it.
fn remote_next(handling: &mut Handling) -> impl Future<Output = FromRemote> + '_ {
    poll_fn(move |cx| {
        let Handling::Remote(r) = handling else {
            return Poll::Pending;
        };
        if r.pending.is_some() {
            match r.sink.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    if let Some(msg) = r.pending.take() {
                        // A broken stream shows on the read side next.
                        let _ = r.sink.start_send_unpin(msg);
                    }
                    return Poll::Ready(FromRemote::Sent);
                }
                // Broken: the read side reports it (and the client is closed).
                Poll::Ready(Err(_)) => r.pending = None,
                Poll::Pending => {}
            }
        }
        if !r.open {
            return Poll::Pending;
        }
        r.source.poll_next_unpin(cx).map(FromRemote::Next)
    })
}

pub struct Session {
    pub handling: Handling,
    pub state: SessionState,
    pub shared: Arc<SessionShared>,
    /// The client asked for per-event acks (`?ack=1`).
    pub ack: bool,
}

enum Flow {
    Continue,
    End,
}

pub async fn run<T: Transport>(mut ws: T, mut session: Session, env: &SessionEnv) {
    let m = &env.metrics;
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    if session.handling.is_remote() {
        m.remote_sessions.inc();
    }
    let mut remote_end = "here";
    let mut ticks = env.ticks.clone();
    ticks.mark_unchanged();
    let mut ticking = true;
    let mut heard = true;
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    let mut closing = false;
    // Why the session closes once `timer` fires: a drain, or the node moving it (rebalance).
    let mut close_reason = "server draining";
    let window = env.ack_window.max(1);

    loop {
        let flow = tokio::select! {
            biased;
            (event, res) = next_receipt(&mut inflight), if !inflight.is_empty() => {
                send_receipt(&mut ws, event, res, env).await
            }
            _ = env.drain.cancelled(), if timer.is_none() && !closing => {
                let spread = env.drain_spread.as_millis() as u64;
                let delay = if spread == 0 { 0 } else { rand::random_range(0..spread) };
                timer = Some(Box::pin(sleep(Duration::from_millis(delay))));
                Flow::Continue
            }
            _ = wait(&mut timer), if timer.is_some() => {
                if closing {
                    Flow::End
                } else {
                    closing = true;
                    // Answer every event already taken before saying goodbye, so a client
                    // resends only what the sink really does not have.
                    let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
                    let mut flow = Flow::Continue;
                    while !inflight.is_empty() {
                        let Ok((event, res)) =
                            tokio::time::timeout_at(deadline, next_receipt(&mut inflight)).await
                        else {
                            break;
                        };
                        flow = send_receipt(&mut ws, event, res, env).await;
                        if let Flow::End = flow {
                            break;
                        }
                    }
                    timer = Some(Box::pin(sleep(CLOSE_GRACE)));
                    // Every push taken so far goes out before the goodbye; none is taken after.
                    for text in session.shared.close_outbound() {
                        if let Flow::End = flow {
                            break;
                        }
                        flow = send(&mut ws, Message::Text(text), env).await;
                    }
                    match flow {
                        Flow::End => Flow::End,
                        Flow::Continue => close(&mut ws, CloseCode::Restart, close_reason, env).await,
                    }
                }
            }
            r = ticks.changed(), if ticking => match r {
                Err(_) => { ticking = false; Flow::Continue }
                // While a full ack window pauses reading, the peer's pongs wait unread: only
                // a peer we are listening to can be judged silent.
                Ok(()) if !heard && inflight.len() < window => { m.error("dead_peer"); Flow::End }
                Ok(()) => { heard = false; send(&mut ws, Message::Ping(Default::default()), env).await }
            },
            _ = session.shared.wake.notified() => {
                let mut flow = Flow::Continue;
                while let Some(text) = session.shared.pop() {
                    if let Flow::End = send(&mut ws, Message::Text(text), env).await {
                        flow = Flow::End;
                        break;
                    }
                }
                // Asked to move (rebalance): close as a drain does, at once, acks first.
                if session.shared.is_moving() && timer.is_none() && !closing {
                    close_reason = "rebalance";
                    timer = Some(Box::pin(sleep(Duration::ZERO)));
                }
                flow
            }
            // What the remote handler sends, for the client (and the client's waiting message
            // handed on to it).
            from = remote_next(&mut session.handling), if session.handling.remote().is_some_and(|r| r.open || r.pending.is_some()) => match from {
                FromRemote::Sent => Flow::Continue,
                FromRemote::Next(msg) => {
                    let open = matches!(msg, Some(Ok(ref m)) if !m.is_close());
                    if let (false, Some(r)) = (open, session.handling.remote()) {
                        // Nothing more goes to the handler: end our half of the stream too.
                        r.open = false;
                        r.pending = None;
                        r.sink.finish();
                    }
                    if closing {
                        Flow::Continue
                    } else {
                        let (flow, end) = relay(&mut ws, msg, env).await;
                        if let Some(end) = end {
                            remote_end = end;
                            closing = true;
                            timer = Some(Box::pin(sleep(CLOSE_GRACE)));
                        }
                        flow
                    }
                }
            },
            msg = ws.next(), if inflight.len() < window && session.handling.remote().is_none_or(|r| r.pending.is_none()) => match msg {
                None => Flow::End,
                Some(Err(e)) => { on_error(&mut ws, e, env).await; Flow::End }
                Some(Ok(msg)) => {
                    heard = true;
                    on_message(&mut ws, &mut session, &mut inflight, msg, closing, env).await
                }
            },
        };
        if let Flow::End = flow {
            break;
        }
    }
    if session.handling.is_remote() {
        m.remote_sessions.dec();
        m.remote_closed(remote_end);
    }
}

/// Passes what the remote handler sent on to the client: a message, its close (the handler's
/// node drains: 1012), or 1011 when the stream broke (that node died or vanished). Says why the
/// session ends, when it does.
async fn relay<T: Transport>(
    ws: &mut T,
    msg: Option<Result<Message, WsError>>,
    env: &SessionEnv,
) -> (Flow, Option<&'static str>) {
    match msg {
        Some(Ok(Message::Close(frame))) => (
            send(ws, Message::Close(frame), env).await,
            Some("handler_left"),
        ),
        Some(Ok(msg)) => (send(ws, msg, env).await, None),
        // The stream itself is fine; one message was longer than it carries.
        Some(Err(WsError::Capacity(e))) => (
            close(ws, CloseCode::Size, &too_long(&e), env).await,
            Some("too_big"),
        ),
        Some(Err(_)) | None => (
            close(ws, CloseCode::Error, "handler node lost", env).await,
            Some("handler_lost"),
        ),
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

async fn on_message<T: Transport>(
    ws: &mut T,
    session: &mut Session,
    inflight: &mut VecDeque<InFlight>,
    msg: Message,
    closing: bool,
    env: &SessionEnv,
) -> Flow {
    env.metrics.frame_in(msg.len());
    match msg {
        Message::Text(_) | Message::Binary(_) if !closing => match &mut session.handling {
            Handling::Local(handler) => match handler.on_message(&mut session.state, msg).await {
                Outcome::Reply(reply) => send(ws, reply, env).await,
                Outcome::Submitted { seq, id, receipt } => {
                    if session.ack {
                        inflight.push_back(InFlight { seq, id, receipt });
                    }
                    Flow::Continue
                }
            },
            // Sent on as soon as the stream has room; meanwhile the client is not read.
            Handling::Remote(r) => {
                if r.open {
                    r.pending = Some(msg);
                }
                Flow::Continue
            }
        },
        // Pings are answered and close frames echoed by tungstenite on the next read or write.
        _ => Flow::Continue,
    }
}

/// An event the sink took and the client waits to hear about, in the order they came.
struct InFlight {
    seq: u64,
    id: Option<String>,
    receipt: Receipt,
}

/// The oldest in-flight event's outcome (acknowledgements go out in order).
async fn next_receipt(
    inflight: &mut VecDeque<InFlight>,
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

async fn send_receipt<T: Transport>(
    ws: &mut T,
    (seq, id): (u64, Option<String>),
    res: Result<(), ews_sink::SinkError>,
    env: &SessionEnv,
) -> Flow {
    let frame = match res {
        Ok(()) => {
            env.metrics.event("acked");
            ServerFrame::Ack { seq, id }
        }
        Err(e) => {
            env.metrics.event("nacked");
            ServerFrame::Nack {
                seq,
                error: e.to_string(),
                id,
            }
        }
    };
    send(ws, Message::text(frame.to_text()), env).await
}

async fn wait(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer.as_mut() {
        Some(t) => t.await,
        None => pending().await,
    }
}

async fn send<T: Transport>(ws: &mut T, msg: Message, env: &SessionEnv) -> Flow {
    let len = msg.len();
    match tokio::time::timeout(env.write_timeout, ws.send(msg)).await {
        Ok(Ok(())) => {
            env.metrics.frame_out(len);
            Flow::Continue
        }
        Ok(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => Flow::End,
        // A message the transport (a node-link stream) does not carry: the session ends with
        // 1009 and the reason, which reaches the client.
        Ok(Err(WsError::Capacity(e))) => {
            env.metrics.error("message_too_big");
            let frame = CloseFrame {
                code: CloseCode::Size,
                reason: too_long(&e).into(),
            };
            let _ =
                tokio::time::timeout(env.write_timeout, ws.send(Message::Close(Some(frame)))).await;
            Flow::End
        }
        Ok(Err(_)) => {
            env.metrics.error("write");
            Flow::End
        }
        Err(_) => {
            env.metrics.error("write_timeout");
            Flow::End
        }
    }
}

async fn close<T: Transport>(ws: &mut T, code: CloseCode, reason: &str, env: &SessionEnv) -> Flow {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    send(ws, Message::Close(Some(frame)), env).await
}

/// Maps a read error to the close code RFC 6455 asks for, sends it if the socket still can.
async fn on_error<T: Transport>(ws: &mut T, e: WsError, env: &SessionEnv) {
    let (kind, code) = match &e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => return,
        WsError::Capacity(_) => ("message_too_big", Some(CloseCode::Size)),
        WsError::Protocol(_) => ("protocol", Some(CloseCode::Protocol)),
        WsError::Utf8(_) => ("invalid_utf8", Some(CloseCode::Invalid)),
        WsError::Io(_) => ("io", None),
        _ => ("other", None),
    };
    env.metrics.error(kind);
    if let Some(code) = code {
        let frame = CloseFrame {
            code,
            reason: kind.into(),
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, ws.send(Message::Close(Some(frame)))).await;
    }
}
