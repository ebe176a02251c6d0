//! The two leaders partitioned from each other, each still reaching a worker and the lease store
//! (DynamoDB, emulated by moto): never two active leaders, one writer of the cluster metric, and
//! every event acknowledged through either worker readable from the active leader after the
//! heal. Each side is a network namespace; the test process and moto sit in the root namespace,
//! which reaches both.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ews_testkit::moto::Moto;
use ews_testkit::netns::Lab;
use ews_testkit::nginx::RoundRobin;
use ews_testkit::{bin_path, free_port, http_get, net, wait_for_http_ok, Proc, Scratch};

const SECRET: &str = "partition-test-secret";
const ADMIN_TOKEN: &str = "partition-admin-token";

struct Node {
    id: String,
    admin: SocketAddr,
    internal: SocketAddr,
    public: Option<SocketAddr>,
    proc: Proc,
}

fn addr(ip: IpAddr) -> SocketAddr {
    SocketAddr::new(ip, free_port())
}

/// Leader `i` of the lab, in host `i`'s namespace, seeding the other leader.
fn leader(lab: &Lab, moto: &Moto, i: usize, internal: [SocketAddr; 2], dir: &Scratch) -> Node {
    let id = format!("leader-{}", i + 1);
    let admin = addr(lab.hosts[i].addr);
    let mut cmd = lab.command(i, bin_path("ews-leader"));
    cmd.envs(moto.env())
        .env("RUST_LOG", "info")
        .args(["--node-id", &id, "--gossip-interval-ms", "200"])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--internal-listen", &internal[i].to_string()])
        .args(["--seeds", &internal[1 - i].to_string()])
        .args(["--seed-node-timeout-secs", "1"])
        .args(["--cluster-secret", SECRET, "--admin-token", ADMIN_TOKEN])
        .arg("--queue-dir")
        .arg(dir.path())
        .args(["--lease-table", "leases", "--lease-ttl-secs", "4"])
        .args(["--publish-metric", "--cloudwatch-interval-secs", "1"]);
    let proc = Proc::spawn(&id, cmd);
    if let Err(e) = wait_for_http_ok(admin, "/info", Duration::from_secs(20)) {
        panic!("{id} did not start: {e}\n{}", proc.output());
    }
    Node {
        id,
        admin,
        internal: internal[i],
        public: None,
        proc,
    }
}

