//! Prometheus gauges describing the cluster view, refreshed with it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::node::{Role, Status};
use crate::view::ClusterView;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    role: &'static str,
    status: &'static str,
}

/// `ews_cluster_members{role,status}`, `ews_cluster_connections`, `ews_cluster_active_leader`.
/// Clones share the same values.
#[derive(Clone, Default)]
pub struct ClusterMetrics {
    members: Family<MemberLabels, Gauge>,
    connections: Gauge,
    active_leader: Gauge,
}

impl ClusterMetrics {
    /// Adds the gauges to a registry (each binary owns its registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ews_cluster_members",
            "Cluster members seen by this node, by role and status (unreachable = failure detected)",
            self.members.clone(),
        );
        registry.register(
            "ews_cluster_connections",
            "Live client connections summed over every reachable worker",
            self.connections.clone(),
        );
        registry.register(
            "ews_cluster_active_leader",
            "1 when this node is the active leader",
            self.active_leader.clone(),
        );
    }

    pub(crate) fn update(&self, view: &ClusterView) {
        // Every combination is set on every refresh, so a count that falls to zero reads zero.
        for role in Role::ALL {
            for status in Status::ALL
                .iter()
                .map(|s| s.as_str())
                .chain(["unreachable"])
            {
                let n = view
                    .members
                    .iter()
                    // Unverified members are listed in `/members`, never counted.
                    .filter(|m| m.verified && m.role == role && m.health() == status)
                    .count();
                self.members
                    .get_or_create(&MemberLabels {
                        role: role.as_str(),
                        status,
                    })
                    .set(n as i64);
            }
        }
        self.connections
            .set(i64::try_from(view.cluster_connections).unwrap_or(i64::MAX));
        self.active_leader.set(i64::from(view.is_active_leader()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{Member, RawNode, Trust};

    #[test]
    fn renders_members_by_role_and_status() {
        let raw = |id: &str, role: &str, status: &str, live: bool| RawNode {
            node_id: id.into(),
            generation: 1,
            gossip_addr: "127.0.0.1:1".parse().unwrap(),
            keys: [("role", role), ("status", status), ("conns", "7")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            live,
            last_heard: Default::default(),
            is_self: id == "l1",
        };
        let seeds = Default::default();
        let view = ClusterView::build(
            "l1",
            vec![
                raw("l1", "leader", "up", true),
                raw("w1", "worker", "up", true),
                raw("w2", "worker", "up", false),
            ],
            &Trust::gossip(&seeds),
        );
        let _: &Member = &view.members[0];
        let m = ClusterMetrics::default();
        let mut reg = Registry::default();
        m.register(&mut reg);
        m.update(&view);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(
            out.contains(r#"ews_cluster_members{role="worker",status="up"} 1"#),
            "{out}"
        );
        assert!(out.contains(r#"ews_cluster_members{role="worker",status="unreachable"} 1"#));
        assert!(out.contains(r#"ews_cluster_members{role="leader",status="leaving"} 0"#));
        assert!(out.contains("ews_cluster_connections 7"));
        assert!(out.contains("ews_cluster_active_leader 1"));
    }
}
