//! `Client::connect` against a real `ews-worker`: plain `ws://`, and `wss://` through a
//! TLS-terminating nginx whose CA the client trusts through `SSL_CERT_FILE`; the token function is
//! called for every connection.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ews_testkit::{free_port, wait_for_http_ok, workspace_root, Proc};

const SECRET: &str = "connect-test-secret";

#[tokio::test]
async fn connect_sends_acknowledged_events_over_ws_and_wss_with_tokens_from_a_function() {
    let port = free_port();
    let mut cmd = std::process::Command::new(ews_testkit::bin_path("ews-worker"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--jwt-hs256-secret", SECRET, "--sink", "stdout"]);
    let _worker = Proc::spawn("ews-worker", cmd);
    wait_for_http_ok(
        ([127, 0, 0, 1], port).into(),
        "/info",
        Duration::from_secs(20),
    )
    .expect("the worker starts");
    let keys = workspace_root().join("worker/tests/keys");
    let proxy = ews_testkit::nginx::TlsProxy::start(
        ([127, 0, 0, 1], port).into(),
        &keys.join("tls.pem"),
        &keys.join("tls.key"),
    );
    // This test binary's only test: the variable is read by the TLS set-up below.
    std::env::set_var("SSL_CERT_FILE", keys.join("tls-ca.pem"));

    for url in [
        format!("ws://127.0.0.1:{port}/ws"),
        format!("wss://{}/ws", proxy.addr),
    ] {
        let asked = Arc::new(AtomicU32::new(0));
        let counter = asked.clone();
        let token = move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok(ews_testkit::jwt::client_token(SECRET, "dora", &[])) }
        };
        let (client, _inbound) =
            ews_client::Client::connect(&url, token, ews_client::Options::new("dora-1"))
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        let pending = client.send("hello".into(), 1).await.expect("sent");
        let ack = tokio::time::timeout(Duration::from_secs(10), pending)
            .await
            .unwrap_or_else(|_| panic!("{url}: no ack in time"))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(ack.seq, 1, "{url}");
        assert!(
            asked.load(Ordering::SeqCst) >= 1,
            "{url}: the token function was asked"
        );
        client.close().await;
    }
    // A URL that is not a WebSocket one is refused at once, naming it.
    let e = ews_client::Client::connect(
        "http://127.0.0.1/ws",
        || async { Ok(String::new()) },
        ews_client::Options::new("x"),
    )
    .err()
    .expect("refused");
    assert!(e.to_string().contains("http://127.0.0.1/ws"), "{e}");
}
