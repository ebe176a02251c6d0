//! Publish and presence as this node offers them to the admin API and to handlers: this node's
//! sessions and, in a cluster, every other worker's through a [`Fanout`]. One place, so a
//! handler's `publish` reaches exactly what the admin API's does.

use std::sync::Arc;

use ews_cluster::presence::{Presence, Query};
use ews_cluster::publish::{Delivery, Fanout, Publish};
use ews_cluster::Membership;

use crate::ids::NodeId;
use crate::metrics::Metrics;
use crate::registry::Registry;

pub struct PubSub {
    pub node: NodeId,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// In a cluster: the membership and the peers a publish fans out to.
    pub cluster: Option<(Arc<Membership>, Fanout)>,
}

impl PubSub {
    /// Delivers `p` to this node's sessions and every other worker's that may hold its target.
    pub async fn publish(&self, p: &Publish) -> Delivery {
        let local = self.registry.publish(p);
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

    pub fn membership(&self) -> Option<&Arc<Membership>> {
        self.cluster.as_ref().map(|(m, _)| m)
    }
}
