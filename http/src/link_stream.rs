//! A long-lived node-link stream: the WebSocket messages of one session carried both ways over
//! one HTTP/2 stream between two nodes (the request body one way, the response body the other).
//!
//! The request that opens the stream is signed like every node-link request ([`crate::link`]),
//! and its answer proves the key back; but a stream's body is not known when it is signed, so
//! each message carries its own tag instead: a truncated HMAC-SHA256 over its sequence number,
//! kind and payload, under a key derived from the link key, the opening request's nonce and the
//! direction. A peer without the cluster key can therefore neither open a stream nor inject,
//! replay, reorder or drop a message of one unseen (a gap breaks every later tag), and a stream
//! cannot be spliced into another (each has its own nonce).
//!
//! On the wire a message is `len: u32 BE | kind: u8 | payload | tag (16 bytes, keyed streams
//! only)` with `len` counting kind and payload. HTTP/2 splits and joins DATA frames as it likes,
//! so [`Decoder`] reassembles; it refuses anything longer than its limit, so a peer cannot make
//! it buffer without bound. Pings and pongs are not carried: each node answers its own socket.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hmac::Mac;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::PollSender;

use crate::link::{Accepted, Challenge, LinkKey};

/// Bytes of a message's tag.
const TAG_LEN: usize = 16;
/// What a handler may add to the largest client message in a reply of its own (a greeting, an
/// envelope) and still cross the link.
pub const REPLY_HEADROOM: usize = 64 * 1024;

/// The largest message a session stream carries, either way, for a route that accepts client
/// messages of up to `max_message` bytes: anything the route accepts, and a reply somewhat
/// larger. A message past it is refused by its sender with [`FrameError::TooLong`], which the
/// session turns into a `1009` close that says so (never a silent drop, never a false "handler
/// node lost").
pub fn message_limit(max_message: usize) -> usize {
    max_message.saturating_add(REPLY_HEADROOM)
}
/// Bytes of the length prefix and the kind.
const HEAD_LEN: usize = 5;

const KIND_TEXT: u8 = 1;
const KIND_BINARY: u8 = 2;
const KIND_CLOSE: u8 = 3;
const KIND_COMMAND: u8 = 4;

/// The reserved WebSocket data opcode a session-layer command travels under, as a
/// `Message::Frame`: something one node asks the other about the session (never a client's
/// message, and never passed to a client).
pub const COMMAND_OPCODE: u8 = 0x3;

fn is_command(f: &WsFrame) -> bool {
    f.header().opcode == OpCode::Data(Data::Reserved(COMMAND_OPCODE))
}

/// Which way a message travels: from the node that opened the stream, or back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// The key that tags one direction of one stream.
#[derive(Clone)]
struct FrameKey(LinkKey);

