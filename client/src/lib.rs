//! A client of elastic-ws with the same contract as the TypeScript one (`clients/js`): one
//! logical connection that reconnects by itself (exponential back-off with full jitter; promptly
//! after the server drains with `1012`; never after `1000`/`1008` or a token refused twice),
//! sends every event with an id of its own and resends the unacknowledged ones, with the same ids,
//! on the next connection — so nothing acknowledged is lost and a consumer drops copies by id —
//! and bounds what it holds: past `buffer` unacknowledged events, [`Client::send`] waits.
//!
//! Beside events it publishes to topics ([`Client::publish`]), asks the route's handler
//! ([`Client::rpc`]), hears pushes and join/leave events ([`Inbound`]), and refreshes its
//! session's token when the server asks (`refresh_required`) through [`Dial::token`].
//!
//! How to reach the server: [`Client::connect`] with a URL and a token function for most (TLS
//! included), or a [`Dial`] of the caller's own (a load generator's own sockets for `ews-load`).

mod backoff;
mod connect;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ews_proto::{ClientControl, Event, ServerFrame, StreamPosition};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub use backoff::Backoff;
pub use connect::{tls_connector, ConnectError, Stream, TokenFn, UrlDial};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens one WebSocket to an ingest route, with `?ack=1` and the client's credentials (a fresh
/// token, if it has a source of them). Called for every connection the client makes.
pub trait Dial: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn dial(&self) -> BoxFuture<'_, Result<WebSocketStream<Self::Stream>, DialError>>;

    /// A fresh token for the open session, when the server says the current one is about to
    /// expire (`refresh_required`). `None` (the default): the session ends at the token's `exp`
    /// and the client reconnects with a new dial.
    fn token(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { None })
    }
}

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// The server answered the upgrade with this HTTP status (401: the token was refused).
    #[error("refused with HTTP {0}")]
    Refused(u16),
    #[error("{0}")]
    Failed(String),
}

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Events sent and not yet acknowledged, at most (at least 1).
    pub buffer: usize,
    pub backoff: Backoff,
    /// Prefix of the event ids, unique per client instance.
    pub instance: String,
}

impl Options {
    pub fn new(instance: impl Into<String>) -> Options {
        Options {
            buffer: 1000,
            backoff: Backoff::default(),
            instance: instance.into(),
        }
    }
}

/// The connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Connecting {
        attempt: u32,
    },
    Open,
    /// `reconnect_in: None`: closed for good.
    Closed {
        code: u16,
        reason: String,
        reconnect_in: Option<Duration>,
    },
}

/// An acknowledged event: stored durably by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub id: String,
    /// Its number in the session that acknowledged it.
    pub seq: u64,
}

/// Why an event was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The server took it but could not store it (`nack`).
    #[error("nack: {0}")]
    Nack(String),
    /// The server refused it (`error` frame: invalid, or the sink refused it).
    #[error("refused ({kind}): {detail}")]
    Refused { kind: String, detail: String },
    /// The client closed (or was closed for good) before an answer came.
    #[error("closed: {0}")]
    Closed(String),
}

/// Why a subscription failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The server refused it: `kind` is `topic_forbidden`, `invalid_topic` or
    /// `too_many_topics`.
    #[error("refused ({kind}): {detail}")]
    Refused { kind: String, detail: String },
    /// The client closed (or was closed for good) before an answer came.
    #[error("closed: {0}")]
    Closed(String),
}

/// A pushed message: to this client (`topic` is `None`) or to a topic it subscribed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub msg: String,
    pub topic: Option<String>,
    /// The publishing client's id, when another client published it (set by the server).
    pub from: Option<String>,
    /// On a topic with history: its place in the topic's stream (pushes come in offset order,
    /// each once, across reconnects).
    pub offset: Option<u64>,
}

/// Where this client is in a subscribed topic's stream (topics with history).
#[derive(Debug, Default)]
struct Track {
    at: Option<StreamPosition>,
    /// A subscribe with `since` is on its way: pushes past a gap wait for its replay.
    recovering: bool,
}

