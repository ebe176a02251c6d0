//! Cluster sessions: a client's socket on one worker, its handler on another, over the signed
//! HTTP/2 node link. Real `ews-leader` and `ews-worker` processes on loopback with a cluster
//! secret and HS256 client tokens; tokio-tungstenite clients.
//!
//! - every placement (`local`, `random`, `least-loaded`, `key-hash`) hands sessions to the
//!   worker it should, and the greeting comes back from there (`x-ews-handler-node`,
//!   `/api/v1/sessions`);
//! - key-hash keeps a client on one handler node across reconnects and socket nodes, and a node
//!   leaving moves only the clients it had;
//! - a client that never reads, behind a remote handler, keeps both workers' memory bounded;
//! - killing the handler node closes its sessions with 1011 at once, SIGTERM with 1012 within
//!   its drain window, and the reconnect lands on a live node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod support;

use ews_testkit::net;
use ews_testkit::nodes::{Node, NodeSpec};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::metric;
use support::serving_workers;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SECRET: &str = "sessions-cluster-secret";
const JWT_SECRET: &str = "sessions-jwt-secret";
const ADMIN_TOKEN: &str = "sessions-admin-token";
const ROUTES: &str = "/ws=ingest,/greet=greet@random,/least=greet@least-loaded,/sticky=greet@key-hash,/here=greet,/echo=echo@key-hash";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Cluster {
    _leaders: [Node; 2],
    workers: Vec<Node>,
}

fn worker(id: &str, seeds: &[SocketAddr], extra: &[&str]) -> Node {
    let mut args = vec![
        "--cluster-secret",
        SECRET,
        "--admin-token",
        ADMIN_TOKEN,
        "--routes",
        ROUTES,
        // Sessions stay where they are put: these tests count them.
        "--rebalance-rate",
        "0",
    ];
    args.extend_from_slice(extra);
    Node::worker(&NodeSpec {
        extra: &args,
        jwt_hs256_secret: Some(JWT_SECRET),
        ..NodeSpec::new(id, seeds)
    })
}

impl Cluster {
    /// Two leaders and `n` workers (`worker-1`..), every worker seeing every other as serving.
    fn start(n: usize, extra: &[&str]) -> Cluster {
        let (leaders, seeds) =
            Node::leader_pair(&["--cluster-secret", SECRET, "--admin-token", ADMIN_TOKEN]);
        let workers: Vec<Node> = (1..=n)
            .map(|i| worker(&format!("worker-{i}"), &seeds, extra))
            .collect();
        let c = Cluster {
            _leaders: leaders,
            workers,
        };
        for w in &c.workers {
            c.wait_serving(w, n);
        }
        c
    }

