//! Backend hooks against the example backends a team copies: `examples/backend-http/backend.py`
//! (a real Python process checking the worker's signature) and `examples/backend-lambda` (served
//! by `cargo lambda watch`, invoked through the AWS SDK): each hook's accept, refusal and
//! rewrite, the `backend` handler's messages and rpcs; then a backend that hangs (timeouts, the
//! circuit opens, clients get 503 and `backend_unavailable`, the worker's memory stays put and
//! routes without hooks are unaffected) and one that answers garbage (a clear error).

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use ews_testkit::backend::HookBackend;
use ews_testkit::lambda::LocalLambda;
use ews_testkit::{bin_path, free_port, wait_for_http_ok, Proc, Scratch};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const JWT_SECRET: &str = "hooks-jwt-secret";
const HOOK_SECRET: &str = "hooks-signing-secret";

mod support;
use support::Ws;

/// A worker with hooked routes, its backend, and the files they share.
struct Setup {
    backend: Backends,
    worker: Proc,
    public: SocketAddr,
    admin: SocketAddr,
    _dir: Scratch,
}

/// The backend behind the hooks: the HTTP example, or the Lambda example served locally (held
/// for the worker's life).
enum Backends {
    Http(HookBackend),
    Lambda(#[allow(dead_code)] LocalLambda),
}

impl Setup {
    /// The HTTP example with `timeout_ms` and `breaker_open_ms`; `/chat` (ingest) has the
    /// session-level hooks, `/bot` is the backend handler's, `/ws` has none.
    fn http(timeout_ms: u64, breaker_open_ms: u64) -> Setup {
        let dir = Scratch::new("hooks");
        let secret = dir.join("hook-secret");
        std::fs::write(&secret, format!("{HOOK_SECRET}\n")).expect("secret file");
        let backend = HookBackend::start(Some(&secret));
        let app = json!({
            "url": backend.url(), "secretFile": secret, "timeoutMs": timeout_ms,
            "concurrency": 4, "breakerFailures": 3, "breakerOpenMs": breaker_open_ms
        });
        Setup::start(dir, app, Backends::Http(backend), &[])
    }

