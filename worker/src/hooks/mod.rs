//! Backend hooks: a route's `connect`, `refresh`, `subscribe`, `publish`, `rpc`, `message` and
//! `disconnect` reach the team's own backend, in any language, as a signed HTTP POST of a
//! [`HookRequest`] answered by a [`HookResponse`] (docs/hooks.md).
//!
//! A backend never takes the worker down with it. Each call has a deadline; at most
//! `concurrency` calls per backend are in flight from this worker, and a call waiting for a
//! place holds up only its own client (the session is not reading meanwhile: back-pressure,
//! never a buffer); after `breakerFailures` failures in a row the circuit opens and calls fail
//! at once until a probe succeeds; only hooks that are safe to repeat (`connect`, `refresh`,
//! `subscribe`) are retried, once. Every failure has an answer the client understands
//! (`503` with `Retry-After` at connect, `backend_unavailable` after).

mod breaker;
pub mod config;
mod transport;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ews_proto::hook::{HookKind, HookRequest, HookResponse};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::auth::Rights;
use crate::handler::{Claims, Core, ServedRoute};
use crate::metrics::Metrics;
pub use config::HooksArgs;

/// `routes` with the hooks `--hooks-file` configures for each (none without it), resolved once
/// at start so an upgrade finds its route's hooks on the route: a start-up error if the file
/// does not read, check, or fit the routes.
pub async fn load(
    args: &HooksArgs,
    routes: Arc<[ServedRoute]>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<[ServedRoute]>> {
    let Some(path) = &args.hooks_file else {
        if args.hook_secret_file.is_some() {
            anyhow::bail!("--hook-secret-file without --hooks-file: no backend to sign calls to");
        }
        return Ok(routes);
    };
    let secret = args.hook_secret_file.as_deref();
    let checked = config::HooksFile::load(path, secret).map_err(anyhow::Error::msg)?;
    let served: Vec<(&str, &str)> = routes
        .iter()
        .map(|r| (&*r.path, r.handler.name.as_str()))
        .collect();
    let hooks = Hooks::new(checked, &served, metrics)
        .await
        .map_err(anyhow::Error::msg)?;
    tracing::info!(path = %path.display(), routes = hooks.routes.len(), "backend hooks");
    Ok(routes
        .iter()
        .map(|r| ServedRoute {
            hooks: hooks.routes.get(&*r.path).cloned(),
            ..r.clone()
        })
        .collect())
}

/// What an accepted `connect` or `refresh` answer does to a session: `rights` widened by the
/// answer's topic grants, `exp` brought forward to its `expiresAt`. A grant that is not a topic
/// pattern makes the answer invalid.
pub fn apply_grants(
    rights: Arc<Rights>,
    exp: Option<u64>,
    answer: &HookResponse,
) -> Result<(Arc<Rights>, Option<u64>), HookError> {
    let exp = match (exp, answer.expires_at) {
        (Some(exp), Some(at)) => Some(exp.min(at)),
        (exp, at) => exp.or(at),
    };
    if answer.topics.is_empty() && answer.publish.is_empty() {
        return Ok((rights, exp));
    }
    let bad = |e: ews_proto::topic::TopicError| HookError::Invalid(format!("a granted topic: {e}"));
    let widened = Rights {
        subscribe: rights
            .subscribe
            .clone()
            .widen(&answer.topics)
            .map_err(bad)?,
        publish: rights.publish.clone().widen(&answer.publish).map_err(bad)?,
    };
    Ok((Arc::new(widened), exp))
}

/// A session's call of its route's `hook` (`Ok(None)`: the route has none).
pub async fn session_call(
    core: &Core,
    node: &str,
    hook: HookKind,
    fill: impl FnOnce(&mut HookRequest),
) -> Result<Option<HookResponse>, HookError> {
    let Some(h) = &core.hooks else {
        return Ok(None);
    };
    let who = Caller {
        client: core.shared.client_id.as_ref().map(|c| c.as_str()),
        node,
        session: core.shared.id,
        claims: h.claims.as_deref(),
    };
    h.route.call(hook, &who, fill).await
}

/// Why a hook call got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("the backend did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the backend failed: {0}")]
    Failed(String),
    #[error("the backend's circuit is open after repeated failures")]
    CircuitOpen,
    #[error("the backend's answer is not a hook answer: {0}")]
    Invalid(String),
}

