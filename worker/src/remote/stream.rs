//! The socket's side of a remote session: the session stream's two halves, the client message
//! waiting for room on it, and what the handler's node may ask of the socket's node besides
//! sending ([`Command`]: topic changes, which belong where the socket is).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use ews_http::link_stream::COMMAND_OPCODE;
use ews_proto::topic::Topic;
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::session::Handling;

/// The stream's half toward the handler: a node-link stream's `LinkSink` (or, in tests, any
/// sink that takes a message at once and closes at once).
type ToHandler = Pin<Box<dyn Sink<Message, Error = WsError> + Send>>;
/// The stream's half from the handler.
type FromHandler = Pin<Box<dyn Stream<Item = Result<Message, WsError>> + Send>>;

/// A handler on another worker, seen from the socket's worker.
pub struct RemoteHandler {
    sink: ToHandler,
    source: FromHandler,
    /// A client message waiting for room on the stream (the client is not read meanwhile).
    pub pending: Option<Message>,
    /// The handler still sends.
    pub open: bool,
    /// How the remote session ended, as counted in `ews_remote_sessions_closed_total`.
    pub end: &'static str,
}

impl RemoteHandler {
    pub fn new(
        sink: impl Sink<Message, Error = WsError> + Send + 'static,
        source: impl Stream<Item = Result<Message, WsError>> + Send + 'static,
    ) -> RemoteHandler {
        RemoteHandler {
            sink: Box::pin(sink),
            source: Box::pin(source),
            pending: None,
            open: true,
            end: "here",
        }
    }

    /// Nothing more goes to the handler: end our half of the stream too.
    pub fn finish(&mut self) {
        self.open = false;
        self.pending = None;
        // A link stream's sink closes at once (it ends the request body).
        let _ = self.sink.close().now_or_never();
    }
}

/// What the remote handler's stream did.
pub enum FromRemote {
    /// The waiting client message went onto the stream: read the client again.
    Sent,
    /// A message for the client (or a [`Command`]), or the stream's end (`None`, or an error).
    Next(Option<Result<Message, WsError>>),
}

/// The next thing the remote handler's stream does for the session: take the waiting client
/// message once it has room, or bring a message (or its end). Both in one future, so the
/// handler's answers keep flowing while the client is held back; a small one (a reference), so
/// a local session pays nothing for it.
pub fn next(handling: &mut Handling) -> impl Future<Output = FromRemote> + '_ {
    poll_fn(move |cx| {
        let Handling::Remote(r) = handling else {
            return Poll::Pending;
        };
        if r.pending.is_some() {
            match r.sink.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    if let Some(msg) = r.pending.take() {
                        // A broken stream shows on the read side next. A sink that buffers is
                        // told to send at once (a link stream's sink never holds one back).
                        let _ = r.sink.start_send_unpin(msg);
                        let _ = r.sink.poll_flush_unpin(cx);
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

/// What a handler on another worker asks the socket's worker to do for its session. Carried on
/// the session stream, in order with the handler's messages, as a frame with a reserved opcode
/// (tagged like every stream message; a client can never send one: it is not a WebSocket
/// message, and the socket's worker never passes one on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Subscribe(Topic),
    Unsubscribe(Topic),
}

/// A command as JSON: `{"subscribe":"room.a"}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Wire {
    Subscribe(String),
    Unsubscribe(String),
}

impl Command {
    pub fn into_message(self) -> Message {
        let wire = match self {
            Command::Subscribe(t) => Wire::Subscribe(t.as_str().to_string()),
            Command::Unsubscribe(t) => Wire::Unsubscribe(t.as_str().to_string()),
        };
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        Message::Frame(Frame::message(
            Bytes::from(json),
            OpCode::Data(Data::Reserved(COMMAND_OPCODE)),
            true,
        ))
    }

    /// The command a frame carries; `None` for any other frame (or a malformed one).
    pub fn from_frame(f: &Frame) -> Option<Command> {
        if f.header().opcode != OpCode::Data(Data::Reserved(COMMAND_OPCODE)) {
            return None;
        }
        Some(match serde_json::from_slice(f.payload()).ok()? {
            Wire::Subscribe(t) => Command::Subscribe(Topic::parse(&t).ok()?),
            Wire::Unsubscribe(t) => Command::Unsubscribe(Topic::parse(&t).ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_a_frame() {
        let c = Command::Subscribe(Topic::parse("room.a").unwrap());
        let Message::Frame(f) = c.clone().into_message() else {
            panic!("a frame");
        };
        assert_eq!(Command::from_frame(&f), Some(c));
        let other = Frame::message(Bytes::from_static(b"{}"), OpCode::Data(Data::Binary), true);
        assert_eq!(Command::from_frame(&other), None);
    }
}
