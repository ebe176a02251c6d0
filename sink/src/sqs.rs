//! The `sqs` sink: each event is one SQS message (body = the stamped event's JSON), sent with
//! `SendMessageBatch`, up to 10 per request. The default sink in AWS: a managed, replicated queue
//! that any AWS SDK can consume, with no broker to run.
//!
//! Acknowledgement: a receipt resolves `Ok` only for an entry SQS lists as successful (SQS has
//! then stored the message redundantly). An entry SQS refuses as the sender's fault (too large,
//! invalid) resolves `Rejected`; any other failed entry, and a whole request that fails (SQS or
//! the network down, throttling), is retried with jittered exponential back-off and no deadline.
//! Meanwhile the receipts stay pending and the window fills, so sessions stop reading: the same
//! back-pressure as the other sinks. A retried entry may be stored twice (the first answer can be
//! lost); on a FIFO queue (`.fifo`) every entry carries a deduplication id (`node-session-seq`)
//! that makes SQS drop such a copy, and the client id (or, without one, the session) as its
//! message group, so one client's events stay in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use rand::Rng;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::window::Window;
use crate::{BoxFuture, Receipt, ReceiptSender, Sink, SinkError, SinkRecord};

/// Entries per `SendMessageBatch` (the SQS maximum).
const MAX_BATCH: usize = 10;
/// Payload of one batch, and so of one message: SQS's original limit, which every SQS-compatible
/// service (moto included) accepts.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Settings of the SQS sink.
#[derive(Debug, Clone)]
pub struct SqsConfig {
    pub queue_url: String,
    /// Events sent but not yet confirmed by SQS, at most.
    pub window: usize,
    /// `SendMessageBatch` requests in flight at once.
    pub requests: usize,
}

impl SqsConfig {
    pub fn new(queue_url: &str) -> SqsConfig {
        SqsConfig {
            queue_url: queue_url.to_string(),
            window: 8192,
            requests: 16,
        }
    }
}

/// How long the sink waits for one `SendMessageBatch` attempt before retrying it.
pub const SEND_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// An SQS client configured the AWS way: region and credentials from the environment, the
/// instance profile on EC2; `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_SQS`) points it elsewhere,
/// such as moto in tests. Every attempt is bounded by `attempt_timeout`, so a hung endpoint is
/// retried, not waited on.
pub async fn client(attempt_timeout: Duration) -> aws_sdk_sqs::Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(attempt_timeout)
        .build();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    aws_sdk_sqs::Client::new(&shared)
}

pub struct SqsSink {
    tx: mpsc::Sender<Entry>,
    window: Window,
}

struct Entry {
    body: String,
    client_id: String,
    /// FIFO message group: the client id, or the session for a client without one (a group
    /// id cannot be empty), so one client's records stay in order.
    group: String,
    /// [`SinkRecord::unique_key`]: unique per record, the same on every retry.
    dedup: String,
    receipt: ReceiptSender,
    _slot: OwnedSemaphorePermit,
}

impl SqsSink {
    /// Starts the sender. Nothing is checked up front: a queue that is unreachable now is
    /// retried like any outage.
    pub fn new(client: aws_sdk_sqs::Client, config: &SqsConfig) -> SqsSink {
        let window = Window::new(config.window);
        let (tx, rx) = mpsc::channel(window.size());
        let fifo = config.queue_url.ends_with(".fifo");
        tokio::spawn(run(
            rx,
            client,
            config.queue_url.clone(),
            config.requests.max(1),
            fifo,
        ));
        SqsSink { tx, window }
    }
}

impl Sink for SqsSink {
    fn name(&self) -> &'static str {
        "sqs"
    }

    fn submit(&self, record: SinkRecord) -> BoxFuture<'_, Result<Receipt, SinkError>> {
        Box::pin(async move {
            let body = String::from_utf8(record.to_json()).unwrap_or_default();
            if body.len() > MAX_BATCH_BYTES {
                return Err(SinkError::Rejected(format!(
                    "event of {} bytes exceeds the SQS message limit of {MAX_BATCH_BYTES}",
                    body.len()
                )));
            }
            let slot = self.window.slot().await?;
            let (done, receipt) = Receipt::pending();
            let entry = Entry {
                body,
                dedup: record.unique_key(),
                group: match record.client_id() {
                    "" => record.order_key(),
                    c => c.to_string(),
                },
                client_id: record.client_id().to_string(),
                receipt: done,
                _slot: slot,
            };
            self.tx.send(entry).await.map_err(|_| SinkError::Closed)?;
            Ok(receipt)
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        // Every slot free = every event confirmed or failed.
        Box::pin(self.window.drained())
    }
}

/// Forms batches and keeps at most `requests` of them in flight. A batch is formed only once a
/// request slot is free, so under load it fills up to 10 while the previous requests run.
async fn run(
    mut rx: mpsc::Receiver<Entry>,
    client: aws_sdk_sqs::Client,
    url: String,
    requests: usize,
    fifo: bool,
) {
    let slots = Arc::new(Semaphore::new(requests));
    let mut carry: Option<Entry> = None;
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carry.take() {
            Some(e) => e,
            None => match rx.recv().await {
                Some(e) => e,
                None => return,
            },
        };
        let mut bytes = first.body.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(e) if bytes + e.body.len() <= MAX_BATCH_BYTES => {
                    bytes += e.body.len();
                    batch.push(e);
                }
                Ok(e) => {
                    carry = Some(e);
                    break;
                }
                Err(_) => break,
            }
        }
        tokio::spawn(send_batch(client.clone(), url.clone(), batch, fifo, permit));
    }
}