impl HookError {
    /// The `outcome` label of `ews_hook_calls_total`.
    fn label(&self) -> &'static str {
        match self {
            HookError::Timeout(_) => "timeout",
            HookError::Failed(_) => "error",
            HookError::CircuitOpen => "circuit_open",
            HookError::Invalid(_) => "invalid",
        }
    }
}

/// Every hooked route's hooks, by path.
struct Hooks {
    routes: HashMap<String, Arc<RouteHooks>>,
}

impl Hooks {
    /// The hooks of a checked file; `routes` are the paths `--routes` serves (a hooked route
    /// must be one) with their handler's name.
    async fn new(
        file: config::Checked,
        routes: &[(&str, &str)],
        metrics: &Arc<Metrics>,
    ) -> Result<Hooks, String> {
        let mut backends = HashMap::new();
        for b in file.backends {
            let backend = Backend::new(b, metrics.clone()).await?;
            backends.insert(backend.name.to_string(), Arc::new(backend));
        }
        let mut out = HashMap::new();
        for r in file.routes {
            let Some((_, handler)) = routes.iter().find(|(p, _)| *p == r.path) else {
                return Err(format!(
                    "--hooks-file: route {} is not one of --routes",
                    r.path
                ));
            };
            let backed = *handler == crate::handler::BACKEND;
            for needs in [HookKind::Rpc, HookKind::Message] {
                if r.hooks.contains(&needs) && !backed {
                    return Err(format!(
                        "--hooks-file: route {}: the {} hook is the `backend` handler's (--routes {}=backend), not {handler}'s",
                        r.path,
                        needs.as_str(),
                        r.path
                    ));
                }
            }
            let backend = backends
                .get(&r.backend)
                .cloned()
                .ok_or_else(|| format!("--hooks-file: no backend {}", r.backend))?;
            for h in &r.hooks {
                metrics.hook_call(backend.name, h.as_str(), "ok", None);
            }
            out.insert(
                r.path.clone(),
                Arc::new(RouteHooks {
                    path: r.path,
                    backend,
                    hooks: r.hooks,
                }),
            );
        }
        Ok(Hooks { routes: out })
    }
}

/// One route's hooks and the backend they call.
pub struct RouteHooks {
    path: String,
    backend: Arc<Backend>,
    hooks: Vec<HookKind>,
}

impl RouteHooks {
    pub fn has(&self, hook: HookKind) -> bool {
        self.hooks.contains(&hook)
    }

    /// Calls `hook` if this route has it (`Ok(None)` if not).
    pub async fn call(
        &self,
        hook: HookKind,
        who: &Caller<'_>,
        fill: impl FnOnce(&mut HookRequest),
    ) -> Result<Option<HookResponse>, HookError> {
        if !self.has(hook) {
            return Ok(None);
        }
        let mut req = HookRequest {
            hook,
            client_id: who.client.map(str::to_string),
            node: who.node.to_string(),
            session: who.session,
            route: self.path.clone(),
            claims: who.claims.cloned(),
            topic: None,
            msg: None,
            method: None,
            data: None,
            reason: None,
        };
        fill(&mut req);
        self.backend.call(&req).await.map(Some)
    }
}

/// Who a hook call is about.
pub struct Caller<'a> {
    pub client: Option<&'a str>,
    pub node: &'a str,
    pub session: u64,
    pub claims: Option<&'a Claims>,
}

/// What a session keeps for its route's hooks: the route's, and the token's claims each call
/// carries. Only sessions of hooked routes have one (boxed: the others carry a null pointer).
pub struct SessionHooks {
    pub route: Arc<RouteHooks>,
    pub claims: Option<Box<Claims>>,
}

/// A backend as this worker calls it.
struct Backend {
    /// Leaked once per configured backend: a metric label.
    name: &'static str,
    transport: transport::Transport,
    timeout: Duration,
    permits: Semaphore,
    breaker: breaker::Breaker,
    metrics: Arc<Metrics>,
}

impl Backend {
    async fn new(b: config::Backend, metrics: Arc<Metrics>) -> Result<Backend, String> {
        let name: &'static str = Box::leak(b.name.clone().into_boxed_str());
        metrics.hook_breaker(name, breaker::State::Closed as i64);
        Ok(Backend {
            name,
            transport: transport::Transport::new(b.target, b.secret)
                .await
                .map_err(|e| format!("--hooks-file: backend {}: {e}", b.name))?,
            timeout: b.timeout,
            permits: Semaphore::new(b.concurrency),
            breaker: breaker::Breaker::new(b.breaker_failures, b.breaker_open),
            metrics,
        })
    }

