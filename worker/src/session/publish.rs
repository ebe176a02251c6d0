//! A client's own `publish`: checked against the token's `publish` grants, held to a rate per
//! session, then delivered cluster-wide like a backend's publish (with the client's id as
//! `from`), and answered `published` (as text: what the session writes) in the order the client sent them. Several may be on
//! their way at once, up to [`MAX_IN_FLIGHT`]; past it the session stops reading its client
//! until one is answered, so a publisher faster than the cluster is slowed, never buffered.

use ews_cluster::publish::{Publish, Target};
use ews_proto::topic::Topic;
use ews_proto::{ErrorKind, ServerFrame, MAX_ID_LEN};
use ews_sink::BoxFuture;
use futures_util::stream::FuturesOrdered;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::control::error_frame;
use crate::handler::{Claims, Core, Services};
use crate::hooks::{Caller, RouteHooks};
use ews_proto::hook::HookKind;

/// Publishes of one session on their way at once.
pub const MAX_IN_FLIGHT: usize = 16;

/// A publishing session's state, made on its first publish (an idle session carries none).
pub struct Publishing {
    bucket: Bucket,
    pub in_flight: FuturesOrdered<BoxFuture<'static, String>>,
    /// On a route with a `publish` hook: resolves (or fails) once the last publish started is
    /// done, so the next delivers after it (see [`Turn`]).
    last: Option<oneshot::Receiver<()>>,
}

/// A hooked publish's place in line. Its backend may answer the hook calls of a session's
/// publishes in any order, but subscribers must see them in the order the client sent them:
/// each delivers only once the one before is done (delivered, refused or failed), while the
/// hook calls themselves still overlap.
struct Turn {
    previous: Option<oneshot::Receiver<()>>,
    /// Dropped when this publish is done, whichever way: the next one's turn.
    _done: oneshot::Sender<()>,
}

impl Turn {
    async fn wait(&mut self) {
        if let Some(previous) = &mut self.previous {
            // An error is the previous publish's sender dropped: done too.
            let _ = previous.await;
            self.previous = None;
        }
    }
}

impl Publishing {
    pub fn new(rate: usize) -> Publishing {
        Publishing {
            bucket: Bucket::full(rate),
            in_flight: FuturesOrdered::new(),
            last: None,
        }
    }

    pub fn full(&self) -> bool {
        self.in_flight.len() >= MAX_IN_FLIGHT
    }

    /// Starts the publish of `msg` to `raw` (the answer is on its way), or says at once why
    /// not.
    pub fn start(
        &mut self,
        core: &Core,
        services: &Services,
        (raw, msg, id): (String, String, Option<String>),
    ) -> Result<(), ServerFrame> {
        let metrics = &services.metrics;
        if id
            .as_ref()
            .is_some_and(|i| i.is_empty() || i.len() > MAX_ID_LEN)
        {
            metrics.client_request("publish", "invalid");
            let detail = format!("an id is 1 to {MAX_ID_LEN} bytes");
            return Err(error_frame(
                ErrorKind::InvalidFrame,
                detail,
                None,
                Some(raw),
            ));
        }
        let topic = match Topic::parse(&raw) {
            Ok(t) => t,
            Err(e) => {
                metrics.client_request("publish", "invalid");
                return Err(error_frame(
                    ErrorKind::InvalidTopic,
                    e.to_string(),
                    id,
                    Some(raw),
                ));
            }
        };
        if !core.rights.publish.allows(&topic) {
            metrics.client_request("publish", "forbidden");
            let detail = "the token does not grant publishing to this topic".to_string();
            return Err(error_frame(
                ErrorKind::PublishForbidden,
                detail,
                id,
                Some(raw),
            ));
        }
        if !self.bucket.take(Instant::now()) {
            metrics.client_request("publish", "rate_limited");
            let detail = format!("at most {} publishes a second", self.bucket.rate);
            return Err(error_frame(ErrorKind::RateLimited, detail, id, Some(raw)));
        }
        let from = core.shared.client_id.as_ref().map(|c| c.to_string());
        // The route's `publish` hook runs inside the publish, so its wait counts against the
        // session's publishes in flight like the delivery's.
        let hook = core
            .hooks
            .as_ref()
            .filter(|h| h.route.has(HookKind::Publish))
            .map(|h| OwnedCaller {
                route: h.route.clone(),
                claims: h.claims.clone(),
                client: from.clone(),
                node: services.node.to_string(),
                session: core.shared.id,
            });
        let mut p = Publish {
            target: Target::topic(topic),
            msg,
            id: None,
            from,
            at: None,
        };
        let (pubsub, metrics) = (services.pubsub.clone(), services.metrics.clone());
        let mut turn = hook.as_ref().map(|_| {
            let (done, next) = oneshot::channel();
            Turn {
                previous: self.last.replace(next),
                _done: done,
            }
        });
        self.in_flight.push_back(Box::pin(async move {
            if let Some(hook) = hook {
                match hook.publish(&raw, &p.msg, &id).await {
                    Ok(Some(rewritten)) => p.msg = rewritten,
                    Ok(None) => {}
                    Err((outcome, refused)) => {
                        metrics.client_request("publish", outcome);
                        return refused.to_text();
                    }
                }
            }
            if let Some(turn) = &mut turn {
                turn.wait().await;
            }
            metrics.client_request("publish", "ok");
            let d = pubsub.publish(&p).await;
            ServerFrame::Published {
                id,
                delivered: d.delivered,
            }
            .to_text()
        }));
        Ok(())
    }
}

