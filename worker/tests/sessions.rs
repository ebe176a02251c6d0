//! Sessions end to end: ingest with acks into a real file sink, invalid input, size limits,
//! echo, server push and the outbound bound, against a real `ews-worker` process.

mod common;

use std::time::Duration;

use common::*;
use ews_sink::StampedEvent;
use ews_testkit::net::http_request;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn ingest_acks_stamps_and_survives_invalid_input() {
    let (w, file) = Worker::hs256(&[]);
    let mut ws = connect_bearer(&w.url("/ws?ack=1"), &hs_token(&claims("alice"))).await;

    ws.send(Message::text("not json")).await.expect("send");
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["error"].as_str()),
        (Some("error"), Some("invalid_event"))
    );
    ws.send(Message::text(r#"{"msg":"x","clientId":"c"}"#))
        .await
        .expect("send");
    assert_eq!(next_json(&mut ws).await["error"], "invalid_event");
    ws.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    assert_eq!(next_json(&mut ws).await["error"], "invalid_event");

    for i in 1..=3 {
        ws.send(event(&format!("m{i}"))).await.expect("send");
        assert_eq!(next_json(&mut ws).await, json!({"type": "ack", "seq": i}));
    }
    let lines = std::fs::read_to_string(&file).expect("sink file");
    let events: Vec<StampedEvent> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect();
    assert_eq!(events.len(), 3);
    assert!(
        events.iter().all(|e| e.client_id == "alice"),
        "client id comes from the token"
    );
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(events[0].msg, "m1");
    assert_eq!(events[0].timestamp, 1_456_862_575_765);
    assert!(events[0].received_at > 1_700_000_000_000);
    let m = w.metrics();
    assert!(m.contains("ews_events_total{outcome=\"invalid\"} 3"), "{m}");
    assert!(m.contains("ews_events_total{outcome=\"acked\"} 3"), "{m}");
}

/// Control frames are recognised by their top-level `type`, never by words among an event's
/// values: these events are stored and acknowledged with their ids, and a real subscribe next to
/// them is still one.
#[tokio::test]
async fn events_whose_values_name_control_words_are_events() {
    let (w, file) = Worker::hs256(&["--topics-open"]);
    let mut ws = connect_bearer(&w.url("/ws?ack=1"), &hs_token(&claims("alice"))).await;
    let tricky = [
        json!({"id": "type", "msg": "subscribe", "timestamp": 1}),
        json!({"id": "e2", "msg": "{\"type\":\"unsubscribe\",\"topic\":\"a\"}", "timestamp": 2}),
        json!({"id": "subscribe", "msg": "type", "clientId": "unsubscribe", "timestamp": 3}),
    ];
    for (i, e) in tricky.iter().enumerate() {
        ws.send(Message::text(e.to_string())).await.expect("send");
        assert_eq!(
            next_json(&mut ws).await,
            json!({"type": "ack", "seq": i + 1, "id": e["id"]}),
            "{e}"
        );
    }
    ws.send(Message::text(r#"{"topic":"news","type":"subscribe"}"#))
        .await
        .expect("send");
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "subscribed", "topic": "news"})
    );
    let lines = std::fs::read_to_string(&file).expect("sink file");
    let ids: Vec<Option<String>> = lines
        .lines()
        .map(|l| serde_json::from_str::<StampedEvent>(l).expect("event").id)
        .collect();
    assert_eq!(
        ids,
        [
            Some("type".into()),
            Some("e2".into()),
            Some("subscribe".into())
        ]
    );
}

