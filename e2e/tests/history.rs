//! History and recovery with real processes: two leaders, three workers behind nginx round
//! robin, `redis-server` as the history engine, clients on the Rust client library and one on
//! the TypeScript one (in Node.js, `clients/js/e2e/history.mjs`). A backend
//! publishes a numbered message to a topic every 10 ms through the leaders' front door while
//! (a) a fourth worker joins and rebalancing moves clients to it, (b) a worker drains (SIGTERM,
//! 1012), (c) another is killed (`kill -9`) and (d) the active leader is killed: every client
//! receives every message exactly once and in order (missing, duplicate, out of order: all 0),
//! recovering what it missed after each move from history. Then (e) redis-server restarts
//! empty: the clients are told they could not recover (`epoch_changed`), never left with a
//! silent gap.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ews_client::{Client, Inbound};
use ews_testkit::nginx::RoundRobin;
use ews_testkit::nodes::{Node, NodeSpec};
use ews_testkit::redis::Redis;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SECRET: &str = "history-cluster-secret";
const JWT_SECRET: &str = "history-jwt-secret";
const ADMIN_TOKEN: &str = "history-admin-token";
/// Eight a worker: enough that a fourth worker's arrival puts the first three past the
/// rebalancing margin (8 against a mean of 6).
const CLIENTS: usize = 24;
const TOPIC: &str = "room.1";
/// Messages published at the least, each to the topic and to c0, on a fast machine or a slow
/// one.
const MIN_PUBLISHED: u64 = 300;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Dials `/ws` through the load balancer as `sub`.
struct Dial {
    lb: SocketAddr,
    sub: String,
}

impl ews_client::Dial for Dial {
    type Stream = MaybeTlsStream<TcpStream>;

    fn dial(&self) -> ews_client::BoxFuture<'_, Result<Ws, ews_client::DialError>> {
        Box::pin(async move {
            let t = ews_testkit::jwt::client_token(JWT_SECRET, &self.sub, &["room.*"]);
            let url = format!("ws://{}/ws?access_token={t}", self.lb);
            tokio_tungstenite::connect_async(url)
                .await
                .map(|(ws, _)| ws)
                .map_err(|e| ews_client::DialError::Failed(e.to_string()))
        })
    }
}

/// What one client heard on the topic, and of the pushes to it.
#[derive(Default)]
struct Heard {
    numbers: Vec<u64>,
    direct: Vec<u64>,
    /// (topic, or "" for the pushes to the client itself; reason).
    unrecovered: Vec<(String, String)>,
}

fn history_flags(url: &str) -> Vec<&str> {
    vec![
        "--cluster-secret",
        SECRET,
        "--admin-token",
        ADMIN_TOKEN,
        "--history-topics",
        "room.*",
        "--history-redis-url",
        url,
        "--history-size",
        "5000",
        "--history-clients",
    ]
}

/// A worker on `port`, rebalancing (at the default rate) when it holds more than its share.
fn worker(id: &str, seeds: &[SocketAddr], url: &str, port: u16) -> Node {
    let mut extra = history_flags(url);
    extra.extend(["--drain-seconds", "2"]);
    Node::worker(&NodeSpec {
        extra: &extra,
        jwt_hs256_secret: Some(JWT_SECRET),
        public_port: Some(port),
        ..NodeSpec::new(id, seeds)
    })
}

fn publish(door: SocketAddr, n: u64) -> (u16, String) {
    publish_msg(door, &n.to_string())
}

fn push_to(door: SocketAddr, client: &str, n: u64) -> (u16, String) {
    send(
        door,
        serde_json::json!({"clientId": client, "msg": n.to_string()}),
    )
}

fn publish_msg(door: SocketAddr, msg: &str) -> (u16, String) {
    send(door, serde_json::json!({"topic": TOPIC, "msg": msg}))
}

