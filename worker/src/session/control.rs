//! The session's own frames: a client's `{"type":"subscribe"|"unsubscribe","topic"}`, answered
//! by the session whatever the route's handler (unless the handler takes every frame itself).
//! A subscribe is checked against the token's grants: the client asks, the token decides.

use ews_proto::topic::Topic;
use ews_proto::{ClientControl, ErrorKind, FrameKind, ServerFrame};
use tokio_tungstenite::tungstenite::Message;

use crate::handler::{self, Core, Msg, Services, SubscribeError};

/// The text of `msg` when it is a topic frame (`subscribe` or `unsubscribe`); `None` for
/// anything else, which is the handler's. Cheap: most frames lack the bytes `"type`.
pub fn topic_frame(msg: &Msg) -> Option<(&str, String)> {
    let text = msg.as_text()?;
    match FrameKind::of(text) {
        FrameKind::Control(kind) if kind == "subscribe" || kind == "unsubscribe" => {
            Some((text, kind))
        }
        _ => None,
    }
}

/// The answer to a topic frame (`text`, of `kind`).
pub async fn answer(core: &Core, services: &Services, (text, kind): (&str, String)) -> Message {
    let frame = match serde_json::from_str::<ClientControl>(text) {
        Ok(c) => control(core, services, c).await,
        Err(e) => topic_error(
            ErrorKind::InvalidTopic,
            format!("expected {{\"type\":\"{kind}\",\"topic\":…}}: {e}"),
            String::new(),
        ),
    };
    Message::text(frame.to_text())
}

async fn control(core: &Core, services: &Services, c: ClientControl) -> ServerFrame {
    let (subscribe, raw) = match c {
        ClientControl::Subscribe { topic } => (true, topic),
        ClientControl::Unsubscribe { topic } => (false, topic),
    };
    let topic = match Topic::parse(&raw) {
        Ok(t) => t,
        Err(e) => return topic_error(ErrorKind::InvalidTopic, e.to_string(), raw),
    };
    if !subscribe {
        services.registry.unsubscribe(core.shared.id, &topic);
        return ServerFrame::Unsubscribed { topic: raw };
    }
    if !core.grants.allows(&topic) {
        services.metrics.subscription("forbidden");
        return topic_error(
            ErrorKind::TopicForbidden,
            "the token does not grant this topic".into(),
            raw,
        );
    }
    match handler::subscribe(core, services, &topic).await {
        Ok(()) => ServerFrame::Subscribed { topic: raw },
        Err(e) => refused(&e, raw),
    }
}

/// What the client hears when a subscribe (its own, or its remote handler's) is refused.
pub fn refused(e: &SubscribeError, topic: String) -> ServerFrame {
    match e {
        SubscribeError::TooManyTopics(_) => {
            topic_error(ErrorKind::TooManyTopics, e.to_string(), topic)
        }
    }
}

fn topic_error(error: ErrorKind, detail: String, topic: String) -> ServerFrame {
    ServerFrame::Error {
        error,
        detail,
        id: None,
        topic: (!topic.is_empty()).then_some(topic),
    }
}
