//! The object-safe face of [`Handler`]: the session loop holds every route's handler as one
//! `Arc<dyn Erased>` and its state as one [`State`] box, whatever the handler's types.

use std::any::Any;

use ews_sink::BoxFuture;

use super::{CloseReason, Handler, Msg, RpcError, SessionCtx};

/// A session's handler state, type-erased. A zero-sized state (a stateless handler) is a box
/// that allocates nothing.
pub type State = Box<dyn Any + Send>;

pub trait Erased: Send + Sync {
    fn open<'a, 'b: 'a>(&'a self, ctx: &'a mut SessionCtx<'b>) -> BoxFuture<'a, State>;

    fn message<'a, 'b: 'a>(
        &'a self,
        ctx: &'a mut SessionCtx<'b>,
        state: &'a mut State,
        msg: Msg,
    ) -> BoxFuture<'a, ()>;

    fn close<'a, 'b: 'a>(
        &'a self,
        ctx: &'a mut SessionCtx<'b>,
        state: State,
        reason: CloseReason,
    ) -> BoxFuture<'a, ()>;

    fn rpc<'a, 'b: 'a>(
        &'a self,
        ctx: &'a mut SessionCtx<'b>,
        state: &'a mut State,
        method: String,
        data: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, RpcError>>;

    fn takes_control_frames(&self) -> bool;
}

impl<H: Handler> Erased for H {
    fn open<'a, 'b: 'a>(&'a self, ctx: &'a mut SessionCtx<'b>) -> BoxFuture<'a, State> {
        Box::pin(async move {
            let state: State = Box::new(self.on_open(ctx).await);
            state
        })
    }

    fn message<'a, 'b: 'a>(
        &'a self,
        ctx: &'a mut SessionCtx<'b>,
        state: &'a mut State,
        msg: Msg,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Always this handler's own state: the loop keeps the pair together.
            if let Some(state) = state.downcast_mut::<H::State>() {
                self.on_message(ctx, state, msg).await;
            }
        })
    }

    fn close<'a, 'b: 'a>(
        &'a self,
        ctx: &'a mut SessionCtx<'b>,
        state: State,
        reason: CloseReason,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Ok(state) = state.downcast::<H::State>() {
                self.on_close(ctx, *state, reason).await;
            }
        })
    }

    fn rpc<'a, 'b: 'a>(
        &'a self,
        ctx: &'a mut SessionCtx<'b>,
        state: &'a mut State,
        method: String,
        data: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, RpcError>> {
        Box::pin(async move {
            match state.downcast_mut::<H::State>() {
                Some(state) => self.on_rpc(ctx, state, &method, data).await,
                None => Err(RpcError::new("internal", "session state lost")),
            }
        })
    }

    fn takes_control_frames(&self) -> bool {
        Handler::takes_control_frames(self)
    }
}
