//! The queue in a cluster: the active leader hosts it on its internal port (behind the cluster
//! secret) and a worker's queue sink finds it through gossip.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use ews_testkit::net::http_request;
use ews_testkit::nodes::{internal_addr, Node, NodeSpec};
use ews_testkit::{bin_path, free_port, wait_for_http_ok, Proc};

const SECRET: &str = "pipeline-test-secret";

#[test]
fn worker_events_reach_the_active_leaders_queue() {
    let dir = ews_testkit::Scratch::new("pipeline-cluster");
    let dir_arg = dir.arg();
    let leader_internal = internal_addr();
    let extra = ["--queue-dir", &dir_arg, "--cluster-secret", SECRET];
    let spec = NodeSpec {
        internal: Some(leader_internal),
        extra: &extra,
        ..NodeSpec::new("leader-1", &[])
    };
    let _leader = Node::leader(&spec);

    // The node link refuses a queue client without the cluster secret.
    let (code, _) =
        http_request(leader_internal, "GET", "/queue/events", &[], b"").expect("leader answers");
    assert_eq!(code, 401);

    let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut cmd = Command::new(bin_path("ews-worker"));
    cmd.args(["--node-id", "worker-1", "--no-auth", "--sink", "queue"])
        .args(["--seeds", &leader_internal.to_string()])
        .args(["--cluster-secret", SECRET, "--gossip-interval-ms", "200"])
        .args(["--listen", &public.to_string()])
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--internal-listen", &internal_addr().to_string()]);
    let worker = Proc::spawn("ews-worker", cmd);
    if let Err(e) = wait_for_http_ok(public, "/info", Duration::from_secs(20)) {
        panic!("worker did not start: {e}\n{}", worker.output());
    }

    let mut load = Command::new(bin_path("ews-load"));
    load.args(["verify", "--url", &format!("ws://{public}/ws")])
        .args(["--connections", "5", "--messages", "200", "--rate", "0"])
        .args([
            "--queue-url",
            &format!("ws://{leader_internal}/queue/events"),
        ])
        .args(["--cluster-secret", SECRET, "--read-idle-ms", "2000"])
        .args(["--deadline-secs", "60"]);
    let mut load = Proc::spawn("ews-load", load);
    let status = load
        .wait_timeout(Duration::from_secs(90))
        .expect("ews-load verify finished");
    let out = load.output();
    assert!(
        status.success(),
        "verify failed:\n{out}\nworker:\n{}",
        worker.output()
    );
    assert!(out.contains("sent 1000, acknowledged 1000"), "{out}");
    assert!(out.contains("missing 0"), "{out}");
}

/// A leader with its queue in `dir`, seeding `peer`.
fn queue_leader(id: &str, internal: SocketAddr, peer: SocketAddr, dir: &str) -> Node {
    Node::leader(&NodeSpec {
        internal: Some(internal),
        extra: &["--queue-dir", dir, "--cluster-secret", SECRET],
        ..NodeSpec::new(id, &[peer])
    })
}

/// Which leader `node` names active, if any.
fn active_leader(node: &Node) -> Option<String> {
    let (code, body) = ews_testkit::http_get(node.admin, "/members").ok()?;
    (code == 200).then_some(())?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["active_leader"].as_str().map(str::to_string)
}

fn wait_active(node: &Node, id: &str, within: Duration) {
    let start = std::time::Instant::now();
    while active_leader(node).as_deref() != Some(id) {
        assert!(
            start.elapsed() < within,
            "{} never named {id} active (names {:?})",
            node.node_id,
            active_leader(node)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The active leader dies mid-load, the other takes over, the first returns and is active again
/// (leaders choosing by view: the lowest id): every event acknowledged at any point is readable
/// from the active leader at the end. What the first accepted before it died is on its disk;
/// what the second accepted meanwhile, it no longer serves once it is standby, so the active
/// leader takes it over.
#[test]
fn after_a_failback_every_acknowledged_event_is_readable_from_the_active_leader() {
    let (d1, d2) = (
        ews_testkit::Scratch::new("failback-1"),
        ews_testkit::Scratch::new("failback-2"),
    );
    let (a1, a2) = (d1.arg(), d2.arg());
    let (i1, i2) = (internal_addr(), internal_addr());
    let mut l1 = queue_leader("leader-1", i1, i2, &a1);
    let l2 = queue_leader("leader-2", i2, i1, &a2);

    let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let internal = internal_addr();
    let mut cmd = Command::new(bin_path("ews-worker"));
    cmd.args(["--node-id", "worker-1", "--no-auth", "--sink", "queue"])
        .args(["--seeds", &format!("{i1},{i2}")])
        .args(["--cluster-secret", SECRET, "--gossip-interval-ms", "200"])
        .args(["--listen", &public.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--internal-listen", &internal.to_string()]);
    let worker = Proc::spawn("ews-worker", cmd);
    if let Err(e) = wait_for_http_ok(public, "/info", Duration::from_secs(20)) {
        panic!("worker did not start: {e}\n{}", worker.output());
    }
    let w = Node {
        node_id: "worker-1".into(),
        admin,
        internal,
        public: Some(public),
        proc: worker,
        queue_dir: None,
    };
    wait_active(&w, "leader-1", Duration::from_secs(20));

    // 10 clients x 300 events at 50/s: six seconds of load.
    let mut load = Command::new(bin_path("ews-load"));
    load.args(["verify", "--url", &format!("ws://{public}/ws")])
        .args(["--connections", "10", "--messages", "300", "--rate", "50"])
        .args(["--queue-url", &format!("ws://{i1}/queue/events")])
        .args(["--cluster-secret", SECRET, "--read-idle-ms", "6000"])
        .args(["--ack-timeout-ms", "60000", "--deadline-secs", "120"]);
    let mut load = Proc::spawn("ews-load", load);

    std::thread::sleep(Duration::from_secs(1));
    l1.proc.kill();
    wait_active(&w, "leader-2", Duration::from_secs(15));
    // Events flow into leader-2 for a while.
    std::thread::sleep(Duration::from_secs(1));
    let l1 = queue_leader("leader-1", i1, i2, &a1);
    wait_active(&w, "leader-1", Duration::from_secs(20));

    let status = load
        .wait_timeout(Duration::from_secs(150))
        .expect("ews-load verify finished");
    let out = load.output();
    assert!(
        status.success(),
        "verify failed:\n{out}\nleader-1:\n{}\nleader-2:\n{}",
        l1.proc.output(),
        l2.proc.output()
    );
    assert!(out.contains("sent 3000, acknowledged 3000"), "{out}");
    assert!(out.contains("missing 0"), "{out}");
    let (_, metrics) = ews_testkit::http_get(l1.admin, "/metrics").expect("metrics");
    let taken = metrics
        .lines()
        .find(|l| l.starts_with("ews_takeover_messages_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        taken > 0,
        "leader-1 took over leader-2's events:\n{metrics}"
    );
}
