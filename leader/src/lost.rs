//! `node_lost` records (`--lifecycle-events`): the active leader writes one to the sink for
//! every worker generation that leaves the cluster, so a consumer of lifecycle records can end
//! the sessions of a worker that died without writing their `disconnected` records.
//!
//! Every leader watches the workers in its view ([`Tracker`]); only the active one writes. A
//! generation ends when it disappears from the view (`left` if it was draining, `restarted` if
//! a newer generation of the node is in the view, else `dead`), or when it has been unreachable
//! for `--node-lost-after-secs`. A generation written `dead` that turns out to be alive (it was
//! cut off, not dead) is told so over the node link and ends its sessions: the consumer has
//! already ended them, and an exact table is worth the reconnects.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ews_cluster::command::{Lost, LOST_PATH};
use ews_cluster::link_client::{LinkClient, Proof};
use ews_cluster::{ClusterView, Membership, Role, Status};
use ews_http::args::positive_secs;
use ews_http::link::LinkKey;
use ews_proto::lifecycle::{Lifecycle, NodeLost};
use ews_sink::args::SinkKind;
use ews_sink::{QueueSink, Sink};
use http::Method;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::activity::Activity;

/// How long the leader waits for a lost worker before calling it dead.
#[derive(Debug, Clone, clap::Args)]
pub struct LostArgs {
    /// Seconds a worker must stay unreachable before the active leader writes its `node_lost`
    /// (with `--lifecycle-events`). Shorter ends a dead worker's sessions sooner; a worker cut
    /// off for longer than this is told to end its sessions when it is heard again.
    #[arg(
        long = "node-lost-after-secs",
        env = "EWS_NODE_LOST_AFTER_SECS",
        default_value = "30",
        value_parser = positive_secs
    )]
    pub after: Duration,
}

/// A worker generation: node id and generation.
type Gen = (String, u64);

/// Generations written, remembered for fencing (a generation written `dead` that is heard
/// again); oldest forgotten first.
const WRITTEN_KEPT: usize = 4096;
/// Generations waiting to be written (while standby, or while the sink fails), at most.
const PENDING_KEPT: usize = 4096;

/// What the leader knows of the workers, and which generations' ends are due.
#[derive(Debug, Default)]
pub struct Tracker {
    seen: HashMap<Gen, Seen>,
    /// Ends decided, not written yet, with their reason.
    pending: BTreeMap<Gen, &'static str>,
    written: VecDeque<(Gen, &'static str)>,
}

#[derive(Debug, Default)]
struct Seen {
    leaving: bool,
    unreachable_since: Option<Instant>,
}

impl Tracker {
    /// Takes in a view of the cluster at `now`; returns the generations written `dead` that
    /// the view shows alive and reachable (to be told).
    pub fn observe(&mut self, view: &ClusterView, now: Instant, after: Duration) -> Vec<Gen> {
        let workers: HashMap<Gen, &ews_cluster::Member> = view
            .members
            .iter()
            .filter(|m| m.role == Role::Worker && m.verified)
            .map(|m| ((m.node_id.clone(), m.generation), m))
            .collect();
        let mut alive_again = Vec::new();
        for (g, m) in &workers {
            let seen = self.seen.entry(g.clone()).or_default();
            seen.leaving = m.status == Status::Leaving;
            if m.reachable && !m.lost {
                seen.unreachable_since = None;
                if self.written.iter().any(|(w, r)| w == g && *r == "dead") {
                    alive_again.push(g.clone());
                }
            } else {
                let since = *seen.unreachable_since.get_or_insert(now);
                if now.duration_since(since) >= after {
                    let reason = if seen.leaving { "left" } else { "dead" };
                    self.decide(g.clone(), reason);
                }
            }
        }
        let gone: Vec<Gen> = self
            .seen
            .keys()
            .filter(|g| !workers.contains_key(*g))
            .cloned()
            .collect();
        for g in gone {
            let leaving = self.seen.remove(&g).is_some_and(|s| s.leaving);
            let newer = workers.keys().any(|(n, gen)| *n == g.0 && *gen > g.1);
            let reason = if newer {
                "restarted"
            } else if leaving {
                "left"
            } else {
                "dead"
            };
            self.decide(g, reason);
        }
        alive_again
    }

    fn decide(&mut self, g: Gen, reason: &'static str) {
        if self.written.iter().any(|(w, _)| *w == g) || self.pending.contains_key(&g) {
            return;
        }
        if self.pending.len() >= PENDING_KEPT {
            self.pending.pop_first();
        }
        self.pending.insert(g, reason);
    }

    /// The ends due, oldest generation first.
    pub fn due(&self) -> Vec<(Gen, &'static str)> {
        self.pending.iter().map(|(g, r)| (g.clone(), *r)).collect()
    }

    pub fn written(&mut self, g: Gen) {
        if let Some(reason) = self.pending.remove(&g) {
            if self.written.len() >= WRITTEN_KEPT {
                self.written.pop_front();
            }
            self.written.push_back((g, reason));
        }
    }
}

/// Where the records go: the sink `--sink` names, or (for `queue`) the built-in queue this
/// leader hosts while active.
pub enum LostSink {
    Direct(Arc<dyn Sink>),
    Queue {
        broker: Arc<ews_queue::args::LazyBroker>,
        name: String,
    },
}

impl LostSink {
    pub async fn new(
        args: &ews_sink::args::SinkArgs,
        broker: Arc<ews_queue::args::LazyBroker>,
    ) -> anyhow::Result<LostSink> {
        Ok(match args.build_direct("ews-leader").await? {
            Some(s) => LostSink::Direct(s),
            None => {
                debug_assert_eq!(args.sink, SinkKind::Queue);
                LostSink::Queue {
                    broker,
                    name: args.queue_name.clone(),
                }
            }
        })
    }

