//! The chat example (`examples/chat`, a handler a team writes on the worker library) in a real
//! cluster: three `ews-chat` workers and two leaders, behind a round-robin nginx. Two Chromium
//! pages and one Node.js client (`clients/js/e2e/chat.mjs`) join rooms, speak, ask the handler
//! who is there (an rpc), publish straight to a room (a client publish), hear the worker's
//! join/leave frames (`+presence` routes), leave and close;
//! two of them on a route that places the chat handler with key-hash, where the test makes sure
//! at least one session's handler runs on another worker than its socket. And a worker without
//! the handler refuses to host it, so placement falls back to one that has it.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use ews_testkit::jwt::client_token;
use ews_testkit::net;
use ews_testkit::nginx::RoundRobin;
use ews_testkit::nodes::{Node, NodeSpec};
use ews_testkit::{workspace_root, Proc};

mod support;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "chat-cluster-secret";
const JWT_SECRET: &str = "chat-jwt-secret";
const ADMIN_TOKEN: &str = "chat-admin-token";
const ROUTES: &str = "/ws=ingest,/chat=chat+presence,/remote=chat@key-hash+presence";

fn worker(id: &str, seeds: &[SocketAddr]) -> Node {
    worker_with("ews-chat", ROUTES, id, seeds)
}

/// `binary` (a worker built on the library) in the cluster, serving `routes`.
fn worker_with(binary: &str, routes: &str, id: &str, seeds: &[SocketAddr]) -> Node {
    Node::worker_of(
        binary,
        &NodeSpec {
            extra: &[
                "--cluster-secret",
                SECRET,
                "--admin-token",
                ADMIN_TOKEN,
                "--routes",
                routes,
                "--rebalance-rate",
                "0",
                "--test-page",
            ],
            jwt_hs256_secret: Some(JWT_SECRET),
            ..NodeSpec::new(id, seeds)
        },
    )
}

