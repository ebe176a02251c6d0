//! Token checks on the upgrade: every source a token may come in, every failure that must be a
//! 401, and JWKS key rotation served by a small local HTTP server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn status(w: &Worker, headers: &[(&str, &str)], path: &str) -> u16 {
    match connect(&w.url(path), headers).await {
        Ok(_) => 101,
        Err((code, www)) => {
            if code == 401 {
                assert_eq!(www, "Bearer error=\"invalid_token\"");
            }
            code
        }
    }
}

async fn with_bearer(w: &Worker, token: &str) -> u16 {
    status(w, &[("authorization", &format!("Bearer {token}"))], "/ws").await
}

#[tokio::test]
async fn every_token_source_works() {
    let (w, _) = Worker::hs256(&[]);
    let t = hs_token(&claims("alice"));
    assert_eq!(status(&w, &[("authentication", &t)], "/ws").await, 101);
    assert_eq!(
        status(&w, &[("authentication", &format!("Bearer {t}"))], "/ws").await,
        101
    );
    assert_eq!(with_bearer(&w, &t).await, 101);
    assert_eq!(status(&w, &[], &format!("/ws?access_token={t}")).await, 101);
    let (_ws, resp) = connect(
        &w.url("/ws"),
        &[("sec-websocket-protocol", &format!("bearer, {t}"))],
    )
    .await
    .expect("subprotocol token");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"bearer"[..])
    );
    assert_eq!(status(&w, &[], "/ws").await, 401);
    // The token never shows up in the logs.
    assert!(!w.proc.output().contains(&t));
}

#[tokio::test]
async fn hs256_failures_are_401() {
    let (w, _) = Worker::hs256(&[
        "--jwt-issuer",
        "https://uaa",
        "--jwt-audience",
        "ews",
        "--jwt-leeway-secs",
        "5",
    ]);
    let good = json!({"sub": "a", "exp": now() + 60, "iss": "https://uaa", "aud": "ews"});
    assert_eq!(with_bearer(&w, &hs_token(&good)).await, 101);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        hs_token(&c)
    };
    assert_eq!(
        with_bearer(&w, &with("exp", json!(now() - 60))).await,
        401,
        "expired"
    );
    assert_eq!(
        with_bearer(&w, &with("exp", json!(now() - 2))).await,
        101,
        "expired within leeway"
    );
    assert_eq!(
        with_bearer(&w, &with("nbf", json!(now() + 60))).await,
        401,
        "not yet valid"
    );
    assert_eq!(
        with_bearer(&w, &with("iss", json!("https://evil"))).await,
        401,
        "wrong issuer"
    );
    assert_eq!(
        with_bearer(&w, &with("aud", json!("other"))).await,
        401,
        "wrong audience"
    );
    let mut no_sub = good.clone();
    no_sub.as_object_mut().map(|o| o.remove("sub"));
    assert_eq!(with_bearer(&w, &hs_token(&no_sub)).await, 401, "no sub");
    assert_eq!(
        with_bearer(&w, &hs_token_with(b"wrong-secret", &good)).await,
        401,
        "bad signature"
    );
    // alg: none, unsigned.
    let b64 = |v: &Value| base64url(v.to_string().as_bytes());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    assert_eq!(with_bearer(&w, &none).await, 401, "alg none");
    assert_eq!(with_bearer(&w, "garbage").await, 401);
    // A refused upgrade gives its session slot back: the gauge a load balancer's operator
    // (and the scaling metric) reads counts sessions, not refusals.
    let start = std::time::Instant::now();
    while !w.metrics().contains("ews_connections_active 0") {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", w.metrics());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rs256_es256_and_hs_rs_confusion() {
    let rsa_pub = key_path("rsa1.pub.pem");
    let w = Worker::start(&[
        "--sink",
        "stdout",
        "--jwt-public-key-file",
        rsa_pub.to_str().expect("path"),
    ]);
    let rs = asym_token(Algorithm::RS256, "rsa1.pem", None, &claims("r"));
    assert_eq!(with_bearer(&w, &rs).await, 101);
    assert_eq!(
        with_bearer(
            &w,
            &asym_token(Algorithm::RS256, "rsa2.pem", None, &claims("r"))
        )
        .await,
        401
    );
    // The classic confusion attack: sign HS256 with the RSA public key as the HMAC secret.
    let pem = std::fs::read(&rsa_pub).expect("pem");
    assert_eq!(
        with_bearer(&w, &hs_token_with(&pem, &claims("r"))).await,
        401,
        "HS/RS confusion"
    );
    assert_eq!(
        with_bearer(
            &w,
            &asym_token(Algorithm::ES256, "ec.pem", None, &claims("e"))
        )
        .await,
        401
    );

    let ec_pub = key_path("ec.pub.pem");
    let w = Worker::start(&[
        "--sink",
        "stdout",
        "--jwt-public-key-file",
        ec_pub.to_str().expect("path"),
    ]);
    assert_eq!(
        with_bearer(
            &w,
            &asym_token(Algorithm::ES256, "ec.pem", None, &claims("e"))
        )
        .await,
        101
    );
    assert_eq!(with_bearer(&w, &rs).await, 401);
}

