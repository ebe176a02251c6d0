//! Every port of every node bounds what a silent peer can hold: with more silent connections
//! open than the port serves at once, a real request is still answered, and each silent one is
//! closed once its header timeout runs out (one timeout per round of the connection cap).

use std::net::SocketAddr;
use std::time::Duration;

use ews_testkit::net::{http_request, silent_connections, wait_all_closed};
use ews_testkit::nodes::{internal_addr, Node, NodeSpec};
use ews_testkit::{queue_broker, Scratch};

/// Connections each port serves at once in these tests.
const CAP: usize = 4;
/// Silent connections opened: two rounds of the cap.
const SILENT: usize = 2 * CAP;
/// The header timeout the nodes run with, in seconds.
const TIMEOUT_SECS: u64 = 1;

/// The port flags every node here runs with.
const PORT_FLAGS: &[&str] = &[
    "--port-max-connections",
    "4",
    "--port-header-timeout-secs",
    "1",
];

/// Fills `addr` with silent connections, then checks that `path` is answered `want` and that
/// every silent connection is closed.
fn holds_up(port: &str, addr: SocketAddr, path: &str, want: u16) {
    let mut silent = silent_connections(addr, SILENT)
        .unwrap_or_else(|e| panic!("{port}: opening silent connections: {e}"));
    let (code, body) = http_request(addr, "GET", path, &[], b"")
        .unwrap_or_else(|e| panic!("{port}: a real request behind {SILENT} silent ones: {e}"));
    assert_eq!(code, want, "{port}: GET {path}: {body}");
    // Each round of CAP connections is closed one timeout after it was accepted; two rounds,
    // plus slack for a loaded machine.
    let bound = Duration::from_secs(TIMEOUT_SECS * (SILENT / CAP) as u64 + 10);
    if let Err(e) = wait_all_closed(&mut silent, bound) {
        panic!("{port}: {e}");
    }
}

#[test]
fn leader_and_worker_ports_close_silent_connections() {
    let leader_internal = internal_addr();
    let mut leader_args = PORT_FLAGS.to_vec();
    leader_args.extend(["--queue-dir", "/nonexistent/never-opened"]);
    let leader = Node::leader(&NodeSpec {
        internal: Some(leader_internal),
        extra: &leader_args,
        ..NodeSpec::new("leader-1", &[])
    });
    let seeds = [leader_internal];
    let mut worker_args = PORT_FLAGS.to_vec();
    worker_args.extend(["--max-connections", "4", "--handshake-timeout-secs", "1"]);
    let worker = Node::worker(&NodeSpec {
        extra: &worker_args,
        ..NodeSpec::new("worker-1", &seeds)
    });
    let public = worker.public.expect("a worker has a public port");

    holds_up("worker public", public, "/info", 200);
    holds_up("worker admin", worker.admin, "/metrics", 200);
    holds_up("worker node link", worker.internal, "/info", 200);
    holds_up("leader admin", leader.admin, "/info", 200);
    holds_up("leader internal", leader.internal, "/info", 200);
}

#[test]
fn queue_broker_closes_silent_connections() {
    let dir = Scratch::new("ports-queue");
    let addr: SocketAddr = ([127, 0, 0, 1], ews_testkit::free_port()).into();
    let _broker = queue_broker(addr, dir.path(), PORT_FLAGS);
    holds_up("ews-queue", addr, "/info", 200);
}
