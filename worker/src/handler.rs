//! Session handlers: what a route does with each message a client sends. A handler is shared
//! by every session on its route; per-session state lives in [`SessionState`].

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ews_cluster::placement::Placement;
use ews_proto::topic::{Grants, Topic};
use ews_proto::{ClientControl, ErrorKind, FrameKind, ServerFrame, MAX_ID_LEN};
use ews_sink::{BoxFuture, Event, Receipt, Sink, StampedEvent};
use tokio_tungstenite::tungstenite::Message;

use crate::config::{HandlerKind, Routes};
use crate::metrics::Metrics;
use crate::registry::{Registry, TooManyTopics};

/// What a session knows about itself.
pub struct SessionState {
    pub id: u64,
    /// The authenticated client id (JWT `sub`); `None` with `--no-auth`.
    pub client_id: Option<Arc<str>>,
    pub node: Arc<str>,
    /// Sequence number of the last event taken by the sink.
    pub last_seq: u64,
    /// The topics this session may subscribe to (from its token, or `--topics-open`).
    pub grants: Arc<Grants>,
}

/// What the session does after a message.
pub enum Outcome {
    /// Send this frame back (with back-pressure: the session reads on once it is written).
    Reply(Message),
    /// Event `seq` (with the client's `id`, if any) was taken by the sink; the receipt tells
    /// when it is durable.
    Submitted {
        seq: u64,
        id: Option<String>,
        receipt: Receipt,
    },
}

pub trait Handler: Send + Sync + 'static {
    /// Handles one text or binary message. The session does not read the next one until the
    /// returned future resolves, which is how a full sink slows a client down.
    fn on_message<'a>(
        &'a self,
        session: &'a mut SessionState,
        msg: Message,
    ) -> BoxFuture<'a, Outcome>;
}

/// Sends every text and binary message back unchanged (the Autobahn conformance target).
pub struct Echo;

impl Handler for Echo {
    fn on_message<'a>(&'a self, _: &'a mut SessionState, msg: Message) -> BoxFuture<'a, Outcome> {
        Box::pin(async move { Outcome::Reply(msg) })
    }
}

/// Answers every text message `s` with `Hello s!`: the demo handler of the distributed design
/// this follows, usually placed on another worker than the socket (`/greet=greet@random`).
pub struct Greet;

impl Handler for Greet {
    fn on_message<'a>(&'a self, _: &'a mut SessionState, msg: Message) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match msg {
                Message::Text(s) => Outcome::Reply(Message::text(format!("Hello {s}!"))),
                _ => error(
                    ErrorKind::InvalidEvent,
                    "greet takes text messages".into(),
                    None,
                ),
            }
        })
    }
}

/// Parses `{"msg","clientId","timestamp"}` events, stamps them and hands them to the sink;
/// takes `subscribe`/`unsubscribe` frames.
pub struct Ingest {
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
    topics: Topics,
}

/// Where subscriptions are kept and how many a session may hold.
#[derive(Clone)]
pub struct Topics {
    pub registry: Arc<Registry>,
    pub max_per_session: usize,
}

impl Ingest {
    pub fn new(sink: Arc<dyn Sink>, metrics: Arc<Metrics>, topics: Topics) -> Ingest {
        Ingest {
            sink,
            metrics,
            topics,
        }
    }

    async fn control(&self, s: &SessionState, c: ClientControl) -> Outcome {
        let (subscribe, raw) = match c {
            ClientControl::Subscribe { topic } => (true, topic),
            ClientControl::Unsubscribe { topic } => (false, topic),
        };
        let topic = match Topic::parse(&raw) {
            Ok(t) => t,
            Err(e) => return topic_error(ErrorKind::InvalidTopic, e.to_string(), raw),
        };
        if !subscribe {
            self.topics.registry.unsubscribe(s.id, &topic);
            return reply(ServerFrame::Unsubscribed { topic: raw });
        }
        if !s.grants.allows(&topic) {
            self.metrics.subscription("forbidden");
            return topic_error(
                ErrorKind::TopicForbidden,
                "the token does not grant this topic".into(),
                raw,
            );
        }
        match self
            .topics
            .registry
            .subscribe(s.id, &topic, self.topics.max_per_session)
        {
            Ok(seq) => {
                self.metrics.subscription("ok");
                // `subscribed` means reachable from every node: a publish through the front
                // door right after it is delivered.
                self.topics.registry.advertised(seq).await;
                reply(ServerFrame::Subscribed { topic: raw })
            }
            Err(TooManyTopics) => {
                self.metrics.subscription("too_many");
                topic_error(
                    ErrorKind::TooManyTopics,
                    format!(
                        "a session holds at most {} topics",
                        self.topics.max_per_session
                    ),
                    raw,
                )
            }
        }
    }
}

