//! End to end: `ews-load verify` → `ews-worker` (ingest with `?ack=1`) → a real broker, read back
//! and matched event by event. Needs the workspace binaries (`cargo build --workspace --bins`).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

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
    let mut cmd = Command::new(bin_path("ews-load"));
    cmd.args(["verify", "--url", &format!("ws://{worker}/ws")])
        .args(["--connections", "10", "--messages", "300", "--rate", "300"])
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
