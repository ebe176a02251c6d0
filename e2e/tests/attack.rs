//! An attacker on the network between nodes, and strangers holding ports: a captured node-link
//! request replayed on another node and after a restart, a chatty stranger on a worker's node
//! link, an idle-socket flood on a leader's ports, idle sockets on a public port with a small
//! session cap. Real `ews-leader` and `ews-worker` processes; each legitimate request under a
//! flood is timed and reported.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ews_testkit::net;
use ews_testkit::nodes::{Node, NodeSpec};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

mod support;

const SECRET: &str = "attack-cluster-secret";
const JWT_SECRET: &str = "attack-jwt-secret";
const ADMIN_TOKEN: &str = "attack-admin-token";

fn worker_spec<'a>(id: &'a str, seeds: &'a [SocketAddr], extra: &'a [&'a str]) -> NodeSpec<'a> {
    NodeSpec {
        extra,
        jwt_hs256_secret: Some(JWT_SECRET),
        ..NodeSpec::new(id, seeds)
    }
}

const WORKER_FLAGS: &[&str] = &[
    "--cluster-secret",
    SECRET,
    "--admin-token",
    ADMIN_TOKEN,
    "--rebalance-rate",
    "0",
];

async fn connect(
    worker: &Node,
    sub: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let token = ews_testkit::jwt::client_token(JWT_SECRET, sub, &[]);
    let url = format!("ws://{}/ws?access_token={token}", worker.public.unwrap());
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

fn publish(door: SocketAddr, body: &Value) -> (u16, Value) {
    support::publish(door, ADMIN_TOKEN, body)
}

/// Sends `header` (a captured `x-ews-link`) with `body` to `path` on `addr`'s node link.
fn replay(addr: SocketAddr, method: &str, path: &str, header: &str, body: &[u8]) -> (u16, String) {
    net::http_request(
        addr,
        method,
        path,
        &[("x-ews-link", header), ("Content-Type", "application/json")],
        body,
    )
    .expect("the node link answers")
}

/// A push to `sub` captured on its way to worker-1 is worthless on worker-2 (which holds the
/// client) and on worker-1 once it has served it, or after it restarted; so is a captured
/// session opening. Replays accepted: 0, and the client never sees the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_node_link_request_is_worthless_everywhere() {
    let (leaders, seeds) =
        Node::leader_pair(&["--cluster-secret", SECRET, "--admin-token", ADMIN_TOKEN]);
    let mut w1 = Node::worker(&worker_spec("worker-1", &seeds, WORKER_FLAGS));
    let w2 = Node::worker(&worker_spec("worker-2", &seeds, WORKER_FLAGS));
    let mut victim = connect(&w2, "victim").await;

    // What a node sends worker-1, as an eavesdropper on the link captures it.
    let body = json!({"clientId": "victim", "msg": "pay 1000"}).to_string();
    let to_w1 = support::node_at(w1.internal, SECRET);
    let header = support::link_header(
        SECRET,
        "POST",
        "/internal/v1/publish",
        body.as_bytes(),
        &to_w1,
    );
    let session_path = "/internal/v1/session?route=%2Fecho&handler=echo&from=worker-1";
    let session_header = support::link_header(SECRET, "POST", session_path, b"", &to_w1);

    let mut accepted = 0;
    let mut tries = Vec::new();
    // Another node, within the freshness window.
    for (what, addr, method, path, h, b) in [
        (
            "publish on worker-2",
            w2.internal,
            "POST",
            "/internal/v1/publish",
            &header,
            body.as_bytes(),
        ),
        (
            "session on worker-2",
            w2.internal,
            "POST",
            session_path,
            &session_header,
            &b""[..],
        ),
        (
            "publish on leader-1",
            leaders[0].internal,
            "POST",
            "/internal/v1/publish",
            &header,
            body.as_bytes(),
        ),
    ] {
        let (code, text) = replay(addr, method, path, h, b);
        accepted += usize::from(code < 400);
        tries.push(format!("{what}: {code} {}", text.trim()));
        assert_eq!(code, 401, "{what}: {text}");
        assert!(text.contains("another node"), "{what}: {text}");
    }
    // Its own destination: once, then never again.
    let (code, text) = replay(
        w1.internal,
        "POST",
        "/internal/v1/publish",
        &header,
        body.as_bytes(),
    );
    assert_eq!(code, 404, "served once (no such client there): {text}");
    let (code, text) = replay(
        w1.internal,
        "POST",
        "/internal/v1/publish",
        &header,
        body.as_bytes(),
    );
    tries.push(format!("again on worker-1: {code} {}", text.trim()));
    assert_eq!(code, 401, "{text}");
    // After a restart (same node id, same address): a new generation, an empty nonce memory.
    let internal = w1.internal;
    w1.proc.kill();
    let extra: Vec<&str> = WORKER_FLAGS.to_vec();
    let w1b = Node::worker(&NodeSpec {
        internal: Some(internal),
        ..worker_spec("worker-1", &seeds, &extra)
    });
    let (code, text) = replay(
        w1b.internal,
        "POST",
        "/internal/v1/publish",
        &header,
        body.as_bytes(),
    );
    tries.push(format!("worker-1 restarted: {code} {}", text.trim()));
    accepted += usize::from(code < 400);
    assert_eq!(code, 401, "{text}");
    println!("replays: {accepted} accepted; {tries:#?}");
    assert_eq!(accepted, 0);
    // The client on worker-2 never got the captured message.
    let got = tokio::time::timeout(Duration::from_millis(500), victim.next()).await;
    assert!(
        !matches!(&got, Ok(Some(Ok(Message::Text(_))))),
        "the victim got {got:?}"
    );
}

/// A TCP connection from `source` (loopback has the whole 127/8: one address, one host).
async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// `n` strangers from `source` at `to`, each asking an unsigned `GET /info` on a keep-alive
/// connection, then waiting to ask again; a connection the server keeps open after its answer
/// is asked again every 200 ms, one it closes is replaced, until `stop`. Counts the refusals
/// read (all 401) and the connections the server kept open after one.
fn chatty(
    source: IpAddr,
    to: SocketAddr,
    n: usize,
    stop: Arc<AtomicBool>,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let refusals = Arc::new(AtomicUsize::new(0));
    let kept = Arc::new(AtomicUsize::new(0));
    let tasks = (0..n)
        .map(|_| {
            let (refusals, kept, stop) = (refusals.clone(), kept.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = connect_from(source, to).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        if s.write_all(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
                            .await
                            .is_err()
                        {
                            break;
                        }
                        // Read the answer; then either the end of the connection, or silence
                        // (kept open for another request).
                        let mut got = Vec::new();
                        let mut buf = [0u8; 1024];
                        let closed = loop {
                            match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf))
                                .await
                            {
                                Ok(Ok(0)) | Ok(Err(_)) => break true,
                                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                                Err(_) => break false,
                            }
                        };
                        if got.starts_with(b"HTTP/1.1 401") {
                            refusals.fetch_add(1, Ordering::Relaxed);
                        }
                        if closed {
                            break;
                        }
                        kept.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            })
        })
        .collect();
    (refusals, kept, tasks)
}