fn admin_get(node: &Node, path: &str) -> Value {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    match net::http_request(node.admin, "GET", path, &[("Authorization", &auth)], b"") {
        Ok((200, body)) => serde_json::from_str(&body).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn serving(node: &Node) -> usize {
    support::serving_workers(node, ADMIN_TOKEN).len()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A session of `sub` on `door`'s `path`, and the node its handler runs on (the `101`'s
/// `x-ews-handler-node`).
async fn connect(door: SocketAddr, path: &str, sub: &str) -> (Ws, String) {
    let token = client_token(JWT_SECRET, sub, &[]);
    let req = format!("ws://{door}{path}?access_token={token}")
        .into_client_request()
        .expect("a request");
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.expect("served");
    let node = resp.headers()["x-ews-handler-node"]
        .to_str()
        .expect("ascii")
        .to_string();
    (ws, node)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The node the `/remote` route places `sub`'s handler on (key-hash: the same from any socket
/// worker).
fn handler_node_of(sub: &str, door: SocketAddr) -> String {
    runtime().block_on(async {
        let (mut ws, node) = connect(door, "/remote", sub).await;
        let _ = ws.close(None).await;
        node
    })
}

fn chat_token(sub: &str, name: Option<&str>) -> String {
    let now = ews_proto::now_ms() / 1000;
    // Members may publish straight to the chat rooms' topics.
    let mut claims =
        serde_json::json!({"sub": sub, "iat": now, "exp": now + 600, "publish": ["chat.*"]});
    if let Some(n) = name {
        claims["name"] = n.into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("a token")
}

/// Dan uses the TypeScript client: he joins the lobby's topic himself (the session answers the
/// subscribe), so his token grants it.
fn dan_token() -> String {
    let now = ews_proto::now_ms() / 1000;
    let claims = serde_json::json!({"sub": "dan", "iat": now, "exp": now + 600,
        "topics": ["chat.*"], "publish": ["chat.*"]});
    ews_testkit::jwt::signed(JWT_SECRET, &claims)
}

#[test]
fn two_browsers_and_a_node_client_chat_through_a_handler_placed_on_other_workers() {
    let js = workspace_root().join("clients/js");
    assert!(
        js.join("node_modules/playwright-core").is_dir(),
        "clients/js dependencies missing: run `bash scripts/tools/client-js.sh`"
    );
    let (_leaders, seeds) =
        Node::leader_pair(&["--cluster-secret", SECRET, "--admin-token", ADMIN_TOKEN]);
    let workers: Vec<Node> = (1..=3)
        .map(|i| worker(&format!("worker-{i}"), &seeds))
        .collect();
    let start = Instant::now();
    while !workers.iter().all(|w| serving(w) == 3) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the workers never all saw each other serving"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let publics: Vec<SocketAddr> = workers.iter().filter_map(|w| w.public).collect();
    let lb = RoundRobin::start(&publics);

    // Bob and Carol get subjects whose key-hash handler is the same worker: the round robin
    // puts their sockets on different workers, so at least one handler runs away from its socket.
    let probe = publics[0];
    let bob = "bob".to_string();
    let target = handler_node_of(&bob, probe);
    let carol = (0..200)
        .map(|i| format!("carol-{i}"))
        .find(|c| handler_node_of(c, probe) == target)
        .expect("a subject hashing to the same worker");

    let mut cmd = Command::new("node");
    cmd.current_dir(&js)
        .arg("e2e/chat.mjs")
        .args(["--lb", &lb.addr.to_string()])
        .args(["--local", "/chat", "--remote", "/remote"])
        .args(["--ann", &chat_token("ann", Some("Ann"))])
        .args(["--bob", &chat_token(&bob, Some("Bob"))])
        .args(["--carol", &chat_token(&carol, Some("Carol"))])
        .args(["--bob-name", "Bob", "--carol-name", "Carol"])
        .args(["--carol-id", &carol])
        .args(["--dan", &dan_token()]);
    let mut driver = Proc::spawn("chat-driver", cmd);
    // While they chat: where each session's socket and handler are.
    let placed = remote_sessions_while(&mut driver, &workers, &[&bob, &carol]);
    let status = driver.wait_timeout(Duration::from_secs(120));
    let out = driver.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "the chat failed:\n{out}"
    );
    let result: Value = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|j| serde_json::from_str(j).ok())
        .expect("a RESULT line");

    assert!(
        placed.len() >= 2,
        "bob's and carol's sessions seen: {placed:?}"
    );
    assert!(
        placed.iter().any(|(socket, handler)| socket != handler),
        "a key-hash session's handler runs on another worker than its socket: {placed:?}"
    );
    // Everyone is heard by their token's name claim (for Bob or Carol read on another worker
    // than their socket's); Carol's room-only message never reached Ann.
    let ann = result["ann"].as_array().expect("ann heard");
    assert!(
        !ann.iter().any(|e| e["room"] == "ops"),
        "ann is not in ops: {ann:?}"
    );
    let bob_members = result["bobSawMembers"].as_array().expect("members");
    assert!(
        bob_members.iter().any(|m| m == "ann") && bob_members.iter().any(|m| *m == *bob),
        "bob's member list has ann and bob: {bob_members:?}"
    );
    // The handler's answer to who: everyone in the lobby, cluster-wide.
    let who = result["bobAskedWho"].as_array().expect("who answered");
    for m in ["ann", bob.as_str(), carol.as_str()] {
        assert!(who.iter().any(|w| w == m), "{m} is in the lobby: {who:?}");
    }
    // Dan's TypeScript client in Chromium: asked who (Ann and Carol are still there), a method
    // the handler lacks is `no_method`, his publish reached the lobby's sessions (his own too),
    // and a topic his token does not grant is refused.
    let dan = &result["dan"];
    let dan_who = dan["who"].as_array().expect("dan asked who");
    assert!(
        dan_who.iter().any(|w| w == "ann") && dan_who.iter().any(|w| w == "dan"),
        "{dan}"
    );
    assert_eq!(dan["refused"], "no_method", "{dan}");
    assert!(dan["reached"].as_u64().is_some_and(|n| n >= 3), "{dan}");
    assert_eq!(dan["forbidden"], "publish_forbidden", "{dan}");
    let carol_heard = result["carol"].as_array().expect("carol heard");
    assert!(
        carol_heard
            .iter()
            .any(|e| e["event"] == "said" && e["from"] == "Ann" && e["topic"] == "chat.lobby"),
        "carol heard Ann in the lobby, as a push on its topic: {carol_heard:?}"
    );
}

/// A worker without the chat handler (plain `ews-worker`) refuses to host it: a chat worker
/// placing `chat@random` falls back past it, so every client is served, by the chat worker.
#[test]
fn a_worker_without_the_handler_refuses_it_and_placement_falls_back() {
    let (_leaders, seeds) =
        Node::leader_pair(&["--cluster-secret", SECRET, "--admin-token", ADMIN_TOKEN]);
    let chat = worker_with("ews-chat", "/anywhere=chat@random", "chat-worker", &seeds);
    // Same cluster, the built-in handlers only.
    let plain = worker_with("ews-worker", "/ws=ingest", "plain-worker", &seeds);
    let start = Instant::now();
    while !(serving(&chat) == 2 && serving(&plain) == 2) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the workers never saw each other serving"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let door = chat.public.expect("a public port");
    let rt = runtime();
    let refused = |log: &str| {
        log.lines()
            .any(|l| l.contains("remote handler refused") && l.contains("404 Not Found"))
    };
    // Random rankings put the plain worker first about every other time: connect until it has
    // said no at least once; every client is served by the chat worker all the same.
    let mut i = 0;
    while !refused(&chat.proc.output()) {
        i += 1;
        assert!(
            i <= 200,
            "the plain worker was never asked:\n{}",
            chat.proc.output()
        );
        let node = rt.block_on(async {
            use futures_util::{SinkExt, StreamExt};
            // Served, whichever worker was ranked first.
            let (mut ws, node) = connect(door, "/anywhere", &format!("user-{i}")).await;
            let join = r#"{"do":"join","room":"lobby"}"#;
            ws.send(join.into()).await.expect("sent");
            let answer = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("an answer in time");
            let Some(Ok(msg)) = answer else {
                panic!("the chat handler answers: {answer:?}");
            };
            assert!(msg.to_text().unwrap_or("").contains("members"), "{msg:?}");
            let _ = ws.close(None).await;
            node
        });
        assert_eq!(node, "chat-worker");
    }
}

/// Every `/remote` session of `clients` seen while `driver` runs, as (socket worker, handler
/// worker). Only theirs: a probe's session may still be closing when the driver starts.
fn remote_sessions_while(
    driver: &mut Proc,
    workers: &[Node],
    clients: &[&str],
) -> Vec<(String, String)> {
    let start = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    while driver.is_running() && start.elapsed() < Duration::from_secs(120) {
        for w in workers {
            for s in admin_get(w, "/api/v1/sessions")
                .as_array()
                .into_iter()
                .flatten()
            {
                let client = s["clientId"].as_str().unwrap_or("");
                if s["route"] == "/remote" && clients.contains(&client) {
                    seen.insert((
                        client.to_string(),
                        w.node_id.clone(),
                        s["handlerNode"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen.into_iter()
        .map(|(_, socket, handler)| (socket, handler))
        .collect()
}
