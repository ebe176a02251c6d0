//! Nothing acknowledged stays stranded on a standby: the active leader moves every message the
//! other leaders still hold into its own queue of the same name.
//!
//! A leader that loses its term keeps what it had accepted on its disk (a dead leader keeps it
//! until it returns). While this leader is active it asks every other serving leader, over the
//! signed node link, which queues it holds (`GET /internal/v1/queues`) and reads each non-empty
//! one through the queue protocol (`/internal/v1/drain/{name}`, served by standbys only): each
//! message is written here durably first and deleted there after, so a crash in between leaves a
//! copy on both sides (a duplicate for the consumer), never none.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ews_cluster::link_client::{LinkClient, Proof};
use ews_cluster::{Membership, Role};
use ews_http::link::{LinkKey, NodeRef};
use ews_queue::client::{connect, Credential};
use ews_queue::{ClientFrame, ServerFrame};
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{Method, StatusCode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::activity::Term;

/// Node-link path listing a leader's queues.
pub const QUEUES_PATH: &str = "/internal/v1/queues";
/// Node-link path prefix of a standby's queue, read by the active leader.
pub const DRAIN_PREFIX: &str = "/internal/v1/drain/";
/// How often the active leader looks for stranded messages.
const SCAN_EVERY: Duration = Duration::from_secs(2);
/// Messages in flight per drained queue.
const WINDOW: u64 = 256;
/// A drain connection with nothing to move for this long is closed (the next scan reopens it).
const IDLE: Duration = Duration::from_secs(3);

/// One queue a leader holds, with how many messages are in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueDepth {
    pub name: String,
    pub depth: usize,
}

/// `ews_takeover_messages_total`: messages moved here from another leader.
#[derive(Clone, Default)]
pub struct TakeoverMetrics(Counter);

impl TakeoverMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ews_takeover_messages",
            "Messages moved into this leader's queue from another leader's",
            self.0.clone(),
        );
    }
}

/// Takes over stranded messages, for as long as `term` lasts.
pub struct Takeover {
    pub membership: Arc<Membership>,
    pub broker: Arc<ews_queue::args::LazyBroker>,
    pub link: Option<LinkKey>,
    pub metrics: TakeoverMetrics,
}

impl Takeover {
    pub async fn run(self: Arc<Self>, term: Term) {
        let client = LinkClient::new(self.link.clone(), Duration::from_secs(2));
        let running: Arc<Mutex<HashSet<(SocketAddr, String)>>> = Arc::default();
        loop {
            let peers: Vec<(NodeRef, SocketAddr)> = self
                .membership
                .view()
                .serving(Role::Leader)
                .filter(|m| !m.is_self)
                .filter_map(|m| Some((m.node_ref(), m.internal_addr?)))
                .collect();
            for (node, peer) in peers {
                let Some(queues) = self.list(&client, (&node, peer)).await else {
                    continue;
                };
                for q in queues.into_iter().filter(|q| q.depth > 0) {
                    let key = (peer, q.name.clone());
                    if !lock(&running).insert(key.clone()) {
                        continue;
                    }
                    let (me, running, ended) = (self.clone(), running.clone(), term.ended.clone());
                    tokio::spawn(async move {
                        me.drain(peer, &q.name, &ended).await;
                        lock(&running).remove(&key);
                    });
                }
            }
            tokio::select! {
                _ = term.ended.cancelled() => return,
                _ = tokio::time::sleep(SCAN_EVERY) => {}
            }
        }
    }

    /// The queues `peer` holds, or `None` if it cannot be asked (or cannot prove the key).
    async fn list(
        &self,
        client: &LinkClient,
        peer: (&NodeRef, SocketAddr),
    ) -> Option<Vec<QueueDepth>> {
        let answer = client
            .request(
                Method::GET,
                peer,
                QUEUES_PATH,
                Bytes::new(),
                Proof::Body,
                64 * 1024,
                Duration::from_secs(2),
            )
            .await
            .ok()?;
        (answer.status == StatusCode::OK).then_some(())?;
        serde_json::from_slice(&answer.body).ok()
    }

    /// Moves `name` from `peer` into the local queue of that name until the term ends or the
    /// peer has nothing left for a while.
    async fn drain(&self, peer: SocketAddr, name: &str, ended: &CancellationToken) {
        let local = match self.broker.get().and_then(|b| b.queue(name)) {
            Ok(q) => q,
            Err(e) => {
                warn!(queue = %name, error = %e, "takeover: cannot open the local queue");
                return;
            }
        };
        let url = format!("ws://{peer}{DRAIN_PREFIX}{name}");
        let (mut out, mut inp) = match connect(&url, self.link.as_ref().map(Credential::Link)).await
        {
            Ok(c) => c,
            Err(e) => {
                warn!(%url, error = %e, "takeover: cannot reach the other leader's queue");
                return;
            }
        };
        if out
            .send(&ClientFrame::Receive { count: WINDOW })
            .await
            .is_err()
        {
            return;
        }
        let mut moved = 0u64;
        let mut writing = FuturesUnordered::new();
        loop {
            tokio::select! {
                _ = ended.cancelled() => break,
                Some((id, written)) = writing.next(), if !writing.is_empty() => {
                    let written: Result<_, ews_queue::QueueError> = written;
                    if let Err(e) = written {
                        // Not deleted there: it comes back after its visibility timeout.
                        warn!(queue = %name, error = %e, "takeover: local write failed");
                        break;
                    }
                    moved += 1;
                    self.metrics.0.inc();
                    let deleted = out.feed(&ClientFrame::Delete { id }).await.is_ok()
                        && out.feed(&ClientFrame::Receive { count: 1 }).await.is_ok()
                        && out.flush().await.is_ok();
                    if !deleted {
                        break;
                    }
                }
                frame = tokio::time::timeout(IDLE, inp.next()) => match frame {
                    Ok(Some(Ok(ServerFrame::Message { id, body, .. }))) => {
                        match local.admit(body).await {
                            Ok(durable) => writing.push(async move { (id, durable.await.map(|_| ())) }),
                            Err(e) => {
                                warn!(queue = %name, error = %e, "takeover: local queue refused");
                                break;
                            }
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(_)) | None) => break,
                    Err(_) if writing.is_empty() => break,
                    Err(_) => {}
                },
            }
        }
        out.close().await;
        if moved > 0 {
            info!(queue = %name, %peer, moved, "took over messages from another leader");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