    /// Waits until `from` sees exactly `n` serving workers.
    fn wait_serving(&self, from: &Node, n: usize) {
        let start = Instant::now();
        loop {
            let serving = serving_workers(from, ADMIN_TOKEN);
            if serving.len() == n {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{} sees {serving:?}, not {n} serving workers",
                from.node_id
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The connections `from` sees `node` carrying.
fn conns_seen(from: &Node, node: &str) -> u64 {
    let Ok((200, body)) = net::http_request(
        from.admin,
        "GET",
        "/members",
        &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        b"",
    ) else {
        return 0;
    };
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["node_id"] == node)
        .and_then(|m| m["conns"].as_u64())
        .unwrap_or(0)
}

fn token(sub: &str) -> String {
    ews_testkit::jwt::client_token(JWT_SECRET, sub, &[])
}

/// Connects `sub` to `path` on `worker`: the socket and the handler node the 101 names.
async fn connect(worker: &Node, path: &str, sub: &str) -> (Ws, String) {
    let url = format!(
        "ws://{}{path}?access_token={}",
        worker.public.expect("a worker"),
        token(sub)
    );
    let req = url.into_client_request().unwrap();
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .unwrap_or_else(|e| panic!("{sub} to {path} on {}: {e}", worker.node_id));
    let node = resp
        .headers()
        .get("x-ews-handler-node")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (ws, node)
}

/// Sends `s`, expects the greeting back.
async fn greet(ws: &mut Ws, s: &str) {
    ws.send(Message::text(s)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a reply within 5 s")
        .expect("open")
        .expect("a message");
    assert_eq!(reply, Message::text(format!("Hello {s}!")));
}

/// The close code a client sees next (skipping other frames), and how long it took.
async fn close_code(ws: &mut Ws, within: Duration) -> (u16, String, Duration) {
    let start = Instant::now();
    loop {
        let msg = tokio::time::timeout(within.saturating_sub(start.elapsed()), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no close within {within:?}"));
        match msg {
            Some(Ok(Message::Close(frame))) => {
                let took = start.elapsed();
                // Finish the closing handshake, as a client does.
                while let Ok(Some(Ok(_))) =
                    tokio::time::timeout(Duration::from_secs(5), ws.next()).await
                {}
                return frame.map_or((1005, String::new(), took), |f| {
                    (u16::from(f.code), f.reason.to_string(), took)
                });
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket failed instead of closing: {e}"),
            None => panic!("socket ended without a close frame"),
        }
    }
}

fn rss_kib(node: &Node) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.proc.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// A client id whose key-hash handler, seen from `via`, is `want`.
async fn client_handled_on(via: &Node, want: &str) -> String {
    for i in 0..200 {
        let sub = format!("probe-{i}");
        let (mut ws, node) = connect(via, "/sticky", &sub).await;
        let _ = ws.close(None).await;
        if node == want {
            return sub;
        }
    }
    panic!("no client id hashed to {want} in 200 tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_placement_hands_sessions_to_the_worker_it_should() {
    let c = Cluster::start(3, &[]);
    let a = &c.workers[0];

    // local: always here.
    for i in 0..5 {
        let (mut ws, node) = connect(a, "/here", &format!("local-{i}")).await;
        assert_eq!(node, "worker-1");
        greet(&mut ws, "local").await;
    }

    // random: over time every worker, and the greeting comes back from wherever it ran.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut held = Vec::new();
    for i in 0..30 {
        let (mut ws, node) = connect(a, "/greet", &format!("random-{i}")).await;
        greet(&mut ws, &format!("s{i}")).await;
        *seen.entry(node).or_default() += 1;
        held.push(ws);
    }
    println!("random placement of 30 sessions accepted on worker-1: {seen:?}");
    assert_eq!(
        seen.len(),
        3,
        "30 random placements reach all three: {seen:?}"
    );
    // The sessions API names each session's handler node; the gauges count both ends.
    let (code, body) = net::http_request(
        a.admin,
        "GET",
        "/api/v1/sessions",
        &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        b"",
    )
    .unwrap();
    assert_eq!(code, 200);
    let sessions: Vec<Value> = serde_json::from_str(&body).unwrap();
    let listed = sessions
        .iter()
        .filter(|s| s["route"] == "/greet" && s["handlerNode"] != "worker-1")
        .count();
    let remote = seen
        .iter()
        .filter(|(n, _)| *n != "worker-1")
        .map(|(_, k)| k)
        .sum::<usize>();
    assert_eq!(listed, remote, "{body}");
    assert_eq!(metric(a, "ews_remote_sessions") as usize, remote);
    let hosted: f64 = c.workers[1..]
        .iter()
        .map(|w| metric(w, "ews_hosted_sessions"))
        .sum();
    assert_eq!(hosted as usize, remote);
    drop(held);

    // least-loaded: worker-1 and worker-2 carry clients, worker-3 none: it gets them.
    let mut load = Vec::new();
    for (w, n) in [(0, 40), (1, 20)] {
        for i in 0..n {
            load.push(
                connect(&c.workers[w], "/ws", &format!("load-{w}-{i}"))
                    .await
                    .0,
            );
        }
    }
    // Until worker-1 sees the loads (sampled every 250 ms, probed every gossip round).
    let start = Instant::now();
    while !(conns_seen(a, "worker-1") >= 40 && conns_seen(a, "worker-2") >= 20) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "worker-1 never saw the loads"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..5 {
        let (mut ws, node) = connect(a, "/least", &format!("ll-{i}")).await;
        assert_eq!(node, "worker-3", "the least loaded");
        greet(&mut ws, "least").await;
    }

    // key-hash: the same client on the same handler node, whichever worker holds the socket.
    for sub in ["alice", "bob", "carol", "dave"] {
        let mut nodes = Vec::new();
        for via in &c.workers {
            for _ in 0..2 {
                let (mut ws, node) = connect(via, "/sticky", sub).await;
                greet(&mut ws, sub).await;
                nodes.push(node);
            }
        }
        nodes.dedup();
        assert_eq!(nodes.len(), 1, "{sub} went to {nodes:?}");
    }
    // Many messages in flight at once come back complete and in order.
    let (mut ws, node) = connect(a, "/sticky", &client_handled_on(a, "worker-3").await).await;
    assert_eq!(node, "worker-3");
    for i in 0..200 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    for i in 0..200 {
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a reply within 5 s");
        assert_eq!(
            reply.unwrap().unwrap(),
            Message::text(format!("Hello m{i}!"))
        );
    }
    // Binary frames cross too (echo@key-hash).
    let sub = client_handled_on(a, "worker-2").await;
    let (mut ws, node) = connect(a, "/echo", &sub).await;
    assert_eq!(node, "worker-2");
    // 60,000 bytes: several HTTP/2 DATA frames (16 KiB each), most of a stream window.
    let payload = vec![7u8; 60_000];
    ws.send(Message::binary(payload.clone())).await.unwrap();
    let back = ws.next().await.unwrap().unwrap();
    assert!(
        back == Message::binary(payload),
        "the binary message came back changed ({} bytes)",
        back.len()
    );
    // A message at the route's limit (64 KiB) through a remote greet: the greeting makes the
    // reply longer than anything a client may send, and the link still carries it.
    let sub = client_handled_on(a, "worker-2").await;
    let (mut ws, node) = connect(a, "/sticky", &sub).await;
    assert_eq!(node, "worker-2");
    let big = "g".repeat(64 * 1024);
    ws.send(Message::text(big.clone())).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a reply within 5 s")
        .expect("open")
        .expect("a message, not a close");
    assert!(
        back == Message::text(format!("Hello {big}!")),
        "the greeting came back as {} bytes: {:?}",
        back.len(),
        back.to_text()
            .map(|t| t.chars().take(80).collect::<String>())
    );
    greet(&mut ws, "still open").await;
}

const CLIENTS: usize = 60;

/// The key-hash handler node of `client-0`.. `client-59`, connecting through `via`.
async fn owners(via: &Node) -> Vec<String> {
    let mut owners = Vec::new();
    for i in 0..CLIENTS {
        let (mut ws, node) = connect(via, "/sticky", &format!("client-{i}")).await;
        let _ = ws.close(None).await;
        owners.push(node);
    }
    owners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_hash_moves_only_the_clients_of_the_node_that_left() {
    let mut c = Cluster::start(3, &["--drain-seconds", "1"]);
    let before = owners(&c.workers[0]).await;
    let on_3 = before.iter().filter(|n| *n == "worker-3").count();
    assert!(
        on_3 > 0 && on_3 < CLIENTS,
        "worker-3 owns {on_3} of {CLIENTS}"
    );

    // worker-3 leaves (SIGTERM: drain, then gone).
    let w3 = c.workers.pop().unwrap();
    w3.proc.signal(libc::SIGTERM);
    c.wait_serving(&c.workers[0], 2);
    let after = owners(&c.workers[0]).await;
    let moved: Vec<usize> = (0..CLIENTS).filter(|&i| before[i] != after[i]).collect();
    for &i in &moved {
        assert_eq!(
            before[i], "worker-3",
            "client-{i} moved off a node that stayed"
        );
        assert_ne!(after[i], "worker-3");
    }
    assert_eq!(moved.len(), on_3);
    println!(
        "key-hash: {CLIENTS} clients, worker-3 owned {on_3}; after it left {} moved, all of them worker-3's",
        moved.len()
    );
    drop(w3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_keeps_both_workers_memory_bounded() {
    let c = Cluster::start(2, &[]);
    let (a, b) = (&c.workers[0], &c.workers[1]);
    let sub = client_handled_on(a, "worker-2").await;
    let (mut ws, node) = connect(a, "/sticky", &sub).await;
    assert_eq!(node, "worker-2");
    greet(&mut ws, "warm-up").await;
    let (a0, b0) = (rss_kib(a), rss_kib(b));

    // 1 KiB messages, each answered with a greeting the client never reads, until sending
    // blocks: every buffer on the way is full and back-pressure holds the client.
    let msg = "x".repeat(1024);
    let mut sent = 0usize;
    let blocked = loop {
        match tokio::time::timeout(Duration::from_secs(3), ws.send(Message::text(msg.as_str())))
            .await
        {
            Ok(Ok(())) => sent += 1,
            Ok(Err(e)) => panic!("send failed after {sent}: {e}"),
            Err(_) => break true,
        }
        if sent >= 200_000 {
            break false;
        }
    };
    assert!(
        blocked,
        "200 MB sent without the client ever being held back"
    );
    let (a1, b1) = (rss_kib(a), rss_kib(b));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (a2, b2) = (rss_kib(a), rss_kib(b));
    println!(
        "a client that never reads: {sent} KiB sent before sending blocked; RSS socket node {a0} -> {a1} -> {a2} KiB, handler node {b0} -> {b1} -> {b2} KiB"
    );
    // What may sit in the processes: the HTTP/2 stream window (64 KiB) and send buffer, the
    // stream's queue (16 messages) and one message each way; a few MiB of allocator slack.
    for (name, before, peak) in [("socket", a0, a1.max(a2)), ("handler", b0, b1.max(b2))] {
        assert!(
            peak <= before + 8 * 1024,
            "{name} node grew from {before} to {peak} KiB for one stalled session"
        );
    }
}

/// Sessions accepted on worker-1 whose handlers run on worker-2.
async fn sessions_handled_on_2(c: &Cluster, n: usize) -> Vec<Ws> {
    let a = &c.workers[0];
    let mut v = Vec::new();
    for i in 0..200 {
        let (mut ws, node) = connect(a, "/sticky", &format!("victim-{i}")).await;
        if node == "worker-2" {
            greet(&mut ws, "before").await;
            v.push(ws);
            if v.len() == n {
                return v;
            }
        }
    }
    panic!("fewer than {n} of 200 clients hashed to worker-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_handler_node_closes_its_sessions_with_1011_and_reconnects_land_on_a_live_one()
{
    let mut c = Cluster::start(3, &[]);
    let mut victims = sessions_handled_on_2(&c, 5).await;
    let mut w2 = c.workers.remove(1);
    let a = &c.workers[0];
    w2.proc.kill();
    for ws in &mut victims {
        // At once: the kernel resets the dead process's connection (the wait fails at 10 s).
        let (code, reason, took) = close_code(ws, Duration::from_secs(10)).await;
        assert_eq!((code, reason.as_str()), (1011, "handler node lost"));
        println!("closed with 1011 {took:?} after the kill");
    }
    let start = Instant::now();
    while metric(a, "ews_remote_sessions") != 0.0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "remote sessions still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The reconnects: never placed on the dead node once the view has dropped it.
    c.wait_serving(a, 2);
    for i in 0..5 {
        let (mut ws, node) = connect(a, "/sticky", &format!("victim-{i}")).await;
        assert_ne!(node, "worker-2");
        greet(&mut ws, "after").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_handler_node_closes_its_sessions_with_1012_within_its_drain_window() {
    let mut c = Cluster::start(3, &["--drain-seconds", "2"]);
    let mut victims = sessions_handled_on_2(&c, 5).await;
    let w2 = c.workers.remove(1);
    let a = &c.workers[0];
    w2.proc.signal(libc::SIGTERM);
    for ws in &mut victims {
        let (code, reason, took) = close_code(ws, Duration::from_secs(10)).await;
        assert_eq!((code, reason.as_str()), (1012, "server draining"));
        assert!(
            took <= Duration::from_secs(3),
            "within the 2 s drain window: {took:?}"
        );
    }
    // Leaving at once: new sessions go elsewhere while it still drains.
    for i in 0..5 {
        let (mut ws, node) = connect(a, "/sticky", &format!("victim-{i}")).await;
        assert_ne!(node, "worker-2");
        greet(&mut ws, "after").await;
    }
    drop(w2);
}
