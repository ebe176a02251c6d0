//! A point-in-time picture of the cluster as one node sees it: the `/members` answer, the active
//! leader and the cluster-wide connection count all derive from it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::interest::Interest;
use crate::node::{
    Role, Status, KEY_ACTIVE_EPOCH, KEY_ADMIN_ADDR, KEY_CAPACITY, KEY_CONNS, KEY_INTEREST,
    KEY_INTERNAL_ADDR, KEY_PUBLIC_ADDR, KEY_ROLE, KEY_STATUS, KEY_VERSION,
};
use crate::proof::ProvenPeers;

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
    /// The node proved the cluster key on its node link and its state is what it said there
    /// (always true without a cluster secret). An unverified member is listed, never counted.
    pub verified: bool,
    /// A leader's claim to hold the active term, with the term's epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_epoch: Option<u64>,
    /// A worker's topic interest (not listed in the view's JSON: a filter, not a list).
    #[serde(skip)]
    pub interest: Option<Interest>,
    /// A cluster node gone quiet: proven in this generation (or, without a cluster secret,
    /// known from gossip), now unreachable or its proof stale, and not leaving. Frozen,
    /// partitioned or dead, it may still hold sessions: a publish names it as not asked, the
    /// cluster metric keeps its last proven count. `conns`, `interest` and `internal_addr` are
    /// then its last proven ones. A stranger never proven is never lost.
    pub lost: bool,
    /// Gossip hears it now, proven or not (a node this one has not proven yet, e.g. while the
    /// cluster forms). Decides nothing; says where an announcement may go.
    #[serde(skip)]
    pub gossip_live: bool,
}

impl Member {
    /// This member in this run, as a signed request for it names it.
    pub fn node_ref(&self) -> ews_http::link::NodeRef {
        ews_http::link::NodeRef::new(self.node_id.clone(), self.generation)
    }

    /// Verified, reachable and not leaving: counts for leader choice and placement.
    pub fn is_serving(&self) -> bool {
        self.verified && self.reachable && self.status != Status::Leaving
    }

    /// Verified and reachable, leaving or not: a draining worker still holds sessions until it
    /// has closed each one, so publishes and presence keep reaching it (unless it has said it
    /// holds none).
    pub fn holds_sessions(&self) -> bool {
        self.verified && self.reachable && (self.status != Status::Leaving || self.conns > 0)
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

/// What a view may believe. With a cluster secret (`proven` set), a peer counts only with a
/// fresh proof of its state; a leader counts only at an address the configured seeds resolve to.
pub(crate) struct Trust<'a> {
    pub proven: Option<&'a ProvenPeers>,
    pub fresh: Duration,
    pub now: Instant,
    pub seed_addrs: &'a HashSet<SocketAddr>,
}

impl Trust<'_> {
    /// Trusts everything gossip says (tests of the view itself).
    #[cfg(test)]
    pub(crate) fn gossip(seed_addrs: &HashSet<SocketAddr>) -> Trust<'_> {
        Trust {
            proven: None,
            fresh: Duration::ZERO,
            now: Instant::now(),
            seed_addrs,
        }
    }
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// Node id of the node this view was taken on.
    #[serde(rename = "self")]
    pub self_id: String,
    /// Node id of the active leader: of the serving leaders that claim the active term, the one
    /// with the highest epoch (a leader that lost its term without knowing it yet claims an
    /// older one).
    pub active_leader: Option<String>,
    /// The serving leader with the lowest node id: who should be active when leaders choose by
    /// their views alone (no lease store).
    #[serde(skip)]
    pub first_leader: Option<String>,
    /// Sum of the live connections of every reachable worker.
    pub cluster_connections: u64,
    /// Workers gone quiet ([`Member::lost`]) and the sum of their last proven connection
    /// counts: a frozen or cut-off worker's clients have not left, so the scaling metric keeps
    /// counting them (see [`ClusterView::scaling_count`]).
    pub lost_workers: usize,
    pub held_connections: u64,
    /// Members sorted by role, then node id.
    pub members: Vec<Member>,
}