// Multi-threaded: the JWKS server must answer while the test thread waits for the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rotation_to_a_new_kid() {
    let jwk = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(key_path(&format!("{name}.jwk.json"))).expect("jwk"))
            .expect("json")
    };
    let served = Arc::new(Mutex::new(json!({"keys": [jwk("rsa1")]}).to_string()));
    let (jwks_addr, fetches) = serve_jwks(served.clone()).await;
    let url = format!("http://{jwks_addr}/token_keys");
    let w = Worker::start(&["--sink", "stdout", "--jwks-url", &url]);

    let t1 = asym_token(Algorithm::RS256, "rsa1.pem", Some("rsa1"), &claims("u"));
    let t2 = asym_token(Algorithm::RS256, "rsa2.pem", Some("rsa2"), &claims("u"));
    assert_eq!(with_bearer(&w, &t1).await, 101);
    assert_eq!(with_bearer(&w, &t2).await, 401, "kid not published yet");
    let before = *fetches.lock().expect("lock");

    // The provider rotates: only the new key is published.
    *served.lock().expect("lock") = json!({"keys": [jwk("rsa2")]}).to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        with_bearer(&w, &t2).await,
        101,
        "unknown kid triggers a refetch"
    );
    assert!(*fetches.lock().expect("lock") > before);
    assert_eq!(with_bearer(&w, &t1).await, 401, "the retired key is gone");
    // A token without kid cannot pick a JWKS key; an HS256 token is not allowed at all.
    assert_eq!(
        with_bearer(
            &w,
            &asym_token(Algorithm::RS256, "rsa2.pem", None, &claims("u"))
        )
        .await,
        401
    );
    assert_eq!(with_bearer(&w, &hs_token(&claims("u"))).await, 401);
}

// Multi-threaded: the JWKS server must answer while the test thread waits for the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_over_https_trusts_the_configured_roots() {
    let jwk: Value =
        serde_json::from_slice(&std::fs::read(key_path("rsa1.jwk.json")).expect("jwk"))
            .expect("json");
    let doc = Arc::new(Mutex::new(json!({"keys": [jwk]}).to_string()));
    let (addr, fetches) = serve_jwks_tls(doc).await;
    let url = format!("https://{addr}/token_keys");
    let ca = key_path("tls-ca.pem");
    let w = Worker::start_env(
        &[("SSL_CERT_FILE", ca.to_str().expect("path"))],
        &["--sink", "stdout", "--jwks-url", &url],
    );
    let t = asym_token(Algorithm::RS256, "rsa1.pem", Some("rsa1"), &claims("u"));
    assert_eq!(with_bearer(&w, &t).await, 101);
    assert!(*fetches.lock().expect("lock") >= 1);

    // With other roots the provider is not trusted: no keys, no entry.
    let other = key_path("tls.pem");
    let w = Worker::start_env(
        &[("SSL_CERT_FILE", other.to_str().expect("path"))],
        &["--sink", "stdout", "--jwks-url", &url],
    );
    assert_eq!(with_bearer(&w, &t).await, 401);
}

