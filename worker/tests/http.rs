//! The public port's HTTP answers, limits and lifecycle, against a real `ews-worker` process.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use ews_testkit::http_get;
use ews_testkit::net::http_request;

#[test]
fn http_statuses_before_the_upgrade() {
    let (w, _) = Worker::hs256(&[]);
    assert_eq!(
        http_get(w.public, "/info").expect("info"),
        (200, "Success".to_string())
    );
    let (code, body) = http_request(w.public, "POST", "/ws", &[], b"x").expect("post");
    assert_eq!((code, body.as_str()), (403, "Unhandled HTTP method"));
    let (code, _) = http_request(w.public, "DELETE", "/", &[], b"").expect("delete");
    assert_eq!(code, 403);
    let (code, body) = http_request(w.public, "POST", "/info", &[], b"").expect("post info");
    assert_eq!((code, body.as_str()), (403, "Unhandled HTTP method"));
    let (code, _) = http_get(w.public, "/ws").expect("plain get");
    assert_eq!(code, 400);
    // No test page outside standalone mode (or --test-page); a browser's favicon request is
    // answered, and counted as no failed handshake.
    assert_eq!(http_get(w.public, "/").expect("root").0, 400);
    assert_eq!(http_get(w.public, "/test-page.js").expect("script").0, 400);
    assert_eq!(http_get(w.public, "/favicon.ico").expect("favicon").0, 204);
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    assert_eq!(
        http_request(w.public, "GET", "/nope", &upgrade, b"")
            .expect("404")
            .0,
        404
    );
    // RFC 6455 4.4: a version we do not speak is 426, naming the one we do.
    assert_eq!(
        http_request(w.public, "GET", "/ws", &upgrade[..3], b"")
            .expect("no version")
            .0,
        426
    );
    let bad_key = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "c2hvcnQ="),
        ("Sec-WebSocket-Version", "13"),
    ];
    assert_eq!(
        http_request(w.public, "GET", "/ws", &bad_key, b"")
            .expect("bad key")
            .0,
        400
    );
    // No token.
    assert_eq!(
        http_request(w.public, "GET", "/ws", &upgrade, b"")
            .expect("401")
            .0,
        401
    );
    let metrics = w.metrics();
    assert!(
        metrics.contains("ews_handshakes_total{outcome=\"unauthorized\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ews_handshakes_total{outcome=\"not_found\"} 1"),
        "{metrics}"
    );
}

