//! Where ingested events go.
//!
//! A session hands each valid event to a [`Sink`]. The contract every sink honours, and that its
//! tests prove against a real destination:
//!
//! * **Back-pressure**: [`Sink::submit`] resolves only once the sink has room for the event. A
//!   session awaits it before reading its next frame, so a full or dead destination stops the
//!   session from reading and TCP flow control pushes back to the client. No sink buffers without
//!   bound.
//! * **Durability is explicit**: the [`Receipt`] returned by `submit` resolves `Ok` only once the
//!   destination holds the event durably (fsynced queue, Kafka acks=all). Only then may a client be
//!   told its event is safe. An event whose receipt has not resolved `Ok` may be retried by the
//!   client; it is never reported as acknowledged and then dropped.
//! * **Failure is visible**: a receipt that resolves `Err` names why; sinks retry transient
//!   failures themselves (a broker that is down) and keep holding back-pressure meanwhile.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

pub mod args;
mod file;
mod stdout;
mod window;
pub use file::FileSink;
pub use stdout::StdoutSink;
pub use window::MAX_WINDOW;

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod queue;
#[cfg(feature = "sqs")]
pub mod sqs;
#[cfg(feature = "kafka")]
pub use kafka::{KafkaConfig, KafkaSink};
pub use queue::QueueSink;
#[cfg(feature = "sqs")]
pub use sqs::{SqsConfig, SqsSink};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a client sends and what a sink stores: the types of the client protocol.
pub use ews_proto::lifecycle::{Lifecycle, SinkRecord};
pub use ews_proto::{Event, StampedEvent};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SinkError {
    /// The sink is shutting down and takes no more events.
    #[error("sink closed")]
    Closed,
    /// The destination refused this event for good (too large, invalid); retrying will not help.
    #[error("event rejected: {0}")]
    Rejected(String),
    /// The destination failed; the event is not known to be durable.
    #[error("sink failed: {0}")]
    Failed(String),
}

/// Resolves when the event it belongs to is durable at the destination, or has failed.
#[must_use = "a receipt tells whether the event is durable"]
pub struct Receipt(ReceiptInner);

enum ReceiptInner {
    Ready(Option<Result<(), SinkError>>),
    Pending(oneshot::Receiver<Result<(), SinkError>>),
    /// A send to the embedded queue, durable when its write is.
    Queued(ews_queue::Durable),
}

/// The sink's half of a pending [`Receipt`].
pub struct ReceiptSender(oneshot::Sender<Result<(), SinkError>>);

impl Receipt {
    /// A receipt for an event that is already durable (or for sinks with no durability, such as
    /// stdout, once written).
    pub fn durable() -> Self {
        Receipt(ReceiptInner::Ready(Some(Ok(()))))
    }

    pub fn failed(err: SinkError) -> Self {
        Receipt(ReceiptInner::Ready(Some(Err(err))))
    }

    /// A receipt for a send to a queue in this process.
    pub(crate) fn queued(durable: ews_queue::Durable) -> Self {
        Receipt(ReceiptInner::Queued(durable))
    }

    /// A receipt the sink completes later through the returned sender.
    pub fn pending() -> (ReceiptSender, Receipt) {
        let (tx, rx) = oneshot::channel();
        (ReceiptSender(tx), Receipt(ReceiptInner::Pending(rx)))
    }
}

impl ReceiptSender {
    pub fn complete(self, outcome: Result<(), SinkError>) {
        // The session may have gone away; the outcome then has no one to tell.
        let _ = self.0.send(outcome);
    }
}

impl Future for Receipt {
    type Output = Result<(), SinkError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            ReceiptInner::Ready(outcome) => {
                Poll::Ready(outcome.take().unwrap_or(Err(SinkError::Closed)))
            }
            ReceiptInner::Pending(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(SinkError::Closed))),
            ReceiptInner::Queued(d) => Pin::new(d)
                .poll(cx)
                .map(|r| r.map(|_| ()).map_err(queue::queue_error)),
        }
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Receipt")
    }
}

/// A destination for events. See the crate docs for the contract.
pub trait Sink: Send + Sync + 'static {
    /// Short name for logs and metric labels (`queue`, `sqs`, `kafka`, `file`, `stdout`).
    fn name(&self) -> &'static str;

    /// Waits until the sink has room, then takes the record (an event, or a lifecycle record).
    /// The wait is the back-pressure.
    fn submit(&self, record: SinkRecord) -> BoxFuture<'_, Result<Receipt, SinkError>>;

    /// Waits until every event submitted so far is durable or failed. Called on drain.
    fn flush(&self) -> BoxFuture<'_, Result<(), SinkError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receipts_resolve() {
        assert_eq!(Receipt::durable().await, Ok(()));
        let (tx, rx) = Receipt::pending();
        tx.complete(Err(SinkError::Failed("down".into())));
        assert_eq!(rx.await, Err(SinkError::Failed("down".into())));
        let (tx, rx) = Receipt::pending();
        drop(tx);
        assert_eq!(rx.await, Err(SinkError::Closed));
    }
}
