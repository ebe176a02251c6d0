//! The Kafka sink against a real Kafka-protocol broker (Tansu), started by the test harness.
#![cfg(feature = "kafka")]

use std::collections::HashSet;
use std::time::Duration;

use ews_sink::kafka::read_topic;
use ews_sink::{KafkaConfig, KafkaSink, Receipt, Sink, StampedEvent};
use ews_testkit::moto::Moto;
use ews_testkit::tansu::Tansu;

fn event(seq: u64) -> StampedEvent {
    StampedEvent {
        id: None,
        msg: format!("m{seq}"),
        client_id: format!("c{}", seq % 7),
        timestamp: 1,
        node: "n1".into(),
        session: 1,
        seq,
        received_at: 2,
    }
}

fn seqs(records: &[Vec<u8>]) -> Vec<u64> {
    records
        .iter()
        .map(|r| {
            serde_json::from_slice::<StampedEvent>(r)
                .expect("event json")
                .seq
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_is_in_the_topic() {
    let tansu = Tansu::start();
    tansu.create_topic("events", 3);
    let sink = KafkaSink::new(&KafkaConfig::new(&tansu.bootstrap(), "events")).unwrap();
    let mut receipts = Vec::new();
    for seq in 1..=2_000 {
        receipts.push(sink.submit(event(seq).into()).await.unwrap());
    }
    sink.flush().await.unwrap();
    for r in receipts {
        assert_eq!(r.await, Ok(()));
    }
    let got = seqs(
        &read_topic(
            &tansu.bootstrap(),
            "events",
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
        .await
        .unwrap(),
    );
    let unique: HashSet<u64> = got.iter().copied().collect();
    assert_eq!(unique.len(), 2_000);
    assert_eq!(got.len(), 2_000, "no duplicates");
}

/// The broker stops answering mid-load (frozen with SIGSTOP: a hung broker or a partition) and
/// comes back: nothing is acknowledged meanwhile, the producer is held to the window, and every
/// acknowledged event is in the topic afterwards.
///
/// Not `kill -9` and a restart: Tansu 0.6.0 on S3 (moto) loses records it has already
/// acknowledged when killed under load (seen here: a contiguous range acknowledged just before
/// the kill missing after the restart, offsets handed out again), so that variant measured the
/// test broker's durability, not the sink's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_mid_load_back_pressures_and_loses_no_acknowledged_event() {
    let moto = Moto::start();
    let tansu = Tansu::start_on_s3(&moto);
    tansu.create_topic("events", 1);
    let mut config = KafkaConfig::new(&tansu.bootstrap(), "events");
    config.max_in_flight = 200;
    let sink = std::sync::Arc::new(KafkaSink::new(&config).unwrap());

    // A producer task submitting as fast as the sink lets it; receipts resolved by watchers.
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, bool)>();
    let submitted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let producer = {
        let sink = sink.clone();
        let submitted = submitted.clone();
        tokio::spawn(async move {
            for seq in 1..=3_000u64 {
                let receipt: Receipt = sink.submit(event(seq).into()).await.unwrap();
                submitted.store(seq, std::sync::atomic::Ordering::SeqCst);
                let ack_tx = ack_tx.clone();
                tokio::spawn(async move {
                    let _ = ack_tx.send((seq, receipt.await.is_ok()));
                });
            }
        })
    };
    let mut acked = HashSet::new();
    while acked.len() < 500 {
        let (seq, ok) = ack_rx.recv().await.unwrap();
        assert!(ok);
        acked.insert(seq);
    }

    tansu.pause();
    // Drain acknowledgements that were already on their way, then expect silence and a stalled
    // producer: the window is full and nothing more is acknowledged while the broker is down.
    // (Generous: delivery reports already on their way may be late on a busy machine.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while let Ok((seq, ok)) = ack_rx.try_recv() {
        assert!(ok);
        acked.insert(seq);
    }
    let stalled_at = submitted.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        ack_rx.try_recv().is_err(),
        "nothing acknowledged while the broker is down"
    );
    let now = submitted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        now < 3_000,
        "the producer is back-pressured (submitted {now})"
    );
    assert!(
        now <= stalled_at + 200,
        "no more than the window was taken while down"
    );

    tansu.resume();
    while acked.len() < 3_000 {
        let (seq, ok) = tokio::time::timeout(Duration::from_secs(60), ack_rx.recv())
            .await
            .expect("acknowledgements resume after the broker returns")
            .unwrap();
        assert!(ok, "event {seq} failed");
        acked.insert(seq);
    }
    producer.await.unwrap();

    let got: HashSet<u64> = seqs(
        &read_topic(
            &tansu.bootstrap(),
            "events",
            Duration::from_secs(3),
            Duration::from_secs(60),
        )
        .await
        .unwrap(),
    )
    .into_iter()
    .collect();
    let missing: Vec<_> = acked.iter().filter(|s| !got.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost",
        missing.len()
    );
}