/// The JWKS server of [`serve_jwks`] behind TLS, with the certificate in `tests/keys/tls.pem`
/// (issued for 127.0.0.1 by `tests/keys/tls-ca.pem`).
async fn serve_jwks_tls(doc: Arc<Mutex<String>>) -> (std::net::SocketAddr, Arc<Mutex<u32>>) {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(key_path("tls.pem"))
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(key_path("tls.key")).expect("key");
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fetches = Arc::new(Mutex::new(0u32));
    let count = fetches.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (doc, count, acceptor) = (doc.clone(), count.clone(), acceptor.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    answer_jwks(tls, doc, count).await;
                }
            });
        }
    });
    (addr, fetches)
}

/// A one-route HTTP server answering every request with the current JWKS document.
async fn serve_jwks(doc: Arc<Mutex<String>>) -> (std::net::SocketAddr, Arc<Mutex<u32>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fetches = Arc::new(Mutex::new(0u32));
    let count = fetches.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(answer_jwks(s, doc.clone(), count.clone()));
        }
    });
    (addr, fetches)
}

async fn answer_jwks<S>(mut s: S, doc: Arc<Mutex<String>>, count: Arc<Mutex<u32>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    *count.lock().expect("lock") += 1;
    let body = doc.lock().expect("lock").clone();
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

// Multi-threaded: the JWKS server must answer while the test thread waits for the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_jwks_fetch_never_holds_up_tokens_with_known_keys() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let jwk: Value =
        serde_json::from_slice(&std::fs::read(key_path("rsa1.jwk.json")).expect("jwk"))
            .expect("json");
    let doc = json!({"keys": [jwk]}).to_string();
    // Answers the first fetch at once and holds every later one until released.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let release = Arc::new(tokio::sync::Notify::new());
    let held = Arc::new(AtomicBool::new(false));
    let fetches = Arc::new(AtomicU32::new(0));
    {
        let (release, held, fetches) = (release.clone(), held.clone(), fetches.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (release, held, fetches) = (release.clone(), held.clone(), fetches.clone());
                let doc = Arc::new(Mutex::new(doc.clone()));
                tokio::spawn(async move {
                    if fetches.fetch_add(1, Ordering::SeqCst) > 0 {
                        let wait = release.notified();
                        held.store(true, Ordering::SeqCst);
                        wait.await;
                    }
                    answer_jwks(s, doc, Arc::new(Mutex::new(0))).await;
                });
            }
        });
    }
    let url = format!("http://{addr}/token_keys");
    let w = Worker::start(&["--sink", "stdout", "--jwks-url", &url]);
    let known = asym_token(Algorithm::RS256, "rsa1.pem", Some("rsa1"), &claims("u"));
    assert_eq!(with_bearer(&w, &known).await, 101);

    // A token naming an unknown key starts a fetch the provider holds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let unknown = asym_token(Algorithm::RS256, "rsa2.pem", Some("rsa2"), &claims("u"));
    let ws_url = w.url("/ws");
    let waiting = tokio::spawn(async move {
        connect(&ws_url, &[("authorization", &format!("Bearer {unknown}"))])
            .await
            .err()
            .map(|(code, _)| code)
    });
    for _ in 0..200 {
        if held.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        held.load(Ordering::SeqCst),
        "the second fetch never arrived"
    );

    // While it hangs, tokens with the known key get in.
    for _ in 0..20 {
        assert_eq!(with_bearer(&w, &known).await, 101);
    }
    assert!(
        !waiting.is_finished(),
        "the unknown-kid login should still be waiting for the held fetch"
    );
    release.notify_waiters();
    assert_eq!(waiting.await.expect("join"), Some(401));
}

#[tokio::test]
async fn a_blank_sub_is_no_client_id() {
    let (w, _) = Worker::hs256(&[]);
    assert_eq!(with_bearer(&w, &hs_token(&claims("   "))).await, 401);
    assert_eq!(with_bearer(&w, &hs_token(&claims("alice"))).await, 101);
}
