//! The client wire protocol of an elastic-ws worker, as types: what a client sends on an
//! `ingest` route ([`Event`]), what the worker sends back ([`ServerFrame`]), and what a sink
//! receives for each event ([`StampedEvent`]). The worker and `ews-load` both speak through
//! these types, and `docs/protocol.schema.json` is generated from them (a test keeps it in
//! sync), so clients in other languages derive from the same source.
//!
//! Every frame is one WebSocket text message holding one JSON object.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod hook;
pub mod lifecycle;
pub mod topic;

/// Client → worker on an `ingest` route: one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    /// A client-made id, unique per event (at most [`MAX_ID_LEN`] bytes) and the same when the
    /// event is sent again after a reconnect: the worker stores it with the event and names it
    /// in the `ack`, `nack` or `error` about the event, so a consumer can drop a resent copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The payload, carried as is.
    pub msg: String,
    /// Who the client says it is. With authentication the worker ignores it and stores the
    /// token's `sub`: a client cannot speak for someone else. May be left out.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    /// Client-side time, milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// Client → worker: the session's own requests, told from events by their top-level `type`.
/// Topic frames are answered `subscribed` / `unsubscribed` or an `error` naming the topic;
/// subscriptions belong to the session (after a reconnect the client subscribes again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientControl {
    /// Receive every message published to `topic` (if the token grants it). On a topic with
    /// history, `since` (the last `offset` and `epoch` the client got) asks for what it missed
    /// first: the answer says whether it was recovered.
    Subscribe {
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<StreamPosition>,
    },
    /// Stop receiving `topic`'s messages.
    Unsubscribe { topic: String },
    /// Publish `msg` to every subscriber of `topic`, cluster-wide, if the token's `publish`
    /// claim grants the topic. Answered `published` (with `id`) or an `error` naming `id`;
    /// receivers see the publisher's client id as the push's `from`.
    Publish {
        topic: String,
        msg: String,
        /// The client's id for this publish (at most [`MAX_ID_LEN`] bytes), named in the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Ask the route's handler: answered by a `reply` with the same `id`.
    Rpc {
        id: u64,
        method: String,
        #[serde(default)]
        data: serde_json::Value,
    },
    /// A fresh token for this session (after `refresh_required`): verified like the first, and
    /// for the same `sub`. Answered `refreshed` or an `error` of kind `token_refused`.
    Refresh { token: String },
    /// With history for client ids (`--history-clients`): the pushes to this client after
    /// `since` (the last such push's `offset` and `epoch`, or the `position` frame's), sent
    /// while it was away. Answered by those pushes, in order, then `resumed`.
    Resume { since: StreamPosition },
}

/// What a client frame is, from its top-level `type` key: the only thing that tells a control
/// frame from an event (events never carry a `type` key; a `"type"` or `"subscribe"` among an
/// event's *values* makes it no less an event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameKind {
    /// No top-level `type`: an event (or not JSON at all; the event parse says why).
    Event,
    /// A top-level `type` with this value: a control frame, or an unknown kind.
    Control(String),
}

impl FrameKind {
    /// Reads only the top-level `type` key (other keys are skipped, not built). Frames without
    /// the bytes `"type` cannot have one and cost nothing more.
    pub fn of(text: &str) -> FrameKind {
        #[derive(Deserialize)]
        struct Typed<'a> {
            #[serde(borrow, rename = "type")]
            kind: Option<std::borrow::Cow<'a, str>>,
        }
        // A key may spell `type` with escapes; such a frame still fails the strict event parse
        // (an unknown field), so it is answered, never lost.
        if !text.contains("\"type") {
            return FrameKind::Event;
        }
        match serde_json::from_str::<Typed>(text) {
            Ok(Typed { kind: Some(k) }) => FrameKind::Control(k.into_owned()),
            _ => FrameKind::Event,
        }
    }
}

impl ClientControl {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Milliseconds since the Unix epoch (0 on a clock set before it): the one wall clock events are
/// stamped with, by clients and workers alike.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Longest event `id` a worker accepts, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// A client's place in a topic's stream: the `offset` and `epoch` of the last push it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamPosition {
    pub offset: u64,
    pub epoch: String,
}

