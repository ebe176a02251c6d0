//! The built-in handlers, written on the public API like any team's.

use ews_proto::hook::HookKind;
use ews_proto::{ErrorKind, Event, FrameKind, RpcError, ServerFrame, MAX_ID_LEN};

use super::{Handler, Msg, SessionCtx};

/// Sends every text and binary message back unchanged (the Autobahn conformance target).
pub struct Echo;

impl Handler for Echo {
    type State = ();

    async fn on_open(&self, _: &mut SessionCtx<'_>) {}

    async fn on_message(&self, ctx: &mut SessionCtx<'_>, _: &mut (), msg: Msg) {
        let _ = ctx.send(msg).await;
    }

    /// Every message is echoed, a `{"type":"subscribe"}` too.
    fn takes_control_frames(&self) -> bool {
        false
    }
}

/// Answers every text message `s` with `Hello s!`: the demo handler of the distributed design
/// this follows, usually placed on another worker than the socket (`/greet=greet@random`).
pub struct Greet;

impl Handler for Greet {
    type State = ();

    async fn on_open(&self, _: &mut SessionCtx<'_>) {}

    async fn on_message(&self, ctx: &mut SessionCtx<'_>, _: &mut (), msg: Msg) {
        let reply = match msg.as_text() {
            Some(s) => Msg::text(format!("Hello {s}!")),
            None => error(
                ErrorKind::InvalidEvent,
                "greet takes text messages".into(),
                None,
            ),
        };
        let _ = ctx.send(reply).await;
    }

    fn takes_control_frames(&self) -> bool {
        false
    }
}

/// Parses `{"msg","clientId","timestamp"}` events, stamps them and hands them to the sink; the
/// client hears `ack`/`nack` when it asked for them (`?ack=1`). Topic frames are the session's.
pub struct Ingest;

impl Handler for Ingest {
    type State = ();

    async fn on_open(&self, _: &mut SessionCtx<'_>) {}

    async fn on_message(&self, ctx: &mut SessionCtx<'_>, _: &mut (), msg: Msg) {
        let metrics = ctx.services.metrics.clone();
        let event = match parse(&msg) {
            Ok(e) => e,
            Err(reply) => {
                metrics.event("invalid");
                let _ = ctx.send(reply).await;
                return;
            }
        };
        let id = event.id.clone();
        match ctx.submit(event).await {
            Ok(_) => metrics.event("accepted"),
            Err(e) => {
                metrics.event("sink_error");
                let _ = ctx
                    .send(error(ErrorKind::SinkUnavailable, e.to_string(), id))
                    .await;
            }
        }
    }
}

/// The route's backend as its handler: every text message goes to the route's `message` hook
/// and every `rpc` to its `rpc` hook (API Gateway's `$default` and custom routes), and what the
/// backend's answer lists in `send` goes back to the client, in order. A failed call is an
/// `error` frame `backend_unavailable` (or an rpc error of that code): the client may try again.
pub struct Backend;

impl Handler for Backend {
    type State = ();

    async fn on_open(&self, _: &mut SessionCtx<'_>) {}

    async fn on_message(&self, ctx: &mut SessionCtx<'_>, _: &mut (), msg: Msg) {
        let Some(text) = msg.as_text() else {
            let e = "the backend handler takes text messages".into();
            let _ = ctx.send(error(ErrorKind::InvalidEvent, e, None)).await;
            return;
        };
        let text = text.to_string();
        match ctx.hook(HookKind::Message, |r| r.msg = Some(text)).await {
            Ok(Some(answer)) => {
                for m in answer.send {
                    if ctx.send(Msg::text(m)).await.is_err() {
                        return;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = ctx
                    .send(error(ErrorKind::BackendUnavailable, e.to_string(), None))
                    .await;
            }
        }
    }

    async fn on_rpc(
        &self,
        ctx: &mut SessionCtx<'_>,
        _: &mut (),
        method: &str,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, RpcError> {
        let call = ctx
            .hook(HookKind::Rpc, |r| {
                r.method = Some(method.to_string());
                r.data = Some(data);
            })
            .await;
        match call {
            Ok(Some(answer)) => {
                for m in answer.send {
                    if ctx.send(Msg::text(m)).await.is_err() {
                        break;
                    }
                }
                match answer.error {
                    Some(e) => Err(e),
                    None => Ok(answer.data.unwrap_or_default()),
                }
            }
            Ok(None) => Err(RpcError::no_method(method)),
            Err(e) => Err(RpcError::new("backend_unavailable", e.to_string())),
        }
    }
}

/// The event in `msg`, or the error frame that says why it is none.
fn parse(msg: &Msg) -> Result<Event, Msg> {
    let Some(text) = msg.as_text() else {
        return Err(error(
            ErrorKind::InvalidEvent,
            "events are JSON text frames".into(),
            None,
        ));
    };
    // `subscribe`/`unsubscribe` never get here: the session answers them.
    if let FrameKind::Control(kind) = FrameKind::of(text) {
        return Err(error(
            ErrorKind::InvalidEvent,
            format!("unknown frame type {kind:?}: events carry no \"type\", control frames are subscribe or unsubscribe"),
            None,
        ));
    }
    let event: Event = serde_json::from_str(text)
        .map_err(|e| error(ErrorKind::InvalidEvent, e.to_string(), None))?;
    if event.id.as_ref().is_some_and(|id| id.len() > MAX_ID_LEN) {
        return Err(error(
            ErrorKind::InvalidEvent,
            format!("an event id is at most {MAX_ID_LEN} bytes"),
            None,
        ));
    }
    Ok(event)
}

fn error(error: ErrorKind, detail: String, id: Option<String>) -> Msg {
    let f = ServerFrame::Error {
        error,
        detail,
        id,
        topic: None,
    };
    Msg::text(f.to_text())
}
