//! The client wire protocol of an elastic-ws worker, as types: what a client sends on an
//! `ingest` route ([`Event`]), what the worker sends back ([`ServerFrame`]), and what a sink
//! receives for each event ([`StampedEvent`]). The worker and `ews-load` both speak through
//! these types, and `docs/protocol.schema.json` is generated from them (a test keeps it in
//! sync), so clients in other languages derive from the same source.
//!
//! Every frame is one WebSocket text message holding one JSON object.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Client → worker on an `ingest` route: one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    /// The payload, carried as is.
    pub msg: String,
    /// Who the client says it is. The worker replaces it with the authenticated id (the token's
    /// `sub`): a client cannot speak for someone else.
    pub client_id: String,
    /// Client-side time, milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// Worker → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ServerFrame {
    /// Event number `seq` of this session (counting from 1) is durable in the sink. Sent only
    /// to clients that connected with `?ack=1`, in order.
    Ack { seq: u64 },
    /// Event number `seq` could not be made durable; the client should send it again.
    Nack { seq: u64, error: String },
    /// A frame could not be handled (the session stays open).
    Error { error: ErrorKind, detail: String },
    /// A message published to this client through the admin API.
    Push { msg: String },
}

/// What a `ServerFrame::Error` is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The frame was not an `Event` (not text, not JSON, a field missing or unknown).
    InvalidEvent,
    /// The sink refused the event before taking it; send it again later.
    SinkUnavailable,
}

/// An event as every sink stores it: what the client sent, stamped by the worker that took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StampedEvent {
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
        /// Worker → client.
        server_frame: ServerFrame,
        /// What a sink stores for each event.
        stamped_event: StampedEvent,
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
            ServerFrame::Ack { seq: 3 }.to_text(),
            r#"{"type":"ack","seq":3}"#
        );
        assert_eq!(
            ServerFrame::Push { msg: "hi".into() }.to_text(),
            r#"{"type":"push","msg":"hi"}"#
        );
        let e = ServerFrame::Error {
            error: ErrorKind::InvalidEvent,
            detail: "x".into(),
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
                error: "full".into()
            }
        );
        assert!(serde_json::from_str::<ServerFrame>(r#"{"type":"hello"}"#).is_err());
    }

    #[test]
    fn events_are_camel_case_and_strict() {
        let e: Event =
            serde_json::from_str(r#"{"msg":"hi","clientId":"c1","timestamp":1456862575765}"#)
                .expect("valid event");
        assert_eq!(e.client_id, "c1");
        assert!(serde_json::from_str::<Event>(r#"{"msg":"hi","clientId":"c1"}"#).is_err());
        assert!(serde_json::from_str::<Event>(
            r#"{"msg":"hi","clientId":"c1","timestamp":1,"extra":true}"#
        )
        .is_err());
    }
}
