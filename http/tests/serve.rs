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
        max_per_source: None,
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
                "/refuse" => {
                    return reply::closing(reply::text(StatusCode::UNAUTHORIZED, "no"));
                }
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
    // Each silent connection ends by its header timeout, or earlier, closed to make room.
    let timeouts = Arc::new(AtomicUsize::new(0));
    let t = timeouts.clone();
    let events = Events::new(move |e| {
        if matches!(e, Event::HeaderTimeout | Event::Evicted) {
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

/// Counts each kind of event.
fn counting() -> (Events, Arc<[AtomicUsize; 2]>) {
    let counts: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let c = counts.clone();
    let events = Events::new(move |e| match e {
        Event::HeaderTimeout => {
            c[0].fetch_add(1, Ordering::Relaxed);
        }
        Event::Evicted => {
            c[1].fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    });
    (events, counts)
}

/// A port full of silent sockets answers a new request by closing the one waiting longest, not
/// after the idle ones' header timeout: a health check or a backend's publish is never held up
/// by strangers that say nothing.
#[tokio::test]
async fn idle_sockets_at_the_cap_make_room_for_a_request() {
    let (events, counts) = counting();
    let (addr, shutdown, task) = start(Limits {
        header_read_timeout: Duration::from_secs(60),
        ..limits(8, events)
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    for _ in 0..3 {
        let answer = get(addr, "/").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert_eq!(
        counts[0].load(Ordering::Relaxed),
        0,
        "answered before any idle socket's header timeout"
    );
    assert!(counts[1].load(Ordering::Relaxed) >= 3);
    // The oldest went first.
    assert!(closed_within(&mut idle[0], Duration::from_secs(5)).await);
    shutdown.cancel();
    task.await.unwrap();
}

/// One source address holds at most its share: past it, a new connection of its own closes its
/// connection waiting longest without a request (or, with none such, is closed itself), while another address is
/// served.
#[tokio::test]
async fn one_source_holds_at_most_its_share() {
    let (addr, shutdown, task) = start(Limits {
        max_per_source: Some(3),
        header_read_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(3),
        ..limits(100, Events::default())
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Three idle, a fourth: the oldest of the three goes, the fourth stays.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut held[0], Duration::from_secs(5)).await);
    assert!(!closed_within(&mut extra, Duration::from_millis(300)).await);
    // Three busy (a request each that never ends), a fourth: it is closed.
    let mut busy = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        busy.push(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut over = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut over, Duration::from_secs(5)).await);
    // Another host (loopback has the whole 127/8) is served.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    drop((held, extra));
    shutdown.cancel();
    task.await.unwrap();
}

/// An answer marked `closing` ends its connection, keep-alive or not: a peer refused once
/// cannot ask again on the same connection.
#[tokio::test]
async fn a_refusal_that_closes_ends_the_connection() {
    let (addr, shutdown, task) = start(Limits {
        header_read_timeout: Duration::from_secs(60),
        ..limits(8, Events::default())
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /refuse HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
    assert!(
        ended.is_ok(),
        "the connection stayed open after the refusal: {out}"
    );
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("connection: close"),
        "{out}"
    );
    shutdown.cancel();
    task.await.unwrap();
}

/// At a full port, connections that never sent a request are closed for room; a keep-alive
/// connection idle between requests (a peer's pooled connection), even an older one, is not.
#[tokio::test]
async fn a_full_port_closes_silent_connections_before_keep_alives() {
    let (addr, shutdown, task) = start(Limits {
        header_read_timeout: Duration::from_secs(60),
        ..limits(4, Events::default())
    })
    .await;
    let mut keep = TcpStream::connect(addr).await.unwrap();
    let ask = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    keep.write_all(ask).await.unwrap();
    let mut buf = [0u8; 256];
    let n = keep.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The port is full: a new request makes room by closing the oldest silent one.
    let answer = get(addr, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed_within(&mut silent[0], Duration::from_secs(5)).await);
    keep.write_all(ask).await.unwrap();
    let n = keep.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "the keep-alive still serves"
    );
    shutdown.cancel();
    task.await.unwrap();
}