    /// Writes `record` and waits until it is durable.
    async fn write(&self, record: Lifecycle) -> anyhow::Result<()> {
        let sink: Arc<dyn Sink> = match self {
            LostSink::Direct(s) => s.clone(),
            LostSink::Queue { broker, name } => {
                Arc::new(QueueSink::embedded(broker.get()?.queue(name)?))
            }
        };
        sink.submit(record.into()).await?.await?;
        Ok(())
    }
}

/// Watches the view, and while this leader is active writes the ends due and tells the
/// generations written dead that are alive after all.
pub async fn run(
    membership: Arc<Membership>,
    activity: Activity,
    sink: LostSink,
    after: Duration,
    stop: CancellationToken,
) {
    let mut tracker = Tracker::default();
    let mut views = membership.watch_view();
    let link = LinkClient::new(
        membership.secret().map(LinkKey::derive),
        Duration::from_secs(2),
    );
    // The view changes on every gossip round, but an unreachable worker's clock runs without
    // one: look at least once a second.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            changed = views.changed() => if changed.is_err() { return },
        }
        let view = views.borrow_and_update().clone();
        let alive_again = tracker.observe(&view, Instant::now(), after);
        if activity.borrow().is_none() {
            continue;
        }
        for ((node, generation), reason) in tracker.due() {
            let record = Lifecycle::NodeLost(NodeLost {
                node: node.clone(),
                generation,
                reason: reason.to_string(),
                by: membership.node_id().to_string(),
                at: ews_proto::now_ms(),
            });
            match sink.write(record).await {
                Ok(()) => {
                    info!(node, generation, reason, "node_lost written");
                    tracker.written((node, generation));
                }
                // Kept: tried again on the next round.
                Err(e) => {
                    warn!(
                        node,
                        generation,
                        error = format!("{e:#}"),
                        "cannot write node_lost"
                    );
                    break;
                }
            }
        }
        for (node, generation) in alive_again {
            let Some(m) = view
                .members
                .iter()
                .find(|m| m.node_id == node && m.generation == generation)
            else {
                continue;
            };
            let Some(addr) = m.internal_addr else {
                continue;
            };
            let body = serde_json::to_vec(&Lost { generation }).unwrap_or_default();
            let answer = link
                .request(
                    Method::POST,
                    (&m.node_ref(), addr),
                    LOST_PATH,
                    Bytes::from(body),
                    Proof::Key,
                    4096,
                    Duration::from_secs(5),
                )
                .await;
            match answer {
                Ok(a) if a.status.is_success() => {
                    warn!(
                        node,
                        generation, "told a worker written dead that it was lost"
                    )
                }
                Ok(a) => warn!(node, generation, status = %a.status, "lost worker refused"),
                Err(e) => warn!(node, generation, error = %e, "cannot tell a lost worker"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: &str, generation: u64, reachable: bool, status: Status) -> ews_cluster::Member {
        ews_cluster::Member {
            node_id: node.into(),
            generation,
            role: Role::Worker,
            status,
            reachable,
            gossip_addr: "127.0.0.1:1".parse().unwrap(),
            public_addr: None,
            internal_addr: None,
            admin_addr: None,
            conns: 0,
            capacity: 0,
            version: String::new(),
            last_heard_ms: 0,
            is_self: false,
            verified: true,
            active_epoch: None,
            interest: None,
            lost: !reachable,
            gossip_live: reachable,
        }
    }

    fn view(members: Vec<ews_cluster::Member>) -> ClusterView {
        ClusterView {
            members,
            ..ClusterView::default()
        }
    }

    const AFTER: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_worker_is_dead_after_the_wait_and_told_if_it_comes_back() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        t.observe(&view(vec![member("w1", 1, true, Status::Up)]), t0, AFTER);
        let cut = view(vec![member("w1", 1, false, Status::Up)]);
        t.observe(&cut, t0 + Duration::from_secs(1), AFTER);
        assert!(t.due().is_empty());
        t.observe(&cut, t0 + Duration::from_secs(31), AFTER);
        assert_eq!(t.due(), [(("w1".to_string(), 1), "dead")]);
        t.written(("w1".into(), 1));
        assert!(t.due().is_empty());
        let back = t.observe(
            &view(vec![member("w1", 1, true, Status::Up)]),
            t0 + Duration::from_secs(40),
            AFTER,
        );
        assert_eq!(back, [("w1".to_string(), 1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn generations_that_vanish_say_why() {
        let mut t = Tracker::default();
        let now = Instant::now();
        t.observe(
            &view(vec![
                member("w1", 1, true, Status::Up),
                member("w2", 1, true, Status::Leaving),
                member("w3", 1, true, Status::Up),
            ]),
            now,
            AFTER,
        );
        // w1 restarted, w2 drained and left, w3 vanished.
        t.observe(&view(vec![member("w1", 2, true, Status::Up)]), now, AFTER);
        assert_eq!(
            t.due(),
            [
                (("w1".to_string(), 1), "restarted"),
                (("w2".to_string(), 1), "left"),
                (("w3".to_string(), 1), "dead"),
            ]
        );
        // Written once: not decided again.
        for (g, _) in t.due() {
            t.written(g);
        }
        t.observe(&view(vec![member("w1", 2, true, Status::Up)]), now, AFTER);
        assert!(t.due().is_empty());
    }
}
