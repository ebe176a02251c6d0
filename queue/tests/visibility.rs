//! The broker in process under paused time: the visibility timeout and dead-lettering run in
//! virtual time, so the test states exactly when a message comes back without waiting for it.

use std::time::Duration;

use ews_queue::{Broker, QueueConfig};
use ews_testkit::Scratch;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn an_undeleted_message_comes_back_after_the_visibility_timeout_then_dead_letters() {
    let dir = Scratch::new("visibility-paused");
    let config = QueueConfig {
        visibility_timeout: Duration::from_secs(30),
        max_deliveries: 2,
        ..QueueConfig::default()
    };
    let broker = Broker::open(dir.path(), config).expect("broker opens");
    let jobs = broker.queue("jobs").expect("queue");
    let id = jobs.send("poison".into()).await.expect("durable");

    let first = jobs.take().await;
    assert_eq!((first.id, first.deliveries), (id, 1));
    let taken = Instant::now();
    let second = jobs.take().await;
    assert_eq!((second.id, second.deliveries), (id, 2));
    assert_eq!(
        taken.elapsed(),
        Duration::from_secs(30),
        "back exactly at the timeout"
    );

    // Not deleted a second time: at the next timeout it moves to the dead-letter queue instead
    // of being delivered again.
    let third = tokio::time::timeout(Duration::from_secs(120), jobs.take()).await;
    assert!(
        third.is_err(),
        "delivered past max_deliveries: {:?}",
        third.map(|d| d.id)
    );
    let dlq = broker.queue("jobs-dlq").expect("dead-letter queue");
    let dead = dlq.take().await;
    assert_eq!((dead.body.as_str(), dead.deliveries), ("poison", 1));
    // Deleted from its queue once the dead-letter copy is durable.
    for _ in 0..1000 {
        if jobs.depth() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the dead-lettered message is still in its queue");
}
