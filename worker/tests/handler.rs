//! A team's handler on the library: a node built from a `WorkerConfig` (no command line) with
//! a handler of the test's own. Its state lives per session, it closes with
//! its own code, `on_close` hears why, and what it publishes reaches another session's topic.

use std::net::SocketAddr;
use std::time::Duration;

use ews_proto::topic::Topic;
use ews_worker::handler::{CloseReason, Handler, Msg, SessionCtx};
use ews_worker::{Node, SinkKind, WorkerConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Counts each session's messages; `bye` closes with 4000; `join` joins `room`; leaving
/// publishes to `room`.
struct Counter(mpsc::UnboundedSender<CloseReason>);

impl Handler for Counter {
    type State = u64;

    async fn on_open(&self, ctx: &mut SessionCtx<'_>) -> u64 {
        let _ = ctx.send(Msg::text("hello")).await;
        0
    }

    async fn on_message(&self, ctx: &mut SessionCtx<'_>, seen: &mut u64, msg: Msg) {
        match msg.as_text() {
            Some("bye") => ctx.close(4000, "counted").expect("a valid close"),
            Some("join") => {
                ctx.subscribe(&room()).await.expect("joined");
                let _ = ctx.send(Msg::text("joined")).await;
            }
            _ => {
                *seen += 1;
                let _ = ctx.send(Msg::text(seen.to_string())).await;
            }
        }
    }

    async fn on_close(&self, ctx: &mut SessionCtx<'_>, seen: u64, reason: CloseReason) {
        ctx.publish(&room(), format!("a session left after {seen}"))
            .await;
        let _ = self.0.send(reason);
    }
}

fn room() -> Topic {
    Topic::parse("room").expect("a topic")
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/count"))
        .await
        .expect("connects");
    ws
}

async fn text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(Message::Ping(_)))) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// A worker on loopback ports the kernel picks, without auth, routing `/count` to `count`.
fn config() -> WorkerConfig {
    let mut config = WorkerConfig::default();
    let w = &mut config.worker;
    w.no_auth = true;
    w.listen = "127.0.0.1:0".parse().unwrap();
    w.admin_listen = "127.0.0.1:0".parse().unwrap();
    w.sink.to.sink = SinkKind::Stdout;
    w.routes = "/count=count".parse().unwrap();
    config
}

#[tokio::test]
async fn a_handler_of_the_teams_own_runs_with_state_close_codes_topics_and_on_close() {
    let mut config = config();
    config.worker.drain_window = Duration::from_millis(200);
    let (closed, mut heard) = mpsc::unbounded_channel();
    let node = Node::builder(config)
        .handler("count", Counter(closed))
        .build()
        .await
        .expect("the node builds");
    let addr = node.public_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(node.run(shutdown.clone()));

    let mut listener = connect(addr).await;
    assert_eq!(text(&mut listener).await, "hello");
    listener.send(Message::text("join")).await.unwrap();
    assert_eq!(text(&mut listener).await, "joined");

    let mut counted = connect(addr).await;
    assert_eq!(text(&mut counted).await, "hello");
    for n in 1..=3 {
        counted.send(Message::text("x")).await.unwrap();
        assert_eq!(text(&mut counted).await, n.to_string());
    }
    counted.send(Message::text("bye")).await.unwrap();
    match counted.next().await {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!(
                (f.code, f.reason.as_str()),
                (CloseCode::from(4000), "counted")
            )
        }
        other => panic!("expected the handler's close, got {other:?}"),
    }
    drop(counted);
    assert_eq!(heard.recv().await, Some(CloseReason::Closed));
    // Its goodbye reached the other session's topic as a push.
    let push: serde_json::Value = serde_json::from_str(&text(&mut listener).await).unwrap();
    assert_eq!(push["type"], "push");
    assert_eq!(push["topic"], "room");
    assert_eq!(push["msg"], "a session left after 3");

    shutdown.cancel();
    task.await.unwrap().expect("the node drains");
}

#[tokio::test]
async fn a_route_naming_a_handler_the_node_lacks_fails_at_start() {
    let err = Node::build(config()).await.err().expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("no handler named \"count\""), "{text}");
    assert!(text.contains("echo, greet, ingest"), "{text}");
}
