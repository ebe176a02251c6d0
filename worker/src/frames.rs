//! The JSON frames the gateway itself sends (documented in the README):
//! `{"type":"ack","seq":N}`, `{"type":"nack","seq":N,"error":"..."}`,
//! `{"type":"error","error":"<kind>","detail":"..."}`, `{"type":"push","msg":"..."}`.

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

pub fn ack(seq: u64) -> Message {
    Message::text(format!(r#"{{"type":"ack","seq":{seq}}}"#))
}

pub fn nack(seq: u64, error: &str) -> Message {
    Message::text(json!({"type": "nack", "seq": seq, "error": error}).to_string())
}

pub fn error(kind: &str, detail: &str) -> Message {
    Message::text(json!({"type": "error", "error": kind, "detail": detail}).to_string())
}

pub fn push(msg: &str) -> String {
    json!({"type": "push", "msg": msg}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(ack(3).to_text().ok(), Some(r#"{"type":"ack","seq":3}"#));
        let e = error("invalid_event", "x");
        let v: serde_json::Value =
            serde_json::from_str(e.to_text().unwrap_or("")).unwrap_or_default();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"], "invalid_event");
        assert_eq!(
            nack(1, "down")
                .to_text()
                .map(|t| t.contains("\"nack\""))
                .ok(),
            Some(true)
        );
        assert_eq!(push("hi"), r#"{"msg":"hi","type":"push"}"#);
    }
}