impl FrameKey {
    fn tag(&self, seq: u64, kind: u8, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.0.mac(&[b"frame"]);
        mac.update(&seq.to_be_bytes());
        mac.update(&[kind]);
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

fn stream_key(key: &LinkKey, nonce: &str, dir: Direction) -> FrameKey {
    let label: &[u8] = match dir {
        Direction::Up => b"up",
        Direction::Down => b"down",
    };
    FrameKey(key.derive_sub(&[b"stream", nonce.as_bytes(), label]))
}

/// The two keys of one end of a stream; both `None` on an unkeyed cluster (no secret:
/// loopback development, where the link is open anyway).
#[derive(Clone, Default)]
pub struct StreamKeys {
    send: Option<FrameKey>,
    recv: Option<FrameKey>,
}

impl StreamKeys {
    /// No tags (a cluster without a secret).
    pub fn open() -> StreamKeys {
        StreamKeys::default()
    }

    /// The opener's keys, bound to the request it signed.
    pub fn opener(challenge: Option<&Challenge>) -> StreamKeys {
        match challenge {
            None => StreamKeys::open(),
            Some(c) => StreamKeys {
                send: Some(stream_key(c.key(), c.nonce(), Direction::Up)),
                recv: Some(stream_key(c.key(), c.nonce(), Direction::Down)),
            },
        }
    }

    /// The server's keys, bound to the request it accepted.
    pub fn server(accepted: Option<&Accepted>) -> StreamKeys {
        match accepted {
            None => StreamKeys::open(),
            Some(a) => StreamKeys {
                send: Some(stream_key(a.key(), a.nonce(), Direction::Down)),
                recv: Some(stream_key(a.key(), a.nonce(), Direction::Up)),
            },
        }
    }
}

/// Why a stream's bytes are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("node-link message of {0} bytes is over the limit")]
    TooLong(usize),
    #[error("node-link message of unknown kind {0}")]
    UnknownKind(u8),
    #[error("node-link message tag does not match: not from a cluster node, or tampered with")]
    BadTag,
    #[error("node-link text message is not UTF-8")]
    NotUtf8,
    #[error("node-link close message is malformed")]
    BadClose,
}

/// Encodes one direction's messages, numbering them.
pub struct Encoder {
    key: Option<FrameKey>,
    seq: u64,
    max: usize,
}

impl Encoder {
    /// The wire form of `msg`; `None` for pings and pongs, which are not carried; an error for a
    /// message longer than the stream carries.
    pub fn encode(&mut self, msg: &Message) -> Result<Option<Bytes>, FrameError> {
        let (kind, payload): (u8, Bytes) = match msg {
            Message::Text(t) => (KIND_TEXT, Bytes::copy_from_slice(t.as_bytes())),
            Message::Binary(b) => (KIND_BINARY, b.clone()),
            Message::Close(c) => {
                let (code, reason) = c
                    .as_ref()
                    .map(|f| (u16::from(f.code), f.reason.as_str()))
                    .unwrap_or((u16::from(CloseCode::Normal), ""));
                let mut p = BytesMut::with_capacity(2 + reason.len());
                p.put_u16(code);
                p.put_slice(reason.as_bytes());
                (KIND_CLOSE, p.freeze())
            }
            Message::Frame(f) if is_command(f) => {
                (KIND_COMMAND, Bytes::copy_from_slice(f.payload()))
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(None),
        };
        if payload.len() > self.max {
            return Err(FrameError::TooLong(payload.len() + 1));
        }
        let tag_len = if self.key.is_some() { TAG_LEN } else { 0 };
        let mut out = BytesMut::with_capacity(HEAD_LEN + payload.len() + tag_len);
        out.put_u32((1 + payload.len()) as u32);
        out.put_u8(kind);
        out.put_slice(&payload);
        if let Some(k) = &self.key {
            out.put_slice(&k.tag(self.seq, kind, &payload));
        }
        self.seq += 1;
        Ok(Some(out.freeze()))
    }
}

/// Reassembles one direction's messages from the stream's chunks and checks each tag.
pub struct Decoder {
    key: Option<FrameKey>,
    seq: u64,
    buf: BytesMut,
    max: usize,
}

impl Decoder {
    /// Chunks received, to be decoded.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole message, `None` until one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len == 0 || len > self.max + 1 {
            return Err(FrameError::TooLong(len));
        }
        let tag_len = if self.key.is_some() { TAG_LEN } else { 0 };
        if self.buf.len() < 4 + len + tag_len {
            self.buf.reserve(4 + len + tag_len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(4);
        let kind = self.buf[0];
        self.buf.advance(1);
        let payload = self.buf.split_to(len - 1).freeze();
        if let Some(k) = &self.key {
            let want = k.tag(self.seq, kind, &payload);
            let got = self.buf.split_to(TAG_LEN);
            // Constant time: a tag is a MAC.
            if !constant_eq(&want, &got) {
                return Err(FrameError::BadTag);
            }
        }
        self.seq += 1;
        let msg = match kind {
            KIND_TEXT => Message::Text(payload.try_into().map_err(|_| FrameError::NotUtf8)?),
            KIND_BINARY => Message::Binary(payload),
            KIND_CLOSE => {
                if payload.len() < 2 {
                    return Err(FrameError::BadClose);
                }
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let reason =
                    std::str::from_utf8(&payload[2..]).map_err(|_| FrameError::BadClose)?;
                Message::Close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.to_string().into(),
                }))
            }
            KIND_COMMAND => Message::Frame(WsFrame::message(
                payload,
                OpCode::Data(Data::Reserved(COMMAND_OPCODE)),
                true,
            )),
            other => return Err(FrameError::UnknownKind(other)),
        };
        Ok(Some(msg))
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The outgoing half of a stream as an HTTP body: what [`LinkSink`] sends, in order. It ends
/// when the sink is dropped or closed.
pub struct FrameBody(mpsc::Receiver<Bytes>);

impl Body for FrameBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

/// A node-link answer: a whole body, or a session stream.
pub enum LinkBody {
    Whole(Full<Bytes>),
    Stream(FrameBody),
}

impl From<Full<Bytes>> for LinkBody {
    fn from(b: Full<Bytes>) -> LinkBody {
        LinkBody::Whole(b)
    }
}

impl Body for LinkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            LinkBody::Whole(b) => Pin::new(b).poll_frame(cx),
            LinkBody::Stream(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            LinkBody::Whole(b) => b.is_end_stream(),
            LinkBody::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            LinkBody::Whole(b) => b.size_hint(),
            LinkBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// A session stream's outgoing half: a `Sink` of WebSocket messages. It holds at most the
/// queue's depth of encoded messages; past it, sending waits (HTTP/2 flow control holds the
/// rest back at the peer), which is how back-pressure crosses the link. Dropping or closing it
/// ends the body (and so the peer's incoming half).
pub struct LinkSink {
    tx: PollSender<Bytes>,
    encoder: Encoder,
}

/// A session stream's incoming half: a `Stream` of WebSocket messages, ending with the body.
pub struct LinkSource {
    rx: Incoming,
    decoder: Decoder,
    ended: bool,
}

/// Both halves of one end of a session stream, used like the client's socket (a `Sink` and a
/// `Stream` of messages), so a session's loop runs over either.
pub struct LinkStream {
    pub sink: LinkSink,
    pub source: LinkSource,
}

/// A session stream's outgoing body and the queue (`depth` messages) that feeds it.
pub fn outgoing(depth: usize) -> (mpsc::Sender<Bytes>, FrameBody) {
    let (tx, rx) = mpsc::channel(depth.max(1));
    (tx, FrameBody(rx))
}

impl LinkStream {
    /// Pairs the queue feeding the outgoing body with the incoming body, for a route whose
    /// client messages are at most `max_message` bytes: both directions carry up to
    /// [`message_limit`] of it.
    pub fn new(
        tx: mpsc::Sender<Bytes>,
        rx: Incoming,
        keys: StreamKeys,
        max_message: usize,
    ) -> LinkStream {
        let max = message_limit(max_message);
        LinkStream {
            sink: LinkSink {
                tx: PollSender::new(tx),
                encoder: Encoder {
                    key: keys.send,
                    seq: 0,
                    max,
                },
            },
            source: LinkSource {
                rx,
                decoder: Decoder {
                    key: keys.recv,
                    seq: 0,
                    buf: BytesMut::new(),
                    max,
                },
                ended: false,
            },
        }
    }
}

fn ws_io(e: impl std::fmt::Display) -> WsError {
    WsError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        e.to_string(),
    ))
}

