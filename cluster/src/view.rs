//! A point-in-time picture of the cluster as one node sees it: the `/members` answer, the active
//! leader and the cluster-wide connection count all derive from it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::node::{
    Role, Status, KEY_ADMIN_ADDR, KEY_CAPACITY, KEY_CONNS, KEY_INTERNAL_ADDR, KEY_PUBLIC_ADDR,
    KEY_ROLE, KEY_STATUS, KEY_VERSION,
};

/// One node as seen from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub node_id: String,
    /// Start time of the node process (ms since the epoch): a restarted node is a new generation.
    pub generation: u64,
    pub role: Role,
    pub status: Status,
    /// False once the failure detector stopped hearing from the node.
    pub reachable: bool,
    pub gossip_addr: SocketAddr,
    pub public_addr: Option<SocketAddr>,
    pub internal_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// Live client connections (workers; throttled).
    pub conns: u64,
    /// Maximum client connections the node accepts.
    pub capacity: u64,
    pub version: String,
    /// Milliseconds since this node last heard a new heartbeat of the member (0 for itself).
    pub last_heard_ms: u64,
    #[serde(rename = "self")]
    pub is_self: bool,
}

impl Member {
    /// Reachable and not leaving: counts for leader choice and placement.
    pub fn is_serving(&self) -> bool {
        self.reachable && self.status != Status::Leaving
    }

    /// The status label for metrics: the gossiped status, or `unreachable`.
    pub fn health(&self) -> &'static str {
        if self.reachable {
            self.status.as_str()
        } else {
            "unreachable"
        }
    }
}

/// What chitchat knows about one node, before interpretation.
pub(crate) struct RawNode {
    pub node_id: String,
    pub generation: u64,
    pub gossip_addr: SocketAddr,
    pub keys: HashMap<String, String>,
    pub live: bool,
    pub last_heard: Duration,
    pub is_self: bool,
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// Node id of the node this view was taken on.
    #[serde(rename = "self")]
    pub self_id: String,
    /// Node id of the active leader: the serving leader with the lowest node id.
    pub active_leader: Option<String>,
    /// Sum of the live connections of every reachable worker.
    pub cluster_connections: u64,
    /// Members sorted by role, then node id.
    pub members: Vec<Member>,
}

impl ClusterView {
    pub(crate) fn build(self_id: &str, raw: Vec<RawNode>) -> ClusterView {
        // Newest generation per node id, so a restarted node's previous life disappears as soon
        // as the new one is heard, instead of lingering until the dead-node grace period ends.
        let mut newest: HashMap<&str, u64> = HashMap::new();
        for n in &raw {
            let g = newest.entry(n.node_id.as_str()).or_insert(n.generation);
            *g = (*g).max(n.generation);
        }
        let mut members: Vec<Member> = raw
            .iter()
            .filter(|n| newest.get(n.node_id.as_str()) == Some(&n.generation))
            .filter_map(member_of)
            // A node that announced it is leaving and then went quiet has left: drop it now.
            .filter(|m| m.reachable || m.status != Status::Leaving)
            .collect();
        members.sort_by(|a, b| (a.role, &a.node_id).cmp(&(b.role, &b.node_id)));
        let active_leader = members
            .iter()
            .filter(|m| m.role == Role::Leader && m.is_serving() && m.status == Status::Up)
            .map(|m| m.node_id.clone())
            .min();
        let cluster_connections = members
            .iter()
            .filter(|m| m.role == Role::Worker && m.reachable)
            .map(|m| m.conns)
            .sum();
        ClusterView {
            self_id: self_id.to_string(),
            active_leader,
            cluster_connections,
            members,
        }
    }

    /// The active leader's entry.
    pub fn active_leader(&self) -> Option<&Member> {
        let id = self.active_leader.as_deref()?;
        self.members
            .iter()
            .find(|m| m.node_id == id && m.role == Role::Leader)
    }

    /// The active leader's internal (node-link) address: where a worker's queue sink connects
    /// to reach the built-in queue.
    pub fn active_leader_internal_addr(&self) -> Option<SocketAddr> {
        self.active_leader()?.internal_addr
    }

    /// Whether this node is the active leader.
    pub fn is_active_leader(&self) -> bool {
        self.active_leader.as_deref() == Some(self.self_id.as_str())
    }