/// Most bytes of a [`ClientInfo`]'s JSON.
pub const MAX_INFO_BYTES: usize = 4096;

/// What a team's backend says about a client when its `connect` hook accepts it (a name, an
/// avatar, a role): a JSON object of at most [`MAX_INFO_BYTES`], shown beside the client's id
/// in presence (join and leave events, `/api/v1/presence`). Shared, not copied, by every event
/// that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Map<String, serde_json::Value>")]
#[serde(into = "serde_json::Map<String, serde_json::Value>")]
pub struct ClientInfo(std::sync::Arc<serde_json::Map<String, serde_json::Value>>);

impl TryFrom<serde_json::Map<String, serde_json::Value>> for ClientInfo {
    type Error = String;

    fn try_from(m: serde_json::Map<String, serde_json::Value>) -> Result<ClientInfo, String> {
        let len = serde_json::to_string(&m).map_or(usize::MAX, |s| s.len());
        if len > MAX_INFO_BYTES {
            return Err(format!(
                "info of {len} bytes: at most {MAX_INFO_BYTES} bytes of JSON"
            ));
        }
        Ok(ClientInfo(std::sync::Arc::new(m)))
    }
}

impl From<ClientInfo> for serde_json::Map<String, serde_json::Value> {
    fn from(i: ClientInfo) -> serde_json::Map<String, serde_json::Value> {
        std::sync::Arc::unwrap_or_clone(i.0)
    }
}

impl ClientInfo {
    /// Its JSON's length in bytes.
    pub fn len(&self) -> usize {
        serde_json::to_string(&*self.0).map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl JsonSchema for ClientInfo {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ClientInfo".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": true,
            "description": "What the client's backend said about it at connect: any JSON object of at most 4096 bytes."
        })
    }
}