/// What the server sends the application on its own: pushes, and who joined or left a topic
/// (on routes that announce presence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Push(Push),
    /// `info`: what the client's backend said about it at connect, if anything.
    Join {
        topic: String,
        client_id: String,
        info: Option<ews_proto::ClientInfo>,
    },
    Leave {
        topic: String,
        client_id: String,
        info: Option<ews_proto::ClientInfo>,
    },
    /// What was published to `topic` while this client was away could not all be recovered
    /// (`reason`: `expired`, `epoch_changed`, `too_many`, `unavailable`): refetch the state it
    /// stands for. Pushes continue from now. An empty `topic` means the pushes to this client
    /// itself (servers with history for client ids).
    Unrecovered {
        topic: String,
        reason: String,
    },
}

/// Why a publish or an rpc has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The server refused it: `kind` is `publish_forbidden`, `rate_limited`, `invalid_topic`,
    /// `invalid_frame`, or `backend_unavailable` (the route's backend hook failed: try again
    /// later).
    #[error("refused ({kind}): {detail}")]
    Refused { kind: String, detail: String },
    /// The handler answered the rpc with an error (`no_method`, or its own code).
    #[error("{}: {}", .0.code, .0.message)]
    Rpc(ews_proto::RpcError),
    /// The connection was lost after the request went out and before its answer: it may or
    /// may not have taken effect.
    #[error("connection lost before the answer")]
    Lost,
    /// No answer within the time the caller gave.
    #[error("no answer in time")]
    TimedOut,
    /// The client closed (or was closed for good).
    #[error("closed: {0}")]
    Closed(String),
}

type Answer = oneshot::Sender<Result<(), SubscribeError>>;

/// Counters of what the client did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections opened; more than one means it reconnected.
    pub opens: AtomicU64,
    /// Events sent again on a new connection.
    pub resent: AtomicU64,
    /// Pushes dropped because the application did not read them.
    pub pushes_dropped: AtomicU64,
}

struct Entry {
    id: String,
    frame: String,
    done: oneshot::Sender<Result<Ack, SendError>>,
    _slot: OwnedSemaphorePermit,
}

enum Cmd {
    Send(Entry),
    Subscribe(String, Answer),
    Unsubscribe(String, Answer),
    /// A publish or an rpc: its frame, and who waits for the answer to its key.
    Request(String, Key, Reply),
    Close,
}

/// Which answer a request waits for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Publish(String),
    Rpc(u64),
}

/// The caller waiting for a request's answer.
enum Reply {
    Published(oneshot::Sender<Result<usize, RequestError>>),
    Rpc(oneshot::Sender<Result<serde_json::Value, RequestError>>),
}

impl Reply {
    fn fail(self, e: RequestError) {
        match self {
            Reply::Published(tx) => {
                let _ = tx.send(Err(e));
            }
            Reply::Rpc(tx) => {
                let _ = tx.send(Err(e));
            }
        }
    }
}

/// The application's side of a client. Dropping it closes the client.
pub struct Client {
    cmds: mpsc::Sender<Cmd>,
    slots: Arc<Semaphore>,
    state: watch::Receiver<State>,
    stats: Arc<Stats>,
    next: AtomicU64,
    instance: String,
}

/// Resolves with the event's acknowledgement, or why there is none.
pub struct Pending(oneshot::Receiver<Result<Ack, SendError>>);

impl Future for Pending {
    type Output = Result<Ack, SendError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(SendError::Closed("the client stopped".into()))))
    }
}

/// Pushes and join/leave events, in order. Bounded: past 1024 unread, new ones are dropped (and
/// counted).
pub type Pushes = mpsc::Receiver<Inbound>;

const PUSH_BUFFER: usize = 1024;

impl Client {
    /// Starts a client that connects with `dial` (now, unless `first` is a connection the caller
    /// already opened, and after every loss).
    pub fn start<D: Dial>(
        dial: D,
        first: Option<WebSocketStream<D::Stream>>,
        options: Options,
    ) -> (Client, Pushes) {
        let buffer = options.buffer.max(1);
        let (cmds, rx) = mpsc::channel(buffer);
        let (state_tx, state) = watch::channel(State::Connecting { attempt: 0 });
        let (push_tx, pushes) = mpsc::channel(PUSH_BUFFER);
        let stats = Arc::new(Stats::default());
        let task = Task {
            dial,
            cmds: rx,
            state: state_tx,
            pushes: push_tx,
            stats: stats.clone(),
            backoff: options.backoff,
            outbox: VecDeque::new(),
            topics: BTreeMap::new(),
            direct: Track::default(),
            resend: Vec::new(),
            waiting: HashMap::new(),
            requests: HashMap::new(),
            unsent: Vec::new(),
        };
        tokio::spawn(task.run(first));
        let client = Client {
            cmds,
            slots: Arc::new(Semaphore::new(buffer)),
            state,
            stats,
            next: AtomicU64::new(0),
            instance: options.instance,
        };
        (client, pushes)
    }