#[test]
fn standalone_serves_the_test_page_and_a_dev_url() {
    let w = Worker::start(&["--standalone", "--sink", "stdout"]);
    let (code, body) = http_get(w.public, "/").expect("page");
    assert_eq!(code, 200);
    assert!(body.contains(r#"src="/test-page.js""#), "{body}");
    let (code, script) = http_get(w.public, "/test-page.js").expect("script");
    assert_eq!(code, 200);
    // Built from the client library: it sends with acknowledgements and reconnects.
    assert!(
        script.contains("ack") && script.contains("drainDelay"),
        "{script}"
    );
    assert_eq!(http_get(w.public, "/favicon.ico").expect("favicon").0, 204);
    assert!(
        !w.metrics().contains("bad_request"),
        "the page and the favicon are no failed handshakes"
    );
    w.proc
        .wait_for_output(
            &format!("http://127.0.0.1:{}/?access_token=ey", w.public.port()),
            Duration::from_secs(5),
        )
        .expect("dev URL printed");
    // Ctrl-C on one machine: a short drain, not a load balancer's 30 s.
    w.proc.signal(libc::SIGTERM);
    w.proc
        .wait_for_output("window_secs=2", Duration::from_secs(5))
        .expect("a two-second drain");
}

/// The README's demo: a standalone worker restarted as it was started keeps accepting the
/// token of the URL it printed (its development secret is kept beside the queue's data, readable
/// by its owner only), so the test page reconnects instead of being refused.
#[tokio::test]
async fn a_restarted_standalone_worker_keeps_accepting_the_token_it_printed() {
    let scratch = ews_testkit::Scratch::new("standalone-restart");
    let queue = scratch.join("data").join("queue");
    let env = [("EWS_QUEUE_DIR", queue.to_str().expect("utf-8 path"))];
    let token_of = |w: &Worker| {
        let prefix = format!("http://127.0.0.1:{}/?access_token=", w.public.port());
        let url = w.proc.wait_for_word(&prefix, Duration::from_secs(5));
        url.expect("the URL printed")[prefix.len()..].to_string()
    };
    let first = Worker::start_env(&env, &["--standalone"]);
    let token = token_of(&first);
    let file = scratch.join("data").join("standalone-jwt-secret");
    first
        .proc
        .wait_for_output("kept across restarts", Duration::from_secs(5))
        .expect("the secret's file named");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("the secret kept")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only its owner reads it");
    drop(first);

    let second = Worker::start_env(&env, &["--standalone"]);
    token_of(&second);
    // The first run's token: a session, not a 401.
    let _ws = connect_bearer(&second.url("/ws"), &token).await;
    // Its log goes to a file here, not a terminal: no colour codes in it.
    assert!(
        !second.proc.output().contains('\u{1b}'),
        "{}",
        second.proc.output()
    );
}

#[tokio::test]
async fn capacity_is_enforced_with_503() {
    let (w, _) = Worker::hs256(&["--max-connections", "1"]);
    let t = hs_token(&claims("alice"));
    let _first = connect_bearer(&w.url("/ws"), &t).await;
    let auth = format!("Bearer {t}");
    let err = connect(&w.url("/ws"), &[("authorization", &auth)])
        .await
        .err();
    assert_eq!(err.map(|e| e.0), Some(503));
    assert!(w.metrics().contains("ews_connections_active 1"));
    // The refusal says when to come back: at once, to the next worker the balancer picks.
    let mut s = TcpStream::connect(w.public).expect("connect");
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: {auth}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("request");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("retry-after: 1\r\n"), "{head}");
}

#[test]
fn a_handshake_that_never_finishes_is_cut_off() {
    let w = Worker::start(&[
        "--no-auth",
        "--sink",
        "stdout",
        "--handshake-timeout-secs",
        "1",
    ]);
    let mut s = TcpStream::connect(w.public).expect("connect");
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .expect("partial request");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 512];
    // The server answers 408 or just closes; either way the socket ends.
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!("socket still open after {:?}: {e}", started.elapsed()),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    let m = w.metrics();
    assert!(
        m.contains("ews_handshakes_total{outcome=\"timeout\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn sigterm_drains_with_1012_and_exits_zero() {
    let (mut w, _) = Worker::hs256(&["--drain-seconds", "4"]);
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(connect_bearer(&w.url("/ws"), &hs_token(&claims(&format!("c{i}")))).await);
    }
    // A client with acks on: its event is answered before its session is closed.
    let mut acker = connect_bearer(&w.url("/ws?ack=1"), &hs_token(&claims("acker"))).await;
    futures_util::SinkExt::send(&mut acker, event("last"))
        .await
        .expect("send");
    let started = Instant::now();
    w.proc.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(http_get(w.public, "/info").expect("info").0, 503);
    let auth = format!("Bearer {}", hs_token(&claims("late")));
    assert_eq!(
        connect(&w.url("/ws"), &[("authorization", &auth)])
            .await
            .err()
            .map(|e| e.0),
        Some(503)
    );
    assert_eq!(
        next_json(&mut acker).await,
        serde_json::json!({"type": "ack", "seq": 1})
    );
    clients.push(acker);
    for mut c in clients {
        assert_eq!(close_code(&mut c, Duration::from_secs(5)).await, Some(1012));
    }
    let status = w.proc.wait_timeout(Duration::from_secs(5)).expect("exited");
    assert!(status.success(), "{status:?}\n{}", w.proc.output());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "exited early once all sessions closed"
    );
}

