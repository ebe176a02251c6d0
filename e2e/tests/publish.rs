//! Cluster-wide publish: `POST /api/v1/publish` on one worker reaches a client connected to
//! another worker, over the node link (the workers' internal TCP port, cluster secret required).
//! Real `ews-leader` and `ews-worker` processes on loopback.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use std::sync::Arc;

use ews_cluster::{Membership, MembershipConfig, Role, STATE_PATH};
use ews_http::args::Secret;
use ews_http::link::LinkKey;
use ews_http::link::Verifier;
use ews_testkit::net;
use ews_testkit::nodes::{internal_addr, Node, NodeSpec};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

mod support;

const SECRET: &str = "s3cret";
const JWT_SECRET: &str = "jwt-test-secret";

fn leader(id: &str, internal: SocketAddr, peer: SocketAddr) -> Node {
    Node::leader(&NodeSpec {
        internal: Some(internal),
        extra: &["--cluster-secret", SECRET],
        ..NodeSpec::new(id, &[peer])
    })
}

/// A worker that authenticates clients with HS256 tokens (a push needs the client id a token
/// carries).
fn auth_worker(id: &str, seeds: &[SocketAddr]) -> Node {
    Node::worker(&NodeSpec {
        extra: &["--cluster-secret", SECRET],
        jwt_hs256_secret: Some(JWT_SECRET),
        ..NodeSpec::new(id, seeds)
    })
}

fn token(sub: &str) -> String {
    ews_testkit::jwt::client_token(JWT_SECRET, sub, &[])
}

/// An authenticated WebSocket session held open by a raw upgrade on `/ws`.
fn open_session(public: SocketAddr, token: &str) -> TcpStream {
    ews_testkit::ws_open(public, &format!("/ws?access_token={token}"))
        .expect("upgrade to a session")
}

/// Reads one unmasked server text frame (short payload).
fn read_text_frame(s: &mut TcpStream) -> String {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    assert_eq!(h[0], 0x81, "a final text frame");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => panic!("unexpectedly long frame"),
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    String::from_utf8(payload).unwrap()
}

fn publish(addr: SocketAddr, path: &str, headers: &[(&str, &str)], msg: &str) -> (u16, Value) {
    publish_to(addr, path, headers, "alice", msg)
}

