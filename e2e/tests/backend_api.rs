//! What clients and backends can ask, across real processes: a backend subscribes and
//! disconnects a client held by another worker through the leaders' front door, a client
//! publishes to a topic another worker's client hears (with `from`), `+presence` routes hear
//! who joined, and a session whose token runs out is told, then closed with 4001 unless it
//! refreshes. Two `ews-leader` and two `ews-worker` processes on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use ews_testkit::jwt;
use ews_testkit::nodes::{Node, NodeSpec};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

mod support;

const SECRET: &str = "backend-api-cluster-secret";
const JWT_SECRET: &str = "backend-api-jwt-secret";
const ADMIN_TOKEN: &str = "backend-api-admin-token";

use support::Ws;

/// Two leaders (the front door) and two workers whose `/ws` announces presence. Kept whole: its
/// nodes stop when it is dropped.
struct Cluster {
    leaders: [Node; 2],
    workers: [Node; 2],
}

impl Cluster {
    fn start() -> Cluster {
        let (leaders, seeds) =
            Node::leader_pair(&["--cluster-secret", SECRET, "--admin-token", ADMIN_TOKEN]);
        let worker = |id: &str| {
            Node::worker(&NodeSpec {
                extra: &[
                    "--cluster-secret",
                    SECRET,
                    "--routes",
                    "/ws=ingest+presence",
                    "--refresh-lead-secs",
                    "2",
                    "--jwt-leeway-secs",
                    "0",
                ],
                jwt_hs256_secret: Some(JWT_SECRET),
                ..NodeSpec::new(id, &seeds)
            })
        };
        let cluster = Cluster {
            leaders,
            workers: [worker("worker-1"), worker("worker-2")],
        };
        // Until both workers serve in the front door's view, it would ask nobody.
        let start = std::time::Instant::now();
        while support::serving_workers(&cluster.leaders[0], ADMIN_TOKEN).len() < 2 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "workers never served"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn door(&self) -> SocketAddr {
        self.leaders[0].admin
    }
}

/// A token for `sub` with `claims` added, valid `secs`.
fn token(sub: &str, secs: u64, claims: Value) -> String {
    support::token(JWT_SECRET, sub, secs, claims)
}

async fn connect(worker: &Node, token: &str) -> Result<Ws, String> {
    let url = format!(
        "ws://{}/ws?access_token={token}",
        worker.public.expect("a worker")
    );
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

async fn next(ws: &mut Ws, who: &str) -> Value {
    support::next_json(ws, who).await
}

async fn send(ws: &mut Ws, frame: Value) {
    support::send_json(ws, frame).await
}

fn admin(addr: SocketAddr, method: &str, path: &str, body: &Value) -> (u16, Value) {
    support::admin(addr, ADMIN_TOKEN, method, path, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_subscribes_and_disconnects_a_client_on_another_worker_and_clients_publish() {
    let cluster = Cluster::start();
    let [w1, w2] = &cluster.workers;
    let door = cluster.door();

    // Alice may join nothing herself; bob may join and publish to rooms.
    let mut alice = connect(w1, &token("alice", 600, json!({}))).await.unwrap();
    let bob_claims = json!({"topics": ["room.*"], "publish": ["room.*"]});
    let mut bob = connect(w2, &token("bob", 600, bob_claims)).await.unwrap();

    // The backend subscribes alice (whose token grants no topic) through the front door.
    let (code, v) = admin(
        door,
        "POST",
        "/api/v1/subscribe",
        &json!({"clientId": "alice", "topic": "room.1"}),
    );
    assert_eq!((code, &v["delivered"]), (200, &json!(1)), "{v}");
    assert_eq!(
        next(&mut alice, "alice").await,
        json!({"type": "subscribed", "topic": "room.1"})
    );

    // Bob joins (after alice's own join went out: joins are sent every 250 ms, and one sent
    // after bob subscribed would reach him too): alice, on the other worker, hears it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    send(&mut bob, json!({"type": "subscribe", "topic": "room.1"})).await;
    assert_eq!(next(&mut bob, "bob").await["type"], "subscribed");
    assert_eq!(
        next(&mut alice, "alice").await,
        json!({"type": "join", "topic": "room.1", "clientId": "bob"})
    );

    // Bob publishes: refused where his token does not grant it, delivered where it does, and
    // alice sees who sent it.
    send(
        &mut bob,
        json!({"type": "publish", "topic": "lobby", "msg": "hi", "id": "p1"}),
    )
    .await;
    let refused = next(&mut bob, "bob").await;
    assert_eq!(
        (&refused["error"], &refused["id"]),
        (&json!("publish_forbidden"), &json!("p1"))
    );
    send(
        &mut bob,
        json!({"type": "publish", "topic": "room.1", "msg": "hello", "id": "p2"}),
    )
    .await;
    // Bob is a subscriber too: his own push may come before the answer (it is delivered on his
    // worker at once, the answer waits for the other worker).
    let push = json!({"type": "push", "msg": "hello", "topic": "room.1", "from": "bob"});
    let mut heard = vec![next(&mut bob, "bob").await, next(&mut bob, "bob").await];
    heard.sort_by_key(|f| f["type"].to_string());
    assert_eq!(
        heard,
        vec![
            json!({"type": "published", "id": "p2", "delivered": 2}),
            push.clone()
        ]
    );
    assert_eq!(next(&mut alice, "alice").await, push);

    let (code, v) = admin(door, "GET", "/api/v1/topics", &Value::Null);
    assert_eq!((code, &v["topics"]["room.1"]), (200, &json!(2)), "{v}");

    // The backend disconnects alice, who is on the other worker, and bans her for a while.
    let (code, v) = admin(
        door,
        "POST",
        "/api/v1/disconnect",
        &json!({"clientId": "alice", "code": 4003, "reason": "bye", "banSecs": 60}),
    );
    assert_eq!((code, &v["delivered"]), (200, &json!(1)), "{v}");
    assert_eq!(
        next(&mut alice, "alice").await,
        json!({"close": 4003, "reason": "bye"})
    );
    let again = connect(w1, &token("alice", 600, json!({}))).await;
    assert!(
        again.as_ref().is_err_and(|e| e.contains("403")),
        "a banned client is refused: {:?}",
        again.err()
    );
    // Her leaving is announced to bob.
    assert_eq!(
        next(&mut bob, "bob").await,
        json!({"type": "leave", "topic": "room.1", "clientId": "alice"})
    );
    // Nobody left to disconnect: 404.
    let (code, _) = admin(
        door,
        "POST",
        "/api/v1/disconnect",
        &json!({"clientId": "alice"}),
    );
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_told_before_its_token_expires_and_closed_with_4001_unless_it_refreshes() {
    let cluster = Cluster::start();
    let w1 = &cluster.workers[0];

    let (short, exp) = (token("carol", 4, json!({})), jwt::now_secs() + 4);
    let mut carol = connect(w1, &short).await.unwrap();
    let mut dave = connect(w1, &token("dave", 4, json!({}))).await.unwrap();

    // Two seconds before `exp` (--refresh-lead-secs 2) both are told.
    let told = next(&mut carol, "carol").await;
    assert_eq!(told["type"], "refresh_required", "{told}");
    assert!(told["exp"].as_u64().unwrap().abs_diff(exp) <= 1, "{told}");
    assert_eq!(next(&mut dave, "dave").await["type"], "refresh_required");

    // Dave refreshes; a token for someone else is refused first.
    send(
        &mut dave,
        json!({"type": "refresh", "token": token("mallory", 600, json!({}))}),
    )
    .await;
    assert_eq!(next(&mut dave, "dave").await["error"], "token_refused");
    send(
        &mut dave,
        json!({"type": "refresh", "token": token("dave", 600, json!({}))}),
    )
    .await;
    assert_eq!(next(&mut dave, "dave").await["type"], "refreshed");

    // Carol does not: closed at `exp` with 4001.
    assert_eq!(
        next(&mut carol, "carol").await,
        json!({"close": 4001, "reason": "token expired"})
    );
    // Dave is still there after carol's token ran out: an rpc is answered (ingest has none).
    send(&mut dave, json!({"type": "rpc", "id": 1, "method": "who"})).await;
    let reply = next(&mut dave, "dave").await;
    assert_eq!(
        (&reply["type"], &reply["error"]["code"]),
        (&json!("reply"), &json!("no_method"))
    );
}

/// Dials a worker's `/ws` with a token for `sub` valid `secs`; its `token()` mints a fresh one
/// (what an application's token endpoint would do).
struct TokenDial {
    worker: SocketAddr,
    sub: &'static str,
    secs: u64,
    claims: Value,
}

impl ews_client::Dial for TokenDial {
    type Stream = MaybeTlsStream<TcpStream>;

    fn dial(&self) -> ews_client::BoxFuture<'_, Result<Ws, ews_client::DialError>> {
        Box::pin(async move {
            let t = token(self.sub, self.secs, self.claims.clone());
            let url = format!("ws://{}/ws?ack=1&access_token={t}", self.worker);
            tokio_tungstenite::connect_async(url)
                .await
                .map(|(ws, _)| ws)
                .map_err(|e| ews_client::DialError::Failed(e.to_string()))
        })
    }

    fn token(&self) -> ews_client::BoxFuture<'_, Option<String>> {
        Box::pin(async move { Some(token(self.sub, 600, self.claims.clone())) })
    }
}

/// The Rust client library against real workers: it publishes to a topic a client on the other
/// worker hears (and is refused where its token does not grant), asks an rpc the route's
/// handler does not take, hears a join, and refreshes its short-lived token by itself inside
/// the session (no 4001, no reconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_publishes_asks_hears_joins_and_refreshes_its_token() {
    let cluster = Cluster::start();
    let [w1, w2] = &cluster.workers;
    let grants = json!({"topics": ["room.*"], "publish": ["room.*"]});
    let dial = TokenDial {
        worker: w1.public.expect("a worker"),
        sub: "erin",
        secs: 4,
        claims: grants.clone(),
    };
    let (client, mut inbound) =
        ews_client::Client::start(dial, None, ews_client::Options::new("erin-1"));
    client.subscribe("room.2").await.expect("granted");
    // Erin's own join goes out within a flush (250 ms): before frank is there to hear it.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let mut frank = connect(w2, &token("frank", 600, grants)).await.unwrap();
    send(&mut frank, json!({"type": "subscribe", "topic": "room.2"})).await;
    assert_eq!(next(&mut frank, "frank").await["type"], "subscribed");
    let joined = tokio::time::timeout(Duration::from_secs(10), inbound.recv())
        .await
        .expect("a join in time");
    assert_eq!(
        joined,
        Some(ews_client::Inbound::Join {
            topic: "room.2".into(),
            client_id: "frank".into(),
            info: None,
        })
    );

    assert_eq!(client.publish("room.2", "from erin").await, Ok(2));
    assert_eq!(
        next(&mut frank, "frank").await,
        json!({"type": "push", "msg": "from erin", "topic": "room.2", "from": "erin"})
    );
    let refused = client.publish("lobby", "no").await;
    assert!(
        matches!(&refused, Err(ews_client::RequestError::Refused { kind, .. }) if kind == "publish_forbidden"),
        "{refused:?}"
    );
    let asked = client.rpc("who", Value::Null, Duration::from_secs(5)).await;
    assert!(
        matches!(&asked, Err(ews_client::RequestError::Rpc(e)) if e.code == "no_method"),
        "{asked:?}"
    );

    // The first token lives 4 s; the worker asks 2 s before, the client refreshes, and the
    // session is still the first one well after the first token's end.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(client.publish("room.2", "still here").await, Ok(2));
    assert_eq!(
        client
            .stats()
            .opens
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "no reconnect: the session was refreshed in place"
    );
    client.close().await;
}
