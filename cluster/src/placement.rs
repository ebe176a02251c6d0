//! Where a session's handler runs: the node holding the client's socket, or another worker
//! chosen by the route's placement. The choice is a ranking of the serving workers, so the
//! caller can fall back to the next one when the first refuses (draining, full, unreachable).

use std::cmp::Ordering;
use std::str::FromStr;

use rand::seq::SliceRandom;
use sha2::{Digest, Sha256};

use crate::view::Member;

/// A route's placement: `PATH=HANDLER@PLACEMENT` in `--routes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// On the node holding the socket (the default; no node link involved).
    Local,
    /// Any serving worker, uniformly (the distributed design this follows: a random node
    /// among those that registered the handler).
    Random,
    /// The serving worker with the smallest share of its capacity in use (client connections
    /// over capacity, as membership reports them).
    LeastLoaded,
    /// The same client id on the same worker while it serves (rendezvous hashing: a membership
    /// change moves only the keys of the node that came or went).
    KeyHash,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Local => "local",
            Placement::Random => "random",
            Placement::LeastLoaded => "least-loaded",
            Placement::KeyHash => "key-hash",
        }
    }
}

impl FromStr for Placement {
    type Err = String;

    fn from_str(s: &str) -> Result<Placement, String> {
        Ok(match s {
            "local" => Placement::Local,
            "random" => Placement::Random,
            "least-loaded" => Placement::LeastLoaded,
            "key-hash" => Placement::KeyHash,
            _ => {
                return Err(format!(
                    "unknown placement {s:?} (local, random, least-loaded, key-hash)"
                ))
            }
        })
    }
}

/// The rendezvous weight of `key` on `node`: the node with the highest weight owns the key.
/// SHA-256 so the weights are independent of each other and stable across builds.
fn weight(node: &str, key: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Load as a share of capacity (a node that reports no capacity counts as full).
fn load(m: &Member, pending: u64) -> f64 {
    if m.capacity == 0 {
        return f64::INFINITY;
    }
    (m.conns + pending) as f64 / m.capacity as f64
}

/// Ranks `workers` (the serving ones, this node included) for a new session: the first is
/// where its handler should run, the rest are fallbacks in order. `key` is the client id
/// (key-hash without one is random); `pending(node)` is what this node placed there since the
/// loads it sees were reported, so a burst of sessions does not all land on one stale minimum.
pub fn rank<'a>(
    placement: Placement,
    workers: impl IntoIterator<Item = &'a Member>,
    key: Option<&str>,
    pending: impl Fn(&str) -> u64,
) -> Vec<&'a Member> {
    let mut v: Vec<&Member> = workers.into_iter().collect();
    match (placement, key) {
        (Placement::Local, _) => v.retain(|m| m.is_self),
        (Placement::KeyHash, Some(key)) => {
            v.sort_by_key(|m| std::cmp::Reverse(weight(&m.node_id, key)));
        }
        (Placement::Random | Placement::KeyHash, _) => v.shuffle(&mut rand::rng()),
        (Placement::LeastLoaded, _) => {
            // Shuffled first, so equal loads are broken at random (the sort is stable).
            v.shuffle(&mut rand::rng());
            v.sort_by(|a, b| {
                load(a, pending(&a.node_id))
                    .partial_cmp(&load(b, pending(&b.node_id)))
                    .unwrap_or(Ordering::Equal)
            });
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Role, Status};
    use std::collections::HashMap;

    fn member(id: &str, conns: u64, capacity: u64) -> Member {
        Member {
            node_id: id.to_string(),
            generation: 1,
            role: Role::Worker,
            status: Status::Up,
            reachable: true,
            gossip_addr: ([127, 0, 0, 1], 1).into(),
            public_addr: None,
            internal_addr: Some(([127, 0, 0, 1], 2).into()),
            admin_addr: None,
            conns,
            capacity,
            version: String::new(),
            last_heard_ms: 0,
            is_self: id == "w1",
            verified: true,
            active_epoch: None,
            interest: None,
            lost: false,
            gossip_live: true,
        }
    }

    fn owners(nodes: &[Member], keys: usize) -> HashMap<String, String> {
        (0..keys)
            .map(|k| {
                let key = format!("client-{k}");
                let first = rank(Placement::KeyHash, nodes, Some(&key), |_| 0)[0]
                    .node_id
                    .clone();
                (key, first)
            })
            .collect()
    }

    #[test]
    fn key_hash_moves_only_the_keys_of_the_node_that_left_or_came() {
        let four: Vec<Member> = ["w1", "w2", "w3", "w4"]
            .iter()
            .map(|id| member(id, 0, 100))
            .collect();
        let before = owners(&four, 4000);
        // Spread: each node owns about a quarter.
        for id in ["w1", "w2", "w3", "w4"] {
            let n = before.values().filter(|o| *o == id).count();
            assert!((800..1200).contains(&n), "{id} owns {n} of 4000");
        }
        let three: Vec<Member> = four.iter().filter(|m| m.node_id != "w3").cloned().collect();
        let after = owners(&three, 4000);
        for (key, owner) in &before {
            if owner != "w3" {
                assert_eq!(&after[key], owner, "{key} moved off a node that stayed");
            }
        }
        // And back: w3's keys return to it, nobody else's move.
        assert_eq!(owners(&four, 4000), before);
    }

    #[test]
    fn least_loaded_prefers_the_emptiest_share_and_counts_pending() {
        let nodes = vec![
            member("w1", 60, 100),
            member("w2", 10, 100),
            member("w3", 10, 20),
        ];
        let r = rank(Placement::LeastLoaded, &nodes, None, |_| 0);
        let order: Vec<&str> = r.iter().map(|m| m.node_id.as_str()).collect();
        assert_eq!(order, ["w2", "w3", "w1"], "a tenth, half, six tenths");
        let r = rank(Placement::LeastLoaded, &nodes, None, |id| {
            if id == "w2" {
                80
            } else {
                0
            }
        });
        assert_eq!(r[0].node_id, "w3");
    }

    #[test]
    fn random_reaches_every_node_and_local_only_this_one() {
        let nodes: Vec<Member> = ["w1", "w2", "w3"]
            .iter()
            .map(|id| member(id, 0, 100))
            .collect();
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..200 {
            firsts.insert(
                rank(Placement::Random, &nodes, None, |_| 0)[0]
                    .node_id
                    .clone(),
            );
        }
        assert_eq!(firsts.len(), 3);
        let local = rank(Placement::Local, &nodes, Some("x"), |_| 0);
        assert_eq!(local.len(), 1);
        assert!(local[0].is_self);
        assert!("sideways".parse::<Placement>().is_err());
        for p in ["local", "random", "least-loaded", "key-hash"] {
            assert_eq!(p.parse::<Placement>().unwrap().as_str(), p);
        }
    }
}
