//! `ews-load` against real servers on loopback: the bare tokio-tungstenite echo example (always)
//! and `ews-worker` (when it has been built, as `scripts/test.sh` does).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use ews_testkit::{free_port, wait_for_http_ok, wait_for_tcp, Proc};
use serde_json::Value;

fn load() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ews-load"))
}

/// The `bare-echo` example next to this test binary (cargo builds examples with the tests).
fn bare_echo() -> (Proc, u16) {
    let exe = std::env::current_exe().unwrap();
    let path: PathBuf = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|p| p.join("examples/bare-echo"))
        .unwrap();
    assert!(
        path.exists(),
        "{} not built: run `cargo build -p ews-load --examples`",
        path.display()
    );
    let port = free_port();
    let mut cmd = Command::new(path);
    cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
    let proc = Proc::spawn("bare-echo", cmd);
    wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(10)).unwrap();
    (proc, port)
}

/// Runs ews-load and returns its output and the `--json` summary (its last stdout line).
fn run(cmd: &mut Command) -> (Output, Value) {
    let out = cmd.output().expect("run ews-load");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (out, json)
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn echo_round_trips_and_reads_server_cpu() {
    let (server, port) = bare_echo();
    let (out, j) = run(load().args([
        "echo",
        "--url",
        &format!("ws://127.0.0.1:{port}/"),
        "-n",
        "20",
        "--messages",
        "10",
        "--source-ips",
        "127.0.0.1-127.0.0.4",
        "--server-pid",
        &server.pid().to_string(),
        "--json",
    ]));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(j["connect"]["established"], 20, "{j}");
    assert_eq!(j["connect"]["source_ips"], 4, "{j}");
    assert_eq!(j["echoed"], 200, "{j}");
    assert_eq!(j["round_trip"]["count"], 200, "{j}");
    assert!(j["round_trip"]["p99_us"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(j["server_per_message"]["per"], 200, "{j}");
    assert_eq!(j["errors"], serde_json::json!({}), "{j}");
}

#[test]
fn idle_holds_connections_and_measures_server_rss() {
    let (server, port) = bare_echo();
    let (out, j) = run(load().args([
        "idle",
        "--url",
        &format!("ws://127.0.0.1:{port}/"),
        "-n",
        "200",
        "--source-ips",
        "127.0.0.2-3",
        "--hold-secs",
        "1",
        "--settle-ms",
        "300",
        "--server-pid",
        &server.pid().to_string(),
        "--json",
    ]));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(j["connect"]["established"], 200, "{j}");
    assert_eq!(j["held"], 200, "{j}");
    // tungstenite's default config reserves a 128 KiB read buffer per connection: the measured
    // growth must show a real per-connection cost, not noise.
    let per_conn = j["server_per_connection"]["rss_delta_per_unit_bytes"]
        .as_f64()
        .unwrap();
    assert!(per_conn > 4096.0, "{j}");
}

#[test]
fn connection_failures_are_counted_and_fail_the_run() {
    let port = free_port(); // nothing listens there
    let (out, j) = run(load().args([
        "idle",
        "--url",
        &format!("ws://127.0.0.1:{port}/ws"),
        "-n",
        "5",
        "--hold-secs",
        "0",
        "--json",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(j["connect"]["failed"], 5, "{j}");
    assert_eq!(j["errors"]["connect: connection refused"], 5, "{j}");

    // A run that connected nothing measured nothing: no error threshold makes it pass.
    let (out, _) = run(load().args([
        "idle",
        "--url",
        &format!("ws://127.0.0.1:{port}/ws"),
        "-n",
        "5",
        "--hold-secs",
        "0",
        "--max-error-ratio",
        "1",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "failed: no connection was established (0/5; connect: connection refused: 5)"
        ),
        "{}",
        show(&out)
    );
}

#[test]
fn refuses_non_loopback_targets() {
    let (out, _) = run(load().args(["echo", "--url", "ws://192.0.2.1:80/echo", "-n", "1"]));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--allow-remote"),
        "{}",
        show(&out)
    );
    let (out, _) = run(load().args(["idle", "--source-ips", "10.0.0.1", "-n", "1"]));
    assert!(!out.status.success(), "{}", show(&out));
}

/// A standalone `ews-worker` (HS256 secret `e2e-secret`) on free loopback ports, its state under
/// `dir`, with `extra` flags; returns it once `/info` answers, and its public port.
/// `scripts/test.sh` builds every binary first; `bin_path` fails with how to build it when missing.
/// An `ews-queue` broker whose messages read without `--delete` come back after a second (its
/// visibility timeout), its `events` queue's URL, and a standalone worker sending to it.
fn worker_on_a_queue(dir: &std::path::Path) -> (Proc, String, Proc, u16) {
    let queue_addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let queue = ews_testkit::queue_broker(
        queue_addr,
        &dir.join("queue"),
        &["--queue-visibility-timeout-ms", "1000"],
    );
    let queue_url = format!("ws://{queue_addr}/queue/events");
    let (worker, port) = standalone_worker(dir, &["--queue-url", &queue_url]);
    (queue, queue_url, worker, port)
}

fn standalone_worker(dir: &std::path::Path, extra: &[&str]) -> (Proc, u16) {
    standalone_worker_on(dir, free_port(), extra)
}

/// [`standalone_worker`] with its admin port on `admin`.
fn standalone_worker_on(dir: &std::path::Path, admin: u16, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let mut cmd = Command::new(ews_testkit::bin_path("ews-worker"));
    cmd.args(["--standalone", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--jwt-hs256-secret", "e2e-secret"])
        .args(extra)
        .env("EWS_QUEUE_DIR", dir.join("embedded-queue"));
    let worker = Proc::spawn("ews-worker", cmd);
    wait_for_http_ok(
        ([127, 0, 0, 1], port).into(),
        "/info",
        Duration::from_secs(20),
    )
    .unwrap();
    (worker, port)
}

/// A default standalone worker (its own development secret, never shown) is reachable with the
/// token it printed: `ews-load --token` sends that one token on every connection. A token given
/// beside a secret to mint with is refused at the command line.
#[test]
fn the_token_a_standalone_worker_printed_is_enough_for_ews_load() {
    let dir = ews_testkit::Scratch::new("load-standalone-token");
    let (port, admin) = (free_port(), free_port());
    let mut cmd = Command::new(ews_testkit::bin_path("ews-worker"));
    cmd.args(["--standalone", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .env("EWS_QUEUE_DIR", dir.join("data").join("queue"));
    let worker = Proc::spawn("ews-worker", cmd);
    let prefix = format!("http://127.0.0.1:{port}/?access_token=");
    let printed = worker.wait_for_word(&prefix, Duration::from_secs(20));
    let token = printed.expect("the URL printed")[prefix.len()..].to_string();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (out, j) = run(load()
        .args([
            "ingest",
            "--url",
            &url,
            "-n",
            "2",
            "--messages",
            "3",
            "--ack",
        ])
        .args(["--token", &token, "--json"]));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(j["acked"], 6, "{j}");
    let (out, _) = run(load()
        .args(["idle", "--url", &url, "-n", "1", "--hold-secs", "0"])
        .args(["--token", &token, "--jwt-hs256-secret", "x"]));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

/// The gateway: authenticated idle connections and acknowledged ingest events.
#[test]
fn authenticated_load_against_ews_worker() {
    let dir = ews_testkit::Scratch::new("load-e2e");
    let sink_file = dir.join("events.jsonl");
    let (_worker, port) = standalone_worker(
        &dir,
        &["--sink", "file", "--sink-file", sink_file.to_str().unwrap()],
    );

    let url = format!("ws://127.0.0.1:{port}/ws");
    let (out, j) = run(load().args([
        "idle",
        "--url",
        &url,
        "-n",
        "50",
        "--hold-secs",
        "1",
        "--settle-ms",
        "200",
        "--jwt-hs256-secret",
        "e2e-secret",
        "--json",
    ]));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(j["held"], 50, "{j}");

    // Without a token the gateway refuses the upgrade with 401.
    let (out, j) = run(load().args([
        "idle",
        "--url",
        &url,
        "-n",
        "3",
        "--hold-secs",
        "0",
        "--json",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(j["errors"]["http 401"], 3, "{j}");

    // `ews-load token` mints what a person needs to connect by hand: the worker accepts it (here
    // as the browsers' `access_token` query parameter), and refuses one signed with another secret.
    let secret_file = dir.join("jwt-secret");
    std::fs::write(&secret_file, "e2e-secret\n").unwrap();
    let mint = |file: &std::path::Path| {
        let out = load()
            .args([
                "token",
                "--sub",
                "alice",
                "--topics",
                "news,chat.*",
                "--ttl",
                "10m",
            ])
            .arg("--jwt-hs256-secret-file")
            .arg(file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let token = mint(&secret_file);
    let addr = ([127, 0, 0, 1], port).into();
    ews_testkit::ws_open(addr, &format!("/ws?access_token={token}"))
        .unwrap_or_else(|e| panic!("the worker refused a minted token: {e}"));
    let other_file = dir.join("other-secret");
    std::fs::write(&other_file, "not-the-secret").unwrap();
    let forged = mint(&other_file);
    let refused = ews_testkit::ws_open(addr, &format!("/ws?access_token={forged}"));
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("401")),
        "{refused:?}"
    );
    let out = load()
        .args(["token", "--sub", "alice"])
        .env_remove("EWS_JWT_HS256_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));

    // Through a TLS-terminating proxy, as through an ALB with a certificate: wss:// with the
    // proxy's CA trusted through SSL_CERT_FILE, acknowledged events end to end.
    let keys = ews_testkit::workspace_root().join("worker/tests/keys");
    let proxy = ews_testkit::nginx::TlsProxy::start(
        ([127, 0, 0, 1], port).into(),
        &keys.join("tls.pem"),
        &keys.join("tls.key"),
    );
    let wss = format!("wss://{}/ws", proxy.addr);
    let (out, j) = run(load()
        .args([
            "ingest",
            "--url",
            &wss,
            "-n",
            "5",
            "--messages",
            "4",
            "--ack",
        ])
        .args(["--jwt-hs256-secret", "e2e-secret", "--json"])
        .env("SSL_CERT_FILE", keys.join("tls-ca.pem")));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(j["connect"]["established"], 5, "{j}");
    assert_eq!(j["acked"], 20, "{j}");
    // A server whose certificate is not trusted is not loaded: with another CA as the only root
    // the handshake fails, and so does the run, naming why.
    let (out, _) = run(load()
        .args(["idle", "--url", &wss, "-n", "2", "--hold-secs", "0"])
        .args(["--jwt-hs256-secret", "e2e-secret"])
        .env("SSL_CERT_FILE", keys.join("other-ca.pem")));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tls: certificate: UnknownIssuer: 2"),
        "{}",
        show(&out)
    );

    // Every mode fails against a gateway that refuses every connection, and says why; the
    // verifier too, which once reported success with nothing verified.
    let queue_dir = ews_testkit::Scratch::new("load-e2e-queue");
    let queue_addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _queue = ews_testkit::queue_broker(queue_addr, queue_dir.path(), &[]);
    let queue_url = format!("ws://{queue_addr}/queue/events");
    for mode in [
        vec!["echo", "--messages", "1"],
        vec!["ingest", "--messages", "1", "--ack"],
        vec![
            "verify",
            "--messages",
            "1",
            "--queue-url",
            &queue_url,
            "--read-idle-ms",
            "300",
        ],
    ] {
        let (out, _) =
            run(load()
                .args(&mode)
                .args(["--url", &url, "-n", "3", "--max-error-ratio", "1"]));
        assert_eq!(out.status.code(), Some(1), "{mode:?}: {}", show(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("failed: no connection was established (0/3; http 401: 3)"),
            "{mode:?}: {}",
            show(&out)
        );
    }

    let (out, j) = run(load().args([
        "ingest",
        "--url",
        &url,
        "-n",
        "10",
        "--messages",
        "20",
        "--rate",
        "200",
        "--ack",
        "--jwt-hs256-secret",
        "e2e-secret",
        "--json",
    ]));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(j["sent"], 200, "{j}");
    assert_eq!(j["acked"], 200, "{j}");
}

/// What `ews-load verify --keep` leaves in the queue, `ews-queue read` prints as JSON lines (the
/// stamped events), without consuming it; `--delete` consumes it.
#[test]
fn ews_queue_read_prints_what_verify_kept() {
    let dir = ews_testkit::Scratch::new("queue-read");
    let (_queue, queue_url, _worker, port) = worker_on_a_queue(&dir);
    let visible_again = || std::thread::sleep(Duration::from_millis(1_500));

    let (out, j) = run(load()
        .args(["verify", "--url", &format!("ws://127.0.0.1:{port}/ws")])
        .args([
            "-n",
            "3",
            "--messages",
            "5",
            "--queue-url",
            &queue_url,
            "--keep",
        ])
        .args([
            "--read-idle-ms",
            "500",
            "--jwt-hs256-secret",
            "e2e-secret",
            "--json",
        ]));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(j["acked"], 15, "{j}");
    let run_id = j["run"].as_str().unwrap().to_string();

    let read = |extra: &[&str]| {
        let out = Command::new(ews_testkit::bin_path("ews-queue"))
            .args(["read", "--url", &queue_url, "--idle-ms", "500"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect();
        lines
    };
    let ours = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["msg"].as_str().unwrap_or("").starts_with(&run_id))
            .count()
    };
    visible_again();
    let kept = read(&[]);
    assert_eq!(ours(&kept), 15, "{kept:?}");
    assert!(kept.iter().all(|e| e["clientId"].is_string()), "{kept:?}");
    // Read without --delete, so still there; --max stops early; --delete consumes.
    visible_again();
    assert_eq!(read(&["--max", "4"]).len(), 4);
    visible_again();
    assert_eq!(ours(&read(&["--delete"])), 15);
    visible_again();
    assert_eq!(ours(&read(&[])), 0, "--delete consumed them");
}

/// `verify` deletes only its own run's events: another producer's are read, counted as
/// `foreign` and left in the queue; a run that connected nothing does not read the queue at all.
#[test]
fn verify_deletes_only_what_its_run_sent() {
    let dir = ews_testkit::Scratch::new("verify-own");
    let (_queue, queue_url, _worker, port) = worker_on_a_queue(&dir);
    let url = format!("ws://127.0.0.1:{port}/ws");
    // Someone else's events.
    let (out, j) = run(load()
        .args([
            "ingest",
            "--url",
            &url,
            "-n",
            "2",
            "--messages",
            "5",
            "--ack",
        ])
        .args(["--jwt-hs256-secret", "e2e-secret", "--json"]));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(j["acked"], 10, "{j}");
    let verify = |secret: &str| {
        run(load()
            .args(["verify", "--url", &url, "-n", "2", "--messages", "3"])
            .args(["--queue-url", &queue_url, "--read-idle-ms", "500"])
            .args(["--jwt-hs256-secret", secret, "--json"]))
    };
    // Refused at the door: nothing of its own can be in the queue, so it reads nothing.
    let (out, _) = verify("not-the-secret");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    // A run that works: its own six read back (and deleted), the ten others seen and left.
    let (out, j) = verify("e2e-secret");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        (j["received"].as_u64(), j["missing"].as_u64()),
        (Some(6), Some(0)),
        "{j}"
    );
    assert_eq!(j["foreign"], 10, "{j}");
    std::thread::sleep(Duration::from_millis(1_500)); // the others visible again
    let out = Command::new(ews_testkit::bin_path("ews-queue"))
        .args(["read", "--url", &queue_url, "--idle-ms", "500"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let left = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(
        left,
        10,
        "the ten others are still there, none of the run's: {}",
        show(&out)
    );
}

/// A standalone worker keeps its events in its embedded queue; `ews-queue read` reads them from
/// the worker's admin port while it runs, with the admin token and only with it.
#[test]
fn a_running_standalone_worker_serves_its_queue_behind_the_admin_token() {
    let dir = ews_testkit::Scratch::new("standalone-read");
    let (port, admin) = (free_port(), free_port());
    let mut cmd = Command::new(ews_testkit::bin_path("ews-worker"));
    cmd.args(["--standalone", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--jwt-hs256-secret", "e2e-secret", "--admin-token", "adm1n"])
        .env("EWS_QUEUE_DIR", dir.join("embedded-queue"));
    let _worker = Proc::spawn("ews-worker", cmd);
    wait_for_http_ok(
        ([127, 0, 0, 1], port).into(),
        "/info",
        Duration::from_secs(20),
    )
    .unwrap();

    let (out, j) = run(load()
        .args(["ingest", "--url", &format!("ws://127.0.0.1:{port}/ws")])
        .args(["-n", "2", "--messages", "5", "--ack"])
        .args(["--jwt-hs256-secret", "e2e-secret", "--json"]));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(j["acked"], 10, "{j}");

    let url = format!("ws://127.0.0.1:{admin}/queue/events");
    let read = |extra: &[&str]| {
        Command::new(ews_testkit::bin_path("ews-queue"))
            .args(["read", "--url", &url, "--idle-ms", "500"])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = read(&[]);
    assert!(
        !refused.status.success(),
        "read without the admin token: {}",
        show(&refused)
    );
    let out = read(&["--admin-token", "adm1n", "--delete"]);
    assert!(out.status.success(), "{}", show(&out));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(events.len(), 10, "{events:?}");
    assert!(events
        .iter()
        .all(|e| e["node"].is_string() && e["seq"].is_u64()));
}

/// `ews-load fanout` (20 subscribers, `messages` messages, `extra` flags) against a standalone
/// worker, which grants every topic, publishing included; the admin token is used for presence
/// and the admin publish.
fn fanout(scratch: &str, messages: &str, extra: &[&str]) -> (Output, Value) {
    let dir = ews_testkit::Scratch::new(scratch);
    let admin = free_port();
    let (_worker, port) = standalone_worker_on(&dir, admin, &["--admin-token", "fanout-admin"]);
    run(load()
        .args(["fanout", "--urls", &format!("ws://127.0.0.1:{port}/ws")])
        .args(["--publish-addr", &format!("127.0.0.1:{admin}")])
        .args([
            "--admin-token",
            "fanout-admin",
            "-n",
            "20",
            "--messages",
            messages,
        ])
        .args(["--interval-ms", "10", "--settle-ms", "0"])
        .args(["--jwt-hs256-secret", "e2e-secret", "--json"])
        .args(extra))
}

/// `fanout`: every subscriber gets every message, and the report counts them.
#[test]
fn fanout_reaches_every_subscriber() {
    let (out, j) = fanout("load-fanout", "3", &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        (j["subscribers"].as_u64(), j["received"].as_u64()),
        (Some(20), Some(60)),
        "{j}"
    );
    assert_eq!(j["delivered_by_server"], 60, "{j}");
    assert_eq!(j["latency"]["count"], 60, "{j}");
}

/// `fanout --publishers`: the messages are client publishes, in turn from each publisher; every
/// subscriber gets every one and the answers count them.
#[test]
fn fanout_through_client_publishes_reaches_every_subscriber() {
    let (out, j) = fanout("load-fanout-clients", "6", &["--publishers", "4"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        (j["via"].as_str(), j["publishers"].as_u64()),
        (Some("clients"), Some(4)),
        "{j}"
    );
    assert_eq!(j["received"], 120, "{j}");
    assert_eq!(j["delivered_by_server"], 120, "{j}");
}

/// `ews-load recover` with `extra` flags, 20 clients on 3 topics missing 5 messages each, the
/// missed messages published through the admin port `admin`.
fn recover(url_port: u16, admin: u16, extra: &[&str]) -> (Output, Value) {
    run(load()
        .args(["recover", "--url", &format!("ws://127.0.0.1:{url_port}/ws")])
        .args(["--publish-addr", &format!("127.0.0.1:{admin}")])
        .args(["--admin-token", "recover-admin", "-n", "20"])
        .args(["--topics", "3", "--missed", "5"])
        .args(["--jwt-hs256-secret", "e2e-secret", "--json"])
        .args(extra))
}

/// `recover`, clients that drop their connections and come back to the same worker (history in
/// its memory): every client recovers exactly what it missed, and the report counts it.
#[test]
fn recover_after_dropped_connections_gets_every_missed_message() {
    let dir = ews_testkit::Scratch::new("load-recover-memory");
    let admin = free_port();
    let (_worker, port) = standalone_worker_on(
        &dir,
        admin,
        &[
            "--admin-token",
            "recover-admin",
            "--history-topics",
            "bench.*",
        ],
    );
    let (out, j) = recover(port, admin, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(j["away_by"], "dropped", "{j}");
    assert_eq!(
        (j["recovered"].as_u64(), j["messages_recovered"].as_u64()),
        (Some(20), Some(100)),
        "{j}"
    );
    assert_eq!(j["published"], 15, "{j}");
    for k in ["missing", "duplicate", "out_of_order"] {
        assert_eq!(j[k], 0, "{k}: {j}");
    }
    assert_eq!(j["time_to_recovered"]["count"], 20, "{j}");
}

/// `recover --drain-pid`: the first worker is drained (every client hears 1012), the clients
/// come back to a second worker sharing its history in redis-server, and recover everything.
/// A topic without history is refused up front, not counted as a recovery.
#[test]
fn recover_after_a_drain_moves_clients_to_another_worker_without_a_gap() {
    let dir = ews_testkit::Scratch::new("load-recover-drain");
    let redis = ews_testkit::redis::Redis::start();
    let url = redis.url();
    let history = [
        "--admin-token",
        "recover-admin",
        "--history-topics",
        "bench.*",
        "--history-redis-url",
        &url,
        "--drain-seconds",
        "1",
    ];
    let (admin_a, admin_b) = (free_port(), free_port());
    let (drained, port_a) = standalone_worker_on(&dir.join("a"), admin_a, &history);
    let (_back, port_b) = standalone_worker_on(&dir.join("b"), admin_b, &history);
    let pid = drained.pid().to_string();
    let back = format!("ws://127.0.0.1:{port_b}/ws");
    let (out, j) = recover(
        port_a,
        admin_b,
        &["--drain-pid", &pid, "--reconnect-urls", &back],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(j["away_by"], "drain", "{j}");
    assert_eq!(j["close_codes"]["1012"], 20, "{j}");
    assert_eq!(
        (j["recovered"].as_u64(), j["messages_recovered"].as_u64()),
        (Some(20), Some(100)),
        "{j}"
    );
    for k in ["missing", "duplicate", "out_of_order"] {
        assert_eq!(j[k], 0, "{k}: {j}");
    }

    let (out, _) = recover(port_b, admin_b, &["--topic-prefix", "other."]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("keeps no history")
            || String::from_utf8_lossy(&out.stderr).contains("keeps no history"),
        "{}",
        show(&out)
    );
}
