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