impl ClusterView {
    pub(crate) fn build(self_id: &str, raw: Vec<RawNode>, trust: &Trust) -> ClusterView {
        let all: Vec<Member> = raw.iter().filter_map(|n| member_of(n, trust)).collect();
        // Newest verified generation per node id, so a restarted node's previous life disappears
        // as soon as the new one is heard (instead of lingering until the dead-node grace period
        // ends), while an unproven newer generation cannot push a real node out.
        let mut newest: HashMap<&str, u64> = HashMap::new();
        for m in all.iter().filter(|m| m.verified) {
            let g = newest.entry(m.node_id.as_str()).or_insert(m.generation);
            *g = (*g).max(m.generation);
        }
        let mut members: Vec<Member> = all
            .iter()
            .filter(|m| !m.verified || newest.get(m.node_id.as_str()) == Some(&m.generation))
            // A node that announced it is leaving and then went quiet has left: drop it now.
            .filter(|m| m.reachable || m.status != Status::Leaving)
            .cloned()
            .collect();
        members.sort_by(|a, b| (a.role, &a.node_id).cmp(&(b.role, &b.node_id)));
        let leaders: Vec<&Member> = members
            .iter()
            .filter(|m| m.role == Role::Leader && m.is_serving() && m.status == Status::Up)
            // Defence in depth: a leader only at an address our seeds name (or ourselves).
            .filter(|m| {
                m.is_self
                    || m.internal_addr
                        .is_some_and(|a| trust.seed_addrs.contains(&a))
            })
            .collect();
        let first_leader = leaders.iter().map(|m| m.node_id.clone()).min();
        let active_leader = leaders
            .iter()
            .filter_map(|m| Some((m.active_epoch?, std::cmp::Reverse(&m.node_id))))
            .max()
            .map(|(_, id)| id.0.clone());
        let cluster_connections = members
            .iter()
            .filter(|m| m.role == Role::Worker && m.reachable && m.verified)
            .map(|m| m.conns)
            .sum();
        let lost = members.iter().filter(|m| m.role == Role::Worker && m.lost);
        let (lost_workers, held_connections) = lost.fold((0, 0), |(n, c), m| (n + 1, c + m.conns));
        ClusterView {
            self_id: self_id.to_string(),
            active_leader,
            first_leader,
            cluster_connections,
            lost_workers,
            held_connections,
            members,
        }
    }

    /// The connected-client count to scale on: the reachable workers' live counts plus the last
    /// proven counts of workers gone quiet. A partition or a frozen worker hides clients that
    /// have not left; counting them as gone would let a scale-in alarm fire on a partial view.
    /// A dead worker's clients reconnect elsewhere and are counted twice until membership
    /// forgets it (its dead-node grace period): an overestimate, which only delays a scale-in.
    pub fn scaling_count(&self) -> u64 {
        self.cluster_connections + self.held_connections
    }

