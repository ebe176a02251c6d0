//! The node's lifecycle records (`--lifecycle-events`): a `connected` before a session's first
//! event and a `disconnected` after its last, written through the node's sink so they reach the
//! consumer in order with the events and with the sink's durability. The node numbers its
//! records (`nodeSeq`) within its generation, so a consumer can tell it missed one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ews_proto::lifecycle::{Lifecycle, SessionLife};
use ews_sink::Sink;

use crate::ids::NodeId;
use crate::metrics::Metrics;
use crate::registry::SessionShared;

/// Writes a node's lifecycle records.
pub struct LifecycleLog {
    node: NodeId,
    generation: u64,
    seq: AtomicU64,
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
}

/// Which end of a session a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Connected,
    /// With the reason label and the close code, if a close frame was exchanged.
    Disconnected(&'static str, Option<u16>),
}

impl LifecycleLog {
    pub fn new(
        node: NodeId,
        generation: u64,
        sink: Arc<dyn Sink>,
        metrics: Arc<Metrics>,
    ) -> LifecycleLog {
        LifecycleLog {
            node,
            generation,
            seq: AtomicU64::new(0),
            sink,
            metrics,
        }
    }

    /// The record of `edge` for `s`, numbered.
    fn record(&self, s: &SessionShared, edge: Edge) -> Lifecycle {
        let (reason, code) = match edge {
            Edge::Connected => (None, None),
            Edge::Disconnected(r, c) => (Some(r.to_string()), c),
        };
        let life = SessionLife {
            client_id: s
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            node: self.node.to_string(),
            generation: self.generation,
            session: s.id,
            node_seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            route: s.route.to_string(),
            at: crate::ids::now_ms(),
            reason,
            code,
        };
        match edge {
            Edge::Connected => Lifecycle::Connected(life),
            Edge::Disconnected(..) => Lifecycle::Disconnected(life),
        }
    }

    /// Hands `edge`'s record to the sink, waiting for room like an event does (so the records
    /// of one session reach it in order with its events); the sink's verdict is counted
    /// (`ews_lifecycle_records_total`) once it comes, without holding the session.
    pub async fn write(&self, s: &SessionShared, edge: Edge) {
        let kind = match edge {
            Edge::Connected => "connected",
            Edge::Disconnected(..) => "disconnected",
        };
        let record = self.record(s, edge);
        match self.sink.submit(record.into()).await {
            Ok(receipt) => {
                let metrics = self.metrics.clone();
                tokio::spawn(async move {
                    let outcome = match receipt.await {
                        Ok(()) => "ok",
                        Err(e) => {
                            tracing::warn!(error = %e, kind, "lifecycle record not durable");
                            "failed"
                        }
                    };
                    metrics.lifecycle(kind, outcome);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, kind, "lifecycle record refused by the sink");
                self.metrics.lifecycle(kind, "failed");
            }
        }
    }
}