    /// Waits for room in the buffer (the back-pressure), then sends `msg`; the returned future
    /// resolves with its acknowledgement. The event keeps its id across reconnects.
    pub async fn send(&self, msg: String, timestamp: i64) -> Result<Pending, SendError> {
        let closed = || SendError::Closed("the client is closed".into());
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let id = format!(
            "{}-{}",
            self.instance,
            self.next.fetch_add(1, Ordering::Relaxed) + 1
        );
        let frame = Event {
            id: Some(id.clone()),
            msg,
            client_id: String::new(),
            timestamp,
        }
        .to_text();
        let (done, pending) = oneshot::channel();
        let entry = Entry {
            id,
            frame,
            done,
            _slot: slot,
        };
        self.cmds
            .send(Cmd::Send(entry))
            .await
            .map_err(|_| closed())?;
        Ok(Pending(pending))
    }

    /// Joins `topic` (if the token grants it); resolves once the server confirms. The
    /// subscription outlives reconnects: every new connection subscribes again before it resends
    /// events (messages published while disconnected are not replayed).
    pub async fn subscribe(&self, topic: &str) -> Result<(), SubscribeError> {
        self.control(|tx| Cmd::Subscribe(topic.to_string(), tx))
            .await
    }

    /// Leaves `topic`; resolves once the server confirms (at once while disconnected).
    pub async fn unsubscribe(&self, topic: &str) -> Result<(), SubscribeError> {
        self.control(|tx| Cmd::Unsubscribe(topic.to_string(), tx))
            .await
    }

    /// Publishes `msg` to `topic` (if the token's `publish` claim grants it); resolves with how
    /// many sessions it reached. Sent at most once: a connection lost before the answer fails
    /// it with [`RequestError::Lost`]; while disconnected it waits for the next connection.
    pub async fn publish(&self, topic: &str, msg: &str) -> Result<usize, RequestError> {
        let id = format!(
            "{}-p{}",
            self.instance,
            self.next.fetch_add(1, Ordering::Relaxed) + 1
        );
        let frame = ClientControl::Publish {
            topic: topic.to_string(),
            msg: msg.to_string(),
            id: Some(id.clone()),
        };
        let (tx, rx) = oneshot::channel();
        self.request(Cmd::Request(
            frame.to_text(),
            Key::Publish(id),
            Reply::Published(tx),
        ))
        .await?;
        rx.await
            .unwrap_or_else(|_| Err(RequestError::Closed("the client stopped".into())))
    }

    /// Asks the route's handler `method` with `data`; resolves with its answer, or fails after
    /// `timeout`. Sent at most once, like [`Client::publish`].
    pub async fn rpc(
        &self,
        method: &str,
        data: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, RequestError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let frame = ClientControl::Rpc {
            id,
            method: method.to_string(),
            data,
        };
        let (tx, rx) = oneshot::channel();
        self.request(Cmd::Request(frame.to_text(), Key::Rpc(id), Reply::Rpc(tx)))
            .await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(answer) => {
                answer.unwrap_or_else(|_| Err(RequestError::Closed("the client stopped".into())))
            }
            Err(_) => Err(RequestError::TimedOut),
        }
    }

    async fn request(&self, cmd: Cmd) -> Result<(), RequestError> {
        self.cmds
            .send(cmd)
            .await
            .map_err(|_| RequestError::Closed("the client is closed".into()))
    }

    async fn control(&self, cmd: impl FnOnce(Answer) -> Cmd) -> Result<(), SubscribeError> {
        let closed = || SubscribeError::Closed("the client is closed".into());
        let (tx, rx) = oneshot::channel();
        self.cmds.send(cmd(tx)).await.map_err(|_| closed())?;
        rx.await.unwrap_or_else(|_| Err(closed()))
    }

    /// The connection's state, as it changes.
    pub fn state(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Closes for good; unacknowledged events fail with [`SendError::Closed`].
    pub async fn close(self) {
        let _ = self.cmds.send(Cmd::Close).await;
        let mut state = self.state.clone();
        let _ = state
            .wait_for(|s| {
                matches!(
                    s,
                    State::Closed {
                        reconnect_in: None,
                        ..
                    }
                )
            })
            .await;
    }
}

