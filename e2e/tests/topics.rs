//! Topics and presence across the cluster: clients on three workers subscribe (as their tokens
//! allow), a backend publishes to a topic through a leader's front door, and only subscribers on
//! the workers that have them get it; presence counts them cluster-wide. Real `ews-leader` and
//! `ews-worker` processes on loopback, tokio-tungstenite clients.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ews_testkit::nodes::{Node, NodeSpec};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod support;

const SECRET: &str = "topics-cluster-secret";
const JWT_SECRET: &str = "topics-jwt-secret";
const ADMIN_TOKEN: &str = "topics-admin-token";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Two leaders (the front door) and three workers that verify HS256 tokens. Kept whole: its
/// nodes stop when it is dropped.
struct Cluster {
    leaders: [Node; 2],
    workers: [Node; 3],
}

impl Cluster {
    fn start() -> Cluster {
        let (leaders, seeds) =
            Node::leader_pair(&["--cluster-secret", SECRET, "--admin-token", ADMIN_TOKEN]);
        let worker = |id: &str| {
            Node::worker(&NodeSpec {
                extra: &["--cluster-secret", SECRET],
                jwt_hs256_secret: Some(JWT_SECRET),
                ..NodeSpec::new(id, &seeds)
            })
        };
        let workers = [worker("worker-1"), worker("worker-2"), worker("worker-3")];
        Cluster { leaders, workers }
    }

    fn door(&self) -> SocketAddr {
        self.leaders[0].admin
    }
}

fn token(sub: &str, topics: &[&str]) -> String {
    ews_testkit::jwt::client_token(JWT_SECRET, sub, topics)
}

async fn connect(worker: &Node, sub: &str, topics: &[&str]) -> Ws {
    let url = format!(
        "ws://{}/ws?access_token={}",
        worker.public.expect("a worker"),
        token(sub, topics)
    );
    tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("{sub} could not connect: {e}"))
        .0
}

/// The next text frame as JSON (pings are answered by tungstenite while reading).
async fn next(ws: &mut Ws, who: &str) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("{who}: no frame within 10 s"))
            .unwrap_or_else(|| panic!("{who}: session ended"))
            .unwrap_or_else(|e| panic!("{who}: {e}"));
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn control(ws: &mut Ws, who: &str, kind: &str, topic: &str) -> Value {
    ws.send(Message::text(
        json!({"type": kind, "topic": topic}).to_string(),
    ))
    .await
    .unwrap();
    next(ws, who).await
}

fn admin(addr: SocketAddr, method: &str, path: &str, body: &Value) -> (u16, Value) {
    support::admin(addr, ADMIN_TOKEN, method, path, body)
}