fn send(door: SocketAddr, body: serde_json::Value) -> (u16, String) {
    let body = body.to_string();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    ews_testkit::net::http_request(
        door,
        "POST",
        "/api/v1/publish",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .unwrap_or((0, String::new()))
}

/// Missing, duplicate and out-of-order numbers in what a client heard of 1..=last.
fn faults(numbers: &[u64], last: u64) -> (usize, usize, usize) {
    let mut seen = std::collections::HashSet::new();
    let dup = numbers.iter().filter(|n| !seen.insert(**n)).count();
    let missing = (1..=last).filter(|n| !seen.contains(n)).count();
    let out_of_order = numbers.windows(2).filter(|w| w[1] <= w[0]).count();
    (missing, dup, out_of_order)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_every_message_once_in_order_across_every_move() {
    let mut redis = Redis::start();
    let url = redis.url();
    let (mut leaders, seeds) = Node::leader_pair(&history_flags(&url));
    // Four ports behind the load balancer; the fourth worker starts later (a scale-out).
    let ports: Vec<u16> = (0..4).map(|_| ews_testkit::free_port()).collect();
    let mut workers: Vec<Node> = (1..=3)
        .map(|i| worker(&format!("worker-{i}"), &seeds, &url, ports[i - 1]))
        .collect();
    let upstreams: Vec<SocketAddr> = ports.iter().map(|p| ([127, 0, 0, 1], *p).into()).collect();
    let lb = RoundRobin::start(&upstreams);

    // Eight clients a worker (round robin), each subscribed to the topic.
    let mut clients: Vec<Client> = Vec::new();
    let mut heard: Vec<Arc<Mutex<Heard>>> = Vec::new();
    for i in 0..CLIENTS {
        let dial = Dial {
            lb: lb.addr,
            sub: format!("c{i}"),
        };
        let (client, mut pushes) =
            Client::start(dial, None, ews_client::Options::new(format!("c{i}")));
        tokio::time::timeout(Duration::from_secs(20), client.subscribe(TOPIC))
            .await
            .expect("subscribed in time")
            .expect("subscribed");
        let h = Arc::new(Mutex::new(Heard::default()));
        let hh = h.clone();
        tokio::spawn(async move {
            while let Some(i) = pushes.recv().await {
                let mut h = hh.lock().unwrap();
                match i {
                    // `done:N` is the Node.js client's cue.
                    Inbound::Push(p) if p.msg.starts_with("done:") => {}
                    Inbound::Push(p) if p.topic.is_none() => {
                        h.direct.push(p.msg.parse().unwrap_or(0))
                    }
                    Inbound::Push(p) => h.numbers.push(p.msg.parse().unwrap_or(0)),
                    Inbound::Unrecovered { topic, reason } => h.unrecovered.push((topic, reason)),
                    _ => {}
                }
            }
        });
        clients.push(client);
        heard.push(h);
    }

    // And one TypeScript client, in Node.js.
    let js = ews_testkit::workspace_root().join("clients/js");
    let built = std::process::Command::new("node")
        .current_dir(&js)
        .args(["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"])
        .status()
        .expect("run tsc");
    assert!(built.success(), "the client library builds");
    let mut cmd = std::process::Command::new("node");
    cmd.current_dir(&js)
        .arg("e2e/history.mjs")
        .args(["--url", &format!("ws://{}/ws", lb.addr)])
        .args([
            "--token",
            &ews_testkit::jwt::client_token(JWT_SECRET, "ts", &["room.*"]),
        ])
        .args(["--topic", TOPIC]);
    let mut node = ews_testkit::Proc::spawn("history-node-client", cmd);
    node.wait_for_output("SUBSCRIBED", Duration::from_secs(30))
        .unwrap_or_else(|e| {
            panic!(
                "the Node.js client did not subscribe: {e}\n{}",
                node.output()
            )
        });

    // A message every 10 ms for 10 s through the second leader's front door; meanwhile a
    // scale-out with rebalancing, a drain, a kill and the active leader's death.
    let door = leaders[1].admin;
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (p, s) = (published.clone(), stop.clone());
    let publisher = tokio::task::spawn_blocking(move || {
        let mut n = 0;
        // Past the moves it goes on to at least MIN_PUBLISHED, however slow the machine: the
        // test asserts what the clients heard of a count, never how fast it was published.
        while !s.load(Ordering::Relaxed) || n < MIN_PUBLISHED {
            n += 1;
            // 404 or 502 when no worker in reach took it live (the cluster still learning a
            // worker's interest, one just killed): it is in history all the same, and the
            // subscribers get it from there. A message history did not take would be missing.
            let (code, body) = publish(door, n);
            assert!(
                matches!(code, 200 | 404 | 502),
                "publish {n}: {code} {body}"
            );
            // And the same number pushed to client c0 alone (its own stream).
            let (code, body) = push_to(door, "c0", n);
            assert!(matches!(code, 200 | 404 | 502), "push {n}: {code} {body}");
            p.store(n, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    workers.push(worker("worker-4", &seeds, &url, ports[3]));
    // Rebalancing waits for three checks in a row above the margin, then sheds one a second.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rebalanced: f64 = workers
        .iter()
        .filter_map(|w| {
            let (_, body) = ews_testkit::http_get(w.admin, "/metrics").ok()?;
            let line = body
                .lines()
                .find(|l| l.starts_with("ews_rebalanced_total "))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .sum();
    workers[0].proc.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_secs(2)).await;
    workers[1].proc.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // leader-1, the lowest id, holds the active term.
    leaders[0].proc.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    publisher.await.expect("the publisher");
    let last = published.load(Ordering::Relaxed);
    let (code, body) = publish_msg(door, &format!("done:{last}"));
    assert_eq!(code, 200, "{body}");

    // Every client catches up to the last message.
    let start = Instant::now();
    loop {
        let behind: Vec<usize> = heard
            .iter()
            .map(|h| h.lock().unwrap().numbers.last().copied().unwrap_or(0))
            .enumerate()
            .filter(|(_, n)| *n < last)
            .map(|(i, _)| i)
            .collect();
        if behind.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "clients {behind:?} are behind {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The moves really moved them: rebalancing moved some to the new worker, and each client on
    // the drained or killed worker reconnected; none dropped a push for want of reading.
    let opens: Vec<u64> = clients
        .iter()
        .map(|c| c.stats().opens.load(Ordering::Relaxed))
        .collect();

    eprintln!(
        "published {last}; connections opened per client: {opens:?}; moved by rebalancing: {rebalanced}"
    );
    assert!(rebalanced >= 1.0, "rebalancing moved no client");
    assert!(
        opens.iter().filter(|o| **o > 1).count() >= CLIENTS * 2 / 3,
        "{opens:?}"
    );
    assert!(clients
        .iter()
        .all(|c| c.stats().pushes_dropped.load(Ordering::Relaxed) == 0));
    // The TypeScript client heard the same, once each, in order.
    let status = node.wait_timeout(Duration::from_secs(30));
    let out = node.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "the Node.js client:\n{out}"
    );
    eprintln!(
        "{}",
        out.lines().find(|l| l.starts_with("RESULT ")).unwrap_or("")
    );
    // The pushes to c0 alone: every one once, in order, across its moves too.
    let start = Instant::now();
    while heard[0].lock().unwrap().direct.last().copied().unwrap_or(0) < last {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "c0 behind on its pushes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        faults(&heard[0].lock().unwrap().direct, last),
        (0, 0, 0),
        "c0's own pushes: (missing, duplicate, out of order) of {last}"
    );
    for (i, h) in heard.iter().enumerate() {
        let h = h.lock().unwrap();
        assert_eq!(
            faults(&h.numbers, last),
            (0, 0, 0),
            "client c{i}: (missing, duplicate, out of order) of {last}"
        );
        assert!(h.unrecovered.is_empty(), "c{i}: {:?}", h.unrecovered);
    }

    // The engine restarts empty: the next message is in a new epoch, and every client hears
    // that what came before cannot be recovered.
    redis.restart_empty();
    let start = Instant::now();
    while publish(door, last + 1).0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no publish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let start = Instant::now();
    let told = |h: &Heard| h.unrecovered.iter().any(|(t, _)| t == TOPIC);
    while heard.iter().any(|h| !told(&h.lock().unwrap())) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "a client was not told of the lost history"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Told once for the topic; a client that reconnects meanwhile (rebalancing goes on) is also
    // told its own stream's history is gone. Never another reason.
    for h in &heard {
        let h = h.lock().unwrap();
        let on_topic = h.unrecovered.iter().filter(|(t, _)| t == TOPIC).count();
        assert_eq!(on_topic, 1, "{:?}", h.unrecovered);
        assert!(
            h.unrecovered.iter().all(|(_, r)| r == "epoch_changed"),
            "{:?}",
            h.unrecovered
        );
    }
    drop(workers);
    drop(leaders);
}