#[tokio::test]
async fn without_ack_events_are_taken_silently() {
    let (w, file) = Worker::hs256(&[]);
    let mut ws = connect_bearer(&w.url("/ws"), &hs_token(&claims("bob"))).await;
    for i in 0..5 {
        ws.send(event(&format!("m{i}"))).await.expect("send");
    }
    ws.send(Message::text("{")).await.expect("send");
    // The error frame is the first frame back: no acks were sent.
    assert_eq!(next_json(&mut ws).await["type"], "error");
    // Not acked, so written in the background: poll the file.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let lines = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .count();
        if lines == 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{lines} of 5 events written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn oversized_messages_close_with_1009() {
    let (w, _) = Worker::hs256(&["--max-message-bytes", "1024"]);
    let mut ws = connect_bearer(&w.url("/echo"), &hs_token(&claims("carol"))).await;
    ws.send(Message::text("a".repeat(1000)))
        .await
        .expect("send");
    assert_eq!(next_json_or_text(&mut ws).await.len(), 1000);
    ws.send(Message::text("a".repeat(5000)))
        .await
        .expect("send");
    assert_eq!(
        close_code(&mut ws, Duration::from_secs(5)).await,
        Some(1009)
    );
    assert!(w
        .metrics()
        .contains("ews_errors_total{kind=\"message_too_big\"} 1"));
}

async fn next_json_or_text(ws: &mut Ws) -> String {
    use futures_util::StreamExt;
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

#[tokio::test]
async fn publish_reaches_the_client_and_sessions_are_listed() {
    let (w, _) = Worker::hs256(&[]);
    let mut ws = connect_bearer(&w.url("/ws"), &hs_token(&claims("dave"))).await;
    wait_for_session(&w, "dave");
    let (code, body) = ews_testkit::http_get(w.admin, "/api/v1/sessions").expect("sessions");
    assert_eq!(code, 200);
    let list: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(list[0]["clientId"], "dave");
    assert_eq!(list[0]["route"], "/ws");

    let publish = |client: &str| {
        let body = json!({"clientId": client, "msg": "hello"}).to_string();
        http_request(
            w.admin,
            "POST",
            "/api/v1/publish",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .expect("publish")
    };
    assert_eq!(publish("nobody").0, 404);
    assert_eq!(publish("dave").0, 200);
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "push", "msg": "hello"})
    );
}

#[tokio::test]
async fn a_slow_reader_hits_the_outbound_bound_without_hurting_the_node() {
    let (w, _) = Worker::hs256(&["--outbound-queue", "4"]);
    // Connected, but never reads.
    let _ws = connect_bearer(&w.url("/ws"), &hs_token(&claims("slow"))).await;
    wait_for_session(&w, "slow");
    let big = "x".repeat(200 * 1024);
    let body = json!({"clientId": "slow", "msg": big}).to_string();
    let mut dropped_at = None;
    for i in 0..2000 {
        let (code, _) = http_request(w.admin, "POST", "/api/v1/publish", &[], body.as_bytes())
            .expect("publish");
        if code == 503 {
            dropped_at = Some(i);
            break;
        }
        assert_eq!(code, 200);
    }
    assert!(dropped_at.is_some(), "the outbound queue never filled");
    let m = w.metrics();
    assert!(
        m.contains("ews_dropped_total{reason=\"outbound_full\"} 1"),
        "{m}"
    );
    // Other clients are unaffected.
    let mut other = connect_bearer(&w.url("/echo"), &hs_token(&claims("fast"))).await;
    other.send(Message::text("ping?")).await.expect("send");
    assert_eq!(next_json_or_text(&mut other).await, "ping?");
}

/// Waits until the admin API lists a session of `client`.
fn wait_for_session(w: &Worker, client: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let needle = format!("\"clientId\":\"{client}\"");
    while !ews_testkit::http_get(w.admin, "/api/v1/sessions")
        .map(|(_, b)| b.contains(&needle))
        .unwrap_or(false)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{client} never listed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_failing_sink_nacks_and_the_session_goes_on() {
    // Every write to /dev/full fails with ENOSPC: the file sink resolves each receipt Err.
    let w = Worker::start(&[
        "--jwt-hs256-secret",
        SECRET,
        "--sink",
        "file",
        "--sink-file",
        "/dev/full",
    ]);
    let mut ws = connect_bearer(&w.url("/ws?ack=1"), &hs_token(&claims("erin"))).await;
    for seq in 1..=2 {
        ws.send(event("lost")).await.expect("send");
        let n = next_json(&mut ws).await;
        assert_eq!(
            (n["type"].as_str(), n["seq"].as_u64()),
            (Some("nack"), Some(seq)),
            "{n}"
        );
        assert!(n["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert!(w
        .metrics()
        .contains("ews_events_total{outcome=\"nacked\"} 2"));
}
