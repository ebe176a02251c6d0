//! The client against a scripted WebSocket server in this process: each accepted connection is
//! handed to the test, which plays the server (acks, pushes, closes).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ews_client::{
    Backoff, BoxFuture, Client, Dial, DialError, Inbound, Options, Push, RequestError, SendError,
    State, SubscribeError,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type ServerWs = WebSocketStream<TcpStream>;

/// Dials the test server; refuses (as a 401 would) while `refuse` is above zero.
struct TestDial {
    addr: std::net::SocketAddr,
    refuse: Arc<AtomicU32>,
    dials: Arc<AtomicU32>,
}

impl Dial for TestDial {
    type Stream = TcpStream;
    fn dial(&self) -> BoxFuture<'_, Result<WebSocketStream<TcpStream>, DialError>> {
        Box::pin(async move {
            self.dials.fetch_add(1, Ordering::SeqCst);
            if self.refuse.load(Ordering::SeqCst) > 0 {
                self.refuse.fetch_sub(1, Ordering::SeqCst);
                return Err(DialError::Refused(401));
            }
            let tcp = TcpStream::connect(self.addr)
                .await
                .map_err(|e| DialError::Failed(e.to_string()))?;
            let (ws, _) =
                tokio_tungstenite::client_async(format!("ws://{}/ws?ack=1", self.addr), tcp)
                    .await
                    .map_err(|e| DialError::Failed(e.to_string()))?;
            Ok(ws)
        })
    }

    fn token(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { Some("fresh-token".to_string()) })
    }
}

struct Server {
    conns: mpsc::Receiver<ServerWs>,
    dial: TestDial,
}

async fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, conns) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                let _ = tx.send(ws).await;
            }
        }
    });
    Server {
        conns,
        dial: TestDial {
            addr,
            refuse: Arc::default(),
            dials: Arc::default(),
        },
    }
}

impl Server {
    /// A dialer of this server, sharing its refusal and dial counters.
    fn dial(&self) -> TestDial {
        TestDial {
            addr: self.dial.addr,
            refuse: self.dial.refuse.clone(),
            dials: self.dial.dials.clone(),
        }
    }
}

fn fast() -> Options {
    Options {
        buffer: 100,
        backoff: Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(10),
            drain_window: Duration::from_millis(10),
        },
        ..Options::new("t")
    }
}

async fn next_event(ws: &mut ServerWs) -> serde_json::Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(t.as_str()).unwrap(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no event: {other:?}"),
        }
    }
}

async fn ack(ws: &mut ServerWs, seq: u64, id: &str) {
    let frame = serde_json::json!({"type": "ack", "seq": seq, "id": id}).to_string();
    ws.send(Message::text(frame)).await.unwrap();
}

async fn close(ws: &mut ServerWs, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    };
    let _ = ws.close(Some(frame)).await;
}

async fn accept(s: &mut Server) -> ServerWs {
    tokio::time::timeout(Duration::from_secs(5), s.conns.recv())
        .await
        .expect("a connection")
        .expect("the server runs")
}

#[tokio::test]
async fn unacknowledged_events_are_resent_with_their_ids_after_a_drain() {
    let mut s = server().await;
    let (client, _pushes) = Client::start(s.dial(), None, fast());
    let mut ws = accept(&mut s).await;
    let a = client.send("a".into(), 1).await.unwrap();
    let b = client.send("b".into(), 2).await.unwrap();
    let (ea, eb) = (next_event(&mut ws).await, next_event(&mut ws).await);
    assert_eq!(ea["msg"], "a");
    assert!(
        ea.get("clientId").is_none(),
        "the token says who the client is"
    );
    let (ida, idb) = (ea["id"].as_str().unwrap(), eb["id"].as_str().unwrap());
    assert_ne!(ida, idb);
    ack(&mut ws, 1, ida).await;
    assert_eq!(a.await.unwrap().id, ida);

    // The server drains: the client comes back promptly and sends `b` again, same id.
    close(&mut ws, 1012, "draining").await;
    let mut ws = accept(&mut s).await;
    let again = next_event(&mut ws).await;
    assert_eq!(again["id"], idb);
    ack(&mut ws, 1, idb).await;
    let got = b.await.unwrap();
    assert_eq!((got.id.as_str(), got.seq), (idb, 1));
    assert_eq!(client.stats().opens.load(Ordering::Relaxed), 2);
    assert_eq!(client.stats().resent.load(Ordering::Relaxed), 1);
    client.close().await;
}

