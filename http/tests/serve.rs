//! `serve` in process, over real loopback sockets: the limits every port relies on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ews_http::reply;
use ews_http::{serve, Backlog, Event, Events, Limits};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

fn limits(max_connections: usize, events: Events) -> Limits {
    Limits {
        max_connections,
        header_read_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        events,
        http2: false,
    }
}

/// Starts `serve` with a handler that answers `GET /slow` after 200 ms, never answers
/// `GET /never`, and answers anything else at once.
async fn start(limits: Limits) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = ews_http::bind("127.0.0.1:0".parse().unwrap(), Backlog::system()).unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(
        listener,
        |req, _| async move {
            match req.uri().path() {
                "/slow" => tokio::time::sleep(Duration::from_millis(200)).await,
                "/never" => std::future::pending::<()>().await,
                _ => {}
            }
            reply::text(StatusCode::OK, "ok")
        },
        shutdown.clone(),
        limits,
    ));
    (addr, shutdown, task)
}

/// Sends `GET path` and reads the answer to its end (the request asks for `Connection: close`).
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

/// Whether the server closes `s` (end of file) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn silent_connections_beyond_the_cap_neither_block_nor_stay() {
    let timeouts = Arc::new(AtomicUsize::new(0));
    let t = timeouts.clone();
    let events = Events::new(move |e| {
        if e == Event::HeaderTimeout {
            t.fetch_add(1, Ordering::Relaxed);
        }
    });
    let (addr, shutdown, task) = start(limits(2, events)).await;
    let mut silent = Vec::new();
    for _ in 0..6 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let answer = get(addr, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(10)).await,
            "a silent connection stayed open"
        );
    }
    assert_eq!(timeouts.load(Ordering::Relaxed), 6);
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let (addr, shutdown, task) = start(limits(8, Events::default())).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The connection stays open for another request, but not forever.
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_answered_408() {
    let (addr, shutdown, task) = start(limits(8, Events::default())).await;
    let answer = get(addr, "/never").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_and_stops_accepting() {
    let (addr, shutdown, task) = start(limits(8, Events::default())).await;
    let slow = tokio::spawn(get(addr, "/slow"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    shutdown.cancel();
    let answer = slow.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    task.await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}
