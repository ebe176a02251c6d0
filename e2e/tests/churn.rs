//! Publishes while the cluster churns: a worker draining with a publisher running, a worker
//! frozen (SIGSTOP) during publishes, presence over more client ids than one node-link answer
//! holds. Real `ews-leader` and `ews-worker` processes with a cluster secret and HS256 client
//! tokens; tokio-tungstenite clients.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ews_testkit::net;
use ews_testkit::nodes::{Node, NodeSpec};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod support;

const SECRET: &str = "churn-cluster-secret";
const JWT_SECRET: &str = "churn-jwt-secret";
const ADMIN_TOKEN: &str = "churn-admin-token";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The leaders give each worker 5 s to answer a publish: on a busy test machine a 1 s deadline
/// can pass for an answer that is only late, and these tests count every delivery.
fn leaders() -> ([Node; 2], [SocketAddr; 2]) {
    Node::leader_pair(&[
        "--cluster-secret",
        SECRET,
        "--admin-token",
        ADMIN_TOKEN,
        "--publish-peer-timeout-ms",
        "5000",
    ])
}

fn worker(id: &str, seeds: &[SocketAddr], extra: &[&str]) -> Node {
    let mut args = vec![
        "--cluster-secret",
        SECRET,
        "--admin-token",
        ADMIN_TOKEN,
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

async fn connect(worker: &Node, sub: &str) -> Ws {
    let token = ews_testkit::jwt::client_token(JWT_SECRET, sub, &["churn.*"]);
    let url = format!(
        "ws://{}/ws?access_token={token}",
        worker.public.expect("a worker")
    );
    tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("{sub}: {e}"))
        .0
}

async fn subscribe(ws: &mut Ws, topic: &str) {
    ws.send(Message::text(
        json!({"type": "subscribe", "topic": topic}).to_string(),
    ))
    .await
    .unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .expect("a frame");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            assert_eq!(v, json!({"type": "subscribed", "topic": topic}));
            return;
        }
    }
}

/// `POST /api/v1/publish` with the admin token: the status and the JSON answer.
fn publish(door: SocketAddr, body: &Value) -> (u16, Value) {
    support::publish(door, ADMIN_TOKEN, body)
}

fn admin_get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (code, text) =
        net::http_request(addr, "GET", path, &[("Authorization", &auth)], b"").expect("answers");
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// What one client saw: its pushes' messages in order, and when and how it was closed.
#[derive(Default, Clone)]
struct Seen {
    msgs: Vec<String>,
    closed: Option<(u16, Instant)>,
}

