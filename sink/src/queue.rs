//! The `queue` sink: events into the built-in durable queue, either embedded in this process
//! (`--standalone`) or on the active leader over the `/queue/{name}` WebSocket protocol.
//!
//! Receipts resolve only when the broker has fsynced the event. The remote sink keeps a bounded
//! window of unacknowledged events; when the connection drops it reconnects (to whatever the
//! target resolver names then, e.g. a newly active leader) and resends them in order, so an event
//! is never reported durable and then lost (it may arrive twice; `ews-load verify` counts that).
//! It does not wait for TCP to notice a dead broker: it follows the target every second, pings
//! the broker, gives up on one silent for five seconds (a partition drops packets, it does not
//! close connections) and bounds every write.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ews_http::link::LinkKey;
use ews_queue::client::{connect, Credential};
use ews_queue::{ClientFrame, Queue, QueueError, ServerFrame};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::window::Window;
use crate::{BoxFuture, Receipt, ReceiptSender, Sink, SinkError, SinkRecord};

/// Names the queue URL (`ws://host:port/queue/{name}`) to connect to now, or `None` while no
/// broker is known (the sink then waits and asks again).
pub type Target = Arc<dyn Fn() -> Option<String> + Send + Sync>;

pub struct QueueSink(Mode);

enum Mode {
    /// A queue of a broker in this process (its owner keeps the broker open).
    Embedded(Queue),
    Remote(Remote),
}

struct Remote {
    tx: mpsc::Sender<Item>,
    window: Window,
}

struct Item {
    body: String,
    receipt: ReceiptSender,
    _slot: OwnedSemaphorePermit,
}

pub(crate) fn queue_error(e: QueueError) -> SinkError {
    match e {
        QueueError::TooLarge(..) | QueueError::BadName(_) => SinkError::Rejected(e.to_string()),
        QueueError::Closed => SinkError::Closed,
        e => SinkError::Failed(e.to_string()),
    }
}

fn body_of(record: &SinkRecord) -> String {
    String::from_utf8(record.to_json()).unwrap_or_default()
}

impl QueueSink {
    /// Events go into `queue` in this process.
    pub fn embedded(queue: Queue) -> QueueSink {
        QueueSink(Mode::Embedded(queue))
    }

    /// Events go to a remote broker named by `target`, at most `window` of them unacknowledged.
    /// With `link` (a leader's node link) every connection is signed with the cluster key and
    /// the broker must prove the key before any event is sent.
    pub fn remote(target: Target, link: Option<LinkKey>, window: usize) -> QueueSink {
        let window = Window::new(window);
        let (tx, rx) = mpsc::channel(window.size());
        tokio::spawn(run_remote(rx, target, link));
        QueueSink(Mode::Remote(Remote { tx, window }))
    }
}

impl Sink for QueueSink {
    fn name(&self) -> &'static str {
        "queue"
    }

    fn submit(&self, record: SinkRecord) -> BoxFuture<'_, Result<Receipt, SinkError>> {
        Box::pin(async move {
            let body = body_of(&record);
            match &self.0 {
                Mode::Embedded(q) => Ok(Receipt::queued(q.admit(body).await.map_err(queue_error)?)),
                Mode::Remote(r) => {
                    let (done, receipt) = Receipt::pending();
                    let slot = r.window.slot().await?;
                    r.tx.send(Item {
                        body,
                        receipt: done,
                        _slot: slot,
                    })
                    .await
                    .map_err(|_| SinkError::Closed)?;
                    Ok(receipt)
                }
            }
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            match &self.0 {
                Mode::Embedded(q) => q.barrier().await.map_err(queue_error),
                // Every slot free = every event acknowledged.
                Mode::Remote(r) => r.window.drained().await,
            }
        })
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// How often a connected sink asks whether its target moved, and pings the broker.
const TARGET_RECHECK: Duration = Duration::from_secs(1);
/// A broker not heard from (no frame, no pong) for this long is gone: a partition or a dead host
/// leaves TCP silent rather than closed.
const SILENT_LIMIT: Duration = Duration::from_secs(5);
/// A write that cannot complete within this is on a dead connection (a full send buffer towards
/// a peer that vanished never drains).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// Whether a write finished in time and without error.
async fn written(write: impl std::future::Future<Output = Result<(), QueueError>>) -> bool {
    matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
}

/// Owns the connection: sends events, pairs `sent` answers (they come in send order) with the
/// oldest unacknowledged event, reconnects and resends on failure.
async fn run_remote(mut rx: mpsc::Receiver<Item>, target: Target, link: Option<LinkKey>) {
    let mut unacked: VecDeque<Item> = VecDeque::new();
    let mut backoff = BACKOFF_MIN;
    let mut closed = false;
    loop {
        if closed && unacked.is_empty() {
            return;
        }
        let Some(url) = target() else {
            tokio::time::sleep(backoff).await;
            continue;
        };
        let (mut out, mut inp) = match connect(&url, link.as_ref().map(Credential::Link)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%url, error = %e, "queue sink cannot connect; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        tracing::info!(%url, resend = unacked.len(), "queue sink connected");
        backoff = BACKOFF_MIN;
        let mut ok = true;
        for item in &unacked {
            let frame = ClientFrame::Send {
                body: item.body.clone(),
            };
            if !written(out.feed(&frame)).await {
                ok = false;
                break;
            }
        }
        if !ok || !written(out.flush()).await {
            continue;
        }
        let mut recheck = tokio::time::interval(TARGET_RECHECK);
        recheck.tick().await;
        loop {
            tokio::select! {
                // The target moved (a new active leader): follow it. What this broker has not
                // acknowledged is resent there; an event may arrive twice, never not at all.
                _ = recheck.tick() => {
                    if target().as_deref() != Some(url.as_str()) {
                        tracing::info!(from = %url, "queue target moved; reconnecting");
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, out.close()).await;
                        break;
                    }
                    if inp.heard().elapsed() > SILENT_LIMIT {
                        tracing::warn!(%url, "queue broker silent; reconnecting");
                        break;
                    }
                    if !written(out.ping()).await {
                        break;
                    }
                }
                item = rx.recv(), if !closed => {
                    let Some(item) = item else {
                        closed = true;
                        continue;
                    };
                    let mut failed = !written(out.feed(&ClientFrame::Send { body: item.body.clone() })).await;
                    unacked.push_back(item);
                    while !failed {
                        let Ok(item) = rx.try_recv() else { break };
                        failed = !written(out.feed(&ClientFrame::Send { body: item.body.clone() })).await;
                        unacked.push_back(item);
                    }
                    if failed || !written(out.flush()).await {
                        break;
                    }
                }
                frame = inp.next() => match frame {
                    Some(Ok(ServerFrame::Sent { .. })) => {
                        if let Some(item) = unacked.pop_front() {
                            item.receipt.complete(Ok(()));
                        }
                        if closed && unacked.is_empty() {
                            let _ = tokio::time::timeout(WRITE_TIMEOUT, out.close()).await;
                            return;
                        }
                    }
                    Some(Ok(ServerFrame::Error { error })) => {
                        // Send errors come in send order, like acknowledgements.
                        if let Some(item) = unacked.pop_front() {
                            item.receipt.complete(Err(SinkError::Failed(error)));
                        }
                    }
                    Some(Ok(ServerFrame::Message { .. })) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "queue sink connection failed; reconnecting");
                        break;
                    }
                    None => {
                        tracing::warn!("queue broker closed the connection; reconnecting");
                        break;
                    }
                },
            }
        }
        tokio::time::sleep(backoff).await;
    }
}