impl Handler for Ingest {
    fn on_message<'a>(&'a self, s: &'a mut SessionState, msg: Message) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let text = match &msg {
                Message::Text(t) => t.as_str(),
                _ => {
                    self.metrics.event("invalid");
                    return error(
                        ErrorKind::InvalidEvent,
                        "events are JSON text frames".into(),
                        None,
                    );
                }
            };
            if let FrameKind::Control(kind) = FrameKind::of(text) {
                return match serde_json::from_str::<ClientControl>(text) {
                    Ok(c) => self.control(s, c).await,
                    Err(e) if kind == "subscribe" || kind == "unsubscribe" => topic_error(
                        ErrorKind::InvalidTopic,
                        format!("expected {{\"type\":\"{kind}\",\"topic\":…}}: {e}"),
                        String::new(),
                    ),
                    Err(_) => {
                        self.metrics.event("invalid");
                        error(
                            ErrorKind::InvalidEvent,
                            format!("unknown frame type {kind:?}: events carry no \"type\", control frames are subscribe or unsubscribe"),
                            None,
                        )
                    }
                };
            }
            let event: Event = match serde_json::from_str(text) {
                Ok(e) => e,
                Err(e) => {
                    self.metrics.event("invalid");
                    return error(ErrorKind::InvalidEvent, e.to_string(), None);
                }
            };
            if event.id.as_ref().is_some_and(|id| id.len() > MAX_ID_LEN) {
                self.metrics.event("invalid");
                return error(
                    ErrorKind::InvalidEvent,
                    format!("an event id is at most {MAX_ID_LEN} bytes"),
                    None,
                );
            }
            let seq = s.last_seq + 1;
            let stamped = StampedEvent {
                id: event.id.clone(),
                msg: event.msg,
                // The authenticated id wins: a client cannot speak for someone else.
                client_id: s
                    .client_id
                    .as_deref()
                    .map(str::to_string)
                    .unwrap_or(event.client_id),
                timestamp: event.timestamp,
                node: s.node.to_string(),
                session: s.id,
                seq,
                received_at: now_ms(),
            };
            match self.sink.submit(stamped).await {
                Ok(receipt) => {
                    s.last_seq = seq;
                    self.metrics.event("accepted");
                    Outcome::Submitted {
                        seq,
                        id: event.id,
                        receipt,
                    }
                }
                Err(e) => {
                    self.metrics.event("sink_error");
                    error(ErrorKind::SinkUnavailable, e.to_string(), event.id)
                }
            }
        })
    }
}

fn error(error: ErrorKind, detail: String, id: Option<String>) -> Outcome {
    reply(ServerFrame::Error {
        error,
        detail,
        id,
        topic: None,
    })
}

fn topic_error(error: ErrorKind, detail: String, topic: String) -> Outcome {
    reply(ServerFrame::Error {
        error,
        detail,
        id: None,
        topic: (!topic.is_empty()).then_some(topic),
    })
}

fn reply(frame: ServerFrame) -> Outcome {
    Outcome::Reply(Message::text(frame.to_text()))
}

/// A route of `--routes` with its handler, ready to serve.
#[derive(Clone)]
pub struct ServedRoute {
    pub path: Arc<str>,
    pub kind: HandlerKind,
    pub placement: Placement,
    pub handler: Arc<dyn Handler>,
}

/// The handlers of `--routes`, ready to serve.
pub fn build(
    routes: &Routes,
    sink: &Arc<dyn Sink>,
    metrics: &Arc<Metrics>,
    topics: &Topics,
) -> Arc<[ServedRoute]> {
    routes
        .0
        .iter()
        .map(|r| {
            let handler: Arc<dyn Handler> = match r.handler {
                HandlerKind::Echo => Arc::new(Echo),
                HandlerKind::Greet => Arc::new(Greet),
                HandlerKind::Ingest => {
                    Arc::new(Ingest::new(sink.clone(), metrics.clone(), topics.clone()))
                }
            };
            ServedRoute {
                path: r.path.as_str().into(),
                kind: r.handler,
                placement: r.placement,
                handler,
            }
        })
        .collect()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
