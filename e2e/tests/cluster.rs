//! Multi-process cluster behaviour on loopback: real `ews-leader` and `ews-worker` binaries,
//! real UDP gossip, observed through each node's `/members`.
//!
//! Gossip runs every 200 ms here. Timings are printed (run with `--nocapture` to see them) and
//! only asserted against generous bounds: the machine running the tests may be busy.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ews_testkit::nodes::{internal_addr, Node, NodeSpec};
use serde_json::Value;

mod support;

/// Gossip interval of every node; `EWS_TEST_GOSSIP_MS` overrides it to measure other settings
/// (the wait bounds scale with it).
fn gossip_ms() -> u64 {
    std::env::var("EWS_TEST_GOSSIP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// `secs` at 200 ms gossip, scaled to the configured interval.
fn bound(secs: u64) -> Duration {
    Duration::from_millis(secs * 1000 * gossip_ms().max(200) / 200)
}

fn view(node: &Node) -> Option<Value> {
    serde_json::from_str(&node.members().ok()?).ok()
}

fn member<'a>(view: &'a Value, id: &str) -> Option<&'a Value> {
    view["members"]
        .as_array()?
        .iter()
        .find(|m| m["node_id"] == id)
}

/// `node` sees `id` reachable with `status`.
fn sees(node: &Node, id: &str, status: &str) -> bool {
    view(node)
        .and_then(|v| member(&v, id).map(|m| m["reachable"] == true && m["status"] == status))
        .unwrap_or(false)
}

/// `node` no longer counts `id`: gone from its view, unreachable, or leaving.
fn dropped(node: &Node, id: &str) -> bool {
    view(node)
        .map(|v| match member(&v, id) {
            None => true,
            Some(m) => m["reachable"] == false || m["status"] == "leaving",
        })
        .unwrap_or(false)
}

fn active_leader(node: &Node) -> Option<String> {
    view(node)?["active_leader"].as_str().map(str::to_string)
}