/// Publishes "warm" to `sub` through `door` until one is delivered (the cluster formed).
async fn door_reaches(door: SocketAddr, sub: &str) {
    let start = Instant::now();
    while publish(door, &json!({"clientId": sub, "msg": "warm"})).0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the door reaches {sub}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes through `door` to `sub` `n` times on fresh connections: each one's latency (ms),
/// and it must be delivered.
fn timed_publishes(door: SocketAddr, sub: &str, n: usize) -> Vec<u128> {
    (0..n)
        .map(|i| {
            let start = Instant::now();
            let (code, v) = publish(door, &json!({"clientId": sub, "msg": format!("m{i}")}));
            assert_eq!(
                (code, &v["delivered"]),
                (200, &json!(1)),
                "publish {i}: {v}"
            );
            start.elapsed().as_millis()
        })
        .collect()
}

fn summary(ms: &mut [u128]) -> String {
    ms.sort();
    format!("p50 {} ms, max {} ms", ms[ms.len() / 2], ms[ms.len() - 1])
}

/// 100 strangers on one host keep asking a worker's node link (64 slots) an unsigned request
/// each: each refusal closes its connection, and one host holds at most half the port, so the
/// leader's publishes to the worker still go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_stranger_cannot_hold_the_node_link() {
    let (leaders, seeds) =
        Node::leader_pair(&["--cluster-secret", SECRET, "--admin-token", ADMIN_TOKEN]);
    let mut flags = WORKER_FLAGS.to_vec();
    flags.extend(["--port-max-connections", "64"]);
    let w1 = Node::worker(&worker_spec("worker-1", &seeds, &flags));
    let door = leaders[0].admin;
    let mut ws = connect(&w1, "alice").await;
    door_reaches(door, "alice").await;
    let mut before = timed_publishes(door, "alice", 20);

    let stop = Arc::new(AtomicBool::new(false));
    let (refusals, kept, tasks) = chatty([127, 0, 0, 9].into(), w1.internal, 100, stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut during = tokio::task::spawn_blocking(move || timed_publishes(door, "alice", 20))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let (refusals, kept) = (
        refusals.load(Ordering::Relaxed),
        kept.load(Ordering::Relaxed),
    );
    println!(
        "chatty stranger: {refusals} refusals, {kept} connections kept open after one; \
         front-door publish before {}, during {}",
        summary(&mut before),
        summary(&mut during)
    );
    assert!(refusals > 0, "the stranger was answered");
    assert_eq!(kept, 0, "every refusal closed its connection");
    let mut got = 0;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
        got += 1;
        if got == 41 {
            break;
        }
    }
    assert_eq!(got, 41, "every publish arrived");
}