/// Worker `i`, in host `i`'s namespace, sending its events to the active leader's queue.
fn worker(lab: &Lab, i: usize, seeds: [SocketAddr; 2]) -> Node {
    let id = format!("worker-{}", i + 1);
    let ip = lab.hosts[i].addr;
    let (admin, public, internal) = (addr(ip), addr(ip), addr(ip));
    let mut cmd = lab.command(i, bin_path("ews-worker"));
    cmd.env("RUST_LOG", "info")
        .args(["--node-id", &id, "--gossip-interval-ms", "200"])
        .args(["--no-auth", "--sink", "queue"])
        .args(["--seeds", &format!("{},{}", seeds[0], seeds[1])])
        .args(["--cluster-secret", SECRET, "--admin-token", ADMIN_TOKEN])
        .args(["--listen", &public.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--internal-listen", &internal.to_string()]);
    let proc = Proc::spawn(&id, cmd);
    if let Err(e) = wait_for_http_ok(public, "/info", Duration::from_secs(20)) {
        panic!("{id} did not start: {e}\n{}", proc.output());
    }
    Node {
        id,
        admin,
        internal,
        public: Some(public),
        proc,
    }
}

/// A counter or gauge of `node`'s `/metrics` (0 when absent).
fn metric(node: &Node, line_start: &str) -> u64 {
    http_get(node.admin, "/metrics")
        .ok()
        .and_then(|(_, text)| {
            text.lines()
                .find(|l| l.starts_with(line_start))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|v| v as u64)
        .unwrap_or(0)
}

fn is_active(leader: &Node) -> bool {
    metric(leader, "ews_leader_active ") == 1
}

/// The leader `node`'s view names active.
fn named_active(node: &Node) -> Option<String> {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (code, body) = net::request(
        node.admin,
        "GET",
        "/members",
        &[("Authorization", &auth)],
        b"",
    )
    .ok()?;
    (code == 200).then_some(())?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["active_leader"].as_str().map(str::to_string)
}

#[test]
fn a_partition_between_the_leaders_never_makes_two_active_nor_loses_an_event() {
    let lab = Lab::new(2);
    let moto = Moto::start_on(lab.hosts[0].gateway);
    moto.create_dynamodb_table("leases", "lease");
    let dirs = [Scratch::new("partition-1"), Scratch::new("partition-2")];
    let internal = [addr(lab.hosts[0].addr), addr(lab.hosts[1].addr)];
    let leaders = [
        leader(&lab, &moto, 0, internal, &dirs[0]),
        leader(&lab, &moto, 1, internal, &dirs[1]),
    ];
    let workers = [worker(&lab, 0, internal), worker(&lab, 1, internal)];
    let lb = RoundRobin::start(&[workers[0].public.unwrap(), workers[1].public.unwrap()]);

    // One leader takes the lease and both workers follow it.
    let start = Instant::now();
    let active = loop {
        let on: Vec<&Node> = leaders.iter().filter(|l| is_active(l)).collect();
        if let [one] = on[..] {
            if workers
                .iter()
                .all(|w| named_active(w).as_deref() == Some(one.id.as_str()))
            {
                break one;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no single active leader followed by both workers:\n{}\n{}",
            leaders[0].proc.output(),
            leaders[1].proc.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let standby = leaders.iter().find(|l| l.id != active.id).unwrap();

    // 10 clients, spread over both workers, 200 events each at 25/s: eight seconds of load.
    let mut load = std::process::Command::new(bin_path("ews-load"));
    load.args(["verify", "--url", &format!("ws://{}/ws", lb.addr)])
        .args(["--connections", "10", "--messages", "200", "--rate", "25"])
        .args([
            "--queue-url",
            &format!("ws://{}/queue/events", active.internal),
        ])
        .args(["--cluster-secret", SECRET, "--allow-remote"])
        .args(["--read-idle-ms", "4000", "--ack-timeout-ms", "90000"])
        .args(["--deadline-secs", "150"]);
    let mut load = Proc::spawn("ews-load", load);
    std::thread::sleep(Duration::from_millis(1500));

    // The partition: each leader keeps its worker and the lease store, loses the other side.
    lab.connect(false);
    let published_before = metric(standby, "ews_cloudwatch_publish_total{outcome=\"ok\"}");
    let mut both_active = 0;
    let mut standby_active = 0;
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let (a, s) = (is_active(active), is_active(standby));
        both_active += u32::from(a && s);
        standby_active += u32::from(s);
        std::thread::sleep(Duration::from_millis(100));
    }
    let standby_saw = named_active(standby);
    lab.connect(true);

    let status = load
        .wait_timeout(Duration::from_secs(180))
        .expect("ews-load verify finished");
    let out = load.output();
    assert!(
        status.success(),
        "verify failed:\n{out}\n{}:\n{}\n{}:\n{}",
        active.id,
        active.proc.output(),
        standby.id,
        standby.proc.output()
    );
    assert_eq!(both_active, 0, "two leaders were active at once");
    assert_eq!(
        standby_active, 0,
        "the cut-off standby took a term it could not hold"
    );
    // The partition was real: the standby lost sight of the active leader's claim, and did not
    // name itself instead.
    assert_eq!(standby_saw, None, "the standby's view during the partition");
    assert!(out.contains("sent 2000, acknowledged 2000"), "{out}");
    assert!(out.contains("missing 0"), "{out}");
    // One writer of the cluster metric: the active leader, never the standby.
    assert_eq!(
        metric(standby, "ews_cloudwatch_publish_total{outcome=\"ok\"}"),
        published_before,
        "the standby published the cluster metric"
    );
    assert!(metric(active, "ews_cloudwatch_publish_total{outcome=\"ok\"}") > 0);
    assert!(
        is_active(active),
        "the active leader kept its term through the partition"
    );
    for w in &workers {
        assert_eq!(
            named_active(w).as_deref(),
            Some(active.id.as_str()),
            "{}",
            w.id
        );
    }
}