/// Reads `ws` until it is closed, recording every push.
async fn record(mut ws: Ws, seen: Arc<Mutex<Seen>>) {
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
        match msg {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "push" {
                    let m = v["msg"].as_str().unwrap_or_default().to_string();
                    seen.lock().unwrap().msgs.push(m);
                }
            }
            Ok(Message::Close(frame)) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                seen.lock().unwrap().closed = Some((code, Instant::now()));
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// The delivered count a publish answer gives for `node`.
fn delivered_on(answer: &Value, node: &str) -> u64 {
    answer["nodes"][node]["delivered"].as_u64().unwrap_or(0)
}

/// SIGTERM on a worker while a backend publishes through the front door every few ms: until
/// each of its sessions is closed (1012, spread over the drain window), the draining worker is
/// still asked and its sessions get every push. Exact accounting: what the worker reports as
/// delivered is what its clients received, and each client's stream has no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_delivers_every_push_to_the_sessions_it_still_holds() {
    const CLIENTS: usize = 20;
    let (leaders, seeds) = leaders();
    let _w1 = worker("worker-1", &seeds, &[]);
    let w2 = worker("worker-2", &seeds, &["--drain-seconds", "6"]);
    let door = leaders[0].admin;

    let mut seen = Vec::new();
    let mut readers = Vec::new();
    for i in 0..CLIENTS {
        let mut ws = connect(&w2, &format!("c{i}")).await;
        subscribe(&mut ws, "churn.all").await;
        let s = Arc::new(Mutex::new(Seen::default()));
        seen.push(s.clone());
        readers.push(tokio::spawn(record(ws, s)));
    }
    // Until the door reaches every session (the leaders' views formed).
    let start = Instant::now();
    while publish(door, &json!({"topic": "churn.all", "msg": "warm"})).1["delivered"] != CLIENTS {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the door reaches the clients"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<(String, Instant, Value)>>> = Arc::default();
    let publisher = {
        let (stop, answers) = (stop.clone(), answers.clone());
        std::thread::spawn(move || {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let msg = format!("t{k}");
                let (_, v) = publish(door, &json!({"topic": "churn.all", "msg": msg}));
                answers.lock().unwrap().push((msg, Instant::now(), v));
                let to = format!("c{}", k % CLIENTS as u64);
                let msg = format!("c{k}");
                let (_, v) = publish(door, &json!({"clientId": to, "msg": msg}));
                answers.lock().unwrap().push((msg, Instant::now(), v));
                k += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let sigterm = Instant::now();
    w2.proc.signal(libc::SIGTERM);
    for r in readers {
        tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .expect("every session closes within the drain")
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();

    let answers = answers.lock().unwrap().clone();
    let seen: Vec<Seen> = seen.iter().map(|s| s.lock().unwrap().clone()).collect();
    let counted: u64 = answers
        .iter()
        .map(|(_, _, v)| delivered_on(v, "worker-2"))
        .sum();
    let received: usize = seen
        .iter()
        .map(|s| s.msgs.iter().filter(|m| *m != "warm").count())
        .sum();
    let during_drain: usize = answers
        .iter()
        .filter(|(_, at, v)| *at > sigterm && delivered_on(v, "worker-2") > 0)
        .count();
    let published_during = answers.iter().filter(|(_, at, _)| *at > sigterm).count();
    println!(
        "drain: {published_during} publishes after SIGTERM, {during_drain} reached worker-2's \
         open sessions; worker-2 counted {counted} pushes delivered, its clients received \
         {received}"
    );
    assert_eq!(
        counted as usize, received,
        "every push counted as delivered arrived"
    );
    assert!(during_drain > 0, "the draining worker was asked");
    for (i, s) in seen.iter().enumerate() {
        let (code, at) = s.closed.unwrap_or_else(|| panic!("c{i} was not closed"));
        assert_eq!(code, 1012, "c{i}");
        // The topic pushes it got are one unbroken run: nothing skipped while it was open.
        let topic: Vec<u64> = s
            .msgs
            .iter()
            .filter_map(|m| m.strip_prefix('t')?.parse().ok())
            .collect();
        assert!(
            topic.windows(2).all(|w| w[1] == w[0] + 1),
            "c{i} has a gap: {topic:?}"
        );
        // Open a while into the drain: it got what was published meanwhile.
        if at > sigterm + Duration::from_secs(1) {
            let after: Vec<&String> = answers
                .iter()
                .filter(|(m, t, _)| {
                    m.starts_with('t') && *t > sigterm && *t + Duration::from_secs(1) < at
                })
                .map(|(m, _, _)| m)
                .collect();
            for m in after {
                assert!(s.msgs.contains(m), "c{i}, open until {at:?}, missed {m}");
            }
        }
    }
}

/// A worker frozen (SIGSTOP) while a backend publishes: the answers name it as not asked (a
/// 502 when nobody else took the message) rather than "nobody was there"; a retry with the same
/// `id` after the thaw is delivered once, and a retry of one that was delivered is not
/// delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_is_named_and_a_retry_by_id_delivers_once() {
    let (leaders, seeds) = leaders();
    let _w1 = worker("worker-1", &seeds, &[]);
    let w2 = worker("worker-2", &seeds, &[]);
    let door = leaders[0].admin;
    let mut ws = connect(&w2, "frozen").await;
    subscribe(&mut ws, "churn.frozen").await;
    let start = Instant::now();
    while publish(door, &json!({"topic": "churn.frozen", "msg": "warm"})).1["delivered"] != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the door reaches the client"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    w2.proc.signal(libc::SIGSTOP);
    // Until the door's membership has lost sight of it (gossip's failure detector).
    let start = Instant::now();
    let (client_code, client_answer, topic_code, topic_answer) = loop {
        let (cc, ca) = publish(
            door,
            &json!({"clientId": "frozen", "msg": "to you", "id": "p-1"}),
        );
        let (tc, ta) = publish(
            door,
            &json!({"topic": "churn.frozen", "msg": "to all", "id": "p-2"}),
        );
        if ca["nodes"]["worker-2"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not asked"))
        {
            break (cc, ca, tc, ta);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never lost sight: {ca}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("frozen: client publish {client_code} {client_answer}; topic publish {topic_code} {topic_answer}");
    assert_eq!(client_code, 502, "{client_answer}");
    assert_eq!(client_answer["failed"], json!(["worker-2"]));
    assert_eq!(topic_code, 502, "{topic_answer}");
    assert_eq!(topic_answer["failed"], json!(["worker-2"]));

    w2.proc.signal(libc::SIGCONT);
    // Retries after the thaw: each id is delivered once however often it is sent.
    let start = Instant::now();
    loop {
        let (code, v) = publish(
            door,
            &json!({"clientId": "frozen", "msg": "to you", "id": "p-1"}),
        );
        if code == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "thawed: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, v) = publish(
        door,
        &json!({"clientId": "frozen", "msg": "to you", "id": "p-1"}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["duplicates"], 1, "a retry of a delivered id: {v}");
    assert_eq!(v["delivered"], 0, "{v}");
    let (code, v) = publish(
        door,
        &json!({"topic": "churn.frozen", "msg": "to all", "id": "p-2"}),
    );
    assert_eq!(code, 200, "{v}");

    let mut got = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            got.push(v["msg"].as_str().unwrap_or_default().to_string());
        }
    }
    let once = |m: &str| got.iter().filter(|g| *g == m).count();
    assert_eq!((once("to you"), once("to all")), (1, 1), "{got:?}");
}

/// Presence over 1,200 client ids of 65 bytes on one worker (more than one node-link answer
/// holds): every id is listed once, page by page through `next`, and the count is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_lists_every_long_client_id_page_by_page() {
    const CLIENTS: usize = 1200;
    let (leaders, seeds) = leaders();
    let w1 = worker("worker-1", &seeds, &[]);
    let w2 = worker("worker-2", &seeds, &[]);
    let door = leaders[0].admin;
    let mut sockets = Vec::new();
    let mut expected = Vec::new();
    for i in 0..CLIENTS {
        let sub = format!("{i:05}-{}", "x".repeat(59));
        assert_eq!(sub.len(), 65);
        let w = if i % 6 == 0 { &w1 } else { &w2 };
        let mut ws = connect(w, &sub).await;
        subscribe(&mut ws, "churn.crowd").await;
        sockets.push(ws);
        expected.push(sub);
    }
    expected.sort();
    let start = Instant::now();
    loop {
        let (code, v) = admin_get(door, "/api/v1/presence?topic=churn.crowd&limit=1");
        if code == 200 && v["sessions"] == CLIENTS {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "presence: {code} {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for via in [door, w1.admin] {
        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &after {
                Some(a) => format!("/api/v1/presence?topic=churn.crowd&after={a}"),
                None => "/api/v1/presence?topic=churn.crowd".to_string(),
            };
            let (code, v) = admin_get(via, &path);
            assert_eq!(code, 200, "{v}");
            assert_eq!(v["sessions"], CLIENTS);
            pages += 1;
            listed.extend(
                v["clients"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().to_string()),
            );
            match v["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => break,
            }
            assert!(pages < 100);
        }
        println!("presence via {via}: {} ids in {pages} pages", listed.len());
        assert_eq!(listed, expected);
    }
    drop(sockets);
}