/// How a connection ended.
struct Loss {
    code: u16,
    reason: String,
}

struct Task<D: Dial> {
    dial: D,
    cmds: mpsc::Receiver<Cmd>,
    state: watch::Sender<State>,
    pushes: mpsc::Sender<Inbound>,
    stats: Arc<Stats>,
    backoff: Backoff,
    /// Publishes and rpcs sent on this connection, waiting for their answer.
    requests: HashMap<Key, Reply>,
    /// Publishes and rpcs asked for while disconnected: sent on the next connection.
    unsent: Vec<(String, Key, Reply)>,
    /// Unacknowledged events, oldest first: what a new connection sends again.
    outbox: VecDeque<Entry>,
    /// Topics the application subscribed to: what a new connection subscribes to again, from
    /// where it was in each topic with history.
    topics: BTreeMap<String, Track>,
    /// Where this client is in the stream of pushes to it (servers with history for client
    /// ids): what a new connection `resume`s from.
    direct: Track,
    /// Frames to send on this connection once the current one is handled (a resubscribe to
    /// fill a gap).
    resend: Vec<String>,
    /// Subscribe and unsubscribe calls waiting for the server's answer, by topic.
    waiting: HashMap<String, Vec<Answer>>,
}

/// Close codes after which the client does not reconnect.
fn is_final(code: u16) -> bool {
    code == 1000 || code == 1008
}