    /// One call: a place among the backend's calls in flight, the breaker's leave, the
    /// request within the deadline; one retry for a hook that is safe to repeat.
    async fn call(&self, req: &HookRequest) -> Result<HookResponse, HookError> {
        let body = serde_json::to_vec(req).map_err(|e| HookError::Invalid(e.to_string()))?;
        let hook = req.hook.as_str();
        let mut attempts = if req.hook.idempotent() { 2 } else { 1 };
        loop {
            attempts -= 1;
            let started = Instant::now();
            let result = self.attempt(&body).await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.label(),
            };
            self.metrics
                .hook_call(self.name, hook, outcome, Some(started.elapsed()));
            match result {
                Err(HookError::Timeout(_) | HookError::Failed(_)) if attempts > 0 => {
                    let jitter = rand::random_range(20..100);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                result => return result,
            }
        }
    }

    async fn attempt(&self, body: &[u8]) -> Result<HookResponse, HookError> {
        let deadline = Instant::now() + self.timeout;
        // Waiting for a place counts against the deadline: a hung backend holding every place
        // fails the calls queued behind it in time too.
        let _permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| HookError::Timeout(self.timeout))?
            .map_err(|_| HookError::Failed("shutting down".into()))?;
        let Some(admit) = self.breaker.admit() else {
            return Err(HookError::CircuitOpen);
        };
        if admit == breaker::Admit::Probe {
            self.metrics
                .hook_breaker(self.name, breaker::State::HalfOpen as i64);
        }
        let result = match tokio::time::timeout_at(deadline, self.transport.call(body)).await {
            Err(_) => Err(HookError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(HookError::Failed(e)),
            Ok(Ok((200, bytes))) => serde_json::from_slice::<HookResponse>(&bytes)
                .map_err(|e| HookError::Invalid(e.to_string())),
            Ok(Ok((status, _))) => Err(HookError::Failed(format!("HTTP {status}"))),
        };
        let state = self.breaker.record(admit, result.is_ok());
        self.metrics.hook_breaker(self.name, state as i64);
        if let Err(e) = &result {
            tracing::debug!(backend = self.name, error = %e, "hook call failed");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_widen_the_rights_and_expiry_comes_only_sooner() {
        let answer: HookResponse =
            serde_json::from_str(r#"{"topics":["room.*"],"expiresAt":100}"#).expect("answer");
        let (rights, exp) =
            apply_grants(Arc::new(Rights::default()), Some(200), &answer).expect("applied");
        let room = ews_proto::topic::Topic::parse("room.1").expect("topic");
        assert!(rights.subscribe.allows(&room) && !rights.publish.allows(&room));
        assert_eq!(exp, Some(100));
        let (_, exp) = apply_grants(Arc::new(Rights::default()), Some(50), &answer).expect("ok");
        assert_eq!(exp, Some(50), "never later than the token");
        let bad: HookResponse = serde_json::from_str(r#"{"publish":["a b"]}"#).expect("answer");
        assert!(matches!(
            apply_grants(Arc::new(Rights::default()), None, &bad),
            Err(HookError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn rpc_and_message_hooks_need_the_backend_handler() {
        let file = config::HooksFile {
            backends: [(
                "app".to_string(),
                serde_json::from_str(r#"{"url":"http://127.0.0.1:9/"}"#).expect("backend"),
            )]
            .into(),
            routes: [(
                "/chat".to_string(),
                serde_json::from_str(r#"{"backend":"app","hooks":["rpc"]}"#).expect("route"),
            )]
            .into(),
        }
        .check()
        .expect("checked");
        let metrics = Arc::new(Metrics::new());
        let e = Hooks::new(file.clone(), &[("/chat", "chat")], &metrics)
            .await
            .err()
            .expect("refused");
        assert!(e.contains("--routes /chat=backend"), "{e}");
        let e = Hooks::new(file.clone(), &[("/other", "backend")], &metrics)
            .await
            .err()
            .expect("refused");
        assert!(e.contains("not one of --routes"), "{e}");
        assert!(Hooks::new(file, &[("/chat", "backend")], &metrics)
            .await
            .is_ok());
    }
}