/// Polls the front door's presence for `query` until `sessions` are counted.
fn presence_reaches(door: SocketAddr, query: &str, sessions: u64) -> Value {
    let start = Instant::now();
    loop {
        let (code, v) = admin(
            door,
            "GET",
            &format!("/api/v1/presence?{query}"),
            &Value::Null,
        );
        if code == 200 && v["sessions"] == sessions {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "presence {query} never reached {sessions}: {code} {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_publish_reaches_all_and_only_its_subscribers_across_three_workers() {
    let cluster = Cluster::start();
    let [w1, w2, w3] = &cluster.workers;
    let door = cluster.door();

    // Subscribers of news.sport on each worker, by exact grant or by prefix.
    let mut alice = connect(w1, "alice", &["news.*"]).await;
    let mut bob = connect(w2, "bob", &["news.sport"]).await;
    let mut carol = connect(w3, "carol", &["news.*", "chat.*"]).await;
    for (ws, who) in [
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        (&mut carol, "carol"),
    ] {
        let answer = control(ws, who, "subscribe", "news.sport").await;
        assert_eq!(
            answer,
            json!({"type": "subscribed", "topic": "news.sport"}),
            "{who}"
        );
    }
    // A token without the topic is refused; so is a topic that is no topic.
    let mut dave = connect(w3, "dave", &["chat.*"]).await;
    let refused = control(&mut dave, "dave", "subscribe", "news.sport").await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["error"], "topic_forbidden");
    assert_eq!(refused["topic"], "news.sport");
    let invalid = control(&mut dave, "dave", "subscribe", "news.*").await;
    assert_eq!(invalid["error"], "invalid_topic", "{invalid}");
    // dave is on chat.room1, which only worker 3 has subscribers for.
    let chat = control(&mut dave, "dave", "subscribe", "chat.room1").await;
    assert_eq!(chat["type"], "subscribed");

    // Presence, cluster-wide, once every worker is in the leader's view.
    let p = presence_reaches(door, "topic=news.sport", 3);
    assert_eq!(p["clients"], json!(["alice", "bob", "carol"]), "{p}");
    for (w, who) in [(w1, "alice"), (w2, "bob"), (w3, "carol")] {
        assert_eq!(p["nodes"][&w.node_id]["sessions"], 1, "{p}");
        assert_eq!(p["nodes"][&w.node_id]["clients"], json!([who]), "{p}");
    }
    let p = presence_reaches(door, "clientId=dave", 1);
    assert_eq!(p["nodes"][&w3.node_id]["sessions"], 1, "{p}");
    let (code, _) = admin(door, "GET", "/api/v1/presence?topic=a%20b", &Value::Null);
    assert_eq!(code, 400);

    // The publish reaches every subscriber on every worker. Interest reaches the leaders on
    // their next probe of each worker, so until then a try may miss one: each try carries its
    // number, and every subscriber reads up to the last one, seeing nothing but these pushes.
    let start = Instant::now();
    let mut tries = 0;
    let answer = loop {
        tries += 1;
        let (code, v) = admin(
            door,
            "POST",
            "/api/v1/publish",
            &json!({"topic": "news.sport", "msg": format!("goal {tries}")}),
        );
        if code == 200 && v["delivered"] == 3 {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the publish never reached all three: {code} {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer["failed"], json!([]), "{answer}");
    for w in [w1, w2, w3] {
        assert_eq!(answer["nodes"][&w.node_id]["delivered"], 1, "{answer}");
    }
    let last = format!("goal {tries}");
    for (ws, who) in [
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        (&mut carol, "carol"),
    ] {
        loop {
            let push = next(ws, who).await;
            assert_eq!(
                (&push["type"], &push["topic"]),
                (&json!("push"), &json!("news.sport")),
                "{who}: {push}"
            );
            if push["msg"] == last.as_str() {
                break;
            }
        }
    }
    // dave got nothing of it: the next frame he sees is the one published to him after.
    let (code, _) = admin(
        door,
        "POST",
        "/api/v1/publish",
        &json!({"clientId": "dave", "msg": "only for dave"}),
    );
    assert_eq!(code, 200);
    assert_eq!(
        next(&mut dave, "dave").await,
        json!({"type": "push", "msg": "only for dave"})
    );

    // Interest routing: a chat.room1 publish asks only worker 3, the one with a subscriber.
    let (code, v) = admin(
        door,
        "POST",
        "/api/v1/publish",
        &json!({"topic": "chat.room1", "msg": "hi room"}),
    );
    assert_eq!((code, &v["delivered"]), (200, &json!(1)), "{v}");
    let asked: Vec<&String> = v["nodes"].as_object().unwrap().keys().collect();
    assert_eq!(asked, [&w3.node_id], "{v}");
    assert_eq!(next(&mut dave, "dave").await["msg"], "hi room");

    // Unsubscribing takes bob out; a topic nobody holds is a 404 that asks no worker.
    let answer = control(&mut bob, "bob", "unsubscribe", "news.sport").await;
    assert_eq!(
        answer,
        json!({"type": "unsubscribed", "topic": "news.sport"})
    );
    presence_reaches(door, "topic=news.sport", 2);
    let (code, v) = admin(
        door,
        "POST",
        "/api/v1/publish",
        &json!({"topic": "nobody.here", "msg": "x"}),
    );
    assert_eq!((code, &v["nodes"]), (404, &Value::Null), "{v}");
    // A session that ends takes its subscriptions with it.
    alice.close(None).await.unwrap();
    presence_reaches(door, "topic=news.sport", 1);
}

/// `subscribed` means reachable from every node: a publish through either leader's front door
/// right after it, to a topic nobody held a moment before, is delivered (the worker tells its
/// peers its new interest before it answers). 30 fresh topics over three workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_right_after_subscribed_reaches_the_subscriber_through_the_front_door() {
    let cluster = Cluster::start();
    // The cluster formed: both doors see all three workers serving, and every worker sees both
    // leaders (before that, a worker tells only the peers it knows).
    let serving = |addr: SocketAddr, role: &str| {
        let (_, v) = admin(addr, "GET", "/members", &Value::Null);
        v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["role"] == role && m["verified"] == true && m["reachable"] == true)
            .count()
    };
    let views = cluster
        .leaders
        .iter()
        .map(|l| (l.admin, "worker", 3))
        .chain(cluster.workers.iter().map(|w| (w.admin, "leader", 2)));
    for (addr, role, n) in views {
        let start = Instant::now();
        while serving(addr, role) != n {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{addr} sees {n} {role}s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for i in 0..30 {
        let w = &cluster.workers[i % 3];
        let door = cluster.leaders[i % 2].admin;
        let who = format!("fresh-{i}");
        let topic = format!("fresh.t{i}");
        let mut ws = connect(w, &who, &["fresh.*"]).await;
        let answer = control(&mut ws, &who, "subscribe", &topic).await;
        assert_eq!(answer, json!({"type": "subscribed", "topic": topic}));
        let (code, v) = admin(
            door,
            "POST",
            "/api/v1/publish",
            &json!({"topic": topic, "msg": format!("first {i}")}),
        );
        assert_eq!((code, &v["delivered"]), (200, &json!(1)), "try {i}: {v}");
        assert_eq!(
            next(&mut ws, &who).await,
            json!({"type": "push", "msg": format!("first {i}"), "topic": topic})
        );
    }
}
