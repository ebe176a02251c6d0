//! Proven peers: with a cluster secret, a peer counts only once it has answered, over the
//! authenticated node link, with its own [`NodeState`]; decisions (the active leader, the
//! cluster's connection count, who gets a publish) use that state, never gossip's. Gossip
//! datagrams carry no signature (chitchat keeps its envelope private), so gossip is discovery
//! only: it says where to ask.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ews_http::link::{LinkKey, NodeRef};
use futures_util::future::join_all;
use http::{Method, StatusCode};

use crate::link_client::{LinkClient, LinkFailure, Proof};
use crate::node::{NodeState, STATE_PATH};

/// Longest wait for one peer's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest state answer read.
const MAX_ANSWER: usize = 16 * 1024;

/// A peer's proven state and when it was proven.
#[derive(Debug, Clone)]
pub(crate) struct Proven {
    pub state: NodeState,
    pub at: Instant,
}

/// Peers proven so far, by node id and generation.
pub(crate) type ProvenPeers = HashMap<(String, u64), Proven>;

/// Asks peers for their state over the signed node link.
pub(crate) struct Prover {
    link: LinkClient,
}

impl Prover {
    pub fn new(key: LinkKey) -> Prover {
        Prover {
            link: LinkClient::new(Some(key), PROBE_TIMEOUT),
        }
    }

    /// Asks every `(node id, generation, internal address)` at once; the states that were
    /// proven and are who gossip said they are.
    pub async fn probe_all(&self, targets: &[(String, u64, SocketAddr)]) -> Vec<NodeState> {
        let answers = join_all(targets.iter().map(|(id, generation, addr)| async move {
            let state = self
                .probe(&NodeRef::new(id.clone(), *generation), *addr)
                .await?;
            // The answer must be the node gossip named, at the address gossip gave.
            (state.node_id == *id
                && state.generation == *generation
                && state.internal_addr == *addr)
                .then_some(state)
        }))
        .await;
        answers.into_iter().flatten().collect()
    }

    async fn probe(&self, to: &NodeRef, addr: SocketAddr) -> Option<NodeState> {
        let answer = self
            .link
            .request(
                Method::GET,
                (to, addr),
                STATE_PATH,
                Bytes::new(),
                Proof::Body,
                MAX_ANSWER,
                PROBE_TIMEOUT,
            )
            .await;
        match answer {
            Ok(a) if a.status == StatusCode::OK => serde_json::from_slice(&a.body).ok(),
            Ok(_) => None,
            Err(e @ LinkFailure::Unproven(_)) => {
                tracing::warn!(%addr, error = %e, "a peer could not prove the cluster key");
                None
            }
            Err(_) => None,
        }
    }
}