impl<D: Dial> Task<D> {
    async fn run(mut self, mut first: Option<WebSocketStream<D::Stream>>) {
        let mut attempt: u32 = 0;
        let mut refused = 0u32;
        loop {
            let ws = match first.take() {
                Some(ws) => ws,
                None => {
                    self.state.send_replace(State::Connecting { attempt });
                    match self.dial.dial().await {
                        Ok(ws) => ws,
                        Err(DialError::Refused(status @ (401 | 403))) => {
                            // Once may be a token that just expired (the dialer fetches a new
                            // one next time); twice in a row, retrying cannot help.
                            refused += 1;
                            if refused >= 2 {
                                return self.finish(4001, "token refused");
                            }
                            let loss = Loss {
                                code: 4001,
                                reason: format!("refused with HTTP {status}"),
                            };
                            if !self.pause(&loss, &mut attempt).await {
                                return;
                            }
                            continue;
                        }
                        Err(e) => {
                            let loss = Loss {
                                code: 1006,
                                reason: e.to_string(),
                            };
                            if !self.pause(&loss, &mut attempt).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            refused = 0;
            attempt = 0;
            let opens = self.stats.opens.fetch_add(1, Ordering::Relaxed) + 1;
            self.state.send_replace(State::Open);
            let loss = match self.serve(ws, opens > 1).await {
                Some(loss) => loss,
                None => return,
            };
            if is_final(loss.code) {
                return self.finish(loss.code, &loss.reason);
            }
            if !self.pause(&loss, &mut attempt).await {
                return;
            }
        }
    }

    /// Sends what is unacknowledged, then new events, and hands answers back, until the
    /// connection ends (`Some`) or the application closes the client (`None`).
    async fn serve(&mut self, ws: WebSocketStream<D::Stream>, again: bool) -> Option<Loss> {
        let (mut out, mut inp) = ws.split();
        let lost = |e: &dyn std::fmt::Display| Loss {
            code: 1006,
            reason: e.to_string(),
        };
        // Subscriptions first, so pushes on them flow while the resent events are answered; on a
        // topic with history, from where this client was: what it missed comes first.
        self.resend.clear();
        if let Some(at) = self.direct.at.clone() {
            self.direct.recovering = true;
            let frame = ClientControl::Resume { since: at };
            if let Err(err) = out.feed(Message::text(frame.to_text())).await {
                return Some(lost(&err));
            }
        }
        for (topic, track) in &mut self.topics {
            track.recovering = track.at.is_some();
            let frame = ClientControl::Subscribe {
                topic: topic.clone(),
                since: track.at.clone(),
            };
            if let Err(err) = out.feed(Message::text(frame.to_text())).await {
                return Some(lost(&err));
            }
        }
        for e in &self.outbox {
            if let Err(err) = out.feed(Message::text(e.frame.clone())).await {
                return Some(lost(&err));
            }
        }
        if again {
            self.stats
                .resent
                .fetch_add(self.outbox.len() as u64, Ordering::Relaxed);
        }
        for (frame, key, reply) in std::mem::take(&mut self.unsent) {
            self.requests.insert(key, reply);
            if let Err(err) = out.feed(Message::text(frame)).await {
                return Some(self.lose(lost(&err)));
            }
        }
        if let Err(err) = out.flush().await {
            return Some(self.lose(lost(&err)));
        }
        let loss = self.serve_open(&mut out, &mut inp).await?;
        Some(self.lose(loss))
    }

    /// Fails every request of the lost connection (it may or may not have taken effect).
    fn lose(&mut self, loss: Loss) -> Loss {
        for (_, reply) in self.requests.drain() {
            reply.fail(RequestError::Lost);
        }
        loss
    }

    async fn serve_open(
        &mut self,
        out: &mut futures_util::stream::SplitSink<WebSocketStream<D::Stream>, Message>,
        inp: &mut futures_util::stream::SplitStream<WebSocketStream<D::Stream>>,
    ) -> Option<Loss> {
        let lost = |e: &dyn std::fmt::Display| Loss {
            code: 1006,
            reason: e.to_string(),
        };
        loop {
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    Some(Cmd::Send(entry)) => {
                        let sent = out.send(Message::text(entry.frame.clone())).await;
                        self.outbox.push_back(entry);
                        if let Err(err) = sent {
                            return Some(lost(&err));
                        }
                    }
                    Some(Cmd::Subscribe(topic, answer)) => {
                        let track = self.topics.entry(topic.clone()).or_default();
                        track.recovering = track.at.is_some();
                        let frame = ClientControl::Subscribe {
                            topic: topic.clone(),
                            since: track.at.clone(),
                        };
                        self.waiting.entry(topic).or_default().push(answer);
                        if let Err(err) = out.send(Message::text(frame.to_text())).await {
                            return Some(lost(&err));
                        }
                    }
                    Some(Cmd::Unsubscribe(topic, answer)) => {
                        let frame = ClientControl::Unsubscribe { topic: topic.clone() };
                        self.topics.remove(&topic);
                        self.waiting.entry(topic).or_default().push(answer);
                        if let Err(err) = out.send(Message::text(frame.to_text())).await {
                            return Some(lost(&err));
                        }
                    }
                    Some(Cmd::Request(frame, key, reply)) => {
                        self.requests.insert(key, reply);
                        if let Err(err) = out.send(Message::text(frame)).await {
                            return Some(lost(&err));
                        }
                    }
                    Some(Cmd::Close) | None => {
                        let _ = out.close().await;
                        self.finish(1000, "client closed");
                        return None;
                    }
                },
                msg = inp.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        let refresh = self.on_frame(t.as_str());
                        for frame in std::mem::take(&mut self.resend) {
                            if let Err(err) = out.send(Message::text(frame)).await {
                                return Some(lost(&err));
                            }
                        }
                        if refresh {
                            // The server asked for a fresh token.
                            let frame = match self.dial.token().await {
                                Some(token) => ClientControl::Refresh { token },
                                None => continue,
                            };
                            if let Err(err) = out.send(Message::text(frame.to_text())).await {
                                return Some(lost(&err));
                            }
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((u16::from(CloseCode::Status), String::new()));
                        return Some(Loss { code, reason });
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Some(lost(&err)),
                    None => return Some(lost(&"connection ended")),
                },
            }
        }
    }

    /// Hands an answer to whoever waits for it; `true` when the server wants a fresh token.
    fn on_frame(&mut self, text: &str) -> bool {
        let Ok(frame) = serde_json::from_str::<ServerFrame>(text) else {
            tracing::debug!(%text, "unreadable frame");
            return false;
        };
        let (id, outcome) = match frame {
            ServerFrame::Ack { seq, id: Some(id) } => {
                let ack = Ack {
                    id: id.clone(),
                    seq,
                };
                (id, Ok(ack))
            }
            ServerFrame::Nack {
                error,
                id: Some(id),
                ..
            } => (id, Err(SendError::Nack(error))),
            ServerFrame::Error {
                error,
                detail,
                topic: Some(topic),
                id,
            } => {
                // Refused: not asked again on the next connection.
                self.topics.remove(&topic);
                let kind = serde_json::to_value(error)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                if let Some(reply) = id.and_then(|id| self.requests.remove(&Key::Publish(id))) {
                    reply.fail(RequestError::Refused { kind, detail });
                    return false;
                }
                self.answer(&topic, Err(SubscribeError::Refused { kind, detail }));
                return false;
            }
            ServerFrame::Subscribed {
                topic,
                offset,
                epoch,
                recovered,
                reason,
            } => {
                if let Some(track) = self.topics.get_mut(&topic) {
                    track.recovering = false;
                    if let (Some(offset), Some(epoch)) = (offset, epoch) {
                        // Where the stream is: every push up to it came first.
                        let behind = track.at.as_ref().is_none_or(|a| {
                            a.epoch != epoch || a.offset < offset || recovered == Some(false)
                        });
                        if behind {
                            track.at = Some(StreamPosition { offset, epoch });
                        }
                    }
                }
                if recovered == Some(false) {
                    let reason = reason.unwrap_or_default();
                    self.inbound(Inbound::Unrecovered {
                        topic: topic.clone(),
                        reason,
                    });
                }
                self.answer(&topic, Ok(()));
                return false;
            }
            ServerFrame::Unsubscribed { topic } => {
                self.answer(&topic, Ok(()));
                return false;
            }
            ServerFrame::Position { offset, epoch } => {
                // A `resume` on its way knows better.
                if !self.direct.recovering {
                    self.direct.at = Some(StreamPosition { offset, epoch });
                }
                return false;
            }
            ServerFrame::Resumed {
                offset,
                epoch,
                recovered,
                reason,
            } => {
                self.direct.recovering = false;
                let behind = self
                    .direct
                    .at
                    .as_ref()
                    .is_none_or(|a| a.epoch != epoch || a.offset < offset || !recovered);
                if behind {
                    self.direct.at = Some(StreamPosition { offset, epoch });
                }
                if !recovered {
                    self.inbound(Inbound::Unrecovered {
                        topic: String::new(),
                        reason: reason.unwrap_or_default(),
                    });
                }
                return false;
            }
            ServerFrame::Error {
                error,
                detail,
                id: Some(id),
                ..
            } => {
                let kind = serde_json::to_value(error)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                if let Some(reply) = self.requests.remove(&Key::Publish(id.clone())) {
                    reply.fail(RequestError::Refused { kind, detail });
                    return false;
                }
                (id, Err(SendError::Refused { kind, detail }))
            }
            ServerFrame::Push {
                msg,
                topic,
                from,
                offset,
                epoch,
            } => {
                if let (Some(offset), Some(epoch)) = (offset, epoch) {
                    if !self.in_order(topic.as_deref(), StreamPosition { offset, epoch }) {
                        return false;
                    }
                }
                self.inbound(Inbound::Push(Push {
                    msg,
                    topic,
                    from,
                    offset,
                }));
                return false;
            }
            ServerFrame::Join {
                topic,
                client_id,
                info,
            } => {
                self.inbound(Inbound::Join {
                    topic,
                    client_id,
                    info,
                });
                return false;
            }
            ServerFrame::Leave {
                topic,
                client_id,
                info,
            } => {
                self.inbound(Inbound::Leave {
                    topic,
                    client_id,
                    info,
                });
                return false;
            }
            ServerFrame::Published {
                id: Some(id),
                delivered,
            } => {
                if let Some(Reply::Published(tx)) = self.requests.remove(&Key::Publish(id)) {
                    let _ = tx.send(Ok(delivered));
                }
                return false;
            }
            ServerFrame::Reply { id, data, error } => {
                if let Some(Reply::Rpc(tx)) = self.requests.remove(&Key::Rpc(id)) {
                    let _ = tx.send(match error {
                        Some(e) => Err(RequestError::Rpc(e)),
                        None => Ok(data.unwrap_or_default()),
                    });
                }
                return false;
            }
            ServerFrame::RefreshRequired { .. } => return true,
            _ => return false,
        };
        // Answers come in send order: the entry is almost always the first.
        if let Some(i) = self.outbox.iter().position(|e| e.id == id) {
            if let Some(entry) = self.outbox.remove(i) {
                let _ = entry.done.send(outcome);
            }
        }
        false
    }

    /// Whether a push at `at` on `topic` is the next one: a copy is dropped; one past a gap is
    /// dropped too, and the topic subscribed again from where this client is (the server hands
    /// over what it missed, in order); another epoch starts over (the application hears that
    /// what came before is lost).
    fn in_order(&mut self, topic: Option<&str>, at: StreamPosition) -> bool {
        let track = match topic {
            Some(t) => match self.topics.get_mut(t) {
                Some(track) => track,
                None => return true,
            },
            None => &mut self.direct,
        };
        match &track.at {
            Some(a) if a.epoch == at.epoch && at.offset <= a.offset => false,
            Some(a) if a.epoch == at.epoch && at.offset > a.offset + 1 => {
                if !track.recovering {
                    track.recovering = true;
                    let since = a.clone();
                    let frame = match topic {
                        Some(t) => ClientControl::Subscribe {
                            topic: t.to_string(),
                            since: Some(since),
                        },
                        None => ClientControl::Resume { since },
                    };
                    self.resend.push(frame.to_text());
                }
                false
            }
            Some(a) if a.epoch != at.epoch && !track.recovering => {
                track.at = Some(at);
                self.inbound(Inbound::Unrecovered {
                    topic: topic.unwrap_or_default().to_string(),
                    reason: "epoch_changed".into(),
                });
                true
            }
            _ => {
                track.at = Some(at);
                true
            }
        }
    }

    fn inbound(&mut self, i: Inbound) {
        if self.pushes.try_send(i).is_err() {
            self.stats.pushes_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits before the next attempt, still taking new events; `false` if the application
    /// closed the client meanwhile.
    async fn pause(&mut self, loss: &Loss, attempt: &mut u32) -> bool {
        let wait = if loss.code == 1012 {
            *attempt = 0;
            self.backoff.drain_delay()
        } else {
            let w = self.backoff.retry_delay(*attempt);
            *attempt = attempt.saturating_add(1);
            w
        };
        self.state.send_replace(State::Closed {
            code: loss.code,
            reason: loss.reason.clone(),
            reconnect_in: Some(wait),
        });
        let until = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                cmd = self.cmds.recv() => match cmd {
                    Some(Cmd::Send(entry)) => self.outbox.push_back(entry),
                    // Sent, and answered, on the next connection.
                    Some(Cmd::Subscribe(topic, answer)) => {
                        self.topics.entry(topic.clone()).or_default();
                        self.waiting.entry(topic).or_default().push(answer);
                    }
                    Some(Cmd::Unsubscribe(topic, answer)) => {
                        self.topics.remove(&topic);
                        let _ = answer.send(Ok(()));
                    }
                    Some(Cmd::Request(frame, key, reply)) => self.unsent.push((frame, key, reply)),
                    Some(Cmd::Close) | None => {
                        self.finish(1000, "client closed");
                        return false;
                    }
                },
            }
        }
    }

    /// Answers everyone waiting on `topic`.
    fn answer(&mut self, topic: &str, outcome: Result<(), SubscribeError>) {
        for tx in self.waiting.remove(topic).unwrap_or_default() {
            let _ = tx.send(outcome.clone());
        }
    }

    /// Ends for good: every held event and subscription waiting for an answer fails.
    fn finish(&mut self, code: u16, reason: &str) {
        for e in self.outbox.drain(..) {
            let _ = e.done.send(Err(SendError::Closed(reason.to_string())));
        }
        for (_, reply) in self.requests.drain() {
            reply.fail(RequestError::Closed(reason.to_string()));
        }
        for (_, _, reply) in self.unsent.drain(..) {
            reply.fail(RequestError::Closed(reason.to_string()));
        }
        let closed = || SubscribeError::Closed(reason.to_string());
        for (_, txs) in self.waiting.drain() {
            for tx in txs {
                let _ = tx.send(Err(closed()));
            }
        }
        self.cmds.close();
        while let Ok(cmd) = self.cmds.try_recv() {
            match cmd {
                Cmd::Send(e) => {
                    let _ = e.done.send(Err(SendError::Closed(reason.to_string())));
                }
                Cmd::Subscribe(_, tx) | Cmd::Unsubscribe(_, tx) => {
                    let _ = tx.send(Err(closed()));
                }
                Cmd::Request(_, _, reply) => reply.fail(RequestError::Closed(reason.to_string())),
                Cmd::Close => {}
            }
        }
        self.state.send_replace(State::Closed {
            code,
            reason: reason.to_string(),
            reconnect_in: None,
        });
    }
}