/// Sends `entries` until each one is confirmed or refused for good.
async fn send_batch(
    client: aws_sdk_sqs::Client,
    url: String,
    mut entries: Vec<Entry>,
    fifo: bool,
    _request: OwnedSemaphorePermit,
) {
    let mut backoff = BACKOFF_MIN;
    while !entries.is_empty() {
        let request = entries
            .iter()
            .enumerate()
            .map(|(i, e)| batch_entry(i, e, fifo))
            .collect::<Result<Vec<_>, _>>();
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                // Only a builder bug gets here (every required field is set).
                for entry in entries.drain(..) {
                    entry
                        .receipt
                        .complete(Err(SinkError::Failed(e.to_string())));
                }
                return;
            }
        };
        match client
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(request))
            .send()
            .await
        {
            Ok(out) => {
                let ok: Vec<usize> = out
                    .successful()
                    .iter()
                    .filter_map(|s| s.id().parse().ok())
                    .collect();
                let failed: HashMap<usize, (bool, String)> = out
                    .failed()
                    .iter()
                    .filter_map(|f| {
                        let why = format!("{}: {}", f.code(), f.message().unwrap_or_default());
                        Some((f.id().parse().ok()?, (f.sender_fault(), why)))
                    })
                    .collect();
                let mut retry = Vec::new();
                for (i, entry) in entries.drain(..).enumerate() {
                    match failed.get(&i) {
                        Some((true, why)) => entry
                            .receipt
                            .complete(Err(SinkError::Rejected(format!("SQS refused: {why}")))),
                        Some((false, why)) => {
                            tracing::warn!(error = %why, "SQS failed an entry; retrying");
                            retry.push(entry);
                        }
                        // Neither listed as failed nor as successful: not known to be stored.
                        None if !ok.contains(&i) => retry.push(entry),
                        None => entry.receipt.complete(Ok(())),
                    }
                }
                entries = retry;
                if entries.is_empty() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %DisplayErrorContext(&e), entries = entries.len(), "SQS send failed; retrying");
            }
        }
        // Full jitter: many workers that lost SQS at once do not come back in step.
        let wait = rand::rng().random_range(Duration::ZERO..=backoff);
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn batch_entry(
    i: usize,
    e: &Entry,
    fifo: bool,
) -> Result<SendMessageBatchRequestEntry, aws_sdk_sqs::error::BuildError> {
    let mut b = SendMessageBatchRequestEntry::builder()
        .id(i.to_string())
        .message_body(&e.body);
    // SQS refuses an empty attribute value: a client without an id goes without.
    if !e.client_id.is_empty() {
        let client_id = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(&e.client_id)
            .build()?;
        b = b.message_attributes("clientId", client_id);
    }
    if fifo {
        b = b
            .message_group_id(&e.group)
            .message_deduplication_id(&e.dedup);
    }
    b.build()
}

/// Reads every message of the queue at `url` until none arrived for `idle`, deleting those
/// `delete` picks by body (the others are only hidden for the queue's visibility timeout, then
/// visible to other consumers again, with one more receive counted). For
/// verifiers and tests: two receivers at once, short polling (moto serialises long polls); one
/// for a FIFO queue, whose groups go to one consumer at a time anyway (and where moto, under
/// load, can hand the same message to two concurrent receivers, which a verifier would count
/// as a duplicate the queue does not hold).
pub async fn read_queue(
    client: &aws_sdk_sqs::Client,
    url: &str,
    idle: Duration,
    delete: &(dyn Fn(&[u8]) -> bool + Sync),
) -> Result<Vec<Vec<u8>>, SinkError> {
    let receivers = if url.ends_with(".fifo") { 1 } else { 2 };
    let readers = (0..receivers).map(|_| read_some(client, url, idle, delete));
    let mut out = Vec::new();
    for r in futures_util::future::join_all(readers).await {
        out.extend(r?);
    }
    Ok(out)
}

async fn read_some(
    client: &aws_sdk_sqs::Client,
    url: &str,
    idle: Duration,
    delete_it: &(dyn Fn(&[u8]) -> bool + Sync),
) -> Result<Vec<Vec<u8>>, SinkError> {
    let fail = |e: String| SinkError::Failed(e);
    let mut out = Vec::new();
    let mut last = tokio::time::Instant::now();
    while last.elapsed() < idle {
        let got = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(&e).to_string()))?;
        let messages = got.messages();
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let mut delete = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let body = m.body().unwrap_or_default().as_bytes().to_vec();
            let mine = delete_it(&body);
            out.push(body);
            if let Some(handle) = m.receipt_handle().filter(|_| mine) {
                delete.push(
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .map_err(|e| fail(e.to_string()))?,
                );
            }
        }
        if !delete.is_empty() {
            client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(delete))
                .send()
                .await
                .map_err(|e| fail(DisplayErrorContext(&e).to_string()))?;
        }
        // Idle is time spent asking without an answer: a slow delete does not count.
        last = tokio::time::Instant::now();
    }
    Ok(out)
}