/// One host re-opening idle sockets to a leader's admin and internal ports, more than each
/// port serves: a backend's publish through the front door on fresh connections, and the
/// health check, are answered without waiting out the idle sockets' header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_flood_does_not_hold_up_a_leaders_ports() {
    let (leaders, seeds) =
        Node::leader_pair(&["--cluster-secret", SECRET, "--admin-token", ADMIN_TOKEN]);
    let w1 = Node::worker(&worker_spec("worker-1", &seeds, WORKER_FLAGS));
    let door = leaders[0].admin;
    let _ws = connect(&w1, "alice").await;
    door_reaches(door, "alice").await;
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    for port in [leaders[0].admin, leaders[0].internal] {
        for _ in 0..1030 {
            let (stop, opened) = (stop.clone(), opened.clone());
            flood.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = connect_from([127, 0, 0, 7].into(), port).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    let mut buf = [0u8; 64];
                    // Idle until the server closes it, then open another.
                    let _ = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (health, mut publishes) = tokio::task::spawn_blocking(move || {
        let mut health = Vec::new();
        for _ in 0..10 {
            let start = Instant::now();
            // Well inside the ports' 10 s header timeout: an answer that waited it out fails.
            let (code, _) =
                net::http_request_within(door, "GET", "/info", &[], b"", Duration::from_secs(5))
                    .expect("the health check is answered");
            assert_eq!(code, 200);
            health.push(start.elapsed().as_millis());
        }
        (health, timed_publishes(door, "alice", 10))
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let opened = opened.load(Ordering::Relaxed);
    for t in flood {
        t.abort();
    }
    let mut health = health;
    println!(
        "idle flood ({opened} sockets opened by one host): leader /info {}, front-door publish {}",
        summary(&mut health),
        summary(&mut publishes)
    );
}

/// A worker with room for 50 sessions and 2,000 idle sockets on its public port: the load
/// balancer's `GET /info` is answered at once, not after the idle sockets' handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_is_answered_whatever_the_session_cap() {
    // Outside a cluster: no node link to wait for.
    let w = Node::spawn(
        "ews-worker",
        &NodeSpec {
            extra: &["--max-connections", "50"],
            ..NodeSpec::new("worker-1", &[])
        },
    );
    let public = w.public.unwrap();
    net::wait_for_http_ok(public, "/info", Duration::from_secs(20)).expect("the worker starts");
    let mut idle = Vec::new();
    for i in 0..2000u32 {
        // Spread over a few source addresses, as a load balancer's nodes would be.
        let source: IpAddr = [127, 0, 1, (i % 8) as u8 + 1].into();
        if let Ok(s) = connect_from(source, public).await {
            idle.push(s);
        }
    }
    let mut took = tokio::task::spawn_blocking(move || {
        (0..10)
            .map(|_| {
                let start = Instant::now();
                let (code, body) = net::http_request_within(
                    public,
                    "GET",
                    "/info",
                    &[],
                    b"",
                    Duration::from_secs(5),
                )
                .expect("answered well inside the 10 s handshake timeout");
                assert_eq!((code, body.as_str()), (200, "Success"));
                start.elapsed().as_millis()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    println!(
        "/info behind {} idle sockets at a session cap of 50: {}",
        idle.len(),
        summary(&mut took)
    );
}