/// Polls `cond` every 20 ms; the time it took, or a panic with `what` after `limit`.
fn wait(what: &str, limit: Duration, nodes: &[&Node], mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            let views: Vec<String> = nodes
                .iter()
                .map(|n| format!("{}: {}", n.node_id, n.members().unwrap_or_default()))
                .collect();
            panic!("{what}: not after {limit:?}\n{}", views.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn leader(id: &str, internal: SocketAddr, peer: SocketAddr) -> Node {
    Node::leader(&NodeSpec {
        internal: Some(internal),
        gossip_interval_ms: gossip_ms(),
        extra: &["--dead-node-grace-secs", "3"],
        ..NodeSpec::new(id, &[peer])
    })
}

fn worker(id: &str, seeds: &[SocketAddr], extra: &[&str]) -> Node {
    Node::worker(&NodeSpec {
        gossip_interval_ms: gossip_ms(),
        extra,
        ..NodeSpec::new(id, seeds)
    })
}

/// A WebSocket session held open by a raw upgrade on `/ws` (the worker runs `--no-auth`).
fn open_session(public: SocketAddr) -> TcpStream {
    ews_testkit::ws_open(public, "/ws").expect("upgrade to a session")
}

#[test]
fn cluster_forms_detects_failures_and_survives_a_leader() {
    let (i1, i2) = (internal_addr(), internal_addr());
    let seeds = [i1, i2];
    let start = Instant::now();
    let mut l1 = leader("leader-1", i1, i2);
    let l2 = leader("leader-2", i2, i1);
    let fast_drain = ["--drain-seconds", "2", "--seed-node-timeout-secs", "1"];
    let w1 = worker("worker-1", &seeds, &fast_drain);
    let mut w2 = worker("worker-2", &seeds, &fast_drain);
    let mut w3 = worker("worker-3", &seeds, &fast_drain);
    let ids = ["leader-1", "leader-2", "worker-1", "worker-2", "worker-3"];

    // 2 leaders + 3 workers converge: every node sees every node up.
    {
        let all = [&l1, &l2, &w1, &w2, &w3];
        // Converged: everyone up, and leader-1's claim of the active term heard everywhere.
        wait("convergence", bound(20), &all, || {
            all.iter().all(|n| {
                ids.iter().all(|id| sees(n, id, "up"))
                    && active_leader(n).as_deref() == Some("leader-1")
            })
        });
        eprintln!(
            "[timing] 5 processes started and converged in {:?} (gossip {} ms)",
            start.elapsed(),
            gossip_ms()
        );
        for n in all {
            assert_eq!(
                active_leader(n).as_deref(),
                Some("leader-1"),
                "{}",
                n.node_id
            );
        }
        let v = view(&w1).unwrap();
        let me = member(&v, "worker-1").unwrap();
        assert!(me["capacity"].as_u64().unwrap_or(0) > 0, "{me}");
        assert!(
            me["public_addr"].is_string() && me["admin_addr"].is_string(),
            "{me}"
        );
    }

    // kill -9 of a worker: seen dead by everyone else.
    {
        w3.proc.kill();
        let others = [&l1, &l2, &w1, &w2];
        let took = wait("crash detection", bound(15), &others, || {
            others.iter().all(|n| dropped(n, "worker-3"))
        });
        eprintln!("[timing] kill -9 of worker-3 seen by all 4 peers after {took:?}");
        // ... and forgotten after the dead-node grace period (3 s on the leaders here).
        let leaders = [&l1, &l2];
        wait("dead node forgotten", bound(15), &leaders, || {
            leaders
                .iter()
                .all(|n| view(n).is_some_and(|v| member(&v, "worker-3").is_none()))
        });
    }

    // A client session on worker-2 is gossiped as its connection count and summed by leaders.
    let session = open_session(w2.public.expect("worker public port"));
    wait("connection count", bound(10), &[&l1, &w2], || {
        view(&l1).is_some_and(|v| {
            v["cluster_connections"] == 1 && member(&v, "worker-2").is_some_and(|m| m["conns"] == 1)
        })
    });

    // SIGTERM of a worker: `leaving` within a few gossip rounds while it keeps gossiping
    // through its drain (the open session holds the drain), then a clean exit.
    {
        w2.proc.signal(libc::SIGTERM);
        let others = [&l1, &l2, &w1];
        // leader-1 must see it *leaving and reachable* (announced before gossip stopped), not
        // merely unreachable.
        let mut announced = false;
        let took = wait("leave detection", bound(5), &others, || {
            announced |= sees(&l1, "worker-2", "leaving");
            announced && others.iter().all(|n| dropped(n, "worker-2"))
        });
        eprintln!("[timing] SIGTERM of worker-2 seen as leaving by all 3 peers after {took:?}");
        assert_eq!(active_leader(&l1).as_deref(), Some("leader-1"));
        let status = w2.proc.wait_timeout(Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "worker-2 did not exit 0: {status:?}\n{}",
            w2.proc.output()
        );
        drop(session);
    }

    // kill -9 of the active leader: the other takes over, and a new worker joins through it.
    {
        l1.proc.kill();
        let rest = [&l2, &w1];
        let took = wait("leader failover", bound(15), &rest, || {
            rest.iter()
                .all(|n| active_leader(n).as_deref() == Some("leader-2"))
        });
        eprintln!("[timing] active leader moved to leader-2 after {took:?}");
        let w4 = worker("worker-4", &seeds, &fast_drain);
        let all = [&l2, &w1, &w4];
        let took = wait("join through the surviving leader", bound(20), &all, || {
            all.iter().all(|n| {
                ["leader-2", "worker-1", "worker-4"]
                    .iter()
                    .all(|id| sees(n, id, "up"))
            })
        });
        eprintln!("[timing] worker-4 joined through leader-2 and converged in {took:?}");

        // leader-1 restarts at the same address: a new generation that replaces the old entry,
        // and the lowest id is active again.
        let old_gen = member(&view(&l2).unwrap(), "leader-1").map(|m| m["generation"].clone());
        drop(l1);
        let l1 = leader("leader-1", i1, i2);
        let all = [&l1, &l2, &w1, &w4];
        wait("restarted leader rejoins", bound(20), &all, || {
            all.iter().all(|n| {
                view(n).is_some_and(|v| {
                    let entries = v["members"]
                        .as_array()
                        .map(|ms| ms.iter().filter(|m| m["node_id"] == "leader-1").count());
                    v["active_leader"] == "leader-1"
                        && entries == Some(1)
                        && member(&v, "leader-1").is_some_and(|m| {
                            m["reachable"] == true && Some(&m["generation"]) != old_gen.as_ref()
                        })
                })
            })
        });
    }
}

#[test]
fn worker_started_before_the_leaders_joins_when_they_come_up() {
    let (i1, i2) = (internal_addr(), internal_addr());
    // Seeds by host name, as with the leaders' private DNS names in AWS.
    let seeds = format!("localhost:{},localhost:{}", i1.port(), i2.port());
    let w = worker(
        "worker-1",
        &[],
        &[
            "--seeds",
            &seeds,
            "--seed-node-timeout-secs",
            "1",
            "--shutdown-after-unsuccessful-join-secs",
            "60",
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(sees(&w, "worker-1", "joining"), "{:?}", w.members());

    let l1 = leader("leader-1", i1, i2);
    let l2 = leader("leader-2", i2, i1);
    let all = [&w, &l1, &l2];
    let took = wait("late join", bound(20), &all, || {
        all.iter().all(|n| {
            ["leader-1", "leader-2", "worker-1"]
                .iter()
                .all(|id| sees(n, id, "up"))
        })
    });
    eprintln!("[timing] early worker joined {took:?} after the leaders started");
}

#[test]
fn worker_with_unreachable_seeds_gives_up_and_exits_non_zero() {
    let nowhere = internal_addr();
    let mut w = Node::spawn(
        "ews-worker",
        &NodeSpec {
            gossip_interval_ms: gossip_ms(),
            extra: &[
                "--seed-node-timeout-secs",
                "1",
                "--shutdown-after-unsuccessful-join-secs",
                "2",
            ],
            ..NodeSpec::new("worker-1", &[nowhere])
        },
    );
    let started = Instant::now();
    let status = w.proc.wait_timeout(Duration::from_secs(20));
    let took = started.elapsed();
    assert!(
        status.is_some_and(|s| !s.success()),
        "expected a non-zero exit, got {status:?}\n{}",
        w.proc.output()
    );
    assert!(
        w.proc.output().contains("could not join the cluster"),
        "{}",
        w.proc.output()
    );
    assert!(
        took >= Duration::from_secs(2),
        "gave up too early: {took:?}"
    );
    eprintln!("[timing] gave up and exited after {took:?} (limit 2 s)");
}

#[test]
fn lone_leader_forms_the_cluster_after_the_seed_timeout_and_refuses_websockets() {
    let (i1, i2) = (internal_addr(), internal_addr());
    let started = Instant::now();
    let l1 = Node::leader(&NodeSpec {
        internal: Some(i1),
        gossip_interval_ms: gossip_ms(),
        extra: &["--seed-node-timeout-secs", "2"],
        ..NodeSpec::new("leader-1", &[i2])
    });
    // Its peer never answers: joining (not active) until one seed-node timeout has passed.
    wait("own entry", Duration::from_secs(1), &[&l1], || {
        view(&l1).is_some_and(|v| member(&v, "leader-1").is_some())
    });
    assert!(sees(&l1, "leader-1", "joining"), "{:?}", l1.members());
    assert_eq!(active_leader(&l1), None);
    wait("lone leader up", Duration::from_secs(10), &[&l1], || {
        active_leader(&l1).as_deref() == Some("leader-1")
    });
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        ews_testkit::http_get(l1.admin, "/info").unwrap(),
        (200, "Success".to_string())
    );
    let (code, _) = ews_testkit::net::request(
        l1.admin,
        "GET",
        "/ws",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(code, 404);
    // Without a configured secret the node link is open.
    assert_eq!(ews_testkit::http_get(l1.internal, "/info").unwrap().0, 200);
    let (_, metrics) = ews_testkit::http_get(l1.admin, "/metrics").unwrap();
    assert!(
        metrics.contains(r#"ews_cluster_members{role="leader",status="up"} 1"#),
        "{metrics}"
    );
}

#[test]
fn node_link_requires_the_cluster_secret() {
    let (i1, i2) = (internal_addr(), internal_addr());
    let l1 = Node::leader(&NodeSpec {
        internal: Some(i1),
        extra: &["--cluster-secret", "s3cret"],
        ..NodeSpec::new("leader-1", &[i2])
    });
    let get = |headers: &[(&str, &str)]| {
        ews_testkit::net::request(l1.internal, "GET", "/info", headers, b"")
            .unwrap()
            .0
    };
    let me = support::node_at(l1.internal, "s3cret");
    let signed = |secret: &str| support::link_header(secret, "GET", "/info", b"", &me);
    assert_eq!(get(&[]), 401);
    assert_eq!(get(&[("x-ews-link", &signed("wrong"))]), 401);
    // The secret itself opens nothing: it is never sent.
    assert_eq!(get(&[("x-ews-cluster-secret", "s3cret")]), 401);
    let good = signed("s3cret");
    assert_eq!(get(&[("x-ews-link", &good)]), 200);
    assert_eq!(get(&[("x-ews-link", &good)]), 401, "a replayed signature");
}

#[test]
fn leader_admin_routes_need_the_admin_token() {
    let l1 = Node::leader(&NodeSpec {
        extra: &["--admin-token", "t0k"],
        ..NodeSpec::new("leader-1", &[])
    });
    let get = |headers: &[(&str, &str)], path: &str| {
        ews_testkit::net::request(l1.admin, "GET", path, headers, b"")
            .unwrap()
            .0
    };
    assert_eq!(get(&[], "/info"), 200);
    assert_eq!(get(&[], "/metrics"), 200);
    assert_eq!(get(&[], "/members"), 401);
    assert_eq!(get(&[("Authorization", "Bearer nope")], "/members"), 401);
    assert_eq!(get(&[("Authorization", "Bearer t0k")], "/members"), 200);
}
