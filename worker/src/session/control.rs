//! The session's own frames, told from the handler's by their top-level `type`: a client's
//! `subscribe` / `unsubscribe` (answered here, checked against the token's grants: the client
//! asks, the token decides), `publish` ([`super::publish`]), `rpc` (the handler's `on_rpc`) and
//! `refresh` ([`super::token`]).

use ews_proto::topic::Topic;
use ews_proto::{ClientControl, ErrorKind, FrameKind, ServerFrame, StreamPosition};
use tokio_tungstenite::tungstenite::Message;

use crate::handler::{self, Core, Msg, Services, SubscribeError};
use crate::hooks;
use ews_proto::hook::HookKind;

/// Which of the session's own frames a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Own {
    Topic,
    Publish,
    Rpc,
    Refresh,
    /// `resume`: the pushes to this client it missed (history for client ids).
    Resume,
}

/// The kind and text of `msg` when it is one of the session's own frames; `None` for anything
/// else, which is the handler's. Cheap: most frames lack the bytes `"type`.
pub fn own_frame(msg: &Msg) -> Option<(Own, &str)> {
    let text = msg.as_text()?;
    let FrameKind::Control(kind) = FrameKind::of(text) else {
        return None;
    };
    let own = match kind.as_str() {
        "subscribe" | "unsubscribe" => Own::Topic,
        "publish" => Own::Publish,
        "rpc" => Own::Rpc,
        "refresh" => Own::Refresh,
        "resume" => Own::Resume,
        _ => return None,
    };
    Some((own, text))
}

/// Parses one of the session's own frames; a frame that does not parse gets the `error` the
/// client hears.
pub fn parse(text: &str, own: Own) -> Result<ClientControl, ServerFrame> {
    serde_json::from_str::<ClientControl>(text).map_err(|e| {
        let (error, expected) = match own {
            Own::Topic => (ErrorKind::InvalidTopic, r#"{"type":"subscribe","topic":…}"#),
            Own::Publish => (
                ErrorKind::InvalidFrame,
                r#"{"type":"publish","topic":…,"msg":…,"id":…}"#,
            ),
            Own::Rpc => (
                ErrorKind::InvalidFrame,
                r#"{"type":"rpc","id":N,"method":…,"data":…}"#,
            ),
            Own::Refresh => (ErrorKind::InvalidFrame, r#"{"type":"refresh","token":…}"#),
            Own::Resume => (
                ErrorKind::InvalidFrame,
                r#"{"type":"resume","since":{"offset":…,"epoch":…}}"#,
            ),
        };
        error_frame(error, format!("expected {expected}: {e}"), None, None)
    })
}

/// The answer to a `subscribe` or `unsubscribe` of `topic`.
pub async fn topic(core: &Core, services: &Services, subscribe: bool, raw: String) -> Message {
    Message::text(topic_change(core, services, subscribe, raw).await.to_text())
}

async fn topic_change(
    core: &Core,
    services: &Services,
    subscribe: bool,
    raw: String,
) -> ServerFrame {
    let topic = match Topic::parse(&raw) {
        Ok(t) => t,
        Err(e) => return error_frame(ErrorKind::InvalidTopic, e.to_string(), None, Some(raw)),
    };
    if !subscribe {
        services.registry.unsubscribe(core.shared.id, &topic);
        return ServerFrame::Unsubscribed { topic: raw };
    }
    if let Err(refused) = may_subscribe(core, services, &topic, &raw).await {
        return refused;
    }
    match handler::subscribe(core, services, &topic).await {
        Ok(()) => subscribed(raw, None),
        Err(e) => refused(&e, raw),
    }
}

/// `subscribed` to `topic`, at `at` in its stream if it keeps history.
pub fn subscribed(topic: String, at: Option<&StreamPosition>) -> ServerFrame {
    ServerFrame::Subscribed {
        topic,
        offset: at.map(|a| a.offset),
        epoch: at.map(|a| a.epoch.clone()),
        recovered: None,
        reason: None,
    }
}

/// Whether the session may join `topic`: its token's grants, then the route's `subscribe` hook.
/// A refusal is the `error` frame the client hears.
pub async fn may_subscribe(
    core: &Core,
    services: &Services,
    topic: &Topic,
    raw: &str,
) -> Result<(), ServerFrame> {
    let raw = raw.to_string();
    if !core.rights.subscribe.allows(topic) {
        services.metrics.subscription("forbidden");
        return Err(error_frame(
            ErrorKind::TopicForbidden,
            "the token does not grant this topic".into(),
            None,
            Some(raw),
        ));
    }
    let hook = hooks::session_call(core, &services.node, HookKind::Subscribe, |r| {
        r.topic = Some(raw.clone())
    });
    match hook.await {
        Ok(Some(a)) if !a.accepted() => {
            services.metrics.subscription("refused");
            let reason = a.into_reason();
            return Err(error_frame(
                ErrorKind::TopicForbidden,
                reason,
                None,
                Some(raw),
            ));
        }
        Ok(_) => {}
        Err(e) => {
            services.metrics.subscription("backend_unavailable");
            return Err(error_frame(
                ErrorKind::BackendUnavailable,
                e.to_string(),
                None,
                Some(raw),
            ));
        }
    }
    Ok(())
}

/// What the client hears when a subscribe (its own, or its remote handler's) is refused.
pub fn refused(e: &SubscribeError, topic: String) -> ServerFrame {
    match e {
        SubscribeError::TooManyTopics(_) => {
            error_frame(ErrorKind::TooManyTopics, e.to_string(), None, Some(topic))
        }
    }
}

/// An `error` frame about the frame with `id` or about `topic`.
pub fn error_frame(
    error: ErrorKind,
    detail: String,
    id: Option<String>,
    topic: Option<String>,
) -> ServerFrame {
    ServerFrame::Error {
        error,
        detail,
        id,
        topic: topic.filter(|t| !t.is_empty()),
    }
}
