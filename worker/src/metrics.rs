//! Prometheus metrics of the gateway, served as text on the admin port.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type Labels3 = [(&'static str, &'static str); 3];

/// Hook latencies: 1 ms to about 16 s.
fn hook_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every counter the gateway keeps. Cheap to share: each metric is an `Arc` of atomics.
pub struct Metrics {
    registry: Registry,
    pub connections_active: Gauge,
    pub connections_max: Gauge,
    pub draining: Gauge,
    handshakes: Family<Labels, Counter>,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    events: Family<Labels, Counter>,
    subscriptions: Family<Labels, Counter>,
    drops: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    rebalanced: Counter,
    /// Sessions whose socket is here and whose handler runs on another worker.
    pub remote_sessions: Gauge,
    /// Sessions this worker runs the handler of for another worker's socket.
    pub hosted_sessions: Gauge,
    remote_closed: Family<Labels, Counter>,
    handler_events: Family<Labels2, Counter>,
    client_requests: Family<Labels2, Counter>,
    presence_events: Counter,
    hook_calls: Family<Labels3, Counter>,
    hook_seconds: Family<Labels2, Histogram, fn() -> Histogram>,
    hook_breaker: Family<Labels, Gauge>,
    lifecycle: Family<Labels2, Counter>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let connections_active = Gauge::default();
        let connections_max = Gauge::default();
        let draining = Gauge::default();
        let handshakes = Family::<Labels, Counter>::default();
        let (frames_in, frames_out) = (Counter::default(), Counter::default());
        let (bytes_in, bytes_out) = (Counter::default(), Counter::default());
        let events = Family::<Labels, Counter>::default();
        let subscriptions = Family::<Labels, Counter>::default();
        let drops = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        let rebalanced = Counter::default();
        let (remote_sessions, hosted_sessions) = (Gauge::default(), Gauge::default());
        let remote_closed = Family::<Labels, Counter>::default();
        let handler_events = Family::<[(&'static str, &'static str); 2], Counter>::default();
        let client_requests = Family::<[(&'static str, &'static str); 2], Counter>::default();
        let presence_events = Counter::default();
        let hook_calls = Family::<Labels3, Counter>::default();
        let hook_seconds =
            Family::<Labels2, Histogram, fn() -> Histogram>::new_with_constructor(hook_histogram);
        let hook_breaker = Family::<Labels, Gauge>::default();
        let lifecycle = Family::<Labels2, Counter>::default();
        let mut r = Registry::with_prefix("ews");
        r.register(
            "connections_active",
            "Open WebSocket sessions",
            connections_active.clone(),
        );
        r.register(
            "connections_max",
            "Session capacity of this node",
            connections_max.clone(),
        );
        r.register("draining", "1 while the node drains", draining.clone());
        r.register(
            "handshakes",
            "Upgrade attempts by outcome",
            handshakes.clone(),
        );
        r.register(
            "frames_received",
            "WebSocket frames received",
            frames_in.clone(),
        );
        r.register("frames_sent", "WebSocket frames sent", frames_out.clone());
        r.register(
            "bytes_received",
            "WebSocket payload bytes received",
            bytes_in.clone(),
        );
        r.register(
            "bytes_sent",
            "WebSocket payload bytes sent",
            bytes_out.clone(),
        );
        r.register("events", "Ingested events by outcome", events.clone());
        r.register(
            "subscriptions",
            "Topic subscribe requests by outcome",
            subscriptions.clone(),
        );
        r.register("dropped", "Messages dropped by reason", drops.clone());
        r.register("errors", "Errors by kind", errors.clone());
        r.register(
            "rebalanced",
            "Sessions closed (1012 rebalance) to move them to a less loaded worker",
            rebalanced.clone(),
        );
        r.register(
            "remote_sessions",
            "Open sessions held here whose handler runs on another worker",
            remote_sessions.clone(),
        );
        r.register(
            "hosted_sessions",
            "Handlers this worker runs for sessions held by other workers",
            hosted_sessions.clone(),
        );
        r.register(
            "remote_sessions_closed",
            "Remote sessions closed, by why (handler_left, handler_lost, too_big, here)",
            remote_closed.clone(),
        );
        r.register(
            "handler_events",
            "What handlers counted (SessionCtx::count), by handler and event",
            handler_events.clone(),
        );
        r.register(
            "client_requests",
            "Client publish, rpc and refresh frames and token expiries, by kind and outcome",
            client_requests.clone(),
        );
        r.register(
            "presence_events",
            "Join/leave events this node announced (after coalescing)",
            presence_events.clone(),
        );
        r.register(
            "hook_calls",
            "Backend hook calls (each attempt), by backend, hook and outcome (ok, timeout, error, circuit_open, invalid)",
            hook_calls.clone(),
        );
        r.register(
            "hook_duration_seconds",
            "Backend hook call latency (each attempt), by backend and hook",
            hook_seconds.clone(),
        );
        r.register(
            "hook_breaker_state",
            "A backend's circuit: 0 closed, 1 open (calls fail at once), 2 half-open (probing)",
            hook_breaker.clone(),
        );
        r.register(
            "lifecycle_records",
            "Lifecycle records (--lifecycle-events) by type (connected, disconnected) and sink outcome (ok, failed)",
            lifecycle.clone(),
        );
        // Every counter shows from the start, at 0, with its common outcomes: a dashboard or an
        // alarm on `rate(...)` finds the series before the first event of its kind.
        let labels = |f: &Family<Labels, Counter>, key: &'static str, values: &[&'static str]| {
            for v in values {
                drop(f.get_or_create(&[(key, *v)]));
            }
        };
        labels(
            &handshakes,
            "outcome",
            &["ok", "unauthorized", "over_capacity", "draining"],
        );
        labels(
            &events,
            "outcome",
            &["accepted", "invalid", "acked", "nacked", "sink_error"],
        );
        labels(&subscriptions, "outcome", &["ok", "forbidden", "too_many"]);
        labels(&drops, "reason", &["outbound_full"]);
        labels(
            &errors,
            "kind",
            &["dead_peer", "write_timeout", "protocol", "message_too_big"],
        );
        Metrics {
            registry: r,
            connections_active,
            connections_max,
            draining,
            handshakes,
            frames_in,
            frames_out,
            bytes_in,
            bytes_out,
            events,
            subscriptions,
            drops,
            errors,
            rebalanced,
            remote_sessions,
            hosted_sessions,
            remote_closed,
            handler_events,
            client_requests,
            presence_events,
            hook_calls,
            hook_seconds,
            hook_breaker,
            lifecycle,
        }
    }

    /// `ews_hook_calls_total{backend,hook,outcome}` and, for a call made,
    /// `ews_hook_duration_seconds{backend,hook}` (`None`: only create the series, at 0).
    pub fn hook_call(
        &self,
        backend: &'static str,
        hook: &'static str,
        outcome: &'static str,
        took: Option<std::time::Duration>,
    ) {
        let counter = self.hook_calls.get_or_create(&[
            ("backend", backend),
            ("hook", hook),
            ("outcome", outcome),
        ]);
        let latency = self
            .hook_seconds
            .get_or_create(&[("backend", backend), ("hook", hook)]);
        if let Some(took) = took {
            counter.inc();
            latency.observe(took.as_secs_f64());
        }
    }

    /// `ews_hook_breaker_state{backend}`.
    pub fn hook_breaker(&self, backend: &'static str, state: i64) {
        self.hook_breaker
            .get_or_create(&[("backend", backend)])
            .set(state);
    }

    /// `ews_client_requests_total{kind,outcome}`: publish (ok, forbidden, rate_limited,
    /// invalid, refused and backend_unavailable by its hook), rpc (ok, error, no_method, invalid), refresh (ok, refused, invalid), token
    /// (refresh_required, expired).
    pub fn client_request(&self, kind: &'static str, outcome: &'static str) {
        self.client_requests
            .get_or_create(&[("kind", kind), ("outcome", outcome)])
            .inc();
    }

    /// `ews_presence_events_total`.
    pub fn presence_events(&self, n: usize) {
        self.presence_events.inc_by(n as u64);
    }

    /// `ews_handler_events_total{handler,event}`: what a handler counts.
    pub fn handler_event(&self, handler: &'static str, event: &'static str) {
        self.handler_events
            .get_or_create(&[("handler", handler), ("event", event)])
            .inc();
    }

    /// `ews_remote_sessions_closed_total{why}`: handler_left (the handler node closed it, e.g.
    /// its drain), handler_lost (the stream broke: the handler node died or vanished), too_big
    /// (a message longer than the node link carries, closed with 1009), here (this node or the
    /// client ended it).
    pub fn remote_closed(&self, why: &'static str) {
        self.remote_closed.get_or_create(&[("why", why)]).inc();
    }

    /// `ews_handshakes_total{outcome}`: ok, unauthorized, over_capacity, draining, bad_request,
    /// not_found, timeout, evicted (silent at a full port, closed to make room).
    pub fn handshake(&self, outcome: &'static str) {
        self.handshakes.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// `ews_events_total{outcome}`: accepted, invalid, acked, nacked, sink_error.
    /// `ews_lifecycle_records_total{type,outcome}`.
    pub fn lifecycle(&self, kind: &'static str, outcome: &'static str) {
        self.lifecycle
            .get_or_create(&[("type", kind), ("outcome", outcome)])
            .inc();
    }

    pub fn event(&self, outcome: &'static str) {
        self.events.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// `ews_subscriptions_total{outcome}`: ok, forbidden, too_many.
    pub fn subscription(&self, outcome: &'static str) {
        self.subscriptions
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }

    /// `ews_rebalanced_total`.
    pub fn rebalanced(&self) {
        self.rebalanced.inc();
    }

    /// `ews_dropped_total{reason}`.
    pub fn dropped(&self, reason: &'static str) {
        self.drops.get_or_create(&[("reason", reason)]).inc();
    }

    /// `ews_errors_total{kind}`.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&[("kind", kind)]).inc();
    }

    pub fn frame_in(&self, bytes: usize) {
        self.frames_in.inc();
        self.bytes_in.inc_by(bytes as u64);
    }

    pub fn frame_out(&self, bytes: usize) {
        self.frames_out.inc();
        self.bytes_out.inc_by(bytes as u64);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_ews_prefix() {
        let m = Metrics::new();
        m.handshake("ok");
        m.connections_active.set(3);
        let text = m.render();
        assert!(
            text.contains("ews_handshakes_total{outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("ews_connections_active 3"), "{text}");
        // Before their first event, the counters are there at 0.
        assert!(
            text.contains("ews_events_total{outcome=\"acked\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("ews_errors_total{kind=\"dead_peer\"} 0"),
            "{text}"
        );
    }
}
