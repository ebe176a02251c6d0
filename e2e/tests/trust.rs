//! Gossip cannot be forged into a decision: with a cluster secret, a node counts only once it
//! has proven the key with its own state over the node link. A stranger that speaks the gossip
//! protocol perfectly (the real membership library, real UDP) but has no key joins nothing that
//! matters: it becomes no leader, moves no metric, receives no event and no publish.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ews_cluster::{Membership, MembershipConfig, Role};
use ews_testkit::nodes::{internal_addr, Node, NodeSpec};
use ews_testkit::{bin_path, free_port, net, wait_for_http_ok, Proc};
use serde_json::Value;

const SECRET: &str = "trust-test-secret";

/// A member without the key: it gossips a role, a node id that sorts before every real one and
/// (for a worker) a connection count of 10^12, and logs every request made to its node link.
struct Stranger {
    membership: Membership,
    requests: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

fn stranger(id: &str, role: Role, seeds: &[SocketAddr]) -> Stranger {
    let internal = internal_addr();
    let link = TcpListener::bind(internal).expect("bind the stranger's link");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        for mut conn in link.incoming().flatten() {
            let mut buf = [0u8; 512];
            let n = conn.read(&mut buf).unwrap_or(0);
            let line = String::from_utf8_lossy(&buf[..n]);
            let first = line.lines().next().unwrap_or("").to_string();
            log.lock().unwrap().push(first);
        }
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let membership = rt
        .block_on(Membership::start(MembershipConfig {
            capacity: 10,
            gossip_interval: Duration::from_millis(200),
            seed_node_timeout: Duration::from_secs(1),
            join_give_up: None,
            dead_node_grace: Duration::from_secs(30),
            ..MembershipConfig::new(id, role, seeds, internal)
        }))
        .expect("start the stranger's membership");
    membership.set_conns(1_000_000_000_000);
    Stranger {
        membership,
        requests,
        _rt: rt,
    }
}

fn members(node: &Node, token: &str) -> Value {
    let (_, body) = net::request(
        node.admin,
        "GET",
        "/members",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    )
    .expect("members");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

fn member<'a>(view: &'a Value, id: &str) -> Option<&'a Value> {
    view["members"]
        .as_array()?
        .iter()
        .find(|m| m["node_id"] == id)
}

