//! Proven peers: with a cluster secret, a peer counts only once it has answered, over the
//! authenticated node link, with its own [`NodeState`]; decisions (the active leader, the
//! cluster's connection count, who gets a publish) use that state, never gossip's. Gossip
//! datagrams carry no signature (chitchat keeps its envelope private), so gossip is discovery
//! only: it says where to ask.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ews_http::link::{LinkKey, REQUEST_HEADER};
use futures_util::future::join_all;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

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
    key: LinkKey,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Prover {
    pub fn new(key: LinkKey) -> Prover {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(PROBE_TIMEOUT));
        Prover {
            key,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Asks every `(node id, generation, internal address)` at once; the states that were
    /// proven and are who gossip said they are.
    pub async fn probe_all(&self, targets: &[(String, u64, SocketAddr)]) -> Vec<NodeState> {
        let answers = join_all(targets.iter().map(|(id, generation, addr)| async move {
            let state = tokio::time::timeout(PROBE_TIMEOUT, self.probe(*addr))
                .await
                .ok()
                .flatten()?;
            // The answer must be the node gossip named, at the address gossip gave.
            (state.node_id == *id
                && state.generation == *generation
                && state.internal_addr == *addr)
                .then_some(state)
        }))
        .await;
        answers.into_iter().flatten().collect()
    }

    async fn probe(&self, addr: SocketAddr) -> Option<NodeState> {
        let (header, challenge) = self.key.sign(&Method::GET, STATE_PATH, b"");
        let mut req = Request::get(format!("http://{addr}{STATE_PATH}"))
            .body(Empty::new())
            .ok()?;
        req.headers_mut().insert(REQUEST_HEADER, header);
        let resp = self.client.request(req).await.ok()?;
        let (parts, body) = resp.into_parts();
        if parts.status != StatusCode::OK {
            return None;
        }
        let body = Limited::new(body, MAX_ANSWER)
            .collect()
            .await
            .ok()?
            .to_bytes();
        if let Err(e) = challenge.verify_with_body(parts.status, &parts.headers, &body) {
            tracing::warn!(%addr, error = %e, "a peer could not prove the cluster key");
            return None;
        }
        serde_json::from_slice(&body).ok()
    }
}
