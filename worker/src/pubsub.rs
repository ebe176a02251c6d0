//! Publish and presence as this node offers them to the admin API and to handlers: this node's
//! sessions and, in a cluster, every other worker's through a [`Fanout`]. One place, so a
//! handler's `publish` reaches exactly what the admin API's does.

use std::sync::Arc;

use ews_cluster::command::{
    Disconnect, PresenceEvent, PresenceEvents, TopicChange, TopicCounts, DISCONNECT_PATH,
    SUBSCRIBE_PATH, UNSUBSCRIBE_PATH,
};
use ews_cluster::presence::{Presence, Query};
use ews_cluster::publish::{Delivery, Fanout, Publish, Target};
use ews_cluster::Membership;
use tokio_util::sync::CancellationToken;

use crate::ids::NodeId;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::streams::{NodeHistory, StreamKey};

pub struct PubSub {
    pub node: NodeId,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// In a cluster: the membership and the peers a publish fans out to.
    pub cluster: Option<(Arc<Membership>, Fanout)>,
    /// Topics one session may hold (a server-side subscribe is bound by it too).
    pub max_topics: usize,
    /// Topics with history (`--history-topics`), and this node's place in their streams.
    pub history: Option<NodeHistory>,
}

/// Delivers `p` to this node's sessions: a stamped message of a topic with history in its
/// stream's order (see [`Streams`]), anything else at once.
pub async fn deliver_here(
    registry: &Registry,
    history: Option<&NodeHistory>,
    p: &Publish,
) -> Delivery {
    let key = match &p.target {
        Target::Topics(ts) if ts.len() == 1 => StreamKey::Topic(ts[0].clone()),
        Target::Clients(cs) if cs.len() == 1 => StreamKey::Client(cs[0].clone()),
        _ => return registry.publish(p),
    };
    match (history, &p.at) {
        (Some((h, streams)), Some(at)) => streams.deliver(registry, h, &key, p, at).await,
        _ => registry.publish(p),
    }
}

/// How often a node sends the join/leave events of its presence-announcing sessions: events
/// within one interval are coalesced, so a reconnect storm costs one message per interval.
pub const PRESENCE_FLUSH: std::time::Duration = std::time::Duration::from_millis(250);
/// Bytes of join/leave events per node-link request: half the link's body limit, so the JSON
/// around them fits too.
const PRESENCE_REQUEST_BYTES: usize = ews_cluster::publish::MAX_BODY / 2;

impl PubSub {
    /// Delivers `p` to this node's sessions and every other worker's that may hold its target.
    /// A topic with history has the message appended first (each such topic its own publish,
    /// stamped with the message's position); if that fails nothing is delivered.
    pub async fn publish(&self, p: &Publish) -> Delivery {
        let Some((history, _)) = &self.history else {
            return self.publish_one(p).await;
        };
        match ews_cluster::publish::stamp(history, p.clone()).await {
            Ok(parts) if parts.len() == 1 => {
                let mut all = self.publish_one(&parts[0]).await;
                all.kept_at(&parts);
                all
            }
            Ok(parts) => {
                let mut all = Delivery::default();
                for part in &parts {
                    all.add_counts(&self.publish_one(part).await);
                }
                all.kept_at(&parts);
                all
            }
            Err(e) => {
                tracing::warn!(error = %e, "publish not appended to history: not delivered");
                let mut all = Delivery::default();
                all.add_node("history", Err(e.to_string()));
                all
            }
        }
    }

    /// Delivers `p` here: a stamped message of a topic with history in its stream's order.
    pub async fn deliver_here(&self, p: &Publish) -> Delivery {
        deliver_here(&self.registry, self.history.as_ref(), p).await
    }

    async fn publish_one(&self, p: &Publish) -> Delivery {
        let local = self.deliver_here(p).await;
        for _ in 0..local.dropped {
            self.metrics.dropped("outbound_full");
        }
        let Some((_, fanout)) = &self.cluster else {
            return local;
        };
        let mut all = Delivery::default();
        all.add_node(self.node.as_str(), Ok(local));
        fanout.publish(p, &mut all).await;
        all
    }

    /// Every node's part of what `q` asks about: this node's and every other worker's (not yet
    /// merged into one page: [`Presence::finish`] or `into_response` does that, once).
    pub async fn presence(&self, q: &Query) -> Presence {
        let mut all = Presence::default();
        all.add_node(self.node.as_str(), Ok(self.registry.presence(q)));
        if let Some((_, fanout)) = &self.cluster {
            fanout.presence(q, &mut all).await;
        }
        all
    }