#[test]
fn gossip_from_a_node_without_the_key_decides_nothing() {
    let (i1, i2) = (internal_addr(), internal_addr());
    let secret = ["--cluster-secret", SECRET, "--admin-token", "adm"];
    let dir = ews_testkit::Scratch::new("trust");
    let (q1, q2) = (dir.join("leader-1"), dir.join("leader-2"));
    let (q1, q2) = (q1.to_string_lossy(), q2.to_string_lossy());
    let leader_args = |q: &str| {
        let mut a: Vec<String> = secret.iter().map(|s| s.to_string()).collect();
        a.extend(["--queue-dir".to_string(), q.to_string()]);
        a
    };
    let (a1, a2) = (leader_args(&q1), leader_args(&q2));
    let a1: Vec<&str> = a1.iter().map(String::as_str).collect();
    let a2: Vec<&str> = a2.iter().map(String::as_str).collect();
    let l1 = Node::leader(&NodeSpec {
        internal: Some(i1),
        extra: &a1,
        ..NodeSpec::new("leader-1", &[i2])
    });
    let _l2 = Node::leader(&NodeSpec {
        internal: Some(i2),
        extra: &a2,
        ..NodeSpec::new("leader-2", &[i1])
    });
    let seeds = [i1, i2];

    // The strangers gossip before the worker starts, so they are in its first views.
    let rogue_leader = stranger("0-rogue-leader", Role::Leader, &seeds);
    let rogue_worker = stranger("0-rogue-worker", Role::Worker, &seeds);
    rogue_leader.membership.set_conns(0);

    let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin = free_port();
    let w_internal = internal_addr();
    let mut cmd = Command::new(bin_path("ews-worker"));
    cmd.args(["--node-id", "worker-1", "--no-auth", "--sink", "queue"])
        .args(["--seeds", &format!("{i1},{i2}")])
        .args(secret)
        .args(["--gossip-interval-ms", "200"])
        .args(["--listen", &public.to_string()])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--internal-listen", &w_internal.to_string()]);
    let worker = Proc::spawn("ews-worker", cmd);
    wait_for_http_ok(public, "/info", Duration::from_secs(20)).expect("worker up");
    let w_admin: SocketAddr = ([127, 0, 0, 1], admin).into();
    let worker_node = Node {
        node_id: "worker-1".into(),
        admin: w_admin,
        internal: w_internal,
        public: Some(public),
        proc: worker,
        queue_dir: None,
    };

    // Every real node sees the strangers gossip, and believes nothing of it.
    let start = Instant::now();
    loop {
        let views = [members(&l1, "adm"), members(&worker_node, "adm")];
        let settled = views.iter().all(|v| {
            v["active_leader"] == "leader-1"
                && member(v, "0-rogue-leader").is_some()
                && member(v, "0-rogue-worker").is_some()
                && member(v, "worker-1").is_some_and(|m| m["verified"] == true)
        });
        if settled {
            for v in &views {
                for id in ["0-rogue-leader", "0-rogue-worker"] {
                    let m = member(v, id).expect("listed");
                    assert_eq!(m["verified"], false, "{id}: {m}");
                    assert_eq!(m["reachable"], false, "{id}: {m}");
                }
                assert_eq!(v["cluster_connections"], 0, "{v}");
            }
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "views never settled: {views:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, metrics) = ews_testkit::http_get(l1.admin, "/metrics").expect("metrics");
    assert!(metrics.contains("ews_cluster_connections 0"), "{metrics}");
    assert!(metrics.contains("ews_cluster_active_leader 1"), "{metrics}");

    // Events go to the real active leader's queue, all of them (the worker's queue sink follows
    // the active leader once its view has settled).
    std::thread::sleep(Duration::from_secs(2));
    let mut load = Command::new(bin_path("ews-load"));
    load.args(["verify", "--url", &format!("ws://{public}/ws")])
        .args(["--connections", "4", "--messages", "50", "--rate", "0"])
        .args(["--queue-url", &format!("ws://{i1}/queue/events")])
        .args(["--cluster-secret", SECRET, "--read-idle-ms", "1500"])
        .args(["--deadline-secs", "60", "--json"]);
    let out = load.output().expect("ews-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    assert!(
        out.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["acked"], 200, "{report}");
    assert_eq!(report["missing"], 0, "{report}");

    // A publish reaches no stranger.
    let (code, _) = net::request(
        w_admin,
        "POST",
        "/api/v1/publish",
        &[("Authorization", "Bearer adm")],
        br#"{"clientId":"alice","msg":"secret"}"#,
    )
    .expect("publish");
    assert_eq!(code, 404);
    for s in [&rogue_leader, &rogue_worker] {
        let got = s.requests.lock().unwrap().clone();
        assert!(
            got.iter().all(|l| l.starts_with("GET /internal/v1/state ")),
            "a stranger was sent more than state probes: {got:?}"
        );
    }
}

#[test]
fn a_worker_with_the_wrong_key_cannot_join() {
    let i1 = internal_addr();
    let _l1 = Node::leader(&NodeSpec {
        internal: Some(i1),
        extra: &["--cluster-secret", SECRET],
        ..NodeSpec::new("leader-1", &[])
    });
    let mut w = Node::spawn(
        "ews-worker",
        &NodeSpec {
            extra: &[
                "--cluster-secret",
                "not-the-secret",
                "--shutdown-after-unsuccessful-join-secs",
                "4",
            ],
            ..NodeSpec::new("worker-1", &[i1])
        },
    );
    let status = w
        .proc
        .wait_timeout(Duration::from_secs(30))
        .expect("the worker gives up");
    assert!(!status.success());
    assert!(
        w.proc.output().contains("could not join the cluster"),
        "{}",
        w.proc.output()
    );
}

/// A rotation's middle step: the leader and one worker still sign with the old secret and also
/// accept the new one; another worker already signs with the new one and accepts the old. Every
/// node proves itself to every other: no link is down at any step.
#[test]
fn a_key_rotation_keeps_every_link_up() {
    let (i1, i2) = (internal_addr(), internal_addr());
    let old_accepting_new = [
        "--cluster-secret",
        "old-secret",
        "--cluster-secret-accept",
        "new-secret",
        "--admin-token",
        "adm",
    ];
    let new_accepting_old = [
        "--cluster-secret",
        "new-secret",
        "--cluster-secret-accept",
        "old-secret",
        "--admin-token",
        "adm",
    ];
    let leader = Node::leader(&NodeSpec {
        internal: Some(i1),
        extra: &old_accepting_new,
        ..NodeSpec::new("leader-1", &[i2])
    });
    let seeds = [i1];
    let w_old = Node::worker(&NodeSpec {
        extra: &old_accepting_new,
        ..NodeSpec::new("worker-old", &seeds)
    });
    let w_new = Node::worker(&NodeSpec {
        extra: &new_accepting_old,
        ..NodeSpec::new("worker-new", &seeds)
    });
    let everyone = ["leader-1", "worker-old", "worker-new"];
    let start = Instant::now();
    loop {
        let all_verified = [&leader, &w_old, &w_new].iter().all(|n| {
            let v = members(n, "adm");
            everyone.iter().all(|id| {
                member(&v, id).is_some_and(|m| m["verified"] == true && m["reachable"] == true)
            })
        });
        if all_verified {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not every node proved itself to every other: {:?}",
            [&leader, &w_old, &w_new].map(|n| members(n, "adm"))
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
