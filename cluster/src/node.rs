//! What a node gossips about itself: the key names and the values they take.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::interest::Interest;

pub(crate) const KEY_ROLE: &str = "role";
pub(crate) const KEY_STATUS: &str = "status";
pub(crate) const KEY_PUBLIC_ADDR: &str = "public_addr";
pub(crate) const KEY_INTERNAL_ADDR: &str = "internal_addr";
pub(crate) const KEY_ADMIN_ADDR: &str = "admin_addr";
pub(crate) const KEY_CONNS: &str = "conns";
pub(crate) const KEY_CAPACITY: &str = "capacity";
pub(crate) const KEY_VERSION: &str = "version";
/// A leader's claim to be the active one: the epoch of the term it holds (empty: none).
pub(crate) const KEY_ACTIVE_EPOCH: &str = "active_epoch";
/// A worker's topic interest ([`Interest`]; empty: none).
pub(crate) const KEY_INTEREST: &str = "topics";

/// A node's own account of itself, served on its node link (`GET /internal/v1/state`) and
/// proven with the cluster key. With a cluster secret, peers decide from this, never from what
/// gossip says about the node: gossip datagrams are not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub node_id: String,
    pub generation: u64,
    pub role: Role,
    pub status: Status,
    pub conns: u64,
    pub capacity: u64,
    pub internal_addr: SocketAddr,
    pub public_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// A leader that holds the active term says so with its epoch (the lease's fencing number;
    /// 0 without a lease store). Absent: standby, or a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_epoch: Option<u64>,
    /// A worker's topic interest: topic publishes go only where it may hold. Absent: a node
    /// that does not say (every topic publish reaches it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interest: Option<Interest>,
    /// Bumped on every change of what peers route by (the interest): of two states of one
    /// node and generation, a peer keeps the higher revision.
    #[serde(default)]
    pub revision: u64,
}

/// Node-link path of [`NodeState`].
pub use ews_http::link::STATE_PATH;

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Seed node, cluster view, active one hosts the queue and publishes the cluster metric.
    Leader,
    /// Terminates client WebSockets; scaled by the Auto Scaling group.
    Worker,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Leader, Role::Worker];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Worker => "worker",
        }
    }
}

/// Lifecycle of a node as it gossips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started, has not reached a seed yet.
    Joining,
    /// In the cluster.
    Up,
    /// Shutting down: peers stop counting it at once.
    Leaving,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Joining, Status::Up, Status::Leaving];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Joining => "joining",
            Status::Up => "up",
            Status::Leaving => "leaving",
        }
    }
}

macro_rules! text_enum {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $t {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("unknown {}: {s:?}", stringify!($t)))
            }
        }
    };
}

text_enum!(Role);
text_enum!(Status);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for r in Role::ALL {
            assert_eq!(r.to_string().parse::<Role>(), Ok(r));
        }
        for s in Status::ALL {
            assert_eq!(s.to_string().parse::<Status>(), Ok(s));
        }
        assert!("boss".parse::<Role>().is_err());
    }
}
