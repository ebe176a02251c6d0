//! A whole worker node inside the test, on loopback sockets, under paused time: the time-driven
//! behaviours (pings and dead peers, the drain spread, the handshake timeout) run in virtual
//! time, so minutes of protocol take milliseconds and no test waits on a wall clock.

use std::net::SocketAddr;
use std::time::Duration;

use ews_worker::{Node, SinkKind, WorkerArgs, WorkerConfig, WorkerHandle};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

struct Running {
    public: SocketAddr,
    handle: WorkerHandle,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

/// A worker (no auth, stdout sink, ports picked by the kernel), configured further by `set`,
/// running.
async fn start(set: impl FnOnce(&mut WorkerArgs)) -> Running {
    let mut config = WorkerConfig::default();
    let w = &mut config.worker;
    w.no_auth = true;
    w.sink.to.sink = SinkKind::Stdout;
    w.listen = "127.0.0.1:0".parse().expect("an address");
    w.admin_listen = "127.0.0.1:0".parse().expect("an address");
    set(w);
    let node = Node::build(config).await.expect("node builds");
    let public = node.public_addr().expect("public address");
    let handle = node.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(node.run(shutdown.clone()));
    Running {
        public,
        handle,
        shutdown,
        task,
    }
}

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn connect(addr: SocketAddr) -> Client {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/echo"))
        .await
        .expect("upgrade");
    ws
}

/// Lets the node's tasks run until nothing is left to do at this instant.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// What a client that reads sees in the end: the close code, if the server sent one.
async fn read_to_end(ws: &mut Client) -> Option<CloseCode> {
    while let Some(m) = ws.next().await {
        match m {
            Ok(Message::Close(f)) => return f.map(|f| f.code),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_never_answers_pings_is_dropped_within_two_intervals() {
    let w = start(|w| w.ping_interval = Duration::from_secs(30)).await;
    let silent = connect(w.public).await;
    settle().await;
    assert_eq!(w.handle.connections(), 1);
    // The client never reads, so it never answers the pings.
    tokio::time::sleep(Duration::from_secs(59)).await;
    settle().await;
    assert_eq!(w.handle.connections(), 1, "dropped before two intervals");
    tokio::time::sleep(Duration::from_secs(3)).await;
    settle().await;
    assert_eq!(w.handle.connections(), 0, "a dead peer holds its slot");
    drop(silent);
    w.shutdown.cancel();
    w.task.await.expect("join").expect("clean exit");
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_answers_pings_stays() {
    let w = start(|w| w.ping_interval = Duration::from_secs(30)).await;
    let mut live = connect(w.public).await;
    // Reading answers the server's pings (tungstenite replies with pongs on the next read).
    let reader = tokio::spawn(async move { read_to_end(&mut live).await });
    tokio::time::sleep(Duration::from_secs(600)).await;
    settle().await;
    assert_eq!(w.handle.connections(), 1);
    w.shutdown.cancel();
    assert_eq!(reader.await.expect("join"), Some(CloseCode::Restart));
    w.task.await.expect("join").expect("clean exit");
}

#[tokio::test(start_paused = true)]
async fn drain_closes_every_session_with_1012_within_the_window() {
    let w = start(|w| {
        w.drain_window = Duration::from_secs(20);
        w.ping_interval = Duration::from_secs(300);
    })
    .await;
    let mut readers = Vec::new();
    for _ in 0..20 {
        let mut ws = connect(w.public).await;
        readers.push(tokio::spawn(async move {
            let code = read_to_end(&mut ws).await;
            (code, tokio::time::Instant::now())
        }));
    }
    settle().await;
    assert_eq!(w.handle.connections(), 20);
    let began = tokio::time::Instant::now();
    w.shutdown.cancel();
    let mut closes = Vec::new();
    for r in readers {
        let (code, at) = r.await.expect("join");
        assert_eq!(code, Some(CloseCode::Restart));
        closes.push(at - began);
    }
    closes.sort();
    // Spread over three quarters of the window, not all at once.
    let (first, last) = (closes[0], closes[closes.len() - 1]);
    assert!(last <= Duration::from_secs(15), "last close after {last:?}");
    assert!(last > first, "every session closed at the same instant");
    w.task.await.expect("join").expect("clean exit");
    assert_eq!(w.handle.connections(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_upgrades_is_closed_after_the_handshake_timeout() {
    let w = start(|w| w.handshake_timeout = Duration::from_secs(10)).await;
    let mut tcp = TcpStream::connect(w.public).await.expect("connect");
    let mut buf = [0u8; 64];
    // Nothing arrives before the timeout ...
    let early = tokio::time::timeout(Duration::from_secs(9), tcp.read(&mut buf)).await;
    assert!(early.is_err(), "closed before the timeout: {early:?}");
    // ... and the connection is gone after it.
    let late = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(
        matches!(late, Ok(Ok(0)) | Ok(Err(_))),
        "still open: {late:?}"
    );
    w.shutdown.cancel();
    w.task.await.expect("join").expect("clean exit");
}
