//! The session state machine under paused time, over channel transports: what the client sees
//! on a drain, a handler's close, a silent peer, a full ack window, a reader that stopped, and
//! on the handler's side of a remote session.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ews_proto::lifecycle::SinkRecord;
use ews_proto::{Event, ServerFrame, StreamPosition};
use ews_sink::{BoxFuture, Receipt, ReceiptSender, Sink, SinkError};
use futures_util::Stream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::{CancellationToken, PollSender};

use super::*;
use crate::auth::Rights;
use crate::handler::{Expiry, Handler, Ingest, Services};
use crate::ids::SessionId;
use crate::pubsub::PubSub;
use crate::registry::{Registry, SessionShared};
use crate::remote::Command;

/// The fixture's token secret.
const SECRET: &[u8] = b"session-test-secret";

/// A token for `sub` that expires `secs` from now.
fn token(sub: &str, secs: u64) -> (String, u64) {
    let exp = crate::ids::now_ms() as u64 / 1000 + secs;
    let claims = serde_json::json!({"sub": sub, "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
    let t = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    (t, exp)
}

/// A sink that holds every receipt until the test completes it, and keeps what it took.
#[derive(Default)]
struct HeldSink(Mutex<Vec<ReceiptSender>>, Mutex<Vec<SinkRecord>>);

impl HeldSink {
    fn held(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn complete_first(&self) {
        let first = self.0.lock().unwrap().remove(0);
        first.complete(Ok(()));
    }
}

impl Sink for HeldSink {
    fn name(&self) -> &'static str {
        "held"
    }

    fn submit(&self, record: SinkRecord) -> BoxFuture<'_, Result<Receipt, SinkError>> {
        let (tx, receipt) = Receipt::pending();
        self.0.lock().unwrap().push(tx);
        self.1.lock().unwrap().push(record);
        Box::pin(async move { Ok(receipt) })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The session's side of a channel transport: reads what the test sends, writes into a
/// bounded queue the test reads (a full queue is a client that stopped reading).
struct Chan {
    from_client: mpsc::UnboundedReceiver<Result<Message, WsError>>,
    to_client: PollSender<Message>,
}

impl Stream for Chan {
    type Item = Result<Message, WsError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.from_client.poll_recv(cx)
    }
}

impl futures_util::Sink<Message> for Chan {
    type Error = WsError;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.to_client
            .poll_reserve(cx)
            .map_err(|_| WsError::ConnectionClosed)
    }
    fn start_send(mut self: Pin<&mut Self>, m: Message) -> Result<(), WsError> {
        self.to_client
            .send_item(m)
            .map_err(|_| WsError::ConnectionClosed)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.to_client.close();
        Poll::Ready(Ok(()))
    }
}

/// The test's side: what it sends as the client, and what the session wrote.
struct Client {
    tx: mpsc::UnboundedSender<Result<Message, WsError>>,
    rx: mpsc::Receiver<Message>,
}

impl Client {
    fn send(&self, text: &str) {
        self.tx.send(Ok(Message::text(text))).unwrap();
    }

    async fn next(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(600), self.rx.recv())
            .await
            .expect("a message in time")
            .expect("the session wrote")
    }

    async fn frame(&mut self) -> ServerFrame {
        match self.next().await {
            Message::Text(t) => serde_json::from_str(&t).expect("a server frame"),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    async fn close(&mut self) -> (CloseCode, String) {
        loop {
            match self.next().await {
                Message::Close(Some(f)) => return (f.code, f.reason.to_string()),
                Message::Ping(_) => continue,
                other => panic!("expected a close, got {other:?}"),
            }
        }
    }
}

fn chan(depth: usize) -> (Chan, Client) {
    let (tx, from_client) = mpsc::unbounded_channel();
    let (to_client, rx) = mpsc::channel(depth);
    (
        Chan {
            from_client,
            to_client: PollSender::new(to_client),
        },
        Client { tx, rx },
    )
}

struct Fixture {
    env: Arc<SessionEnv>,
    ticks: watch::Sender<()>,
    drain: CancellationToken,
    sink: Arc<HeldSink>,
    registry: Arc<Registry>,
}

fn fixture(ack_window: usize) -> Fixture {
    fixture_of(ack_window, false)
}

/// With `lifecycle`, the sessions write their lifecycle records (generation 7).
fn fixture_of(ack_window: usize, lifecycle: bool) -> Fixture {
    fixture_full(ack_window, lifecycle, None)
}

/// Topics `room.*` and pushes to client ids keep history (10 messages) in memory.
fn fixture_history() -> Fixture {
    let mut history = ews_history::History::new(
        vec![ews_proto::topic::TopicPattern::parse("room.*").unwrap()],
        ews_history::Limits {
            size: 10,
            ttl: Duration::from_secs(60),
        },
        100,
        Arc::new(ews_history::MemoryEngine::default()),
    );
    history.clients = true;
    let streams = Arc::new(crate::streams::Streams::default());
    fixture_full(8, false, Some((Arc::new(history), streams)))
}

fn fixture_full(
    ack_window: usize,
    lifecycle: bool,
    history: Option<(Arc<ews_history::History>, Arc<crate::streams::Streams>)>,
) -> Fixture {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let registry = Arc::new(Registry::default());
    let sink = Arc::new(HeldSink::default());
    let lifecycle = lifecycle.then(|| {
        let log =
            crate::lifecycle::LifecycleLog::new("w1".into(), 7, sink.clone(), metrics.clone());
        Arc::new(log)
    });
    let services = Arc::new(Services {
        node: "w1".into(),
        registry: registry.clone(),
        pubsub: Arc::new(PubSub {
            node: "w1".into(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            cluster: None,
            max_topics: 4,
            history,
        }),
        sink: sink.clone(),
        metrics,
        max_topics: 4,
        write_timeout: Duration::from_secs(10),
        lifecycle,
    });
    let (ticks, ticks_rx) = watch::channel(());
    let drain = CancellationToken::new();
    Fixture {
        env: Arc::new(SessionEnv {
            services,
            ticks: ticks_rx,
            drain: drain.clone(),
            drain_spread: Duration::ZERO,
            ack_window,
            auth: Some(Arc::new(crate::auth::Authenticator::hs256(SECRET, 0))),
            refresh_lead: Duration::from_secs(60),
            tick: Duration::from_secs(30),
            publish_rate: 3,
            topics_open: false,
        }),
        ticks,
        drain,
        sink,
        registry,
    }
}

/// Records how its sessions ended; closes on `bye`, joins `join:T`, echoes the rest.
struct Probe(mpsc::UnboundedSender<CloseReason>);

impl Handler for Probe {
    type State = ();

    async fn on_open(&self, _: &mut SessionCtx<'_>) {}

    async fn on_message(&self, ctx: &mut SessionCtx<'_>, _: &mut (), msg: Msg) {
        match msg.as_text() {
            Some("bye") => ctx.close(4001, "bye").expect("a valid close"),
            Some(t) if t.starts_with("join:") => {
                let topic = ews_proto::topic::Topic::parse(&t[5..]).expect("a topic");
                ctx.subscribe(&topic).await.expect("joined");
            }
            _ => {
                let _ = ctx.send(msg).await;
            }
        }
    }

    async fn on_close(&self, _: &mut SessionCtx<'_>, _: (), reason: CloseReason) {
        let _ = self.0.send(reason);
    }
}

/// `handler` as a node registers it.
fn registered<H: Handler>(handler: H) -> Arc<crate::handler::Registered> {
    let mut all = crate::handler::Handlers::empty();
    all.insert("probe", handler, crate::handler::Reach::AnyWorker);
    let name = crate::handler::HandlerName::parse("probe").unwrap();
    all.get(&name).expect("registered").clone()
}

/// Registers alice's session on `f` (so pushes reach it) and runs it over `ws`, handled as `how`
/// says: (where its handler runs, whether the session answers topic frames, acks, hosted).
fn spawn(
    f: &Fixture,
    ws: Chan,
    how: (Handling, bool, bool, bool),
) -> (Arc<SessionShared>, tokio::task::JoinHandle<()>) {
    spawn_as(f, ws, how, "alice", |_| {})
}

/// [`spawn`] for `client`, with `setup` shaping the session's core (its rights, its expiry).
fn spawn_as(
    f: &Fixture,
    ws: Chan,
    (handling, control, ack, hosted): (Handling, bool, bool, bool),
    client: &str,
    setup: impl FnOnce(&mut Core),
) -> (Arc<SessionShared>, tokio::task::JoinHandle<()>) {
    let shared = f.registry.register(SessionShared::new(
        f.registry.new_id(),
        Some(client.into()),
        "/t".into(),
        "127.0.0.1:1".parse().unwrap(),
        "w1".into(),
        8,
    ));
    let mut core = Core::new(shared.clone(), Arc::new(Rights::any()), ack, hosted);
    setup(&mut core);
    let session = Session {
        control,
        handling,
        core,
        claims: None,
    };
    let env = f.env.clone();
    let task = tokio::spawn(async move { run(ws, Box::new(session), &env).await });
    (shared, task)
}

/// Starts a session of `handler` on `f`, registered so pushes reach it.
fn start<H: Handler>(
    f: &Fixture,
    handler: H,
    ack: bool,
    hosted: bool,
    depth: usize,
) -> (Client, Arc<SessionShared>, tokio::task::JoinHandle<()>) {
    let (ws, client) = chan(depth);
    let handler = registered(handler);
    let control = handler.handler.takes_control_frames();
    let how = (Handling::local(handler), control, ack, hosted);
    let (shared, task) = spawn(f, ws, how);
    (client, shared, task)
}

fn event(n: u64) -> String {
    serde_json::to_string(&Event {
        id: Some(format!("e{n}")),
        msg: format!("m{n}"),
        client_id: String::new(),
        timestamp: 1,
    })
    .unwrap()
}

/// Lets the session run until it waits again.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_drain_answers_taken_events_and_pushes_before_its_1012() {
    let f = fixture(8);
    let (mut client, shared, task) = start(&f, Ingest, true, false, 16);
    client.send(&event(1));
    settle().await;
    assert_eq!(f.sink.held(), 1);
    assert_eq!(
        shared.push("pushed".into()),
        crate::registry::Pushed::Queued
    );
    f.drain.cancel();
    f.sink.complete_first();
    assert_eq!(
        client.frame().await,
        ServerFrame::Ack {
            seq: 1,
            id: Some("e1".into())
        }
    );
    assert_eq!(client.next().await, Message::text("pushed"));
    assert_eq!(
        client.close().await,
        (CloseCode::Restart, "server draining".into())
    );
    // After its goodbye the session takes no push: it is not counted as delivered.
    assert_eq!(shared.push("late".into()), crate::registry::Pushed::Closed);
    drop(client);
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_handler_closes_with_its_own_code_and_hears_why() {
    let f = fixture(8);
    let (reasons, mut heard) = mpsc::unbounded_channel();
    let (mut client, _, task) = start(&f, Probe(reasons), false, false, 16);
    client.send("hi");
    assert_eq!(client.next().await, Message::text("hi"));
    client.send("bye");
    assert_eq!(client.close().await, (CloseCode::from(4001), "bye".into()));
    // The client answers the close; the session ends and the handler hears it closed it.
    drop(client);
    task.await.unwrap();
    assert_eq!(heard.recv().await, Some(CloseReason::Closed));
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_dropped_on_the_tick_after_its_ping() {
    let f = fixture(8);
    let (reasons, mut heard) = mpsc::unbounded_channel();
    let (mut client, _, task) = start(&f, Probe(reasons), false, false, 16);
    // Ticks from before the session started are not its own.
    settle().await;
    f.ticks.send(()).unwrap();
    assert!(matches!(client.next().await, Message::Ping(_)));
    // It answered (any message counts): it lives through the next tick.
    client.send("pong-ish");
    assert_eq!(client.next().await, Message::text("pong-ish"));
    f.ticks.send(()).unwrap();
    assert!(matches!(client.next().await, Message::Ping(_)));
    // Silent since that ping: the next tick ends it.
    f.ticks.send(()).unwrap();
    task.await.unwrap();
    assert_eq!(heard.recv().await, Some(CloseReason::PeerSilent));
}

#[tokio::test(start_paused = true)]
async fn a_full_ack_window_stops_reading_the_client() {
    let f = fixture(2);
    let (mut client, _, task) = start(&f, Ingest, true, false, 16);
    for n in 1..=3 {
        client.send(&event(n));
    }
    settle().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Two in flight: the third waits unread, however long.
    assert_eq!(f.sink.held(), 2);
    f.sink.complete_first();
    assert!(matches!(
        client.frame().await,
        ServerFrame::Ack { seq: 1, .. }
    ));
    settle().await;
    assert_eq!(f.sink.held(), 2, "the third is read once one is answered");
    drop(client);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stopped_reading_ends_at_the_write_timeout() {
    let f = fixture(8);
    let (reasons, mut heard) = mpsc::unbounded_channel();
    // Room for one message; the client never reads.
    let (client, shared, task) = start(&f, Probe(reasons), false, false, 1);
    for n in 0..3 {
        let _ = shared.push(format!("p{n}").into());
    }
    task.await.unwrap();
    assert_eq!(heard.recv().await, Some(CloseReason::Failed("write")));
    assert!(f.env.services.metrics.render().contains("write_timeout"));
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn a_hosted_handler_carries_topic_changes_to_the_socket_and_ends_with_the_stream() {
    let f = fixture(8);
    let (reasons, mut heard) = mpsc::unbounded_channel();
    // Here the "client" is the socket's worker at the other end of the session stream.
    let (mut stream, _, task) = start(&f, Probe(reasons), false, true, 16);
    stream.send("join:room.a");
    let Message::Frame(frame) = stream.next().await else {
        panic!("a command frame");
    };
    assert_eq!(
        Command::from_frame(&frame),
        Some(Command::Subscribe(
            ews_proto::topic::Topic::parse("room.a").unwrap()
        ))
    );
    // Not joined here: the socket's worker holds the session's topics.
    assert!(f.registry.topics().is_empty());
    // The stream's end is the session's end.
    drop(stream.tx);
    task.await.unwrap();
    assert_eq!(heard.recv().await, Some(CloseReason::ClientLeft));
}

#[tokio::test(start_paused = true)]
async fn a_hosted_session_closes_with_1012_on_its_nodes_drain() {
    let f = fixture(8);
    let (reasons, mut heard) = mpsc::unbounded_channel();
    let (mut stream, _, task) = start(&f, Probe(reasons), false, true, 16);
    f.drain.cancel();
    assert_eq!(
        stream.close().await,
        (CloseCode::Restart, "server draining".into())
    );
    drop(stream);
    task.await.unwrap();
    assert_eq!(heard.recv().await, Some(CloseReason::Draining));
}

#[tokio::test(start_paused = true)]
async fn the_session_answers_topic_frames_for_its_handler() {
    let f = fixture(8);
    let (mut client, _, task) = start(&f, Ingest, false, false, 16);
    client.send(r#"{"type":"subscribe","topic":"news"}"#);
    assert_eq!(
        client.frame().await,
        ServerFrame::Subscribed {
            topic: "news".into(),
            offset: None,
            epoch: None,
            recovered: None,
            reason: None,
        }
    );
    let topic = ews_proto::topic::Topic::parse("news").unwrap();
    assert_eq!(f.registry.publish_topic(&topic, "hello").delivered, 1);
    assert!(matches!(client.frame().await, ServerFrame::Push { .. }));
    drop(client);
    task.await.unwrap();
}

/// What an idle session's task holds beyond its socket: the machine and the largest thing it
/// awaits. Rare paths (goodbye, topic frames, remote commands) are boxed so they do not count;
/// this guards that (the gateway benchmark measures the whole session).
#[test]
fn an_idle_sessions_task_stays_small() {
    let f = fixture(8);
    let (ws, _client) = chan(1);
    let shared = Arc::new(SessionShared::new(
        SessionId(1),
        None,
        "/t".into(),
        "127.0.0.1:1".parse().unwrap(),
        "w".into(),
        1,
    ));
    let s = Session {
        control: true,
        handling: Handling::local(registered(Ingest)),
        core: Core::new(shared, Arc::new(Rights::any()), false, false),
        claims: None,
    };
    let task = run(ws, Box::new(s), &f.env);
    let size = std::mem::size_of_val(&task);
    // 1,280 bytes before the handler API, over this test's channel transport.
    assert!(size <= 1280, "a session's task is {size} bytes");
}

/// A session whose handler is "on another worker": the returned `Client` is the handler's end of
/// the session stream (what it receives, what it sends back).
fn start_remote(
    f: &Fixture,
) -> (
    Client,
    Client,
    Arc<SessionShared>,
    tokio::task::JoinHandle<()>,
) {
    use futures_util::StreamExt;
    let (ws, client) = chan(16);
    let (stream, handler_end) = chan(16);
    let (to_handler, from_handler) = stream.split();
    let remote = crate::remote::RemoteHandler::new(to_handler, from_handler);
    let (shared, task) = spawn(
        f,
        ws,
        (Handling::Remote(Box::new(remote)), true, false, false),
    );
    (client, handler_end, shared, task)
}

/// The client leaves (if it has not been left already), the session ends, and it is counted as
/// a remote session that ended `why`.
async fn ended_as(f: &Fixture, client: Client, task: tokio::task::JoinHandle<()>, why: &str) {
    drop(client);
    task.await.unwrap();
    let counted = format!(r#"ews_remote_sessions_closed_total{{why="{why}"}} 1"#);
    assert!(f.env.services.metrics.render().contains(&counted));
}

#[tokio::test(start_paused = true)]
async fn a_remote_handler_hears_the_client_and_answers_it() {
    let f = fixture(8);
    let (mut client, mut handler, _, task) = start_remote(&f);
    client.send("hi");
    assert_eq!(handler.next().await, Message::text("hi"));
    handler.send("Hello hi!");
    assert_eq!(client.next().await, Message::text("Hello hi!"));
    // Topic frames stay where the socket is: answered here, never sent on.
    client.send(r#"{"type":"subscribe","topic":"news"}"#);
    assert!(matches!(
        client.frame().await,
        ServerFrame::Subscribed { .. }
    ));
    assert!(handler.rx.try_recv().is_err());
    ended_as(&f, client, task, "here").await;
}

#[tokio::test(start_paused = true)]
async fn a_remote_handler_leaving_passes_its_1012_on_after_the_pushes_taken() {
    let f = fixture(8);
    let (mut client, handler, shared, task) = start_remote(&f);
    settle().await;
    assert_eq!(
        shared.push("pushed".into()),
        crate::registry::Pushed::Queued
    );
    handler
        .tx
        .send(Ok(Message::Close(Some(close_frame(
            CloseCode::Restart,
            "server draining",
        )))))
        .unwrap();
    assert_eq!(client.next().await, Message::text("pushed"));
    assert_eq!(
        client.close().await,
        (CloseCode::Restart, "server draining".into())
    );
    // After the goodbye the session is no receiver: a push is not counted as delivered.
    assert_eq!(shared.push("late".into()), crate::registry::Pushed::Closed);
    ended_as(&f, client, task, "handler_left").await;
}

#[tokio::test(start_paused = true)]
async fn a_lost_handler_node_closes_the_client_with_1011() {
    let f = fixture(8);
    let (mut client, handler, _, task) = start_remote(&f);
    // The stream breaks: the handler's worker died.
    drop(handler);
    assert_eq!(
        client.close().await,
        (CloseCode::Error, "handler node lost".into())
    );
    ended_as(&f, client, task, "handler_lost").await;
}

#[tokio::test(start_paused = true)]
async fn a_remote_handlers_topic_commands_apply_where_the_socket_is() {
    let f = fixture(8);
    let (mut client, handler, _, task) = start_remote(&f);
    let room = ews_proto::topic::Topic::parse("room.a").unwrap();
    handler
        .tx
        .send(Ok(Command::Subscribe(room.clone()).into_message()))
        .unwrap();
    handler.send("joined");
    // In order: by the time the handler's next message arrives, the join is in place.
    assert_eq!(client.next().await, Message::text("joined"));
    assert_eq!(f.registry.topics(), vec![room.clone()]);
    assert_eq!(f.registry.publish_topic(&room, "hello").delivered, 1);
    assert!(matches!(client.frame().await, ServerFrame::Push { .. }));
    handler
        .tx
        .send(Ok(Command::Unsubscribe(room.clone()).into_message()))
        .unwrap();
    handler.send("left");
    assert_eq!(client.next().await, Message::text("left"));
    assert!(f.registry.topics().is_empty());
    drop(client);
    task.await.unwrap();
}

/// Answers `who` with its client id; every other method is not its own.
struct Asks;

impl Handler for Asks {
    type State = ();

    async fn on_open(&self, _: &mut SessionCtx<'_>) {}

    async fn on_message(&self, _: &mut SessionCtx<'_>, _: &mut (), _: Msg) {}

    async fn on_rpc(
        &self,
        ctx: &mut SessionCtx<'_>,
        _: &mut (),
        method: &str,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, crate::handler::RpcError> {
        match method {
            "who" => {
                Ok(serde_json::json!({"me": ctx.client_id().map(|c| c.to_string()), "asked": data}))
            }
            "fail" => Err(crate::handler::RpcError::new("busy", "try later")),
            _ => Err(crate::handler::RpcError::no_method(method)),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn rpcs_are_answered_by_the_handler_with_data_an_error_or_no_method() {
    let f = fixture(8);
    let (mut client, _, _task) = start(&f, Asks, false, false, 16);
    client.send(r#"{"type":"rpc","id":1,"method":"who","data":[1]}"#);
    assert_eq!(
        client.frame().await,
        ServerFrame::Reply {
            id: 1,
            data: Some(serde_json::json!({"me": "alice", "asked": [1]})),
            error: None
        }
    );
    client.send(r#"{"type":"rpc","id":2,"method":"fail"}"#);
    let ServerFrame::Reply {
        id: 2,
        error: Some(e),
        ..
    } = client.frame().await
    else {
        panic!("a reply with an error");
    };
    assert_eq!(e.code, "busy");
    // A handler without `on_rpc` takes no method.
    let (mut plain, _, _t) = start(&f, Ingest, false, false, 16);
    plain.send(r#"{"type":"rpc","id":9,"method":"anything"}"#);
    let ServerFrame::Reply {
        id: 9,
        error: Some(e),
        ..
    } = plain.frame().await
    else {
        panic!("a reply with an error");
    };
    assert_eq!(e.code, "no_method");
    plain.send(r#"{"type":"rpc","id":"x","method":"m"}"#);
    assert!(matches!(
        plain.frame().await,
        ServerFrame::Error {
            error: ews_proto::ErrorKind::InvalidFrame,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_client_publishes_where_its_token_grants_at_its_rate_and_receivers_see_who() {
    let f = fixture(8);
    let room = ews_proto::topic::Topic::parse("room.1").unwrap();
    let (ws, mut bob) = chan(16);
    let (_, _bob_task) = spawn_as(
        &f,
        ws,
        (Handling::local(registered(Ingest)), true, false, false),
        "bob",
        |_| {},
    );
    bob.send(r#"{"type":"subscribe","topic":"room.1"}"#);
    assert!(matches!(bob.frame().await, ServerFrame::Subscribed { .. }));
    let rights = Rights {
        subscribe: ews_proto::topic::Grants::None,
        publish: ews_proto::topic::Grants::from_claim(&["room.*".into()]).unwrap(),
    };
    let (ws, mut alice) = chan(16);
    let how = (Handling::local(registered(Ingest)), true, false, false);
    let (_, _alice_task) = spawn_as(&f, ws, how, "alice", |c| c.rights = Arc::new(rights));
    alice.send(r#"{"type":"publish","topic":"lobby","msg":"hi","id":"p0"}"#);
    let ServerFrame::Error {
        error, id, topic, ..
    } = alice.frame().await
    else {
        panic!("refused");
    };
    assert_eq!(
        (error, id.as_deref(), topic.as_deref()),
        (
            ews_proto::ErrorKind::PublishForbidden,
            Some("p0"),
            Some("lobby")
        )
    );
    for n in 1..=3 {
        alice.send(&format!(
            r#"{{"type":"publish","topic":"room.1","msg":"m{n}","id":"p{n}"}}"#
        ));
    }
    for n in 1..=3 {
        assert_eq!(
            alice.frame().await,
            ServerFrame::Published {
                id: Some(format!("p{n}")),
                delivered: 1
            }
        );
        assert_eq!(
            bob.frame().await,
            ServerFrame::Push {
                msg: format!("m{n}"),
                topic: Some(room.as_str().into()),
                from: Some("alice".into()),
                offset: None,
                epoch: None,
            }
        );
    }
    // The burst is spent: the fourth within the second is refused, the next second's is not.
    alice.send(r#"{"type":"publish","topic":"room.1","msg":"m4","id":"p4"}"#);
    assert!(matches!(
        alice.frame().await,
        ServerFrame::Error {
            error: ews_proto::ErrorKind::RateLimited,
            ..
        }
    ));
    tokio::time::advance(Duration::from_secs(1)).await;
    alice.send(r#"{"type":"publish","topic":"room.1","msg":"m5","id":"p5"}"#);
    assert!(matches!(
        alice.frame().await,
        ServerFrame::Published { delivered: 1, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_token_that_is_not_refreshed_ends_the_session_with_4001() {
    let f = fixture(8);
    let (reasons, mut heard) = mpsc::unbounded_channel();
    let (ws, mut client) = chan(16);
    let (_, exp) = token("alice", 90);
    let how = (
        Handling::local(registered(Probe(reasons))),
        true,
        false,
        false,
    );
    let (_, task) = spawn_as(&f, ws, how, "alice", |c| {
        c.expiry = Some(Expiry::new(exp, 0))
    });
    // 60 s before it expires (the fixture's lead), the client is told; nothing else happens.
    let frame = client.frame().await;
    assert_eq!(frame, ServerFrame::RefreshRequired { exp });
    assert_eq!(
        client.close().await,
        (CloseCode::from(4001), "token expired".into())
    );
    drop(client);
    task.await.unwrap();
    assert_eq!(heard.recv().await, Some(CloseReason::TokenExpired));
}

#[tokio::test(start_paused = true)]
async fn a_refresh_for_the_same_sub_extends_the_session_and_another_sub_is_refused() {
    let f = fixture(8);
    let (ws, mut client) = chan(16);
    let (_, exp) = token("alice", 90);
    let how = (Handling::local(registered(Ingest)), true, false, false);
    let (shared, _task) = spawn_as(&f, ws, how, "alice", |c| {
        c.expiry = Some(Expiry::new(exp, 0))
    });
    assert_eq!(client.frame().await, ServerFrame::RefreshRequired { exp });
    let (mallory, _) = token("mallory", 3600);
    client.send(&format!(r#"{{"type":"refresh","token":"{mallory}"}}"#));
    assert!(matches!(
        client.frame().await,
        ServerFrame::Error {
            error: ews_proto::ErrorKind::TokenRefused,
            ..
        }
    ));
    client.send(r#"{"type":"refresh","token":"not.a.token"}"#);
    assert!(matches!(
        client.frame().await,
        ServerFrame::Error {
            error: ews_proto::ErrorKind::TokenRefused,
            ..
        }
    ));
    let (fresh, new_exp) = token("alice", 3600);
    client.send(&format!(r#"{{"type":"refresh","token":"{fresh}"}}"#));
    assert_eq!(
        client.frame().await,
        ServerFrame::Refreshed { exp: new_exp }
    );
    // Past the old expiry the session is still open: a push still arrives.
    tokio::time::advance(Duration::from_secs(120)).await;
    assert_eq!(
        shared.push("still here".into()),
        crate::registry::Pushed::Queued
    );
    assert_eq!(client.next().await, Message::text("still here"));
}

#[tokio::test(start_paused = true)]
async fn the_backend_disconnects_a_session_after_what_it_was_sent() {
    let f = fixture(8);
    let (reasons, mut heard) = mpsc::unbounded_channel();
    let (mut client, shared, task) = start(&f, Probe(reasons), false, false, 16);
    settle().await;
    assert_eq!(
        shared.push("last words".into()),
        crate::registry::Pushed::Queued
    );
    let d = ews_cluster::command::Disconnect {
        client_id: "alice".into(),
        code: 4003,
        reason: "banned".into(),
        ban_secs: 60,
    };
    assert_eq!(f.registry.disconnect(&d).delivered, 1);
    assert_eq!(client.next().await, Message::text("last words"));
    assert_eq!(
        client.close().await,
        (CloseCode::from(4003), "banned".into())
    );
    drop(client);
    task.await.unwrap();
    assert_eq!(heard.recv().await, Some(CloseReason::Disconnected));
    let left = f.registry.banned(&"alice".into()).expect("banned");
    assert!(left <= Duration::from_secs(60));
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(f.registry.banned(&"alice".into()), None);
}

#[tokio::test(start_paused = true)]
async fn presence_events_reach_a_running_session() {
    let f = fixture(8);
    let (ws, mut client) = chan(16);
    let shared = f.registry.register(
        SessionShared::new(
            f.registry.new_id(),
            Some("alice".into()),
            "/t".into(),
            "127.0.0.1:1".parse().unwrap(),
            "w1".into(),
            8,
        )
        .with_presence(true),
    );
    let session = Session {
        control: true,
        handling: Handling::local(registered(Ingest)),
        core: Core::new(shared.clone(), Arc::new(Rights::any()), false, false),
        claims: None,
    };
    let env = f.env.clone();
    let _task = tokio::spawn(async move { run(ws, Box::new(session), &env).await });
    settle().await;
    let room = ews_proto::topic::Topic::parse("room").unwrap();
    f.registry.subscribe(shared.id, &room, 4).unwrap();
    let info: ews_proto::ClientInfo = serde_json::from_str(r#"{"name":"Bob"}"#).unwrap();
    let e = ews_cluster::command::PresenceEvent {
        topic: room,
        client_id: "bob".into(),
        joined: true,
        info: Some(info.clone()),
    };
    assert_eq!(f.registry.deliver_presence(&[e]).delivered, 1);
    assert_eq!(
        client.frame().await,
        ServerFrame::Join {
            topic: "room".into(),
            client_id: "bob".into(),
            info: Some(info),
        }
    );
}

/// On the handler's side of a remote session an rpc is the handler's (the socket's worker
/// forwarded it), while topic and publish frames are not this side's to answer.
#[tokio::test(start_paused = true)]
async fn a_hosted_session_answers_rpcs_and_leaves_the_sockets_frames_alone() {
    let f = fixture(8);
    let (mut stream, _, _task) = start(&f, Asks, false, true, 16);
    stream.send(r#"{"type":"rpc","id":3,"method":"who"}"#);
    assert!(matches!(
        stream.frame().await,
        ServerFrame::Reply {
            id: 3,
            error: None,
            ..
        }
    ));
    // A publish reaching this side goes to the handler (whose on_message ignores it), not out.
    stream.send(r#"{"type":"publish","topic":"t","msg":"m"}"#);
    stream.send(r#"{"type":"rpc","id":4,"method":"fail"}"#);
    let ServerFrame::Reply { id: 4, .. } = stream.frame().await else {
        panic!("the next frame answers rpc 4, nothing answered the publish");
    };
}

/// A lifecycle record as the tests compare it: (type, session, nodeSeq, reason, code).
type Life = (&'static str, u64, u64, Option<String>, Option<u16>);

/// The lifecycle records the sink took.
fn lifecycle_records(f: &Fixture) -> Vec<Life> {
    use ews_proto::lifecycle::Lifecycle;
    f.sink
        .1
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| match r {
            SinkRecord::Lifecycle(Lifecycle::Connected(s)) => {
                assert_eq!((s.node.as_str(), s.generation), ("w1", 7));
                Some(("connected", s.session, s.node_seq, s.reason.clone(), s.code))
            }
            SinkRecord::Lifecycle(Lifecycle::Disconnected(s)) => Some((
                "disconnected",
                s.session,
                s.node_seq,
                s.reason.clone(),
                s.code,
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn sessions_write_their_start_and_end_with_the_reason_and_close_code() {
    let f = fixture_of(8, true);
    let (tx, mut rx) = mpsc::unbounded_channel();
    // The client closes (1000) and goes.
    let (client, shared, task) = start(&f, Probe(tx.clone()), false, false, 8);
    client
        .tx
        .send(Ok(Message::Close(Some(close_frame(
            CloseCode::Normal,
            "done",
        )))))
        .unwrap();
    drop(client);
    task.await.unwrap();
    assert_eq!(rx.recv().await, Some(CloseReason::ClientLeft));
    let first = shared.id;
    // The handler closes (4001).
    let (mut client, shared, task) = start(&f, Probe(tx.clone()), false, false, 8);
    client.send("bye");
    assert_eq!(client.close().await.0, CloseCode::from(4001));
    drop(client);
    task.await.unwrap();
    let second = shared.id;
    // A handler hosted for another worker's socket writes nothing: that worker does.
    let (client, _, task) = start(&f, Probe(tx), false, true, 8);
    drop(client);
    task.await.unwrap();
    assert_eq!(
        lifecycle_records(&f),
        [
            ("connected", first, 1, None, None),
            (
                "disconnected",
                first,
                2,
                Some("client_left".into()),
                Some(1000)
            ),
            ("connected", second, 3, None, None),
            ("disconnected", second, 4, Some("closed".into()), Some(4001)),
        ]
    );
}

/// A push on a topic with history: (msg, offset).
async fn stamped(client: &mut Client) -> (String, u64) {
    match client.frame().await {
        ServerFrame::Push {
            msg,
            offset: Some(offset),
            epoch: Some(_),
            ..
        } => (msg, offset),
        other => panic!("expected a push with an offset, got {other:?}"),
    }
}

/// Publishes `msg` to `topic` through the node's publish path (history first).
async fn publish_to(f: &Fixture, topic: &str, msg: &str) {
    let p = ews_cluster::publish::Publish {
        target: ews_cluster::publish::Target::topic(ews_proto::topic::Topic::parse(topic).unwrap()),
        msg: msg.into(),
        id: None,
        from: None,
        at: None,
    };
    f.env.services.pubsub.publish(&p).await;
}

#[tokio::test(start_paused = true)]
async fn a_resubscribe_with_since_gets_what_it_missed_then_live_with_no_gap_or_copy() {
    let f = fixture_history();
    let (mut alice, _, _task) = start(&f, Ingest, false, false, 16);
    alice.send(r#"{"type":"subscribe","topic":"room.1"}"#);
    let ServerFrame::Subscribed {
        offset: Some(0),
        epoch: Some(epoch),
        recovered: None,
        ..
    } = alice.frame().await
    else {
        panic!("subscribed at offset 0");
    };
    for m in ["a", "b", "c"] {
        publish_to(&f, "room.1", m).await;
    }
    for (i, m) in ["a", "b", "c"].into_iter().enumerate() {
        assert_eq!(stamped(&mut alice).await, (m.to_string(), i as u64 + 1));
    }
    // Bob was there until offset 1: he gets b and c, then live.
    let (mut bob, _, _task2) = start(&f, Ingest, false, false, 16);
    bob.send(&format!(
        r#"{{"type":"subscribe","topic":"room.1","since":{{"offset":1,"epoch":"{epoch}"}}}}"#
    ));
    assert_eq!(stamped(&mut bob).await, ("b".into(), 2));
    assert_eq!(stamped(&mut bob).await, ("c".into(), 3));
    assert_eq!(
        bob.frame().await,
        ServerFrame::Subscribed {
            topic: "room.1".into(),
            offset: Some(3),
            epoch: Some(epoch.clone()),
            recovered: Some(true),
            reason: None,
        }
    );
    publish_to(&f, "room.1", "d").await;
    assert_eq!(stamped(&mut bob).await, ("d".into(), 4));
    assert_eq!(stamped(&mut alice).await, ("d".into(), 4));
    // Carol names another epoch: told, and joined at the stream's position.
    let (mut carol, _, _task3) = start(&f, Ingest, false, false, 16);
    carol.send(r#"{"type":"subscribe","topic":"room.1","since":{"offset":1,"epoch":"gone"}}"#);
    assert_eq!(
        carol.frame().await,
        ServerFrame::Subscribed {
            topic: "room.1".into(),
            offset: Some(4),
            epoch: Some(epoch),
            recovered: Some(false),
            reason: Some("epoch_changed".into()),
        }
    );
}

#[tokio::test(start_paused = true)]
async fn pushes_that_overtake_each_other_are_delivered_in_offset_order_once() {
    let f = fixture_history();
    let (mut alice, _, _task) = start(&f, Ingest, false, false, 16);
    alice.send(r#"{"type":"subscribe","topic":"room.1"}"#);
    assert!(matches!(
        alice.frame().await,
        ServerFrame::Subscribed { .. }
    ));
    let (history, _) = f.env.services.pubsub.history.clone().unwrap();
    let topic = ews_proto::topic::Topic::parse("room.1").unwrap();
    // Two publishers appended 1 and 2; 2's fan-out arrives first.
    let mut stamped_at = Vec::new();
    for m in ["one", "two"] {
        let kept = ews_history::Kept {
            msg: m.into(),
            from: None,
        };
        let at = history.append(&topic, &kept).await.unwrap();
        stamped_at.push(ews_cluster::publish::Publish {
            target: ews_cluster::publish::Target::topic(topic.clone()),
            msg: m.into(),
            id: None,
            from: None,
            at: Some(StreamPosition {
                offset: at.offset,
                epoch: at.epoch,
            }),
        });
    }
    let pubsub = &f.env.services.pubsub;
    assert_eq!(pubsub.deliver_here(&stamped_at[1]).await.delivered, 1);
    assert_eq!(stamped(&mut alice).await, ("one".into(), 1));
    assert_eq!(stamped(&mut alice).await, ("two".into(), 2));
    // The late one is a copy now.
    assert_eq!(pubsub.deliver_here(&stamped_at[0]).await.delivered, 0);
    publish_to(&f, "room.1", "three").await;
    assert_eq!(stamped(&mut alice).await, ("three".into(), 3));
}

#[tokio::test(start_paused = true)]
async fn a_client_away_longer_than_history_keeps_is_told_not_left_with_a_gap() {
    let f = fixture_history();
    let (mut alice, _, _task) = start(&f, Ingest, false, false, 16);
    alice.send(r#"{"type":"subscribe","topic":"room.1"}"#);
    let ServerFrame::Subscribed {
        epoch: Some(epoch), ..
    } = alice.frame().await
    else {
        panic!("subscribed");
    };
    // Fifteen messages; history keeps ten (6 to 15).
    for i in 1..=15 {
        publish_to(&f, "room.1", &format!("m{i}")).await;
    }
    let (mut bob, _, _task2) = start(&f, Ingest, false, false, 16);
    bob.send(&format!(
        r#"{{"type":"subscribe","topic":"room.1","since":{{"offset":2,"epoch":"{epoch}"}}}}"#
    ));
    assert_eq!(
        bob.frame().await,
        ServerFrame::Subscribed {
            topic: "room.1".into(),
            offset: Some(15),
            epoch: Some(epoch),
            recovered: Some(false),
            reason: Some("expired".into()),
        }
    );
    publish_to(&f, "room.1", "m16").await;
    assert_eq!(stamped(&mut bob).await, ("m16".into(), 16));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_resumes_gets_the_pushes_to_it_it_missed() {
    let f = fixture_history();
    let push = |msg: &'static str| {
        let p = ews_cluster::publish::Publish {
            target: ews_cluster::publish::Target::client("alice"),
            msg: msg.into(),
            id: None,
            from: None,
            at: None,
        };
        let pubsub = f.env.services.pubsub.clone();
        async move { pubsub.publish(&p).await }
    };
    let (mut first, _, _task) = start(&f, Ingest, false, false, 16);
    push("a").await;
    let epoch = match first.frame().await {
        ServerFrame::Push {
            msg,
            offset: Some(1),
            epoch: Some(epoch),
            topic: None,
            ..
        } if msg == "a" => epoch,
        other => panic!("{other:?}"),
    };
    // Gone; b and c are pushed meanwhile (to alice's other session, which also hears them).
    drop(first);
    let (mut second, _, _task2) = start(&f, Ingest, false, false, 16);
    push("b").await;
    push("c").await;
    assert_eq!(stamped(&mut second).await, ("b".into(), 2));
    assert_eq!(stamped(&mut second).await, ("c".into(), 3));
    // A third session resumes from 1: b and c first, then resumed.
    let (mut third, _, _task3) = start(&f, Ingest, false, false, 16);
    third.send(&format!(
        r#"{{"type":"resume","since":{{"offset":1,"epoch":"{epoch}"}}}}"#
    ));
    assert_eq!(stamped(&mut third).await, ("b".into(), 2));
    assert_eq!(stamped(&mut third).await, ("c".into(), 3));
    assert_eq!(
        third.frame().await,
        ServerFrame::Resumed {
            offset: 3,
            epoch,
            recovered: true,
            reason: None,
        }
    );
}