#[tokio::test]
async fn a_1008_or_a_token_refused_twice_ends_the_client() {
    let mut s = server().await;
    let (client, _pushes) = Client::start(s.dial(), None, fast());
    let mut ws = accept(&mut s).await;
    let pending = client.send("x".into(), 1).await.unwrap();
    let _ = next_event(&mut ws).await;
    close(&mut ws, 1008, "policy").await;
    assert!(matches!(pending.await, Err(SendError::Closed(_))));
    let mut state = client.state();
    let end = state
        .wait_for(|s| {
            matches!(
                s,
                State::Closed {
                    reconnect_in: None,
                    ..
                }
            )
        })
        .await
        .unwrap()
        .clone();
    assert!(matches!(end, State::Closed { code: 1008, .. }), "{end:?}");
    assert!(client.send("y".into(), 2).await.is_err());

    // A refused token is retried once (the dialer may fetch a fresh one), not forever.
    let s2 = server().await;
    s2.dial.refuse.store(5, Ordering::SeqCst);
    let dials = s2.dial.dials.clone();
    let (client, _pushes) = Client::start(s2.dial, None, fast());
    let mut state = client.state();
    let end = tokio::time::timeout(
        Duration::from_secs(5),
        state.wait_for(|s| {
            matches!(
                s,
                State::Closed {
                    reconnect_in: None,
                    ..
                }
            )
        }),
    )
    .await
    .expect("gives up")
    .unwrap()
    .clone();
    assert!(matches!(end, State::Closed { code: 4001, .. }), "{end:?}");
    assert_eq!(dials.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_full_buffer_holds_the_sender_and_pushes_arrive() {
    let mut s = server().await;
    let (client, mut pushes) = Client::start(
        s.dial(),
        None,
        Options {
            buffer: 2,
            ..fast()
        },
    );
    let mut ws = accept(&mut s).await;
    let first = client.send("1".into(), 1).await.unwrap();
    let _second = client.send("2".into(), 1).await.unwrap();
    let third = tokio::time::timeout(Duration::from_millis(100), client.send("3".into(), 1)).await;
    assert!(third.is_err(), "the third send waits for room");
    let e1 = next_event(&mut ws).await;
    ack(&mut ws, 1, e1["id"].as_str().unwrap()).await;
    first.await.unwrap();
    let third = tokio::time::timeout(Duration::from_secs(2), client.send("3".into(), 1)).await;
    assert!(third.is_ok(), "room after an acknowledgement");

    let push = serde_json::json!({"type": "push", "msg": "hello"}).to_string();
    ws.send(Message::text(push)).await.unwrap();
    assert_eq!(
        pushes.recv().await,
        Some(Inbound::Push(Push {
            msg: "hello".into(),
            topic: None,
            from: None,
            offset: None,
        }))
    );
    client.close().await;
}

async fn reply(ws: &mut ServerWs, frame: serde_json::Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

#[tokio::test]
async fn subscriptions_are_answered_and_renewed_on_every_connection() {
    let mut s = server().await;
    let (client, mut pushes) = Client::start(s.dial(), None, fast());
    let mut ws = accept(&mut s).await;
    let server_side = async {
        let asked = next_event(&mut ws).await;
        assert_eq!(
            asked,
            serde_json::json!({"type": "subscribe", "topic": "news.sport"})
        );
        reply(
            &mut ws,
            serde_json::json!({"type": "subscribed", "topic": "news.sport"}),
        )
        .await;
        let asked = next_event(&mut ws).await;
        assert_eq!(asked["topic"], "secret");
        let refusal = serde_json::json!({"type": "error", "error": "topic_forbidden", "detail": "no", "topic": "secret"});
        reply(&mut ws, refusal).await;
    };
    let client_side = async {
        client.subscribe("news.sport").await.expect("subscribed");
        client.subscribe("secret").await
    };
    let ((), refused) = tokio::join!(server_side, client_side);
    assert_eq!(
        refused,
        Err(SubscribeError::Refused {
            kind: "topic_forbidden".into(),
            detail: "no".into()
        })
    );
    reply(
        &mut ws,
        serde_json::json!({"type": "push", "msg": "goal", "topic": "news.sport"}),
    )
    .await;
    let Some(Inbound::Push(push)) = pushes.recv().await else {
        panic!("a push");
    };
    assert_eq!(
        (push.msg.as_str(), push.topic.as_deref()),
        ("goal", Some("news.sport"))
    );

    // A drain: the next connection subscribes again (only to what was granted) before it
    // resends the unacknowledged event.
    let pending = client.send("e".into(), 1).await.unwrap();
    let event = next_event(&mut ws).await;
    close(&mut ws, 1012, "draining").await;
    let mut ws = accept(&mut s).await;
    assert_eq!(
        next_event(&mut ws).await,
        serde_json::json!({"type": "subscribe", "topic": "news.sport"})
    );
    let again = next_event(&mut ws).await;
    assert_eq!(again["id"], event["id"]);
    ack(&mut ws, 1, again["id"].as_str().unwrap()).await;
    pending.await.unwrap();
    let server_side = async {
        let asked = next_event(&mut ws).await;
        assert_eq!(
            asked,
            serde_json::json!({"type": "unsubscribe", "topic": "news.sport"})
        );
        reply(
            &mut ws,
            serde_json::json!({"type": "unsubscribed", "topic": "news.sport"}),
        )
        .await;
    };
    let (left, ()) = tokio::join!(client.unsubscribe("news.sport"), server_side);
    left.unwrap();
    client.close().await;
}

#[tokio::test]
async fn publishes_and_rpcs_get_their_answers_and_the_client_refreshes_its_token() {
    let mut s = server().await;
    let (client, mut pushes) = Client::start(s.dial(), None, fast());
    let client = Arc::new(client);
    let mut ws = accept(&mut s).await;

    let c = client.clone();
    let published = tokio::spawn(async move { c.publish("room.1", "hi").await });
    let frame = next_event(&mut ws).await;
    assert_eq!(
        (frame["type"].as_str(), frame["topic"].as_str()),
        (Some("publish"), Some("room.1"))
    );
    let id = frame["id"].as_str().unwrap().to_string();
    reply(
        &mut ws,
        serde_json::json!({"type": "published", "id": id, "delivered": 2}),
    )
    .await;
    assert_eq!(published.await.unwrap(), Ok(2));

    let c = client.clone();
    let refused = tokio::spawn(async move { c.publish("lobby", "hi").await });
    let id = next_event(&mut ws).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    reply(
        &mut ws,
        serde_json::json!({"type": "error", "error": "publish_forbidden", "detail": "no",
            "id": id, "topic": "lobby"}),
    )
    .await;
    assert!(matches!(
        refused.await.unwrap(),
        Err(RequestError::Refused { kind, .. }) if kind == "publish_forbidden"
    ));

    let c = client.clone();
    let asked = tokio::spawn(async move {
        c.rpc(
            "who",
            serde_json::json!({"room": 1}),
            Duration::from_secs(5),
        )
        .await
    });
    let frame = next_event(&mut ws).await;
    assert_eq!(frame["method"], "who");
    let id = frame["id"].as_u64().unwrap();
    reply(
        &mut ws,
        serde_json::json!({"type": "reply", "id": id, "data": ["alice"]}),
    )
    .await;
    assert_eq!(asked.await.unwrap(), Ok(serde_json::json!(["alice"])));

    let c = client.clone();
    let no_method = tokio::spawn(async move {
        c.rpc("nope", serde_json::Value::Null, Duration::from_secs(5))
            .await
    });
    let id = next_event(&mut ws).await["id"].as_u64().unwrap();
    reply(
        &mut ws,
        serde_json::json!({"type": "reply", "id": id,
            "error": {"code": "no_method", "message": "no"}}),
    )
    .await;
    assert!(matches!(no_method.await.unwrap(), Err(RequestError::Rpc(e)) if e.code == "no_method"));
    // Unanswered: the caller's timeout.
    let late = client
        .rpc("slow", serde_json::Value::Null, Duration::from_millis(50))
        .await;
    assert_eq!(late, Err(RequestError::TimedOut));
    let _ = next_event(&mut ws).await;

    reply(
        &mut ws,
        serde_json::json!({"type": "join", "topic": "room.1", "clientId": "bob"}),
    )
    .await;
    assert_eq!(
        pushes.recv().await,
        Some(Inbound::Join {
            topic: "room.1".into(),
            client_id: "bob".into(),
            info: None,
        })
    );
    reply(
        &mut ws,
        serde_json::json!({"type": "refresh_required", "exp": 1}),
    )
    .await;
    let frame = next_event(&mut ws).await;
    assert_eq!(
        frame,
        serde_json::json!({"type": "refresh", "token": "fresh-token"})
    );

    // A request on a connection that is lost before its answer fails as lost.
    let c = client.clone();
    let lost = tokio::spawn(async move { c.publish("room.1", "x").await });
    let _ = next_event(&mut ws).await;
    close(&mut ws, 1012, "server draining").await;
    assert_eq!(lost.await.unwrap(), Err(RequestError::Lost));
}
