//! The test page, built on the TypeScript client library, in headless Chromium (Debian's
//! package, driven by playwright-core: `clients/js/e2e/browser.mjs`) against real workers behind
//! a round-robin nginx. The page's first token has expired (the worker refuses it, the library
//! asks its token function again); mid-stream the worker the page is on is drained with SIGTERM
//! (1012), the page reconnects to the other worker through the balancer, resends what was not
//! acknowledged, and every event is acknowledged. Read back from the queue both workers write to:
//! none missing, copies identifiable by id, every event stored under the token's subject.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ews_proto::StampedEvent;
use ews_testkit::nginx::RoundRobin;
use ews_testkit::{
    bin_path, free_port, http_get, log_dir, queue_broker, wait_for_http_ok, workspace_root, Proc,
    Scratch,
};
use serde_json::Value;

const JWT_SECRET: &str = "browser-test-secret";
const SUBJECT: &str = "browser-user";
const EVENTS: u64 = 40;

fn token(exp_from_now: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": SUBJECT, "iat": now - 120, "exp": now + exp_from_now}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// Hands out tokens to the page (cross-origin, as an application backend would): an expired
/// one first, valid ones after.
fn token_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.read(&mut buf);
            let n = count.fetch_add(1, Ordering::SeqCst);
            let body = if n == 0 { token(-60) } else { token(600) };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nCache-Control: no-store\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, served)
}

struct Worker {
    public: SocketAddr,
    admin: SocketAddr,
    proc: Proc,
}

fn worker(id: &str, queue_url: &str) -> Worker {
    let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut cmd = Command::new(bin_path("ews-worker"));
    cmd.args([
        "--node-id",
        id,
        "--test-page",
        "--jwt-hs256-secret",
        JWT_SECRET,
    ])
    .args([
        "--sink",
        "queue",
        "--queue-url",
        queue_url,
        "--drain-seconds",
        "2",
    ])
    .args(["--listen", &public.to_string()])
    .args(["--admin-listen", &admin.to_string()])
    .arg("--internal-listen")
    .arg(format!("127.0.0.1:{}", free_port()));
    let proc = Proc::spawn(id, cmd);
    if let Err(e) = wait_for_http_ok(public, "/info", Duration::from_secs(20)) {
        panic!("{id} did not start: {e}\n{}", proc.output());
    }
    Worker {
        public,
        admin,
        proc,
    }
}