    /// Closes the client's sessions, here and on every other worker.
    pub async fn disconnect(&self, d: &Disconnect) -> Delivery {
        let local = self.registry.disconnect(d);
        self.everywhere(local, DISCONNECT_PATH, d).await
    }

    /// Subscribes (or unsubscribes) the client's sessions, here and on every other worker.
    pub async fn change_topic(&self, c: &TopicChange, subscribe: bool) -> Delivery {
        if subscribe {
            let local = self.registry.subscribe_client(c, self.max_topics).await;
            self.everywhere(local, SUBSCRIBE_PATH, c).await
        } else {
            let local = self.registry.unsubscribe_client(c);
            self.everywhere(local, UNSUBSCRIBE_PATH, c).await
        }
    }

    /// This node's `local` outcome, and every other worker's for `body` at `path`.
    async fn everywhere(
        &self,
        local: Delivery,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Delivery {
        let Some((_, fanout)) = &self.cluster else {
            return local;
        };
        let mut all = Delivery::default();
        all.add_node(self.node.as_str(), Ok(local));
        fanout.deliver_json(path, body, &mut all).await;
        all
    }

    /// Topics with their subscriber counts, here and on every other worker.
    pub async fn topics(&self) -> TopicCounts {
        let mut all = TopicCounts::default();
        all.add_node(self.node.as_str(), Ok(self.registry.topic_counts()));
        if let Some((_, fanout)) = &self.cluster {
            fanout.topics(&mut all).await;
        }
        all
    }

    /// Sends this node's join/leave events every [`PRESENCE_FLUSH`] while there are any: to its
    /// own subscribers and every other worker's, until `stop`.
    pub async fn run_presence_events(&self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.registry.presence_ready.notified() => {}
            }
            // Let the interval's events gather: they are coalesced as one batch.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(PRESENCE_FLUSH) => {}
            }
            let (events, dropped) = self.registry.take_presence_events();
            for _ in 0..dropped {
                self.metrics.dropped("presence_full");
            }
            if events.is_empty() {
                continue;
            }
            self.metrics.presence_events(events.len());
            self.registry.deliver_presence(&events);
            if let Some((_, fanout)) = &self.cluster {
                // Each request well within a node-link body: a storm's batch is many.
                for events in in_requests(events) {
                    fanout.presence_events(&PresenceEvents { events }).await;
                }
            }
        }
    }

    pub fn membership(&self) -> Option<&Arc<Membership>> {
        self.cluster.as_ref().map(|(m, _)| m)
    }
}

/// `events` cut into node-link requests of at most [`PRESENCE_REQUEST_BYTES`] (an event too
/// large for any request alone, from a client id of over 100 KiB, is not sent to other nodes).
fn in_requests(events: Vec<PresenceEvent>) -> Vec<Vec<PresenceEvent>> {
    let size = |e: &PresenceEvent| e.topic.as_str().len() + e.client_id.len() + 48;
    let mut all = Vec::new();
    let (mut current, mut bytes) = (Vec::new(), 0);
    for e in events {
        let n = size(&e);
        if n > PRESENCE_REQUEST_BYTES {
            continue;
        }
        if bytes + n > PRESENCE_REQUEST_BYTES {
            all.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += n;
        current.push(e);
    }
    if !current.is_empty() {
        all.push(current);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_events_are_cut_into_requests_the_link_takes() {
        let topic = ews_proto::topic::Topic::parse("room").unwrap();
        let event = |client_id: String| PresenceEvent {
            topic: topic.clone(),
            client_id,
            joined: true,
            info: None,
        };
        let many: Vec<_> = (0..5000)
            .map(|i| event(format!("client-{i:0>60}")))
            .collect();
        let requests = in_requests(many);
        assert!(requests.len() > 1);
        assert_eq!(requests.iter().map(Vec::len).sum::<usize>(), 5000);
        for r in &requests {
            let body = serde_json::to_vec(&PresenceEvents { events: r.clone() }).unwrap();
            assert!(
                body.len() <= ews_cluster::publish::MAX_BODY,
                "{}",
                body.len()
            );
        }
        let huge = vec![event("x".repeat(200 * 1024)), event("ok".into())];
        let requests = in_requests(huge);
        assert_eq!(
            (requests.len(), requests[0][0].client_id.as_str()),
            (1, "ok")
        );
    }
}
