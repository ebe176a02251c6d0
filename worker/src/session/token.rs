//! A session's token lifetime: `refresh_required` a lead time before the token's `exp`, a
//! `refresh` with a new token for the same `sub`, and `4001 token expired` for a session that
//! did not refresh in time. Deadlines are checked on the node-wide tick; only a deadline closer
//! than two ticks arms a timer of the session's own, so an idle session with a long-lived token
//! holds none.

use ews_proto::{ErrorKind, ServerFrame, CLOSE_TOKEN_EXPIRED};
use ews_sink::BoxFuture;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use super::control::error_frame;
use super::{close_frame, Flow, Machine, Transport};
use std::sync::Arc;

use ews_proto::hook::HookKind;

use crate::auth::{Identity, Rights};
use crate::handler::{CloseReason, Expiry};
use crate::hooks;

impl<T: Transport> Machine<'_, T> {
    /// Acts on the token's next deadline if it has passed (warn, or end the session), and arms
    /// the timer when the next one is near.
    ///
    /// Boxed: a session checks it once a tick at most, and an idle session's task should not
    /// carry its future.
    pub(super) fn token_deadline(&mut self) -> BoxFuture<'_, Flow> {
        Box::pin(self.deadline())
    }

    async fn deadline(&mut self) -> Flow {
        let Some(e) = self.core.expiry else {
            return Flow::Continue;
        };
        let now = Instant::now();
        let metrics = self.env.metrics();
        if now >= e.end() {
            metrics.client_request("token", "expired");
            let frame = close_frame(CloseCode::from(CLOSE_TOKEN_EXPIRED), "token expired");
            return self.goodbye(frame, CloseReason::TokenExpired).await;
        }
        let warn_at = e.at.checked_sub(self.env.refresh_lead).unwrap_or(now);
        let told = e.told || now >= warn_at;
        if told && !e.told {
            if let Some(e) = &mut self.core.expiry {
                e.told = true;
            }
            metrics.client_request("token", "refresh_required");
            let frame = ServerFrame::RefreshRequired { exp: e.exp };
            if self.write(Message::text(frame.to_text())).await == Flow::End {
                return Flow::End;
            }
        }
        let next = if told { e.end() } else { warn_at };
        if next.saturating_duration_since(now) <= self.env.tick * 2 {
            self.expiry_timer = Some(Box::pin(sleep_until(next)));
        }
        Flow::Continue
    }

    /// A client's `refresh`: a valid token for the same `sub` replaces the session's (its
    /// expiry and what it grants); anything else is refused and the old one stays in force.
    pub(super) async fn refresh(&mut self, token: String) -> Flow {
        let metrics = self.env.metrics();
        let refused = |detail: String| error_frame(ErrorKind::TokenRefused, detail, None, None);
        let frame = match &self.env.auth {
            None => {
                metrics.client_request("refresh", "refused");
                refused("this worker does not authenticate clients".into())
            }
            Some(auth) => match auth.verify(&token).await {
                Err(e) => {
                    metrics.client_request("refresh", "refused");
                    refused(format!("invalid token: {e}"))
                }
                Ok(id) if self.core.shared.client_id.as_deref() != Some(id.sub.as_str()) => {
                    metrics.client_request("refresh", "refused");
                    refused("the token names another sub".into())
                }
                Ok(id) => match self.refresh_hook(id).await {
                    Err(frame) => {
                        metrics.client_request("refresh", "refused");
                        frame
                    }
                    Ok((rights, exp)) => {
                        metrics.client_request("refresh", "ok");
                        self.core.rights = rights;
                        if self.core.expiry.is_some() {
                            self.core.expiry = Some(Expiry::new(exp, auth.leeway()));
                            self.expiry_timer = None;
                        }
                        ServerFrame::Refreshed { exp }
                    }
                },
            },
        };
        if self.write(Message::text(frame.to_text())).await == Flow::End {
            return Flow::End;
        }
        // A new token may end sooner than the next tick.
        self.token_deadline().await
    }

    /// The route's `refresh` hook on a verified token: the rights and expiry the session takes
    /// (the backend may grant topics as at connect, and end it sooner), or the refusal.
    async fn refresh_hook(&mut self, id: Identity) -> Result<(Arc<Rights>, u64), ServerFrame> {
        let rights = id.rights.for_session(self.env.topics_open);
        if let Some(h) = &mut self.core.hooks {
            h.claims = Some(id.claims);
        }
        let node = &self.env.services.node;
        let unavailable = |e: hooks::HookError| {
            error_frame(ErrorKind::BackendUnavailable, e.to_string(), None, None)
        };
        match hooks::session_call(&self.core, node, HookKind::Refresh, |_| {}).await {
            Ok(None) => Ok((rights, id.exp)),
            Ok(Some(a)) if !a.accepted() => Err(error_frame(
                ErrorKind::TokenRefused,
                a.into_reason(),
                None,
                None,
            )),
            Ok(Some(a)) => {
                let (rights, exp) =
                    hooks::apply_grants(rights, Some(id.exp), &a).map_err(unavailable)?;
                Ok((rights, exp.unwrap_or(id.exp)))
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}
