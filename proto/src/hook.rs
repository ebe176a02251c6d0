//! Backend hooks: what a worker sends a team's backend when one of a route's hooks fires (an
//! HTTP POST of a [`HookRequest`] as JSON), and what the backend answers ([`HookResponse`]).
//! One request and one answer type for every hook, so a backend in any language needs one
//! handler that switches on `hook`; each hook reads the answer's fields it documents and
//! ignores the rest.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::RpcError;

/// Which hook fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// A client asks to open a session (before its `101`): accept, attaching grants, presence
    /// info or an expiry, or refuse with a status.
    Connect,
    /// A session presents a fresh token (`refresh`): accept (maybe with a new expiry) or refuse.
    Refresh,
    /// A session asks to join a topic its token grants: accept or refuse.
    Subscribe,
    /// A session publishes to a topic its token grants: accept, rewrite the message, or refuse.
    Publish,
    /// A session's `rpc` on a route whose handler is `backend`: the answer is the reply.
    Rpc,
    /// A session's message on a route whose handler is `backend`: the answer may send messages
    /// back.
    Message,
    /// A session has ended (answered for the record; the answer is not read).
    Disconnect,
}

impl HookKind {
    pub const ALL: [HookKind; 7] = [
        HookKind::Connect,
        HookKind::Refresh,
        HookKind::Subscribe,
        HookKind::Publish,
        HookKind::Rpc,
        HookKind::Message,
        HookKind::Disconnect,
    ];

    /// The name on the wire and in the hooks file.
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Connect => "connect",
            HookKind::Refresh => "refresh",
            HookKind::Subscribe => "subscribe",
            HookKind::Publish => "publish",
            HookKind::Rpc => "rpc",
            HookKind::Message => "message",
            HookKind::Disconnect => "disconnect",
        }
    }

    /// Whether calling it twice does no harm, so a failed call may be retried.
    pub fn idempotent(self) -> bool {
        matches!(
            self,
            HookKind::Connect | HookKind::Refresh | HookKind::Subscribe
        )
    }
}

/// Worker → backend: one hook call, signed (see the worker's documentation: the
/// `X-Ews-Signature` header is an HMAC-SHA256 of the timestamp and this body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookRequest {
    pub hook: HookKind,
    /// The token's `sub` (absent on a route without authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The worker holding the client's socket.
    pub node: String,
    /// The session's id on that worker (with `node`, unique while the worker runs).
    pub session: u64,
    /// The route's path (`/chat`).
    pub route: String,
    /// The verified token's claims (on `refresh`: the new token's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<serde_json::Map<String, serde_json::Value>>,
    /// `subscribe`, `publish`: the topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// `publish`: the message; `message`: the client's text message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// `rpc`: the method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `rpc`: the call's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// `disconnect`: why the session ended (`client_left`, `draining`, `token_expired`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Backend → worker: the answer to a hook call (HTTP 200 with this JSON; any other status is a
/// failed call). Every field is optional: `{}` accepts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookResponse {
    /// `false` refuses (`connect`, `refresh`, `subscribe`, `publish`); absent or `true`
    /// accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<bool>,
    /// A refused `connect`: the HTTP status the client gets (400 to 499; default 403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// A refusal's reason, passed on to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// An accepted `connect`: topic patterns the session may also join, beyond its token's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// An accepted `connect`: topic patterns the session may also publish to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// An accepted `connect`: what presence shows beside the client's id (a JSON object of at
    /// most 4096 bytes): in the join and leave events its topics' other members get, and in
    /// `/api/v1/presence` answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<crate::ClientInfo>,
    /// An accepted `connect` or `refresh`: the session ends at this time (Unix seconds) unless
    /// refreshed, instead of at its token's `exp` (never later than it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// An accepted `publish`: the message to publish instead of the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// `rpc`: the reply's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// `rpc`: the reply's error instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
    /// `message` (and `rpc`): text messages to send the client, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub send: Vec<String>,
}

impl HookResponse {
    pub fn accepted(&self) -> bool {
        self.accept != Some(false)
    }

    /// A refusal's reason for the client (the backend's, or a default).
    pub fn into_reason(self) -> String {
        self.reason
            .unwrap_or_else(|| "refused by the backend".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_answer_accepts_and_requests_carry_only_their_fields() {
        let r: HookResponse = serde_json::from_str("{}").expect("an empty answer");
        assert!(r.accepted());
        let r: HookResponse =
            serde_json::from_str(r#"{"accept":false,"status":401,"reason":"who?"}"#)
                .expect("a refusal");
        assert!(!r.accepted());
        assert_eq!(r.status, Some(401));
        let req = HookRequest {
            hook: HookKind::Subscribe,
            client_id: Some("alice".into()),
            node: "w1".into(),
            session: 7,
            route: "/chat".into(),
            claims: None,
            topic: Some("room.1".into()),
            msg: None,
            method: None,
            data: None,
            reason: None,
        };
        assert_eq!(
            serde_json::to_string(&req).expect("json"),
            r#"{"hook":"subscribe","clientId":"alice","node":"w1","session":7,"route":"/chat","topic":"room.1"}"#
        );
        assert!(HookKind::Subscribe.idempotent() && !HookKind::Publish.idempotent());
    }
}
