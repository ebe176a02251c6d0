//! End to end: `ews-load verify` → `ews-worker` (ingest with `?ack=1`) → a real broker, read back
//! and matched event by event. Needs the workspace binaries (`cargo build --workspace --bins`).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use ews_testkit::moto::Moto;
use ews_testkit::tansu::Tansu;
use ews_testkit::{bin_path, free_port, free_udp_port, queue_broker, wait_for_http_ok, Proc};

fn start_worker(sink_args: &[&str]) -> (SocketAddr, Proc) {
    let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut cmd = Command::new(bin_path("ews-worker"));
    cmd.arg("--no-auth")
        .arg("--listen")
        .arg(public.to_string())
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--internal-listen")
        .arg(format!("127.0.0.1:{}", free_udp_port()))
        .args(sink_args);
    let p = Proc::spawn("ews-worker", cmd);
    if let Err(e) = wait_for_http_ok(public, "/info", Duration::from_secs(10)) {
        panic!("ews-worker did not start: {e}\n{}", p.output());
    }
    (public, p)
}

fn verify(worker: SocketAddr, read_back: &[&str]) -> Command {
    verify_load(worker, 10, 300, 300, read_back)
}

/// `connections` clients sending `messages` events each at `rate` per second.
fn verify_load(
    worker: SocketAddr,
    connections: u32,
    messages: u32,
    rate: u32,
    read_back: &[&str],
) -> Command {
    let mut cmd = Command::new(bin_path("ews-load"));
    cmd.args(["verify", "--url", &format!("ws://{worker}/ws")])
        .args(["--connections", &connections.to_string()])
        .args(["--messages", &messages.to_string()])
        .args(["--rate", &rate.to_string()])
        .args(["--read-idle-ms", "2000", "--deadline-secs", "120"])
        .args(read_back);
    cmd
}

fn report(p: &mut Proc) -> String {
    let status = p
        .wait_timeout(Duration::from_secs(150))
        .expect("ews-load verify finished");
    let out = p.output();
    assert!(status.success(), "ews-load verify failed:\n{out}");
    out
}

#[test]
fn queue_broker_killed_mid_load_loses_no_acknowledged_event() {
    let dir = ews_testkit::Scratch::new("pipeline-queue");
    let qaddr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let url = format!("ws://{qaddr}/queue/events");
    let mut broker = queue_broker(qaddr, &dir, &[]);
    let (worker, _w) = start_worker(&["--sink", "queue", "--queue-url", &url]);

    let mut load = Proc::spawn("ews-load", verify(worker, &["--queue-url", &url]));
    std::thread::sleep(Duration::from_millis(400));
    broker.kill();
    std::thread::sleep(Duration::from_millis(500));
    let _broker = queue_broker(qaddr, &dir, &[]);
    let out = report(&mut load);
    assert!(out.contains("sent 3000, acknowledged 3000"), "{out}");
    assert!(out.contains("missing 0"), "{out}");
}

#[test]
fn worker_into_kafka_loses_no_acknowledged_event() {
    let tansu = Tansu::start();
    tansu.create_topic("events", 3);
    let (worker, _w) = start_worker(&[
        "--sink",
        "kafka",
        "--kafka-brokers",
        &tansu.bootstrap(),
        "--kafka-topic",
        "events",
    ]);
    let mut load = Proc::spawn(
        "ews-load",
        verify(
            worker,
            &[
                "--kafka-brokers",
                &tansu.bootstrap(),
                "--kafka-topic",
                "events",
            ],
        ),
    );
    let out = report(&mut load);
    assert!(out.contains("sent 3000, acknowledged 3000"), "{out}");
    assert!(out.contains("duplicates 0"), "{out}");
    assert!(out.contains("missing 0"), "{out}");
}