/// Worker → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerFrame {
    /// Event number `seq` of this session (counting from 1) is durable in the sink. Sent only
    /// to clients that connected with `?ack=1`, in order.
    Ack {
        seq: u64,
        /// The event's `id`, when it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Event number `seq` could not be made durable; the client should send it again.
    Nack {
        seq: u64,
        error: String,
        /// The event's `id`, when it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// A frame could not be handled (the session stays open).
    Error {
        error: ErrorKind,
        detail: String,
        /// The event's `id`, when the frame was an event with one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The topic, when the frame was a `subscribe` or `unsubscribe`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
    },
    /// A message published to this client (no `topic`) or to a topic it subscribed to, by the
    /// backend (admin API, a handler) or by another client (`from`).
    Push {
        msg: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        /// The publishing client's id (its token's `sub`), set by the worker that took the
        /// publish: a receiver can trust it. Absent for the backend's publishes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// On a topic with history: the message's place in the topic's stream (1, 2, 3, ...
        /// with no gap), and the stream's epoch. Keep the last pair to recover with `since`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
    /// The session now receives `topic`'s messages (also when it already did; also when the
    /// backend subscribed it). On a topic with history: `offset` and `epoch` are where the
    /// stream is (the position to keep if no push follows), and, when the `subscribe` had a
    /// `since`, `recovered` says whether every missed message came first (`true`) or not
    /// (`false`, with `reason`: `epoch_changed`, `expired`, `too_many`, `unavailable`): the
    /// application then refetches its state.
    Subscribed {
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The session no longer receives `topic`'s messages (also when it did not).
    Unsubscribed { topic: String },
    /// The client's `publish` reached `delivered` sessions (cluster-wide).
    Published {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        delivered: usize,
    },
    /// The answer to `rpc` number `id`: `data`, or `error`.
    Reply {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<RpcError>,
    },
    /// The session's token expires at `exp` (seconds since the epoch): send `refresh` with a new
    /// one before then, or the session is closed with 4001 `token expired`.
    RefreshRequired { exp: u64 },
    /// The refreshed token is in force; the session now lasts until `exp`.
    Refreshed { exp: u64 },
    /// With history for client ids: the first frame of a session, where the stream of pushes
    /// to this client stands (every push to it after this carries the next offset). Keep it, and
    /// the last push's pair after it, to `resume` on the next connection.
    Position { offset: u64, epoch: String },
    /// The answer to `resume`, after the pushes it recovered: where the stream stands now, and
    /// whether every push the client missed came first (`recovered`; `reason` when not, as for
    /// `subscribed`).
    Resumed {
        offset: u64,
        epoch: String,
        recovered: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// `clientId` joined `topic` (on topics whose route announces presence), with what its
    /// backend's `connect` hook said about it.
    Join {
        topic: String,
        #[serde(rename = "clientId")]
        client_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        info: Option<ClientInfo>,
    },
    /// `clientId` left `topic`.
    Leave {
        topic: String,
        #[serde(rename = "clientId")]
        client_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        info: Option<ClientInfo>,
    },
}

/// Why an `rpc` got no data: a `code` a program can branch on (`no_method`, `bad_request`,
/// `unavailable`, `internal`, or the handler's own) and a `message` for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RpcError {
    pub code: String,
    pub message: String,
}

impl RpcError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> RpcError {
        RpcError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// No handler on the route takes `method`.
    pub fn no_method(method: &str) -> RpcError {
        RpcError::new("no_method", format!("no method {method:?} on this route"))
    }
}

/// The close code of a session whose token expired without a refresh.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;

/// Close code of a session that fell behind on a topic with history (its queue was full): the
/// client reconnects and recovers what it missed with `since`.
pub const CLOSE_LAGGED: u16 = 4010;

/// What a `ServerFrame::Error` is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The frame was not an `Event` (not text, not JSON, a field missing or unknown).
    InvalidEvent,
    /// The sink refused the event before taking it; send it again later.
    SinkUnavailable,
    /// A `subscribe`/`unsubscribe` frame that is not valid, or names no valid topic.
    InvalidTopic,
    /// The token does not grant the topic.
    TopicForbidden,
    /// The session is subscribed to as many topics as the worker allows.
    TooManyTopics,
    /// The token does not grant publishing to the topic.
    PublishForbidden,
    /// The session sent more publishes than the worker allows per second; nothing was
    /// published: send it again later.
    RateLimited,
    /// A `refresh` token failed verification, or names another `sub`; the session keeps its
    /// old token (and its expiry).
    TokenRefused,
    /// A frame of the session's own kinds (`publish`, `rpc`, `refresh`) that does not parse.
    InvalidFrame,
    /// The route's backend hook did not answer (a timeout, an error, its circuit open) or
    /// answered garbage: nothing was done; try again later.
    BackendUnavailable,
}

/// An event as every sink stores it: what the client sent, stamped by the worker that took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StampedEvent {
    /// The client's id for the event, if it gave one: copies of one event resent after a
    /// reconnect share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub msg: String,
    /// The authenticated client id (the token's `sub`), never what the client claimed.
    pub client_id: String,
    /// Client-side timestamp, ms since the epoch, as sent.
    pub timestamp: i64,
    /// Node id of the worker that received the event.
    pub node: String,
    /// Session id on that node.
    pub session: u64,
    /// Per-session sequence number, starting at 1: with `node` and `session` a unique key, so a
    /// verifier can find duplicates and gaps.
    pub seq: u64,
    /// Receive time at the worker, ms since the epoch.
    pub received_at: i64,
}

impl ServerFrame {
    pub fn to_text(&self) -> String {
        // Plain strings and integers: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Event {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl StampedEvent {
    /// The JSON every sink writes, one event per record.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The whole protocol as one JSON Schema document (`docs/protocol.schema.json`).
pub fn schema() -> serde_json::Value {
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    /// The elastic-ws client protocol: one JSON object per WebSocket text message.
    struct Protocol {
        /// Client → worker on an `ingest` route.
        client_event: Event,
        /// Client → worker on an `ingest` route: topic subscriptions.
        client_control: ClientControl,
        /// Worker → client.
        server_frame: ServerFrame,
        /// What a sink stores for each event.
        stamped_event: StampedEvent,
        /// What a sink stores: an event, or a lifecycle record (`--lifecycle-events`).
        sink_record: lifecycle::SinkRecord,
        /// Worker → a team's backend: a hook call (HTTP POST body).
        hook_request: hook::HookRequest,
        /// A team's backend → worker: the answer to a hook call.
        hook_response: hook::HookResponse,
    }
    let mut v = serde_json::to_value(schemars::schema_for!(Protocol)).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("title".into(), "elastic-ws client protocol".into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_on_the_wire() {
        assert_eq!(
            ServerFrame::Ack { seq: 3, id: None }.to_text(),
            r#"{"type":"ack","seq":3}"#
        );
        assert_eq!(
            ServerFrame::Ack {
                seq: 3,
                id: Some("e-1".into())
            }
            .to_text(),
            r#"{"type":"ack","seq":3,"id":"e-1"}"#
        );
        assert_eq!(
            ServerFrame::Push {
                msg: "hi".into(),
                topic: None,
                from: None,
                offset: None,
                epoch: None,
            }
            .to_text(),
            r#"{"type":"push","msg":"hi"}"#
        );
        assert_eq!(
            ServerFrame::Push {
                msg: "hi".into(),
                topic: Some("news".into()),
                from: None,
                offset: None,
                epoch: None,
            }
            .to_text(),
            r#"{"type":"push","msg":"hi","topic":"news"}"#
        );
        assert_eq!(
            ServerFrame::Subscribed {
                topic: "news".into(),
                offset: None,
                epoch: None,
                recovered: None,
                reason: None,
            }
            .to_text(),
            r#"{"type":"subscribed","topic":"news"}"#
        );
        let e = ServerFrame::Error {
            error: ErrorKind::InvalidEvent,
            detail: "x".into(),
            id: None,
            topic: None,
        };
        assert_eq!(
            e.to_text(),
            r#"{"type":"error","error":"invalid_event","detail":"x"}"#
        );
        let n: ServerFrame =
            serde_json::from_str(r#"{"type":"nack","seq":3,"error":"full"}"#).unwrap();
        assert_eq!(
            n,
            ServerFrame::Nack {
                seq: 3,
                error: "full".into(),
                id: None,
            }
        );
        assert!(serde_json::from_str::<ServerFrame>(r#"{"type":"hello"}"#).is_err());
    }

    #[test]
    fn the_session_frames_of_publish_rpc_refresh_and_presence() {
        let p: ClientControl =
            serde_json::from_str(r#"{"type":"publish","topic":"t","msg":"m","id":"p1"}"#).unwrap();
        assert_eq!(
            p,
            ClientControl::Publish {
                topic: "t".into(),
                msg: "m".into(),
                id: Some("p1".into())
            }
        );
        let r: ClientControl =
            serde_json::from_str(r#"{"type":"rpc","id":7,"method":"who"}"#).unwrap();
        assert_eq!(
            r,
            ClientControl::Rpc {
                id: 7,
                method: "who".into(),
                data: serde_json::Value::Null
            }
        );
        assert!(
            serde_json::from_str::<ClientControl>(r#"{"type":"rpc","id":-1,"method":"x"}"#)
                .is_err()
        );
        let frames = [
            (
                ServerFrame::Push {
                    msg: "hi".into(),
                    topic: Some("t".into()),
                    from: Some("alice".into()),
                    offset: None,
                    epoch: None,
                },
                r#"{"type":"push","msg":"hi","topic":"t","from":"alice"}"#,
            ),
            (
                ServerFrame::Published {
                    id: Some("p1".into()),
                    delivered: 3,
                },
                r#"{"type":"published","id":"p1","delivered":3}"#,
            ),
            (
                ServerFrame::Reply {
                    id: 7,
                    data: Some(serde_json::json!(["a"])),
                    error: None,
                },
                r#"{"type":"reply","id":7,"data":["a"]}"#,
            ),
            (
                ServerFrame::Reply {
                    id: 8,
                    data: None,
                    error: Some(RpcError::no_method("x")),
                },
                r#"{"type":"reply","id":8,"error":{"code":"no_method","message":"no method \"x\" on this route"}}"#,
            ),
            (
                ServerFrame::RefreshRequired { exp: 100 },
                r#"{"type":"refresh_required","exp":100}"#,
            ),
            (
                ServerFrame::Join {
                    topic: "t".into(),
                    client_id: "bob".into(),
                    info: None,
                },
                r#"{"type":"join","topic":"t","clientId":"bob"}"#,
            ),
            (
                ServerFrame::Leave {
                    topic: "t".into(),
                    client_id: "bob".into(),
                    info: serde_json::from_str(r#"{"name":"Bob"}"#).ok(),
                },
                r#"{"type":"leave","topic":"t","clientId":"bob","info":{"name":"Bob"}}"#,
            ),
        ];
        // An info is a JSON object of at most MAX_INFO_BYTES.
        let big = format!(r#"{{"x":"{}"}}"#, "y".repeat(MAX_INFO_BYTES));
        for bad in [r#"["a"]"#, r#""a""#, big.as_str()] {
            assert!(serde_json::from_str::<ClientInfo>(bad).is_err(), "{bad}");
        }
        for (frame, text) in frames {
            assert_eq!(frame.to_text(), text);
            assert_eq!(serde_json::from_str::<ServerFrame>(text).unwrap(), frame);
        }
        let e = ServerFrame::Error {
            error: ErrorKind::PublishForbidden,
            detail: "d".into(),
            id: None,
            topic: None,
        };
        assert!(e.to_text().contains(r#""error":"publish_forbidden""#));
    }

    #[test]
    fn control_frames() {
        let c: ClientControl =
            serde_json::from_str(r#"{"type":"subscribe","topic":"news"}"#).unwrap();
        assert_eq!(
            c,
            ClientControl::Subscribe {
                topic: "news".into(),
                since: None,
            }
        );
        assert_eq!(c.to_text(), r#"{"type":"subscribe","topic":"news"}"#);
        assert_eq!(
            FrameKind::of(&c.to_text()),
            FrameKind::Control("subscribe".into())
        );
        assert_eq!(
            FrameKind::of(r#"{"msg":"hello","timestamp":1}"#),
            FrameKind::Event
        );
        // Only the top-level key decides: words among the values do not.
        for event in [
            r#"{"msg":"type","timestamp":1}"#,
            r#"{"id":"type","msg":"subscribe","timestamp":1}"#,
            r#"{"msg":"{\"type\":\"subscribe\",\"topic\":\"a\"}","timestamp":1}"#,
            r#"{"msg":"x","timestamp":1,"clientId":"unsubscribe"}"#,
            "not json",
        ] {
            assert_eq!(FrameKind::of(event), FrameKind::Event, "{event}");
        }
        assert_eq!(
            FrameKind::of(r#"{"topic":"a","type":"subscribe"}"#),
            FrameKind::Control("subscribe".into())
        );
        assert_eq!(
            FrameKind::of(r#"{"type":"dance"}"#),
            FrameKind::Control("dance".into())
        );
        assert!(serde_json::from_str::<ClientControl>(r#"{"type":"subscribe"}"#).is_err());
        assert!(
            serde_json::from_str::<ClientControl>(r#"{"type":"subscribe","topic":"a","x":1}"#)
                .is_err()
        );
    }

    #[test]
    fn events_are_camel_case_and_strict() {
        let e: Event =
            serde_json::from_str(r#"{"msg":"hi","clientId":"c1","timestamp":1456862575765}"#)
                .expect("valid event");
        assert_eq!(e.client_id, "c1");
        assert_eq!(e.id, None);
        // The client library's events: an id, no client id (the token says who).
        let e: Event = serde_json::from_str(r#"{"id":"a-1","msg":"hi","timestamp":1}"#)
            .expect("an event without clientId");
        assert_eq!((e.id.as_deref(), e.client_id.as_str()), (Some("a-1"), ""));
        assert!(serde_json::from_str::<Event>(r#"{"msg":"hi","clientId":"c1"}"#).is_err());
        assert!(serde_json::from_str::<Event>(
            r#"{"msg":"hi","clientId":"c1","timestamp":1,"extra":true}"#
        )
        .is_err());
    }
}
