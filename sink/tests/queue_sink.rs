//! The queue sink: embedded in process, and remote against a real `ews-queue` broker process that
//! is killed and restarted under load.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ews_queue::client::connect;
use ews_queue::{Broker, ClientFrame, QueueConfig, ServerFrame};
use ews_sink::{QueueSink, Sink, StampedEvent};
use ews_testkit::{free_port, queue_broker, Scratch};

fn event(seq: u64) -> StampedEvent {
    StampedEvent {
        id: None,
        msg: format!("m{seq}"),
        client_id: "c1".into(),
        timestamp: 1,
        node: "n1".into(),
        session: 1,
        seq,
        received_at: 2,
    }
}

fn tmp_dir(name: &str) -> Scratch {
    Scratch::new(&format!("queue-sink-{name}"))
}

/// Consumes everything in the queue at `url`, as event sequence numbers (deleting each one: a
/// consumer holds at most `--queue-max-unacked` undeleted messages).
async fn drain(url: &str) -> Vec<u64> {
    let (mut tx, mut rx) = connect(url, None).await.unwrap();
    tx.send(&ClientFrame::Receive { count: 1_000_000 })
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Ok(Some(Ok(ServerFrame::Message { id, body, .. }))) =
        tokio::time::timeout(Duration::from_millis(1500), rx.next()).await
    {
        out.push(serde_json::from_str::<StampedEvent>(&body).unwrap().seq);
        tx.send(&ClientFrame::Delete { id }).await.unwrap();
    }
    out
}

#[tokio::test]
async fn embedded_receipts_resolve_once_durable() {
    let dir = tmp_dir("embedded");
    let broker = Broker::open(dir.path(), QueueConfig::default()).unwrap();
    let queue = broker.queue("events").unwrap();
    let sink = QueueSink::embedded(queue.clone());
    let mut receipts = Vec::new();
    for seq in 1..=1_000 {
        receipts.push(sink.submit(event(seq).into()).await.unwrap());
    }
    sink.flush().await.unwrap();
    for r in receipts {
        assert_eq!(r.await, Ok(()));
    }
    assert_eq!(queue.depth(), 1_000);
    let first = queue.take().await;
    let e: StampedEvent = serde_json::from_str(&first.body).unwrap();
    assert_eq!(e.seq, 1);
    drop((sink, queue, broker));
    // Reopened from disk: everything is still there.
    let broker = Broker::open(dir.path(), QueueConfig::default()).unwrap();
    assert_eq!(broker.queue("events").unwrap().depth(), 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_sink_survives_a_broker_kill_without_losing_acknowledged_events() {
    let dir = tmp_dir("remote");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut broker = queue_broker(addr, &dir, &[]);
    let url = format!("ws://{addr}/queue/events");
    let target_url = url.clone();
    let sink = Arc::new(QueueSink::remote(
        Arc::new(move || Some(target_url.clone())),
        None,
        256,
    ));

    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, bool)>();
    let producer = {
        let sink = sink.clone();
        tokio::spawn(async move {
            for seq in 1..=5_000u64 {
                let receipt = sink.submit(event(seq).into()).await.unwrap();
                let ack_tx = ack_tx.clone();
                tokio::spawn(async move {
                    let _ = ack_tx.send((seq, receipt.await.is_ok()));
                });
            }
        })
    };
    let mut acked = HashSet::new();
    while acked.len() < 1_000 {
        let (seq, ok) = ack_rx.recv().await.unwrap();
        assert!(ok);
        acked.insert(seq);
    }
    broker.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _broker = queue_broker(addr, &dir, &[]);
    while acked.len() < 5_000 {
        let (seq, ok) = tokio::time::timeout(Duration::from_secs(30), ack_rx.recv())
            .await
            .expect("acknowledgements resume after the broker returns")
            .unwrap();
        assert!(ok, "event {seq} failed");
        acked.insert(seq);
    }
    producer.await.unwrap();
    sink.flush().await.unwrap();

    let got: HashSet<u64> = drain(&url).await.into_iter().collect();
    let missing: Vec<_> = acked.iter().filter(|s| !got.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost",
        missing.len()
    );
}

/// A broker that cannot prove the cluster key (here a plain `ews-queue`, which has none) is
/// never sent an event: the sink signs its connection, finds no proof in the answer, hangs up
/// and retries; the event stays pending and the broker stays empty.
#[tokio::test]
async fn a_broker_that_cannot_prove_the_cluster_key_gets_no_event() {
    let dir = tmp_dir("untrusted");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _broker = queue_broker(addr, &dir, &[]);
    let url = format!("ws://{addr}/queue/events");
    let target_url = url.clone();
    let key = ews_http::link::LinkKey::derive(&ews_http::args::Secret::new("s3cret"));
    let sink = QueueSink::remote(Arc::new(move || Some(target_url.clone())), Some(key), 16);
    let receipt = sink
        .submit(event(1).into())
        .await
        .expect("taken into the window");
    assert!(
        tokio::time::timeout(Duration::from_secs(3), receipt)
            .await
            .is_err(),
        "an event was acknowledged by a broker that cannot prove the key"
    );
    assert_eq!(drain(&url).await, Vec::<u64>::new());
}