    /// Each serving worker's node id and connected clients: what the busiest-worker metric and
    /// the per-worker metric are made of. A draining worker is left out: its count only falls,
    /// and it is leaving.
    pub fn worker_counts(&self) -> Vec<(&str, u64)> {
        self.members
            .iter()
            .filter(|m| m.role == Role::Worker && m.is_serving() && m.status == Status::Up)
            .map(|m| (m.node_id.as_str(), m.conns))
            .collect()
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

/// Interprets a node; `None` until its role and status are known. With a cluster secret, what
/// counts (role, status, load, addresses, liveness) comes from the node's proven state; gossip's
/// keys only describe an unverified member.
fn member_of(n: &RawNode, trust: &Trust) -> Option<Member> {
    let key = |k: &str| n.keys.get(k).cloned();
    let num = |k: &str| key(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // An address that does not parse is as good as none: nothing could connect to it.
    let addr = |k: &str| key(k).and_then(|v| v.parse::<SocketAddr>().ok());
    let gossiped = Member {
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
        verified: true,
        active_epoch: key(KEY_ACTIVE_EPOCH).and_then(|v| v.parse().ok()),
        interest: key(KEY_INTEREST).and_then(|v| v.parse().ok()),
        lost: false,
        gossip_live: n.live,
    };
    let Some(proven) = trust.proven else {
        let lost = !gossiped.reachable && gossiped.status != Status::Leaving;
        return Some(Member { lost, ..gossiped });
    };
    if n.is_self {
        return Some(gossiped);
    }
    let known = proven.get(&(n.node_id.clone(), n.generation));
    let fresh = known.filter(|p| trust.now.saturating_duration_since(p.at) <= trust.fresh);
    Some(match (fresh, known) {
        (Some(p), _) => Member {
            role: p.state.role,
            status: p.state.status,
            public_addr: p.state.public_addr,
            internal_addr: Some(p.state.internal_addr),
            admin_addr: p.state.admin_addr,
            conns: p.state.conns,
            capacity: p.state.capacity,
            active_epoch: p.state.active_epoch,
            interest: p.state.interest.clone(),
            lost: !gossiped.reachable && p.state.status != Status::Leaving,
            ..gossiped
        },
        // Proven earlier in this generation, silent since: what it last proved.
        (None, Some(p)) => Member {
            role: p.state.role,
            status: p.state.status,
            reachable: false,
            verified: false,
            internal_addr: Some(p.state.internal_addr),
            conns: p.state.conns,
            capacity: p.state.capacity,
            active_epoch: None,
            interest: p.state.interest.clone(),
            lost: p.state.status != Status::Leaving,
            ..gossiped
        },
        (None, None) => Member {
            reachable: false,
            verified: false,
            active_epoch: None,
            interest: None,
            ..gossiped
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeState;
    use crate::proof::Proven;

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

    /// `n` claiming the active term with `epoch`.
    fn claiming(mut n: RawNode, epoch: u64) -> RawNode {
        n.keys.insert(KEY_ACTIVE_EPOCH.into(), epoch.to_string());
        n
    }

    /// Both leaders at addresses the seeds name.
    fn seeds() -> HashSet<SocketAddr> {
        ["10.0.0.8:7070", "10.0.0.8:7070"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect()
    }

    fn build(self_id: &str, raw: Vec<RawNode>) -> ClusterView {
        ClusterView::build(self_id, raw, &Trust::gossip(&seeds()))
    }

    #[test]
    fn active_leader_is_the_claim_with_the_highest_epoch() {
        let v = build(
            "w1",
            vec![
                claiming(node("leader-2", 1, "leader", "up", true, 0), 3),
                claiming(node("leader-1", 1, "leader", "up", true, 0), 4),
                node("w1", 1, "worker", "up", true, 5),
            ],
        );
        assert_eq!(v.active_leader.as_deref(), Some("leader-1"));
        // A leader that lost its term and does not know it yet claims an older epoch.
        let v = build(
            "w1",
            vec![
                claiming(node("leader-1", 1, "leader", "up", true, 0), 4),
                claiming(node("leader-2", 1, "leader", "up", true, 0), 5),
            ],
        );
        assert_eq!(v.active_leader.as_deref(), Some("leader-2"));
        assert_eq!(v.first_leader.as_deref(), Some("leader-1"));
        // No claim, no active leader: nobody accepts queue writes.
        let v = build("w1", vec![node("leader-1", 1, "leader", "up", true, 0)]);
        assert_eq!(v.active_leader, None);
        assert_eq!(v.first_leader.as_deref(), Some("leader-1"));
    }

    #[test]
    fn equal_claims_go_to_the_lowest_node_id() {
        let v = build(
            "w1",
            vec![
                claiming(node("leader-2", 1, "leader", "up", true, 0), 0),
                claiming(node("leader-1", 1, "leader", "up", true, 0), 0),
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
        let v = build(
            "leader-2",
            vec![
                claiming(node("leader-1", 1, "leader", "up", false, 0), 9),
                claiming(node("leader-2", 1, "leader", "up", true, 0), 1),
            ],
        );
        assert_eq!(v.active_leader.as_deref(), Some("leader-2"));
        assert!(v.is_active_leader());
        let v = build(
            "leader-2",
            vec![
                claiming(node("leader-1", 1, "leader", "leaving", true, 0), 9),
                claiming(node("leader-2", 1, "leader", "up", true, 0), 1),
            ],
        );
        assert_eq!(v.active_leader.as_deref(), Some("leader-2"));
    }

    #[test]
    fn left_nodes_and_old_generations_are_dropped() {
        let v = build(
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
        let v = build("leader-1", vec![n]);
        assert!(v.members.is_empty());
        assert_eq!(v.active_leader, None);
    }

    fn proven(node: &RawNode, role: Role, conns: u64) -> ((String, u64), Proven) {
        let state = NodeState {
            node_id: node.node_id.clone(),
            generation: node.generation,
            role,
            status: Status::Up,
            conns,
            capacity: 100,
            internal_addr: node.keys[KEY_INTERNAL_ADDR].parse().unwrap(),
            public_addr: None,
            admin_addr: None,
            active_epoch: (role == Role::Leader).then_some(1),
            interest: None,
            revision: 0,
        };
        (
            (node.node_id.clone(), node.generation),
            Proven {
                state,
                at: Instant::now(),
            },
        )
    }

    #[test]
    fn with_a_secret_only_proven_state_counts() {
        let leader = node("leader-1", 1, "leader", "up", true, 0);
        // Gossip says the worker has 10^12 connections; it proved 5.
        let worker = node("w1", 1, "worker", "up", true, 1_000_000_000_000);
        // A stranger announcing itself as a leader that sorts first, and as a newer life of
        // leader-1, with no proof of either.
        let mut rogue = claiming(node("0rogue", 1, "leader", "up", true, 0), 99);
        rogue
            .keys
            .insert(KEY_INTERNAL_ADDR.into(), "10.0.0.8:7070".into());
        let impostor = claiming(node("leader-1", 2, "leader", "up", true, 0), 99);
        let proofs: ProvenPeers = [
            proven(&leader, Role::Leader, 0),
            proven(&worker, Role::Worker, 5),
        ]
        .into_iter()
        .collect();
        let seeds = seeds();
        let trust = Trust {
            proven: Some(&proofs),
            fresh: Duration::from_secs(5),
            now: Instant::now(),
            seed_addrs: &seeds,
        };
        let v = ClusterView::build("w2", vec![leader, worker, rogue, impostor], &trust);
        assert_eq!(v.active_leader.as_deref(), Some("leader-1"));
        assert_eq!(v.active_leader().map(|m| m.generation), Some(1));
        assert_eq!(v.cluster_connections, 5);
        let rogue = v.member("0rogue").expect("listed");
        assert!(!rogue.verified && !rogue.reachable);
        assert_eq!(v.serving(Role::Leader).count(), 1);
    }

    #[test]
    fn a_stale_proof_counts_no_more() {
        let worker = node("w1", 1, "worker", "up", true, 0);
        let mut proofs = ProvenPeers::new();
        let (k, mut p) = proven(&worker, Role::Worker, 7);
        p.at = Instant::now() - Duration::from_secs(60);
        proofs.insert(k, p);
        let seeds = seeds();
        let trust = Trust {
            proven: Some(&proofs),
            fresh: Duration::from_secs(5),
            now: Instant::now(),
            seed_addrs: &seeds,
        };
        let stranger = node("w9", 1, "worker", "up", false, 1_000_000);
        let v = ClusterView::build("leader-1", vec![worker, stranger], &trust);
        assert_eq!(v.cluster_connections, 0);
        assert!(!v.members[0].verified);
        // Gone quiet after proving 7: its clients have not left as far as scaling knows, and a
        // publish names it as not asked. A stranger never proven is neither.
        assert!(v.members[0].lost && !v.members[1].lost);
        assert_eq!((v.lost_workers, v.held_connections), (1, 7));
        assert_eq!(v.scaling_count(), 7);
    }

    #[test]
    fn a_draining_worker_still_holds_sessions_until_it_has_none() {
        let seeds = seeds();
        for (conns, holds) in [(3, true), (0, false)] {
            let worker = node("w1", 1, "worker", "leaving", true, 0);
            let (k, mut p) = proven(&worker, Role::Worker, conns);
            p.state.status = Status::Leaving;
            let proofs: ProvenPeers = [(k, p)].into_iter().collect();
            let trust = Trust {
                proven: Some(&proofs),
                fresh: Duration::from_secs(5),
                now: Instant::now(),
                seed_addrs: &seeds,
            };
            let v = ClusterView::build("leader-1", vec![worker], &trust);
            let m = &v.members[0];
            assert!(!m.is_serving() && !m.lost);
            assert_eq!(m.holds_sessions(), holds, "{conns} sessions left");
        }
    }

    #[test]
    fn a_leader_counts_only_at_a_seed_address() {
        let mut far = claiming(node("leader-0", 1, "leader", "up", true, 0), 7);
        far.keys
            .insert(KEY_INTERNAL_ADDR.into(), "192.0.2.1:7070".into());
        let v = build(
            "w1",
            vec![
                far,
                claiming(node("leader-1", 1, "leader", "up", true, 0), 1),
            ],
        );
        assert_eq!(v.active_leader.as_deref(), Some("leader-1"));
    }
}