#[test]
fn a_silent_peer_is_dropped_after_missed_pings() {
    let w = Worker::start(&["--no-auth", "--sink", "stdout", "--ping-interval-secs", "1"]);
    let mut s = TcpStream::connect(w.public).expect("connect");
    s.write_all(
        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("handshake");
    s.set_read_timeout(Some(Duration::from_secs(6)))
        .expect("timeout");
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).expect("101");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    // Never answer the pings: the server must hang up within about two intervals.
    let started = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!("still open after {:?}: {e}", started.elapsed()),
        }
    }
    assert!(w
        .metrics()
        .contains("ews_errors_total{kind=\"dead_peer\"} 1"));
}

#[test]
fn out_of_descriptors_the_worker_backs_off_and_recovers() {
    let args = [
        "--no-auth",
        "--sink",
        "stdout",
        "--max-connections",
        "1000",
        "--handshake-timeout-secs",
        "30",
    ];
    let mut w = Worker::start_with_nofile(64, &args);
    // More connections than the worker has descriptors: the rest wait in the backlog.
    let clients: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(w.public).expect("connect"))
        .collect();
    w.proc
        .wait_for_output("out of resources, backing off", Duration::from_secs(10))
        .expect("EMFILE seen");
    drop(clients);
    ews_testkit::wait_for_http_ok(w.public, "/info", Duration::from_secs(20))
        .expect("serving again");
    let m = w.metrics();
    assert!(
        m.contains("ews_errors_total{kind=\"accept_emfile\"}"),
        "{m}"
    );
    assert!(w.proc.is_running());
}

#[test]
fn admin_routes_need_the_admin_token_but_metrics_and_info_do_not() {
    let w = Worker::start(&["--no-auth", "--sink", "stdout", "--admin-token", "t0k"]);
    let get = |headers: &[(&str, &str)], path: &str| {
        http_request(w.admin, "GET", path, headers, b"")
            .expect("admin answers")
            .0
    };
    assert_eq!(get(&[], "/metrics"), 200);
    assert_eq!(get(&[], "/info"), 200);
    // Exactly the token: white space is no part of it.
    assert_eq!(
        get(&[("Authorization", "Bearer  t0k")], "/api/v1/sessions"),
        401
    );
    assert_eq!(get(&[], "/api/v1/sessions"), 401);
    assert_eq!(
        get(&[("Authorization", "Bearer wrong")], "/api/v1/sessions"),
        401
    );
    assert_eq!(get(&[("Authorization", "t0k")], "/api/v1/sessions"), 401);
    assert_eq!(
        get(&[("Authorization", "Bearer t0k")], "/api/v1/sessions"),
        200
    );
    let publish = |headers: &[(&str, &str)]| {
        http_request(
            w.admin,
            "POST",
            "/api/v1/publish",
            headers,
            br#"{"clientId":"nobody","msg":"x"}"#,
        )
        .expect("publish answers")
        .0
    };
    assert_eq!(publish(&[]), 401);
    assert_eq!(publish(&[("Authorization", "Bearer t0k")]), 404);
}

#[test]
fn without_an_admin_token_the_admin_port_faces_loopback_only() {
    let (public, port) = (ews_testkit::free_port(), ews_testkit::free_port());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ews-worker"));
    cmd.args(["--no-auth", "--sink", "stdout"])
        .args(["--listen", &format!("127.0.0.1:{public}")])
        .args(["--admin-listen", &format!("0.0.0.0:{port}")])
        .env("RUST_LOG", "info");
    let proc = ews_testkit::Proc::spawn("ews-worker", cmd);
    proc.wait_for_output(
        "the admin port listens on loopback only",
        Duration::from_secs(20),
    )
    .expect("the worker says where its admin port is");
    let local: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    ews_testkit::wait_for_http_ok(local, "/metrics", Duration::from_secs(10))
        .expect("the admin port answers on loopback");
}