/// What a publish's hook call needs, owned: the call outlives the frame that started it.
struct OwnedCaller {
    route: std::sync::Arc<RouteHooks>,
    claims: Option<Box<Claims>>,
    client: Option<String>,
    node: String,
    session: u64,
}

impl OwnedCaller {
    /// The backend's word on publishing `msg` to `topic`: go ahead (maybe with a rewritten
    /// message) or the refusal.
    async fn publish(
        &self,
        topic: &str,
        msg: &str,
        id: &Option<String>,
    ) -> Result<Option<String>, (&'static str, ServerFrame)> {
        let caller = Caller {
            client: self.client.as_deref(),
            node: &self.node,
            session: self.session,
            claims: self.claims.as_deref(),
        };
        let answer = self
            .route
            .call(HookKind::Publish, &caller, |r| {
                r.topic = Some(topic.to_string());
                r.msg = Some(msg.to_string());
            })
            .await;
        match answer {
            Ok(Some(a)) if !a.accepted() => {
                let reason = a.into_reason();
                let frame = error_frame(
                    ErrorKind::PublishForbidden,
                    reason,
                    id.clone(),
                    Some(topic.to_string()),
                );
                Err(("refused", frame))
            }
            Ok(a) => Ok(a.and_then(|a| a.msg)),
            Err(e) => {
                let frame = error_frame(
                    ErrorKind::BackendUnavailable,
                    e.to_string(),
                    id.clone(),
                    Some(topic.to_string()),
                );
                Err(("backend_unavailable", frame))
            }
        }
    }
}

/// A token bucket: `rate` tokens a second, holding at most `rate`.
struct Bucket {
    rate: usize,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: usize) -> Bucket {
        Bucket {
            rate: rate.max(1),
            tokens: rate.max(1) as f64,
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate as f64;
        self.tokens = (self.tokens + refill).min(self.rate as f64);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Past [`MAX_IN_FLIGHT`] unanswered publishes the session says it is full (and its loop
    /// stops reading the client until one is answered).
    #[tokio::test(start_paused = true)]
    async fn publishes_on_their_way_are_bounded() {
        let mut p = Publishing::new(1000);
        for _ in 0..MAX_IN_FLIGHT {
            assert!(!p.full());
            p.in_flight
                .push_back(Box::pin(std::future::pending::<String>()));
        }
        assert!(p.full());
    }

    /// A later publish whose hook answered first still waits for the one before, refused or
    /// delivered.
    #[tokio::test(start_paused = true)]
    async fn a_hooked_publish_waits_for_the_one_before() {
        let (first_done, second_waits) = oneshot::channel();
        let mut second = Turn {
            previous: Some(second_waits),
            _done: oneshot::channel().0,
        };
        let waiting = tokio::time::timeout(Duration::from_secs(5), second.wait()).await;
        assert!(waiting.is_err(), "the first is not done yet");
        // The first finishes (here: refused, its sender simply dropped).
        drop(first_done);
        assert!(second.previous.is_some(), "still waiting on the first");
        tokio::time::timeout(Duration::from_secs(5), second.wait())
            .await
            .expect("its turn now");
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_its_rate() {
        let mut b = Bucket::full(3);
        let now = Instant::now();
        assert!((0..3).all(|_| b.take(now)));
        assert!(!b.take(now), "the burst is spent");
        assert!(
            b.take(now + Duration::from_millis(340)),
            "a third of a second refills one"
        );
        assert!(!b.take(now + Duration::from_millis(340)));
        assert!(
            (0..3).all(|_| b.take(now + Duration::from_secs(10))),
            "refills to its size only"
        );
        assert!(!b.take(now + Duration::from_secs(10)));
    }
}