/// A stream error as the session sees it: a message too long is a size error (the session
/// closes with 1009 and says so), anything else a broken link.
fn ws_frame_error(e: FrameError) -> WsError {
    match e {
        FrameError::TooLong(size) => WsError::Capacity(
            tokio_tungstenite::tungstenite::error::CapacityError::MessageTooLong {
                size,
                max_size: 0,
            },
        ),
        other => ws_io(other),
    }
}

impl futures_util::Stream for LinkSource {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            match this.decoder.next_message() {
                Ok(Some(m)) => return Poll::Ready(Some(Ok(m))),
                Ok(None) => {}
                Err(e) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(ws_frame_error(e))));
                }
            }
            match Pin::new(&mut this.rx).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(ws_io(e))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        this.decoder.push(data);
                    }
                }
            }
        }
    }
}

impl LinkSink {
    /// Ends the outgoing body: the peer's incoming half ends once it has read what was sent.
    pub fn finish(&mut self) {
        self.tx.close();
    }
}

impl futures_util::Sink<Message> for LinkSink {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.get_mut()
            .tx
            .poll_reserve(cx)
            .map_err(|_| WsError::ConnectionClosed)
    }

    fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<(), WsError> {
        let this = self.get_mut();
        match this.encoder.encode(&msg) {
            Ok(Some(bytes)) => this
                .tx
                .send_item(bytes)
                .map_err(|_| WsError::ConnectionClosed),
            // Not carried (or refused): give the reserved slot back.
            Ok(None) => {
                this.tx.abort_send();
                Ok(())
            }
            Err(e) => {
                this.tx.abort_send();
                Err(ws_frame_error(e))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.get_mut().tx.close();
        Poll::Ready(Ok(()))
    }
}

impl futures_util::Stream for LinkStream {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().source).poll_next(cx)
    }
}