fn sessions(w: &Worker) -> u64 {
    http_get(w.admin, "/metrics")
        .ok()
        .and_then(|(_, m)| {
            m.lines()
                .find(|l| l.starts_with("ews_connections_active "))
                .and_then(|l| l.split_whitespace().last()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Every event in the queue at `url`, read (and deleted) until it has been quiet for a second.
fn read_back(url: &str) -> Vec<StampedEvent> {
    let mut events = Vec::new();
    let opts = ews_queue::client::ReadOptions {
        delete: true,
        idle: Some(Duration::from_secs(1)),
        max: None,
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(ews_queue::client::read(url, None, opts, |_, body, _| {
        events.push(serde_json::from_str(&body).expect("a stamped event"));
        std::ops::ControlFlow::Continue(())
    }))
    .expect("read the queue");
    events
}

/// The JSON after `tag ` on a line of `output`.
fn tagged(output: &str, tag: &str) -> Option<Value> {
    output
        .lines()
        .find_map(|l| l.strip_prefix(tag))
        .and_then(|j| serde_json::from_str(j.trim()).ok())
}

/// `clients/js/e2e/browser.mjs` driving the test page at `page` in Chromium until `count` events
/// are acknowledged (a screenshot then saved to `screenshot`), once it printed `READY`: some are.
fn page_driver(page: &str, count: u64, screenshot: &std::path::Path) -> Proc {
    let js = workspace_root().join("clients/js");
    assert!(
        js.join("node_modules/playwright-core").is_dir(),
        "clients/js dependencies missing: run `bash scripts/tools/client-js.sh`"
    );
    let mut cmd = Command::new("node");
    cmd.current_dir(&js)
        .arg("e2e/browser.mjs")
        .args(["--page", page, "--count", &count.to_string()])
        .arg("--screenshot")
        .arg(screenshot);
    let browser = Proc::spawn("chromium", cmd);
    if let Err(e) = browser.wait_for_output("READY ", Duration::from_secs(60)) {
        panic!(
            "the page never got acknowledgements: {e}\n{}",
            browser.output()
        );
    }
    browser
}

#[test]
fn the_test_page_reconnects_after_a_drain_refreshes_its_token_and_loses_nothing() {
    let dir = Scratch::new("browser-queue");
    let qaddr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let queue_url = format!("ws://{qaddr}/queue/events");
    let _broker = queue_broker(qaddr, &dir, &[]);
    let mut workers = [
        worker("worker-a", &queue_url),
        worker("worker-b", &queue_url),
    ];
    let lb = RoundRobin::start(&[workers[0].public, workers[1].public]);
    let (tokens, served) = token_server();

    let screenshot = log_dir().join(format!("browser-page-{}.png", std::process::id()));
    let page = format!(
        "http://{}/?token_url=http://{tokens}/token&count={EVENTS}&rate=8",
        lb.addr
    );
    let mut browser = page_driver(&page, EVENTS, &screenshot);
    let ready = tagged(&browser.output(), "READY ").expect("READY line");
    assert_eq!(ready["state"], "open", "{ready}");
    assert!(
        ready["tokens"].as_u64().unwrap_or(0) >= 2,
        "the expired token was refused and the token function asked again: {ready}"
    );

    // Drain the worker the page is on, mid-stream.
    let on = workers
        .iter()
        .position(|w| sessions(w) == 1)
        .expect("the page's session is on a worker");
    workers[on].proc.signal(libc::SIGTERM);

    let status = browser.wait_timeout(Duration::from_secs(150));
    let out = browser.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "the page failed:\n{out}"
    );
    let result = tagged(&out, "RESULT ").expect("RESULT line");
    assert_eq!(result["acked"], EVENTS, "{result}");
    assert_eq!(result["failed"], 0, "{result}");
    assert_eq!(
        result["shownAcked"], EVENTS,
        "the page shows what it got: {result}"
    );
    assert!(
        result["opens"].as_u64().unwrap_or(0) >= 2 && result["shownReconnects"].as_u64() >= Some(1),
        "the page reconnected after the drain: {result}"
    );
    assert_eq!(result["subject"], SUBJECT, "{result}");
    assert!(served.load(Ordering::SeqCst) >= 3, "a token per connect");
    assert!(
        screenshot.is_file(),
        "screenshot saved at {}",
        screenshot.display()
    );
    let drained = workers[on].proc.wait_timeout(Duration::from_secs(20));
    assert!(
        drained.is_some_and(|s| s.success()),
        "the drained worker exited 0"
    );

    // Everything acknowledged is in the queue, under the token's subject; copies share an id.
    let acked: Vec<String> = result["ackedIds"]
        .as_array()
        .expect("acked ids")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let mut copies: HashMap<String, u64> = HashMap::new();
    for e in read_back(&queue_url) {
        assert_eq!(e.client_id, SUBJECT, "stored under the token's subject");
        *copies
            .entry(e.id.expect("the page's events carry ids"))
            .or_default() += 1;
    }
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !copies.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "acknowledged and missing: {missing:?}");
    let duplicates: u64 = copies.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= result["resent"].as_u64().unwrap_or(0),
        "copies come only from resends: {duplicates} duplicates, {result}"
    );
}

/// The README's demo, as written: `ews-worker --standalone` (only the ports are the test's own),
/// the page opened at the URL it printed; the worker is stopped and started again with the same
/// command, and the page reconnects (the same development secret signs its token, kept beside
/// the queue's data) and every event is acknowledged. A screenshot of the page after the restart
/// is saved.
#[test]
fn the_readme_demo_a_restarted_standalone_worker_keeps_the_page() {
    let cwd = Scratch::new("readme-demo");
    let (port, admin) = (free_port(), free_port());
    let start = || {
        let mut cmd = Command::new(bin_path("ews-worker"));
        cmd.current_dir(cwd.path())
            .arg("--standalone")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")]);
        let proc = Proc::spawn("ews-worker", cmd);
        wait_for_http_ok(
            ([127, 0, 0, 1], port).into(),
            "/info",
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("the worker did not start: {e}\n{}", proc.output()));
        proc
    };
    let mut first = start();
    let prefix = format!("http://127.0.0.1:{port}/?access_token=");
    let url = first
        .wait_for_word(&prefix, Duration::from_secs(5))
        .expect("the URL printed");

    const COUNT: u64 = 30;
    let screenshot = log_dir().join(format!("readme-demo-{}.png", std::process::id()));
    let mut browser = page_driver(&format!("{url}&count={COUNT}&rate=8"), COUNT, &screenshot);
    // Stop it (Ctrl-C drains), then the same command again.
    first.signal(libc::SIGTERM);
    let stopped = first.wait_timeout(Duration::from_secs(20));
    assert!(stopped.is_some_and(|s| s.success()), "{}", first.output());
    let second = start();

    let status = browser.wait_timeout(Duration::from_secs(150));
    let out = browser.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "the page failed:\n{out}\n{}",
        second.output()
    );
    let result = tagged(&out, "RESULT ").expect("RESULT line");
    assert_eq!(result["acked"], COUNT, "{result}");
    assert_eq!(result["failed"], 0, "{result}");
    assert!(
        result["opens"].as_u64().unwrap_or(0) >= 2,
        "it reconnected: {result}"
    );
    assert!(
        !second.output().contains("token refused"),
        "the restarted worker accepted the page's token:\n{}",
        second.output()
    );
    assert!(
        screenshot.is_file(),
        "screenshot saved at {}",
        screenshot.display()
    );
}

/// The same library in Node.js on the `ws` package, against a real worker: Node sees the 401 of
/// a refused handshake, so the client asks its token function again at once and connects; a
/// static token refused once ends the client instead of retrying it forever.
#[test]
fn the_node_client_refreshes_a_refused_token_and_stops_on_the_same_one() {
    let js = workspace_root().join("clients/js");
    assert!(
        js.join("node_modules/typescript").is_dir(),
        "clients/js dependencies missing: run `bash scripts/tools/client-js.sh`"
    );
    let built = Command::new("node")
        .current_dir(&js)
        .args(["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"])
        .status()
        .expect("run tsc");
    assert!(built.success(), "the client library builds");
    let dir = Scratch::new("node-client-queue");
    let qaddr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let queue_url = format!("ws://{qaddr}/queue/events");
    let _broker = queue_broker(qaddr, &dir, &[]);
    let w = worker("worker-n", &queue_url);

    let mut cmd = Command::new("node");
    cmd.current_dir(&js)
        .arg("e2e/node.mjs")
        .args(["--url", &format!("ws://{}/ws", w.public)])
        .args(["--expired", &token(-60), "--valid", &token(600)])
        .args(["--count", "25"]);
    let mut node = Proc::spawn("node-client", cmd);
    let status = node.wait_timeout(Duration::from_secs(60));
    let out = node.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "the Node client failed:\n{out}"
    );
    let result = tagged(&out, "RESULT ").expect("RESULT line");
    assert_eq!(
        result["asked"], 2,
        "asked again after the refusal: {result}"
    );
    assert_eq!(result["refusedFirst"], true, "{result}");
    assert_eq!(result["acked"], 25, "{result}");
    assert_eq!(result["stuckEnd"]["code"], 4001, "{result}");
    assert_eq!(result["stuckEnd"]["reason"], "token refused", "{result}");
    assert_eq!(result["late"], "closed", "{result}");

    let stored = read_back(&queue_url);
    assert!(stored.iter().all(|e| e.client_id == SUBJECT));
    assert_eq!(stored.len(), 25, "every acknowledged event stored once");
}
