//! Session handlers: what a route does with each message a client sends. A handler is shared
//! by every session on its route; per-session state lives in [`SessionState`].

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ews_sink::{BoxFuture, Event, Receipt, Sink, StampedEvent};
use tokio_tungstenite::tungstenite::Message;

use crate::frames;
use crate::metrics::Metrics;

/// What a session knows about itself.
pub struct SessionState {
    pub id: u64,
    /// The authenticated client id (JWT `sub`); `None` with `--no-auth`.
    pub client_id: Option<Arc<str>>,
    pub node: Arc<str>,
    /// Sequence number of the last event taken by the sink.
    pub last_seq: u64,
}

/// What the session does after a message.
pub enum Outcome {
    Nothing,
    /// Send this frame back (with back-pressure: the session reads on once it is written).
    Reply(Message),
    /// Event `seq` was taken by the sink; the receipt tells when it is durable.
    Submitted {
        seq: u64,
        receipt: Receipt,
    },
}

pub trait Handler: Send + Sync + 'static {
    fn name(&self) -> &'static str;

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
    fn name(&self) -> &'static str {
        "echo"
    }

    fn on_message<'a>(&'a self, _: &'a mut SessionState, msg: Message) -> BoxFuture<'a, Outcome> {
        Box::pin(async move { Outcome::Reply(msg) })
    }
}

/// Parses `{"msg","clientId","timestamp"}` events, stamps them and hands them to the sink.
pub struct Ingest {
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
}

impl Ingest {
    pub fn new(sink: Arc<dyn Sink>, metrics: Arc<Metrics>) -> Ingest {
        Ingest { sink, metrics }
    }
}

impl Handler for Ingest {
    fn name(&self) -> &'static str {
        "ingest"
    }

    fn on_message<'a>(&'a self, s: &'a mut SessionState, msg: Message) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let text = match &msg {
                Message::Text(t) => t.as_str(),
                _ => {
                    self.metrics.event("invalid");
                    return Outcome::Reply(frames::error(
                        "invalid_event",
                        "events are JSON text frames",
                    ));
                }
            };
            let event: Event = match serde_json::from_str(text) {
                Ok(e) => e,
                Err(e) => {
                    self.metrics.event("invalid");
                    return Outcome::Reply(frames::error("invalid_event", &e.to_string()));
                }
            };
            let seq = s.last_seq + 1;
            let stamped = StampedEvent {
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
                    Outcome::Submitted { seq, receipt }
                }
                Err(e) => {
                    self.metrics.event("sink_error");
                    Outcome::Reply(frames::error("sink_unavailable", &e.to_string()))
                }
            }
        })
    }
}

/// Parses `--routes`: comma-separated `PATH=HANDLER`.
pub fn parse_routes(
    spec: &str,
    sink: &Arc<dyn Sink>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Vec<(String, Arc<dyn Handler>)>> {
    let mut routes = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((path, name)) = entry.split_once('=') else {
            anyhow::bail!("--routes entry {entry:?} is not PATH=HANDLER");
        };
        anyhow::ensure!(
            path.starts_with('/'),
            "--routes path {path:?} must start with /"
        );
        anyhow::ensure!(
            !routes.iter().any(|(p, _)| p == path),
            "--routes path {path:?} appears twice"
        );
        let Some(handler) = by_name(name, sink, metrics) else {
            anyhow::bail!("--routes: unknown handler {name:?} (ingest, echo)");
        };
        routes.push((path.to_string(), handler));
    }
    anyhow::ensure!(!routes.is_empty(), "--routes names no route");
    Ok(routes)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A handler by its route name.
pub fn by_name(
    name: &str,
    sink: &Arc<dyn Sink>,
    metrics: &Arc<Metrics>,
) -> Option<Arc<dyn Handler>> {
    match name {
        "echo" => Some(Arc::new(Echo)),
        "ingest" => Some(Arc::new(Ingest::new(sink.clone(), metrics.clone()))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_reject_mistakes() {
        let sink: Arc<dyn Sink> = Arc::new(ews_sink::StdoutSink::new());
        let m = Arc::new(Metrics::new());
        let r = parse_routes("/ws=ingest, /echo=echo", &sink, &m).expect("valid");
        let names: Vec<_> = r.iter().map(|(p, h)| (p.as_str(), h.name())).collect();
        assert_eq!(names, vec![("/ws", "ingest"), ("/echo", "echo")]);
        for bad in ["/ws", "ws=ingest", "/ws=nope", "/a=echo,/a=echo", ""] {
            assert!(parse_routes(bad, &sink, &m).is_err(), "{bad:?}");
        }
    }
}