impl futures_util::Sink<Message> for LinkStream {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.get_mut().sink).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<(), WsError> {
        Pin::new(&mut self.get_mut().sink).start_send(msg)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.get_mut().sink).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.get_mut().sink).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Secret;
    use http::Method;

    fn pair(secret: &str) -> (StreamKeys, StreamKeys) {
        let key = LinkKey::derive(&Secret::new(secret));
        let node = crate::link::NodeRef::new("w", 1);
        let (header, challenge) = key.sign(
            &Method::POST,
            "/internal/v1/session",
            b"",
            crate::link::Audience::Node(&node),
        );
        let mut h = http::HeaderMap::new();
        h.insert(crate::link::REQUEST_HEADER, header);
        let accepted = crate::link::Verifier::new(key, node)
            .check(&Method::POST, "/internal/v1/session", &h)
            .expect("signed");
        (
            StreamKeys::opener(Some(&challenge)),
            StreamKeys::server(Some(&accepted)),
        )
    }

    fn codec(send: &StreamKeys, recv: &StreamKeys, max: usize) -> (Encoder, Decoder) {
        (
            Encoder {
                key: send.send.clone(),
                seq: 0,
                // The decoder's limit is what these tests probe.
                max: usize::MAX,
            },
            Decoder {
                key: recv.recv.clone(),
                seq: 0,
                buf: BytesMut::new(),
                max,
            },
        )
    }

    fn close(code: u16, reason: &str) -> Message {
        Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_string().into(),
        }))
    }

    #[test]
    fn messages_cross_in_any_chunking_and_in_order() {
        let (opener, server) = pair("s3cret");
        let (mut enc, mut dec) = codec(&opener, &server, 1024);
        let sent = [
            Message::text("Hello"),
            Message::binary(vec![0u8, 1, 2]),
            Message::text(""),
            // A session-layer command, carried as its own kind.
            Message::Frame(WsFrame::message(
                Bytes::from_static(b"{\"subscribe\":\"room.a\"}"),
                OpCode::Data(Data::Reserved(COMMAND_OPCODE)),
                true,
            )),
            close(1012, "server draining"),
        ];
        let wire: Vec<u8> = sent
            .iter()
            .flat_map(|m| enc.encode(m).unwrap().expect("carried").to_vec())
            .collect();
        assert!(enc.encode(&Message::Ping(Bytes::new())).unwrap().is_none());
        // Any other raw frame is not carried.
        let raw = WsFrame::message(Bytes::new(), OpCode::Data(Data::Binary), true);
        assert!(enc.encode(&Message::Frame(raw)).unwrap().is_none());
        // One byte at a time: HTTP/2 may split anywhere.
        let mut got = Vec::new();
        for b in wire {
            dec.push(&[b]);
            while let Some(m) = dec.next_message().expect("valid") {
                got.push(m);
            }
        }
        assert_eq!(got, sent);
    }

    #[test]
    fn a_tampered_replayed_or_foreign_message_is_refused() {
        let (opener, server) = pair("s3cret");
        let (mut enc, mut dec) = codec(&opener, &server, 1024);
        let mut one = enc
            .encode(&Message::text("pay 10"))
            .unwrap()
            .unwrap()
            .to_vec();
        one[6] ^= 1;
        dec.push(&one);
        assert_eq!(dec.next_message(), Err(FrameError::BadTag));

        // Replay: the same bytes again carry the wrong sequence number.
        let (mut enc, mut dec) = codec(&opener, &server, 1024);
        let first = enc.encode(&Message::text("a")).unwrap().unwrap();
        dec.push(&first);
        assert!(dec.next_message().unwrap().is_some());
        dec.push(&first);
        assert_eq!(dec.next_message(), Err(FrameError::BadTag));

        // The server's own direction, or another stream, or another key: refused.
        let (mut server_enc, _) = codec(&server, &server, 1024);
        let (_, mut dec) = codec(&opener, &server, 1024);
        dec.push(&server_enc.encode(&Message::text("a")).unwrap().unwrap());
        assert_eq!(dec.next_message(), Err(FrameError::BadTag));
        let (other_opener, _) = pair("s3cret");
        let (mut enc, _) = codec(&other_opener, &server, 1024);
        let (_, mut dec) = codec(&opener, &server, 1024);
        dec.push(&enc.encode(&Message::text("a")).unwrap().unwrap());
        assert_eq!(dec.next_message(), Err(FrameError::BadTag));
        let (stranger, _) = pair("guess");
        let (mut enc, _) = codec(&stranger, &server, 1024);
        let (_, mut dec) = codec(&opener, &server, 1024);
        dec.push(&enc.encode(&Message::text("a")).unwrap().unwrap());
        assert_eq!(dec.next_message(), Err(FrameError::BadTag));
    }

    #[test]
    fn an_oversized_length_is_refused_before_buffering() {
        let (_, server) = pair("s3cret");
        let mut dec = codec(&StreamKeys::open(), &server, 1024).1;
        dec.push(&(1_000_000u32).to_be_bytes());
        assert_eq!(dec.next_message(), Err(FrameError::TooLong(1_000_000)));
        let open = StreamKeys::open();
        let (mut enc, mut dec) = codec(&open, &open, 4);
        dec.push(&enc.encode(&Message::text("abcd")).unwrap().unwrap());
        assert!(dec.next_message().unwrap().is_some(), "at the limit");
        dec.push(&enc.encode(&Message::text("abcde")).unwrap().unwrap());
        assert_eq!(dec.next_message(), Err(FrameError::TooLong(6)));
    }

    #[test]
    fn a_stream_carries_what_its_route_accepts_and_a_larger_reply_and_refuses_more() {
        let max = 64 * 1024;
        let limit = message_limit(max);
        let open = StreamKeys::open();
        let mut enc = Encoder {
            key: None,
            seq: 0,
            max: limit,
        };
        let mut dec = Decoder {
            key: open.recv.clone(),
            seq: 0,
            buf: BytesMut::new(),
            max: limit,
        };
        // A greeting around a message at the route's limit.
        let reply = format!("Hello {}!", "x".repeat(max));
        dec.push(&enc.encode(&Message::text(reply.clone())).unwrap().unwrap());
        assert_eq!(dec.next_message().unwrap(), Some(Message::text(reply)));
        // Past the limit the sender refuses it, saying how long it was.
        let huge = Message::binary(vec![0u8; limit + 1]);
        assert_eq!(enc.encode(&huge), Err(FrameError::TooLong(limit + 2)));
        assert!(matches!(
            ws_frame_error(FrameError::TooLong(limit + 2)),
            WsError::Capacity(_)
        ));
    }
}