    pub fn member(&self, node_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.node_id == node_id)
    }

    /// Serving members of a role (for placement and fan-out).
    pub fn serving(&self, role: Role) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(move |m| m.role == role && m.is_serving())
    }

    /// `/members` body.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Interprets a node's keys; `None` until its role and status have been gossiped.
fn member_of(n: &RawNode) -> Option<Member> {
    let key = |k: &str| n.keys.get(k).cloned();
    let num = |k: &str| key(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // An address that does not parse is as good as none: nothing could connect to it.
    let addr = |k: &str| key(k).and_then(|v| v.parse::<SocketAddr>().ok());
    Some(Member {
        node_id: n.node_id.clone(),
        generation: n.generation,
        role: key(KEY_ROLE)?.parse().ok()?,
        status: key(KEY_STATUS)?.parse().ok()?,
        reachable: n.live,
        gossip_addr: n.gossip_addr,
        public_addr: addr(KEY_PUBLIC_ADDR),
        internal_addr: addr(KEY_INTERNAL_ADDR),
        admin_addr: addr(KEY_ADMIN_ADDR),
        conns: num(KEY_CONNS),
        capacity: num(KEY_CAPACITY),
        version: key(KEY_VERSION).unwrap_or_default(),
        last_heard_ms: n.last_heard.as_millis() as u64,
        is_self: n.is_self,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, gen: u64, role: &str, status: &str, live: bool, conns: u64) -> RawNode {
        let keys = [
            (KEY_ROLE, role.to_string()),
            (KEY_STATUS, status.to_string()),
            (KEY_CONNS, conns.to_string()),
            (KEY_INTERNAL_ADDR, format!("10.0.0.{}:7070", id.len())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        RawNode {
            node_id: id.to_string(),
            generation: gen,
            gossip_addr: "127.0.0.1:7070".parse().unwrap(),
            keys,
            live,
            last_heard: Duration::ZERO,
            is_self: false,
        }
    }

    #[test]
    fn active_leader_is_lowest_serving_leader() {
        let v = ClusterView::build(
            "w1",
            vec![
                node("leader-2", 1, "leader", "up", true, 0),
                node("leader-1", 1, "leader", "up", true, 0),
                node("w1", 1, "worker", "up", true, 5),
            ],
        );
        assert_eq!(v.active_leader.as_deref(), Some("leader-1"));
        assert_eq!(
            v.active_leader_internal_addr(),
            Some("10.0.0.8:7070".parse().unwrap())
        );
        assert!(!v.is_active_leader());
    }

    #[test]
    fn dead_or_leaving_leader_is_not_active() {
        let v = ClusterView::build(
            "leader-2",
            vec![
                node("leader-1", 1, "leader", "up", false, 0),
                node("leader-2", 1, "leader", "up", true, 0),
            ],
        );
        assert_eq!(v.active_leader.as_deref(), Some("leader-2"));
        assert!(v.is_active_leader());
        let v = ClusterView::build(
            "leader-2",
            vec![
                node("leader-1", 1, "leader", "leaving", true, 0),
                node("leader-2", 1, "leader", "up", true, 0),
            ],
        );
        assert_eq!(v.active_leader.as_deref(), Some("leader-2"));
    }

    #[test]
    fn left_nodes_and_old_generations_are_dropped() {
        let v = ClusterView::build(
            "leader-1",
            vec![
                node("leader-1", 1, "leader", "up", true, 0),
                node("w1", 1, "worker", "leaving", false, 3),
                node("w2", 1, "worker", "up", false, 4),
                node("w2", 2, "worker", "up", true, 6),
                node("w3", 1, "worker", "leaving", true, 7),
            ],
        );
        let ids: Vec<_> = v
            .members
            .iter()
            .map(|m| (m.node_id.as_str(), m.generation))
            .collect();
        assert_eq!(ids, vec![("leader-1", 1), ("w2", 2), ("w3", 1)]);
        assert_eq!(v.cluster_connections, 13);
        assert_eq!(v.member("w3").map(|m| m.health()), Some("leaving"));
    }

    #[test]
    fn nodes_without_state_yet_are_skipped() {
        let mut n = node("w1", 1, "worker", "up", true, 0);
        n.keys.clear();
        let v = ClusterView::build("leader-1", vec![n]);
        assert!(v.members.is_empty());
        assert_eq!(v.active_leader, None);
    }
}