fn publish_to(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    client: &str,
    msg: &str,
) -> (u16, Value) {
    let body = json!({"clientId": client, "msg": msg}).to_string();
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    let (code, body) = net::request(addr, "POST", path, &h, body.as_bytes()).unwrap();
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A node-link publish of `msg` to alice, signed with `secret` over the body of `signed_msg`.
fn publish_signed(addr: SocketAddr, secret: &str, signed_msg: &str, msg: &str) -> (u16, Value) {
    let path = "/internal/v1/publish";
    let signed_body = json!({"clientId": "alice", "msg": signed_msg}).to_string();
    let to = support::node_at(addr, SECRET);
    let header = support::link_header(secret, "POST", path, signed_body.as_bytes(), &to);
    publish(addr, path, &[("x-ews-link", &header)], msg)
}

/// Two leaders, worker A (publishes, runs `--no-auth`) and worker B (authenticates the client).
/// Keep it whole: a destructuring `let` would drop (and stop) the leaders at once.
struct Cluster {
    _leaders: [Node; 2],
    seeds: [SocketAddr; 2],
    a: Node,
    b: Node,
}

impl Cluster {
    fn start() -> Cluster {
        let (i1, i2) = (internal_addr(), internal_addr());
        let leaders = [leader("leader-1", i1, i2), leader("leader-2", i2, i1)];
        let seeds = [i1, i2];
        let a = Node::worker(&NodeSpec {
            extra: &["--cluster-secret", SECRET],
            ..NodeSpec::new("worker-a", &seeds)
        });
        let b = auth_worker("worker-b", &seeds);
        Cluster {
            _leaders: leaders,
            seeds,
            a,
            b,
        }
    }
}

#[test]
fn publish_on_one_worker_reaches_a_client_on_another() {
    let cluster = Cluster::start();
    let (a, b) = (&cluster.a, &cluster.b);
    let mut client = open_session(b.public.unwrap(), &token("alice"));

    // Until A's view holds B as up, A finds no session of alice (404); then it reaches B.
    let start = Instant::now();
    let answer = loop {
        let (code, v) = publish(a.admin, "/api/v1/publish", &[], "hello from A");
        if code == 200 {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "publish never reached B: {code} {v}\nA: {}\nB: {}",
            a.members().unwrap_or_default(),
            b.proc.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(answer["delivered"], 1, "{answer}");
    assert_eq!(answer["dropped"], 0, "{answer}");
    assert_eq!(answer["failed"], json!([]), "{answer}");
    let frame: Value = serde_json::from_str(&read_text_frame(&mut client)).unwrap();
    assert_eq!(frame, json!({"type": "push", "msg": "hello from A"}));

    // B's node link refuses a publish not signed with the cluster key, signed for another body,
    // or carrying the secret itself.
    let path = "/internal/v1/publish";
    assert_eq!(publish(b.internal, path, &[], "x").0, 401);
    let clear = [("x-ews-cluster-secret", SECRET)];
    assert_eq!(publish(b.internal, path, &clear, "x").0, 401);
    assert_eq!(publish_signed(b.internal, "wrong", "x", "x").0, 401);
    assert_eq!(publish_signed(b.internal, SECRET, "other", "x").0, 401);
    let (code, v) = publish_signed(b.internal, SECRET, "direct", "direct");
    assert_eq!((code, &v["delivered"]), (200, &json!(1)), "{v}");
    let frame: Value = serde_json::from_str(&read_text_frame(&mut client)).unwrap();
    assert_eq!(frame["msg"], "direct");
}

/// A worker member that gossips like any other (the real membership library, real UDP) and
/// proves the cluster key when asked for its state, but whose node link never answers a publish:
/// what a hung or overloaded worker shows its peers. Unlike a stopped process it stays up in every
/// view, so the test does not race failure detection.
struct SilentPeer {
    _membership: Arc<Membership>,
    _rt: tokio::runtime::Runtime,
}

fn silent_peer(id: &str, seeds: &[SocketAddr]) -> SilentPeer {
    let internal = internal_addr();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let membership = Arc::new(
        rt.block_on(Membership::start(MembershipConfig {
            capacity: 10,
            gossip_interval: Duration::from_millis(200),
            seed_node_timeout: Duration::from_secs(1),
            join_give_up: None,
            dead_node_grace: Duration::from_secs(30),
            secret: Some(Secret::new(SECRET)),
            ..MembershipConfig::new(id, Role::Worker, seeds, internal)
        }))
        .expect("start the silent peer's membership"),
    );
    let verifier = Arc::new(
        Verifier::new(LinkKey::derive(&Secret::new(SECRET)), membership.node_ref())
            .allow_unbound(http::Method::GET, STATE_PATH),
    );
    let m = membership.clone();
    let _guard = rt.enter();
    let listener = ews_http::bind(internal, ews_http::Backlog::system()).expect("bind the link");
    rt.spawn(ews_http::serve(
        listener,
        move |req, _| {
            let (m, verifier) = (m.clone(), verifier.clone());
            async move {
                match ews_http::link::admit(Some(&verifier), &req) {
                    Err(e) => e.into_response(),
                    Ok(a) if req.uri().path() == STATE_PATH => m.state_answer(a.as_ref()),
                    // Hangs: the publish is never answered.
                    Ok(_) => std::future::pending().await,
                }
            }
        },
        CancellationToken::new(),
        ews_http::Limits::internal(),
    ));
    drop(_guard);
    SilentPeer {
        _membership: membership,
        _rt: rt,
    }
}

/// `node`'s view holds `id` as a reachable, up member.
fn sees_up(node: &Node, id: &str) -> bool {
    node.members().is_ok_and(|body| lists_up(&body, id))
}

/// A `/members` body holds `id` as a reachable, up member.
fn lists_up(members: &str, id: &str) -> bool {
    serde_json::from_str::<Value>(members)
        .ok()
        .and_then(|v| {
            v["members"]
                .as_array()?
                .iter()
                .find(|m| m["node_id"] == id)
                .map(|m| m["reachable"] == true && m["status"] == "up")
        })
        .unwrap_or(false)
}

/// A peer that never answers is named in `failed` once its ask times out, and does not hold back
/// delivery through the live peer; with nothing delivered anywhere the answer is 502.
#[test]
fn a_silent_peer_is_named_and_does_not_hold_back_the_others() {
    let cluster = Cluster::start();
    let (a, b) = (&cluster.a, &cluster.b);
    let _c = silent_peer("worker-c", &cluster.seeds);
    let mut client = open_session(b.public.unwrap(), &token("alice"));

    let start = Instant::now();
    while !(sees_up(a, "worker-b") && sees_up(a, "worker-c")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "A never saw B and C up: {}",
            a.members().unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let (code, v) = publish(a.admin, "/api/v1/publish", &[], "past a silent peer");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["delivered"], 1, "{v}");
    assert_eq!(v["failed"], json!(["worker-c"]), "{v}");
    let frame: Value = serde_json::from_str(&read_text_frame(&mut client)).unwrap();
    assert_eq!(frame["msg"], "past a silent peer");

    let (code, v) = publish_to(a.admin, "/api/v1/publish", &[], "nobody", "lost");
    assert_eq!(code, 502, "{v}");
    assert_eq!(v["delivered"], 0, "{v}");
    assert_eq!(v["failed"], json!(["worker-c"]), "{v}");
}

/// `GET /members` on an admin port that wants `token`: does it hold `id` as reachable and up?
fn sees_up_with(admin: SocketAddr, token: &str, id: &str) -> bool {
    let auth = format!("Bearer {token}");
    net::request(admin, "GET", "/members", &[("Authorization", &auth)], b"")
        .is_ok_and(|(code, body)| code == 200 && lists_up(&body, id))
}

/// The front door in AWS: a backend publishes through a leader (admin token required), which
/// reaches the client's sessions on two workers while a third worker never answers: the answer
/// comes back once that worker's deadline passed, naming it, with every worker's outcome.
#[test]
fn a_publish_through_a_leader_reaches_every_worker_and_names_a_silent_one() {
    const ADMIN_TOKEN: &str = "front-door-token";
    let (i1, i2) = (internal_addr(), internal_addr());
    let door = Node::leader(&NodeSpec {
        internal: Some(i1),
        extra: &[
            "--cluster-secret",
            SECRET,
            "--publish-peer-timeout-ms",
            "500",
        ],
        env: &[("EWS_ADMIN_TOKEN", ADMIN_TOKEN)],
        ..NodeSpec::new("leader-1", &[i2])
    });
    let _other = leader("leader-2", i2, i1);
    let seeds = [i1, i2];
    let b = auth_worker("worker-b", &seeds);
    let d = auth_worker("worker-d", &seeds);
    let _c = silent_peer("worker-c", &seeds);
    let mut on_b = open_session(b.public.unwrap(), &token("alice"));
    let mut on_d = open_session(d.public.unwrap(), &token("alice"));

    let start = Instant::now();
    while !["worker-b", "worker-c", "worker-d"]
        .iter()
        .all(|id| sees_up_with(door.admin, ADMIN_TOKEN, id))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the leader never saw every worker up:\n{}",
            door.proc.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // No token, no publish.
    let (code, _) = publish(door.admin, "/api/v1/publish", &[], "anonymous");
    assert_eq!(code, 401);

    let auth = format!("Bearer {ADMIN_TOKEN}");
    let asked = Instant::now();
    let (code, v) = publish(
        door.admin,
        "/api/v1/publish",
        &[("Authorization", &auth)],
        "through the front door",
    );
    let took = asked.elapsed();
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["delivered"], 2, "{v}");
    assert_eq!(v["failed"], json!(["worker-c"]), "{v}");
    assert_eq!(
        v["nodes"]["worker-b"],
        json!({"delivered": 1, "dropped": 0}),
        "{v}"
    );
    assert_eq!(
        v["nodes"]["worker-d"],
        json!({"delivered": 1, "dropped": 0}),
        "{v}"
    );
    assert_eq!(
        v["nodes"]["worker-c"],
        json!({"error": "no answer within 500 ms"}),
        "{v}"
    );
    // Bounded by the deadline, not by the silent worker (which never answers at all).
    assert!(took < Duration::from_secs(10), "the publish hung: {took:?}");
    for client in [&mut on_b, &mut on_d] {
        let frame: Value = serde_json::from_str(&read_text_frame(client)).unwrap();
        assert_eq!(
            frame,
            json!({"type": "push", "msg": "through the front door"})
        );
    }
}
