//! The queue broker served by a real `ews-queue` process, driven over its WebSocket protocol.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ews_queue::client::{connect, FrameReceiver, FrameSender};
use ews_queue::{ClientFrame, ServerFrame};
use ews_testkit::{free_port, queue_broker, Proc, Scratch};
use tokio::time::timeout;

struct BrokerProc {
    addr: SocketAddr,
    proc: Proc,
}

fn start(dir: &Path, args: &[&str]) -> BrokerProc {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    BrokerProc {
        addr,
        proc: queue_broker(addr, dir, args),
    }
}

fn tmp_dir(name: &str) -> Scratch {
    Scratch::new(&format!("queue-it-{name}"))
}

async fn open(b: &BrokerProc, queue: &str) -> (FrameSender, FrameReceiver) {
    connect(&format!("ws://{}/queue/{queue}", b.addr), None)
        .await
        .expect("connect")
}

async fn next(rx: &mut FrameReceiver, wait: Duration) -> Option<ServerFrame> {
    match timeout(wait, rx.next()).await {
        Ok(Some(Ok(f))) => Some(f),
        Ok(Some(Err(e))) => panic!("receive failed: {e}"),
        Ok(None) | Err(_) => None,
    }
}

async fn send_all(tx: &mut FrameSender, rx: &mut FrameReceiver, bodies: &[String]) -> Vec<u64> {
    for b in bodies {
        tx.feed(&ClientFrame::Send { body: b.clone() })
            .await
            .unwrap();
    }
    tx.flush().await.unwrap();
    let mut ids = Vec::new();
    while ids.len() < bodies.len() {
        match next(rx, Duration::from_secs(10)).await {
            Some(ServerFrame::Sent { id }) => ids.push(id),
            other => panic!("expected sent, got {other:?}"),
        }
    }
    ids
}

fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test]
async fn demand_is_cumulative_and_never_exceeded() {
    let dir = tmp_dir("demand");
    let b = start(&dir, &[]);
    let (mut tx, mut rx) = open(&b, "q").await;
    let ids = send_all(&mut tx, &mut rx, &bodies("m", 20)).await;
    assert_eq!(ids.len(), 20);

    let (mut ctx, mut crx) = open(&b, "q").await;
    ctx.send(&ClientFrame::Receive { count: 3 }).await.unwrap();
    ctx.send(&ClientFrame::Receive { count: 2 }).await.unwrap();
    let mut got = Vec::new();
    while let Some(f) = next(&mut crx, Duration::from_millis(700)).await {
        match f {
            ServerFrame::Message { id, body, .. } => got.push((id, body)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got.len(), 5, "exactly the cumulative demand: {got:?}");
    assert_eq!(got[0].1, "m-0", "FIFO");
    ctx.send(&ClientFrame::Receive { count: 100 })
        .await
        .unwrap();
    while let Some(ServerFrame::Message { id, body, .. }) =
        next(&mut crx, Duration::from_millis(700)).await
    {
        got.push((id, body));
    }
    assert_eq!(got.len(), 20);
    let unique: HashSet<_> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(unique.len(), 20);
}

#[tokio::test]
async fn undeleted_message_is_redelivered_after_visibility_timeout_then_dead_lettered() {
    let dir = tmp_dir("visibility");
    let b = start(
        &dir,
        &[
            "--queue-visibility-timeout-ms",
            "300",
            "--queue-max-deliveries",
            "2",
        ],
    );
    let (mut tx, mut rx) = open(&b, "jobs").await;
    send_all(
        &mut tx,
        &mut rx,
        &["poison".to_string(), "good".to_string()],
    )
    .await;

    let (mut ctx, mut crx) = open(&b, "jobs").await;
    ctx.send(&ClientFrame::Receive { count: 100 })
        .await
        .unwrap();
    let mut seen = Vec::new();
    let started = std::time::Instant::now();
    while let Some(f) = next(&mut crx, Duration::from_millis(1500)).await {
        let ServerFrame::Message {
            id,
            body,
            deliveries,
        } = f
        else {
            panic!("unexpected {f:?}");
        };
        if body == "good" {
            ctx.send(&ClientFrame::Delete { id }).await.unwrap();
        }
        seen.push((body, deliveries, started.elapsed()));
    }
    let poison: Vec<_> = seen.iter().filter(|(b, _, _)| b == "poison").collect();
    assert_eq!(poison.len(), 2, "delivered max_deliveries times: {seen:?}");
    assert_eq!(poison[1].1, 2, "delivery count: {seen:?}");
    assert!(
        poison[1].2 - poison[0].2 >= Duration::from_millis(250),
        "redelivered only after the visibility timeout: {seen:?}"
    );
    assert_eq!(seen.iter().filter(|(b, _, _)| b == "good").count(), 1);

    let (mut dtx, mut drx) = open(&b, "jobs-dlq").await;
    dtx.send(&ClientFrame::Receive { count: 10 }).await.unwrap();
    match next(&mut drx, Duration::from_secs(3)).await {
        Some(ServerFrame::Message { id, body, .. }) => {
            assert_eq!(body, "poison");
            dtx.send(&ClientFrame::Delete { id }).await.unwrap();
        }
        other => panic!("expected the poison message in the dead-letter queue, got {other:?}"),
    }
    let more = next(&mut drx, Duration::from_millis(600)).await;
    assert!(more.is_none(), "{more:?}");
}

#[tokio::test]
async fn bounded_depth_back_pressures_a_fast_sender_until_a_receiver_drains() {
    let dir = tmp_dir("bounded");
    let b = start(&dir, &["--queue-max-depth", "50"]);
    let (mut tx, mut rx) = open(&b, "q").await;
    for body in bodies("m", 200) {
        tx.feed(&ClientFrame::Send { body }).await.unwrap();
    }
    tx.flush().await.unwrap();
    let mut acked = 0;
    while let Some(f) = next(&mut rx, Duration::from_millis(800)).await {
        assert!(matches!(f, ServerFrame::Sent { .. }), "{f:?}");
        acked += 1;
    }
    assert_eq!(
        acked, 50,
        "only max_depth sends are acknowledged while nobody receives"
    );

    // A receiver drains; the sender resumes and every send is acknowledged.
    let (mut ctx, mut crx) = open(&b, "q").await;
    ctx.send(&ClientFrame::Receive { count: 1_000 })
        .await
        .unwrap();
    let mut received = BTreeSet::new();
    while received.len() < 200 {
        tokio::select! {
            f = next(&mut crx, Duration::from_secs(10)) => match f {
                Some(ServerFrame::Message { id, body, .. }) => {
                    ctx.send(&ClientFrame::Delete { id }).await.unwrap();
                    received.insert(body);
                }
                other => panic!("receiver: {other:?} after {} messages", received.len()),
            },
            f = next(&mut rx, Duration::from_secs(10)) => match f {
                Some(ServerFrame::Sent { .. }) => acked += 1,
                other => panic!("sender: {other:?}"),
            },
        }
    }
    while acked < 200 {
        match next(&mut rx, Duration::from_secs(5)).await {
            Some(ServerFrame::Sent { .. }) => acked += 1,
            other => panic!("sender: {other:?}"),
        }
    }
    assert_eq!(received.len(), 200);
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_message_and_redelivers_unacknowledged_ones() {
    let dir = tmp_dir("crash");
    let mut b = start(&dir, &["--queue-visibility-timeout-ms", "60000"]);
    let (mut tx, mut rx) = open(&b, "q").await;
    let first = send_all(&mut tx, &mut rx, &bodies("a", 300)).await;

    // A receiver takes 100 and deletes 50 of them; the other 50 stay in flight.
    let (mut ctx, mut crx) = open(&b, "q").await;
    ctx.send(&ClientFrame::Receive { count: 100 })
        .await
        .unwrap();
    let mut deleted = HashSet::new();
    let mut in_flight = HashSet::new();
    while deleted.len() + in_flight.len() < 100 {
        match next(&mut crx, Duration::from_secs(5)).await {
            Some(ServerFrame::Message { id, .. }) if deleted.len() < 50 => {
                ctx.send(&ClientFrame::Delete { id }).await.unwrap();
                deleted.insert(id);
            }
            Some(ServerFrame::Message { id, .. }) => {
                in_flight.insert(id);
            }
            other => panic!("{other:?}"),
        }
    }

    // More sends in flight while the broker dies.
    for body in bodies("b", 2_000) {
        tx.feed(&ClientFrame::Send { body }).await.unwrap();
    }
    tx.flush().await.unwrap();
    let mut acked: HashSet<u64> = first.into_iter().collect();
    for _ in 0..200 {
        if let Some(ServerFrame::Sent { id }) = next(&mut rx, Duration::from_secs(5)).await {
            acked.insert(id);
        }
    }
    b.proc.kill();
    while let Some(Ok(ServerFrame::Sent { id })) = rx.next().await {
        acked.insert(id);
    }

    let b = start(&dir, &["--queue-visibility-timeout-ms", "60000"]);
    let (mut ctx, mut crx) = open(&b, "q").await;
    ctx.send(&ClientFrame::Receive { count: 100_000 })
        .await
        .unwrap();
    let mut after = HashSet::new();
    while let Some(f) = next(&mut crx, Duration::from_millis(1500)).await {
        if let ServerFrame::Message { id, .. } = f {
            after.insert(id);
        }
    }
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !deleted.contains(id) && !after.contains(id))
        .collect();
    assert!(missing.is_empty(), "acknowledged and lost: {missing:?}");
    assert!(
        in_flight.iter().all(|id| after.contains(id)),
        "received but undeleted messages are redelivered after a restart"
    );
}

#[tokio::test]
async fn queue_names_past_the_cap_are_refused_and_the_broker_stays_up() {
    let dir = tmp_dir("max-queues");
    let b = start(&dir, &["--queue-max-queues", "20"]);
    let addr = b.addr;
    let names: Vec<String> = (0..10_000).map(|i| format!("q{i}")).collect();
    let mut refused = 0;
    let mut served = 0;
    for chunk in names.chunks(64) {
        let mut tasks = tokio::task::JoinSet::new();
        for name in chunk {
            let url = format!("ws://{addr}/queue/{name}");
            tasks.spawn(async move {
                let (_tx, mut rx) = connect(&url, None).await.expect("connect");
                // A refused queue answers with an error frame and closes; a served one waits.
                match timeout(Duration::from_millis(300), rx.next()).await {
                    Ok(Some(Ok(ServerFrame::Error { error }))) => {
                        assert!(error.contains("too many queues"), "{error}");
                        true
                    }
                    _ => false,
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            if r.expect("join") {
                refused += 1;
            } else {
                served += 1;
            }
        }
    }
    assert_eq!((served, refused), (20, 9_980));
    // Alive, and the queues it holds still work.
    let (mut tx, mut rx) = open(&b, "q0").await;
    assert_eq!(send_all(&mut tx, &mut rx, &bodies("m", 3)).await.len(), 3);
    let dirs = std::fs::read_dir(dir.path()).expect("queue dir").count();
    assert!(dirs <= 41, "{dirs} entries: a directory per refused name?");
}

#[tokio::test]
async fn a_greedy_consumer_cannot_starve_a_well_behaved_one() {
    let dir = tmp_dir("fair");
    let b = start(
        &dir,
        &[
            "--queue-max-unacked",
            "16",
            "--queue-visibility-timeout-ms",
            "600000",
        ],
    );
    let (mut tx, mut rx) = open(&b, "jobs").await;
    send_all(&mut tx, &mut rx, &bodies("m", 200)).await;

    // Asks for everything and never deletes.
    let (mut gtx, mut grx) = open(&b, "jobs").await;
    gtx.send(&ClientFrame::Receive { count: 100_000 })
        .await
        .unwrap();
    let mut greedy = 0;
    while let Some(ServerFrame::Message { .. }) = next(&mut grx, Duration::from_millis(500)).await {
        greedy += 1;
    }
    assert_eq!(greedy, 16, "the greedy consumer holds at most its cap");

    // Takes one at a time and deletes it: gets all the rest.
    let (mut ctx, mut crx) = open(&b, "jobs").await;
    let mut good = 0;
    loop {
        ctx.send(&ClientFrame::Receive { count: 1 }).await.unwrap();
        match next(&mut crx, Duration::from_millis(500)).await {
            Some(ServerFrame::Message { id, .. }) => {
                good += 1;
                ctx.send(&ClientFrame::Delete { id }).await.unwrap();
            }
            _ => break,
        }
    }
    assert_eq!(good, 184);
    // Still nothing more for the greedy one.
    assert!(next(&mut grx, Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn binary_and_oversized_frames_are_answered() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;
    let dir = tmp_dir("frames");
    let b = start(&dir, &[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/queue/q", b.addr))
        .await
        .expect("connect");
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    match timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => assert!(t.contains("binary frames"), "{t}"),
        other => panic!("expected an error frame, got {other:?}"),
    }
    // Larger than the 2 MiB frame limit.
    let _ = ws.send(Message::text("x".repeat(3 * 1024 * 1024))).await;
    let close = loop {
        match timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => break f.map(|f| f.code),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected close 1009, got {other:?}"),
        }
    };
    assert_eq!(close, Some(CloseCode::Size));
}

#[tokio::test]
async fn a_full_disk_refuses_sends_and_writes_again_once_space_returns() {
    let disk = ews_testkit::Tmpfs::mount("queue-full-disk", 4 * 1024 * 1024);
    let data = disk.path().join("queue");
    std::fs::create_dir_all(&data).expect("queue dir");
    // Most of the disk is taken by a file the test frees later.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 3 * 1024 * 1024]).expect("filler");
    let b = start(&data, &[]);
    let (mut tx, mut rx) = open(&b, "q").await;

    let body = "x".repeat(60 * 1024);
    let mut acked = Vec::new();
    let mut refused = 0;
    for _ in 0..64 {
        tx.send(&ClientFrame::Send { body: body.clone() })
            .await
            .unwrap();
        match next(&mut rx, Duration::from_secs(10)).await {
            Some(ServerFrame::Sent { id }) => acked.push(id),
            Some(ServerFrame::Error { error }) => {
                assert!(!error.is_empty());
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            other => panic!("expected sent or error, got {other:?}"),
        }
    }
    assert!(
        refused == 3,
        "the disk never filled ({} sends acked)",
        acked.len()
    );
    assert!(!acked.is_empty(), "nothing fit before the disk filled");

    // Space returns: sends succeed again on the same connection and process, no restart.
    std::fs::remove_file(&filler).expect("free space");
    let after = send_all(&mut tx, &mut rx, &bodies("after", 10)).await;
    assert_eq!(after.len(), 10);

    // Everything acknowledged, before and after the full disk, is readable.
    let (mut ctx, mut crx) = open(&b, "q").await;
    ctx.send(&ClientFrame::Receive { count: 10_000 })
        .await
        .unwrap();
    let mut read = HashSet::new();
    while let Some(f) = next(&mut crx, Duration::from_millis(1500)).await {
        if let ServerFrame::Message { id, .. } = f {
            read.insert(id);
        }
    }
    let missing: Vec<_> = acked
        .iter()
        .chain(&after)
        .filter(|id| !read.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged and unreadable: {missing:?}"
    );
}