/// A worker sending to SQS (moto), read back by `ews-load verify --sqs-queue-url`.
/// Returns its public and admin addresses.
fn sqs_worker(moto: &Moto, queue_url: &str) -> (SocketAddr, SocketAddr, Proc) {
    let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut cmd = Command::new(bin_path("ews-worker"));
    cmd.envs(moto.env())
        .arg("--no-auth")
        .args(["--listen", &public.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .arg("--internal-listen")
        .arg(format!("127.0.0.1:{}", free_udp_port()))
        .args(["--sink", "sqs", "--sqs-queue-url", queue_url]);
    let p = Proc::spawn("ews-worker", cmd);
    if let Err(e) = wait_for_http_ok(public, "/info", Duration::from_secs(10)) {
        panic!("ews-worker did not start: {e}\n{}", p.output());
    }
    (public, admin, p)
}

fn acked_events(admin: SocketAddr) -> u64 {
    let (_, text) = ews_testkit::http_get(admin, "/metrics").expect("metrics");
    text.lines()
        .find(|l| l.starts_with("ews_events_total{outcome=\"acked\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn worker_into_sqs_loses_no_acknowledged_event() {
    let moto = Moto::start();
    let queue = moto.create_sqs_queue("events");
    let (public, _admin, _w) = sqs_worker(&moto, &queue);
    // moto's SQS slows down as its queue grows (seconds per call past a few thousand
    // messages): 1,000 events keep it fast.
    let mut cmd = verify_load(public, 10, 100, 100, &["--sqs-queue-url", &queue]);
    cmd.envs(moto.env());
    let out = report(&mut Proc::spawn("ews-load", cmd));
    assert!(out.contains("sent 1000, acknowledged 1000"), "{out}");
    assert!(out.contains("missing 0"), "{out}");
}

/// A FIFO queue takes the sink's entries only with a message group and a deduplication id: the
/// sink sets them (the client id, `node-session-seq`), and every event arrives once.
#[test]
fn worker_into_a_fifo_sqs_queue_stores_each_event_once() {
    let moto = Moto::start();
    let queue = moto.create_sqs_queue("events.fifo");
    let (public, _admin, _w) = sqs_worker(&moto, &queue);
    // 100 events: moto's FIFO queues are slow under load (a few sends a second when the
    // machine is busy), and what this shows does not grow with the count.
    let mut cmd = verify_load(public, 5, 20, 20, &["--sqs-queue-url", &queue]);
    cmd.envs(moto.env());
    let out = report(&mut Proc::spawn("ews-load", cmd));
    assert!(out.contains("sent 100, acknowledged 100"), "{out}");
    assert!(out.contains("duplicates 0"), "{out}");
    assert!(out.contains("missing 0"), "{out}");
}

#[test]
fn sqs_down_mid_load_back_pressures_and_loses_no_acknowledged_event() {
    let scratch = ews_testkit::Scratch::new("pipeline-sqs-outage");
    // moto keeps its state in memory; recording its requests lets the restart restore it, so
    // the outage is one of the service, as with SQS, not a loss of stored messages.
    let mut moto = Moto::start_recording(&scratch.join("moto-recording"));
    let queue = moto.create_sqs_queue("events");
    let (public, admin, _w) = sqs_worker(&moto, &queue);
    // 10 clients × 100 events at 25/s: four seconds of load, with an outage in the middle.
    let mut cmd = verify_load(public, 10, 100, 25, &["--sqs-queue-url", &queue]);
    cmd.envs(moto.env());
    let mut load = Proc::spawn("ews-load", cmd);
    std::thread::sleep(Duration::from_millis(1000));
    moto.stop();
    std::thread::sleep(Duration::from_millis(500));
    let during = acked_events(admin);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        acked_events(admin),
        during,
        "nothing is acknowledged while SQS is down: the sessions wait"
    );
    moto.restart();
    let out = report(&mut load);
    assert!(out.contains("sent 1000, acknowledged 1000"), "{out}");
    assert!(out.contains("missing 0"), "{out}");
    assert!(
        during > 0 && during < 1000,
        "the outage fell mid-load: {during} acked before it"
    );
}

/// `ews-load verify` runs the client library users get (`ews-client`): when the worker its
/// clients are on drains (SIGTERM: 1012 to each session), they reconnect through a round-robin
/// load balancer to the other worker and resend what was not acknowledged, with the same ids;
/// read back from the shared queue, nothing acknowledged is missing and copies are counted by id.
#[test]
fn clients_follow_a_drain_to_another_worker_and_lose_nothing() {
    let dir = ews_testkit::Scratch::new("pipeline-drain");
    let qaddr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let url = format!("ws://{qaddr}/queue/events");
    let _broker = queue_broker(qaddr, &dir, &[]);
    let drain = ["--drain-seconds", "2"];
    let (a, mut wa) =
        start_worker(&[&["--sink", "queue", "--queue-url", &url][..], &drain].concat());
    let (b, _wb) = start_worker(&[&["--sink", "queue", "--queue-url", &url][..], &drain].concat());
    let lb = ews_testkit::nginx::RoundRobin::start(&[a, b]);

    // 10 clients x 200 events at 50/s: four seconds of load; worker A drains after one.
    let mut load = Proc::spawn(
        "ews-load",
        verify_load(lb.addr, 10, 200, 50, &["--queue-url", &url]),
    );
    std::thread::sleep(Duration::from_secs(1));
    wa.signal(libc::SIGTERM);
    let out = report(&mut load);
    assert!(out.contains("sent 2000, acknowledged 2000"), "{out}");
    assert!(out.contains("missing 0"), "{out}");
    assert!(
        out.contains("reconnects "),
        "the clients on A reconnected: {out}"
    );
    let status = wa.wait_timeout(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "worker A drained and exited 0"
    );
}
