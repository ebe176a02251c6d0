//! The JSON frames clients and the broker exchange over a `/queue/{name}` WebSocket (one frame per
//! WebSocket text message; documented in docs/pipeline.md).

use serde::{Deserialize, Serialize};

/// Client → broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientFrame {
    /// Enqueue `body`; answered with `sent{id}` once durable. Answers come in send order.
    Send { body: String },
    /// Add `count` to this connection's cumulative demand.
    Receive { count: u64 },
    /// Acknowledge a delivered message.
    Delete { id: u64 },
}

/// Broker → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum ServerFrame {
    Sent {
        id: u64,
    },
    Message {
        id: u64,
        body: String,
        deliveries: u32,
    },
    /// A frame could not be served; the connection stays open.
    Error {
        error: String,
    },
}

impl ClientFrame {
    pub fn to_text(&self) -> String {
        // Serialising these plain enums cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl ServerFrame {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let f: ClientFrame = serde_json::from_str(r#"{"op":"send","body":"hi"}"#).unwrap();
        assert_eq!(f, ClientFrame::Send { body: "hi".into() });
        let f: ClientFrame = serde_json::from_str(r#"{"op":"receive","count":10}"#).unwrap();
        assert_eq!(f, ClientFrame::Receive { count: 10 });
        assert_eq!(
            ServerFrame::Message {
                id: 3,
                body: "b".into(),
                deliveries: 1
            }
            .to_text(),
            r#"{"op":"message","id":3,"body":"b","deliveries":1}"#
        );
        assert!(serde_json::from_str::<ClientFrame>(r#"{"op":"nope"}"#).is_err());
    }
}
