//! The `kafka` sink: each event is one record (key = client id, value = the stamped event's JSON)
//! produced by an idempotent producer with `acks=all`.
//!
//! Back-pressure: at most `max_in_flight` events are unacknowledged; `submit` waits for a slot,
//! so sessions stop reading while Kafka is slow. Broker down: librdkafka keeps the records and
//! retries without a deadline (`message.timeout.ms=0`), reconnecting when the broker returns; the
//! idempotent producer keeps those retries free of duplicates and reordering. Meanwhile receipts
//! stay pending (nothing is acknowledged that is not durable) and the window fills, stopping the
//! sessions. A receipt resolves `Ok` only when the record is acknowledged by all in-sync replicas.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::window::Window;
use crate::{BoxFuture, Receipt, Sink, SinkError, SinkRecord};

/// Settings of the Kafka sink.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port`.
    pub brokers: String,
    pub topic: String,
    /// Events produced but not yet acknowledged, at most.
    pub max_in_flight: usize,
    /// Extra librdkafka properties (`linger.ms`, `client.id`, ...), applied last.
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn new(brokers: &str, topic: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            max_in_flight: 10_000,
            properties: Vec::new(),
        }
    }
}

pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    window: Window,
}

impl KafkaSink {
    /// Creates the producer. It connects lazily: a broker that is down now is not an error.
    pub fn new(config: &KafkaConfig) -> Result<KafkaSink, SinkError> {
        let window = Window::new(config.max_in_flight);
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5")
            .set(
                "queue.buffering.max.messages",
                (window.size() + 1024).to_string(),
            )
            .set("reconnect.backoff.max.ms", "1000");
        for (k, v) in &config.properties {
            cc.set(k, v);
        }
        let producer: FutureProducer = cc
            .create()
            .map_err(|e| SinkError::Failed(format!("kafka producer: {e}")))?;
        Ok(KafkaSink {
            producer,
            topic: config.topic.clone(),
            window,
        })
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn submit(&self, record: SinkRecord) -> BoxFuture<'_, Result<Receipt, SinkError>> {
        Box::pin(async move {
            let slot = self.window.slot().await?;
            let payload = record.to_json();
            // One partition per client keeps its records in order (its lifecycle records with
            // its events); without a client id, per session (or per lost node).
            let key = match record.client_id() {
                "" => record.order_key(),
                c => c.to_string(),
            };
            let delivery = loop {
                let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
                match self.producer.send_result(record) {
                    Ok(d) => break d,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((
                        e @ KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                        _,
                    )) => return Err(SinkError::Rejected(e.to_string())),
                    Err((e, _)) => return Err(SinkError::Failed(e.to_string())),
                }
            };
            let (done, receipt) = Receipt::pending();
            tokio::spawn(async move {
                let outcome = match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(SinkError::Failed(e.to_string())),
                    Err(_) => Err(SinkError::Closed),
                };
                drop(slot);
                done.complete(outcome);
            });
            Ok(receipt)
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(self.window.drained())
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        // Give queued records a moment to go out; receipts of any left behind resolve `Closed`.
        let _ = self.producer.flush(Duration::from_secs(1));
    }
}

/// Reads every record of `topic` from the beginning of each partition, stopping once no new
/// record arrived for `idle` (or after `limit` in total). Uses `assign()`, not a consumer group:
/// no group join, no committed offsets. For verifiers and tests.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    idle: Duration,
    limit: Duration,
) -> Result<Vec<Vec<u8>>, SinkError> {
    let brokers = brokers.to_string();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read_topic_blocking(&brokers, &topic, idle, limit))
        .await
        .map_err(|e| SinkError::Failed(e.to_string()))?
}

fn read_topic_blocking(
    brokers: &str,
    topic: &str,
    idle: Duration,
    limit: Duration,
) -> Result<Vec<Vec<u8>>, SinkError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let fail = |e: KafkaError| SinkError::Failed(e.to_string());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "ews-verify")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(fail)?;
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(fail)?;
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .map_err(fail)?;
        }
    }
    if tpl.count() == 0 {
        return Err(SinkError::Failed(format!(
            "topic {topic} has no partitions"
        )));
    }
    consumer.assign(&tpl).map_err(fail)?;
    let started = std::time::Instant::now();
    let mut last = std::time::Instant::now();
    let mut out = Vec::new();
    while last.elapsed() < idle && started.elapsed() < limit {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push(m.payload().unwrap_or_default().to_vec());
                last = std::time::Instant::now();
            }
            Some(Err(e)) => tracing::debug!(error = %e, "read_topic poll"),
            None => {}
        }
    }
    Ok(out)
}