    /// The Lambda example behind `cargo lambda watch`, invoked through the AWS SDK.
    fn lambda() -> Setup {
        let dir = Scratch::new("hooks-lambda");
        let lambda = LocalLambda::start("ews-hooks-lambda");
        // The first invoke may wait for the function to poll.
        let app = json!({"lambda": lambda.function, "timeoutMs": 10_000});
        let endpoint = lambda.endpoint();
        let env = [
            ("AWS_ENDPOINT_URL_LAMBDA", endpoint.as_str()),
            ("AWS_REGION", "eu-central-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ];
        Setup::start(dir, app, Backends::Lambda(lambda), &env)
    }

    fn start(dir: Scratch, app: Value, backend: Backends, env: &[(&str, &str)]) -> Setup {
        let hooks = json!({
            "backends": {"app": app},
            "routes": {
                "/chat": {"backend": "app",
                          "hooks": ["connect", "subscribe", "publish", "refresh", "disconnect"]},
                "/bot": {"backend": "app", "hooks": ["connect", "message", "rpc"]}
            }
        });
        let file = dir.join("hooks.json");
        std::fs::write(&file, hooks.to_string()).expect("hooks file");
        let (public, admin): (SocketAddr, SocketAddr) = (
            ([127, 0, 0, 1], free_port()).into(),
            ([127, 0, 0, 1], free_port()).into(),
        );
        let mut cmd = Command::new(bin_path("ews-worker"));
        cmd.env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .args(["--listen", &public.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--jwt-hs256-secret", JWT_SECRET, "--sink", "stdout"])
            .args(["--routes", "/ws=ingest,/chat=ingest,/bot=backend"])
            .arg("--hooks-file")
            .arg(&file);
        let worker = Proc::spawn("ews-worker", cmd);
        wait_for_http_ok(public, "/info", Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("the worker did not start: {e}\n{}", worker.output()));
        Setup {
            backend,
            worker,
            public,
            admin,
            _dir: dir,
        }
    }

    /// The HTTP example backend.
    fn http_backend(&self) -> &HookBackend {
        match &self.backend {
            Backends::Http(b) => b,
            Backends::Lambda(_) => panic!("not an HTTP backend"),
        }
    }

    async fn connect(&self, path: &str, token: &str) -> Result<Ws, String> {
        let url = format!("ws://{}{path}?access_token={token}", self.public);
        tokio_tungstenite::connect_async(url)
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(r) => {
                    let body = r.body().as_deref().unwrap_or_default();
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    format!(
                        "{} {} retry-after={retry}",
                        r.status().as_u16(),
                        String::from_utf8_lossy(body)
                    )
                }
                e => e.to_string(),
            })
    }

    /// `/api/v1/presence?topic=T` on the worker's admin port.
    fn presence(&self, topic: &str) -> Value {
        let path = format!("/api/v1/presence?topic={topic}");
        let (code, body) = ews_testkit::net::http_request(self.admin, "GET", &path, &[], b"")
            .expect("the admin port answers");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    }

    fn metrics(&self) -> String {
        ews_testkit::http_get(self.admin, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// One sample's value from `/metrics` (0 if absent).
    fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.worker.pid()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

fn token(sub: &str, claims: Value) -> String {
    support::token(JWT_SECRET, sub, 600, claims)
}

async fn next(ws: &mut Ws, who: &str) -> Value {
    support::next_json(ws, who).await
}

async fn send(ws: &mut Ws, frame: Value) {
    support::send_json(ws, frame).await
}

/// Waits until `cond` holds of the backend's calls.
fn wait_calls(b: &HookBackend, what: &str, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let calls = b.calls();
        if cond(&calls) {
            return calls;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: the backend got {calls:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hook_accepts_refuses_and_rewrites_as_the_backend_says() {
    let s = Setup::http(2_000, 10_000);

    // connect: refused with the backend's status and reason.
    let banned = s
        .connect("/chat", &token("mallory", json!({"banned": true})))
        .await;
    let e = banned.expect_err("refused");
    assert!(e.starts_with("403 banned by the backend"), "{e}");

    // Accepted, with the backend's grants beyond the token's (which grants no topic at all):
    // alice's own room and the lobby.
    let mut alice = s
        .connect("/chat", &token("alice", json!({})))
        .await
        .unwrap();
    let mut bob = s.connect("/chat", &token("bob", json!({}))).await.unwrap();
    send(
        &mut alice,
        json!({"type": "subscribe", "topic": "room.lobby"}),
    )
    .await;
    assert_eq!(next(&mut alice, "alice").await["type"], "subscribed");
    send(
        &mut bob,
        json!({"type": "subscribe", "topic": "room.lobby"}),
    )
    .await;
    assert_eq!(next(&mut bob, "bob").await["type"], "subscribed");
    // And presence shows what the backend said about each at connect.
    assert_eq!(
        s.presence("room.lobby")["info"],
        json!({"alice": {"name": "Alice"}, "bob": {"name": "Bob"}})
    );
    // Not granted by either: the token decides first, the hook is not asked.
    send(
        &mut alice,
        json!({"type": "subscribe", "topic": "room.bob"}),
    )
    .await;
    assert_eq!(next(&mut alice, "alice").await["error"], "topic_forbidden");

    // subscribe: refused by the backend, with its reason (carol's token grants room.*).
    let mut carol = s
        .connect("/chat", &token("carol", json!({"topics": ["room.*"]})))
        .await
        .unwrap();
    send(
        &mut carol,
        json!({"type": "subscribe", "topic": "room.staff"}),
    )
    .await;
    let refused = next(&mut carol, "carol").await;
    assert_eq!(
        (&refused["error"], &refused["detail"], &refused["topic"]),
        (
            &json!("topic_forbidden"),
            &json!("staff only"),
            &json!("room.staff")
        ),
        "{refused}"
    );

    // publish: rewritten, then refused.
    send(
        &mut alice,
        json!({"type": "publish", "topic": "room.lobby", "msg": "darn it", "id": "p1"}),
    )
    .await;
    let mut heard = vec![
        next(&mut alice, "alice").await,
        next(&mut alice, "alice").await,
    ];
    heard.sort_by_key(|f| f["type"].to_string());
    assert_eq!(heard[0]["type"], "published", "{heard:?}");
    assert_eq!(heard[1]["msg"], "d**n it", "{heard:?}");
    assert_eq!(next(&mut bob, "bob").await["msg"], "d**n it");
    send(
        &mut alice,
        json!({"type": "publish", "topic": "room.lobby", "msg": "buy spam", "id": "p2"}),
    )
    .await;
    let refused = next(&mut alice, "alice").await;
    assert_eq!(
        (&refused["error"], &refused["detail"], &refused["id"]),
        (
            &json!("publish_forbidden"),
            &json!("looks like spam"),
            &json!("p2")
        ),
        "{refused}"
    );

    // refresh: asked with the new token's claims.
    let fresh = token("alice", json!({"fresh": 1}));
    send(&mut alice, json!({"type": "refresh", "token": fresh})).await;
    assert_eq!(next(&mut alice, "alice").await["type"], "refreshed");

    // disconnect: told why.
    alice.close(None).await.expect("closed");
    let calls = wait_calls(s.http_backend(), "alice's disconnect", |c| {
        c.iter()
            .any(|c| c["hook"] == "disconnect" && c["clientId"] == "alice")
    });
    let hooks: Vec<(String, String)> = calls
        .iter()
        .filter(|c| c["clientId"] == "alice")
        .map(|c| {
            (
                c["hook"].as_str().unwrap_or("").to_string(),
                c["route"].to_string(),
            )
        })
        .collect();
    let kinds: Vec<&str> = hooks.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "connect",
            "subscribe",
            "publish",
            "publish",
            "refresh",
            "disconnect"
        ],
        "{calls:#?}"
    );
    let disconnect = calls
        .iter()
        .find(|c| c["hook"] == "disconnect" && c["clientId"] == "alice")
        .expect("disconnect");
    assert_eq!(disconnect["reason"], "client_left");
    assert_eq!(disconnect["route"], "/chat");
    let refresh = calls
        .iter()
        .find(|c| c["hook"] == "refresh")
        .expect("refresh");
    assert_eq!(refresh["claims"]["fresh"], 1, "the new token's claims");
    // Every call carried the session's identity (the backend only records signed calls).
    let connect = calls
        .iter()
        .find(|c| c["hook"] == "connect" && c["clientId"] == "alice")
        .expect("alice's connect");
    assert!(
        connect["node"].is_string() && connect["session"].is_u64(),
        "{connect}"
    );

    // The backend handler: messages and rpcs go to the backend.
    let mut dan = s.connect("/bot", &token("dan", json!({}))).await.unwrap();
    dan.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        dan.next().await.unwrap().unwrap(),
        Message::text("backend got: hello")
    );
    send(
        &mut dan,
        json!({"type": "rpc", "id": 1, "method": "echo", "data": {"x": [1, 2]}}),
    )
    .await;
    assert_eq!(
        next(&mut dan, "dan").await,
        json!({"type": "reply", "id": 1, "data": {"x": [1, 2]}})
    );
    send(&mut dan, json!({"type": "rpc", "id": 2, "method": "nope"})).await;
    assert_eq!(next(&mut dan, "dan").await["error"]["code"], "no_method");

    let m = s.metrics();
    assert!(
        m.contains(r#"ews_hook_calls_total{backend="app",hook="connect",outcome="ok"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"ews_hook_breaker_state{backend="app"} 0"#),
        "{m}"
    );
    assert!(
        m.contains(r#"ews_handshakes_total{outcome="hook_refused"} 1"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_garbage_backend_never_takes_the_worker_down() {
    let s = Setup::http(300, 1_500);
    let mut early = s
        .connect("/chat", &token("erin", json!({"publish": ["room.*"]})))
        .await
        .unwrap();
    let mut bot = s.connect("/bot", &token("fay", json!({}))).await.unwrap();
    s.http_backend().mode("hang");
    let rss_before = s.rss_kib();

    // A connect that times out (and is retried once: connect is safe to repeat) gets 503 with
    // Retry-After.
    let e = s
        .connect("/chat", &token("gus", json!({})))
        .await
        .expect_err("503");
    assert!(
        e.starts_with("503 backend unavailable retry-after=5"),
        "{e}"
    );

    // A publish and a message are answered backend_unavailable; the sessions go on.
    send(
        &mut early,
        json!({"type": "publish", "topic": "room.x", "msg": "hi", "id": "p1"}),
    )
    .await;
    let f = next(&mut early, "erin").await;
    assert_eq!(
        (&f["error"], &f["id"]),
        (&json!("backend_unavailable"), &json!("p1")),
        "{f}"
    );
    bot.send(Message::text("anyone?")).await.unwrap();
    assert_eq!(next(&mut bot, "fay").await["error"], "backend_unavailable");

    // By now the circuit is open: calls fail at once, hundreds of clients at a time, and the
    // worker holds nothing for them.
    let m = s.metrics();
    assert!(
        m.contains(r#"ews_hook_breaker_state{backend="app"} 1"#),
        "{m}"
    );
    let connect_calls = |outcome: &str| {
        s.metric(&format!(
            r#"ews_hook_calls_total{{backend="app",hook="connect",outcome="{outcome}"}}"#
        ))
    };
    let (open_before, timeouts_before) = (connect_calls("circuit_open"), connect_calls("timeout"));
    let attempts: Vec<_> = (0..200)
        .map(|i| {
            let t = token(&format!("crowd-{i}"), json!({}));
            let url = format!("ws://{}/chat?access_token={t}", s.public);
            tokio::spawn(async move { tokio_tungstenite::connect_async(url).await.is_ok() })
        })
        .collect();
    for a in attempts {
        assert!(!a.await.unwrap(), "refused while the circuit is open");
    }
    // Every one was answered by the open circuit itself: none waited on the hung backend.
    assert_eq!(connect_calls("circuit_open") - open_before, 200.0);
    assert_eq!(connect_calls("timeout"), timeouts_before);
    // A route without hooks is unaffected.
    let plain = s.connect("/ws", &token("hal", json!({}))).await;
    assert!(plain.is_ok(), "{plain:?}");
    let grew = s.rss_kib().saturating_sub(rss_before);
    assert!(
        grew < 30 * 1024,
        "RSS grew {grew} KiB while the backend hung"
    );

    // Garbage: after the open time a probe is let through, fails as invalid, and the circuit
    // opens again.
    s.http_backend().mode("garbage");
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let e = s
        .connect("/chat", &token("ivy", json!({})))
        .await
        .expect_err("503");
    assert!(e.starts_with("503"), "{e}");
    let m = s.metrics();
    assert!(
        m.contains(r#"ews_hook_calls_total{backend="app",hook="connect",outcome="invalid"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"ews_hook_calls_total{backend="app",hook="connect",outcome="circuit_open"}"#),
        "{m}"
    );

    // Healthy again: the next probe closes the circuit and clients connect.
    s.http_backend().mode("ok");
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let ok = s.connect("/chat", &token("jo", json!({}))).await;
    assert!(ok.is_ok(), "{ok:?}\n{}", s.worker.output());
    assert!(s
        .metrics()
        .contains(r#"ews_hook_breaker_state{backend="app"} 0"#));
    assert!(
        !s.worker.output().contains("panicked"),
        "{}",
        s.worker.output()
    );
}

/// The same decisions from the Lambda example, invoked through the AWS SDK against
/// `cargo lambda watch` (the worker's endpoint override, as a team runs it locally).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_backend_decides_through_the_lambda_invoke_api() {
    let s = Setup::lambda();
    let e = s
        .connect("/chat", &token("mallory", json!({"banned": true})))
        .await
        .expect_err("refused");
    assert!(e.starts_with("403 banned by the backend"), "{e}");

    let mut alice = s
        .connect("/chat", &token("alice", json!({})))
        .await
        .unwrap();
    send(
        &mut alice,
        json!({"type": "subscribe", "topic": "room.alice"}),
    )
    .await;
    assert_eq!(next(&mut alice, "alice").await["type"], "subscribed");
    assert_eq!(
        s.presence("room.alice")["info"],
        json!({"alice": {"name": "Alice"}})
    );
    send(
        &mut alice,
        json!({"type": "publish", "topic": "room.alice", "msg": "oh darn", "id": "p1"}),
    )
    .await;
    let mut heard = vec![
        next(&mut alice, "alice").await,
        next(&mut alice, "alice").await,
    ];
    heard.sort_by_key(|f| f["type"].to_string());
    assert_eq!(heard[1]["msg"], "oh d**n", "{heard:?}");

    let mut bot = s.connect("/bot", &token("bo", json!({}))).await.unwrap();
    bot.send(Message::text("ping")).await.unwrap();
    assert_eq!(
        bot.next().await.unwrap().unwrap(),
        Message::text("backend got: ping")
    );
    send(
        &mut bot,
        json!({"type": "rpc", "id": 7, "method": "echo", "data": [1, "two"]}),
    )
    .await;
    assert_eq!(
        next(&mut bot, "bo").await,
        json!({"type": "reply", "id": 7, "data": [1, "two"]})
    );
    let m = s.metrics();
    assert!(
        m.contains(r#"ews_hook_calls_total{backend="app",hook="rpc",outcome="ok"} 1"#),
        "{m}"
    );
}
