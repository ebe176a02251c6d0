//! Lifecycle records: which sessions are online, as the sink tells it.
//!
//! With `--lifecycle-events`, a worker writes a [`Lifecycle::Connected`] record before a
//! session's first event and a [`Lifecycle::Disconnected`] one after its last, through the same
//! sink as the events (in order with them, with the sink's durability). A worker that dies
//! without saying goodbye cannot write its sessions' ends: the active leader writes one
//! [`Lifecycle::NodeLost`] for it once membership has confirmed it dead, and that record ends
//! every session of the node's generation. [`OnlineTable`] is the consumer logic that turns the
//! records into the exact set of online sessions, whatever order the sink delivers them in.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::StampedEvent;

/// A session's start or end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionLife {
    /// The authenticated client id (the token's `sub`); empty under `--no-auth`.
    pub client_id: String,
    /// Node id of the worker holding the session.
    pub node: String,
    /// The worker process's start time, ms since the epoch: every restart is a new generation,
    /// and a `node_lost` ends the sessions of one generation.
    pub generation: u64,
    /// Session id on that node (unique within a generation).
    pub session: u64,
    /// Per node and generation, 1, 2, 3, ... over its lifecycle records: a consumer that sees
    /// a gap knows it missed one.
    pub node_seq: u64,
    /// The route's path.
    pub route: String,
    /// When the worker wrote the record, ms since the epoch.
    pub at: i64,
    /// Why the session ended (`disconnected` only): the label a `disconnect` hook hears
    /// (`client_left`, `draining`, `moved`, `peer_silent`, `token_expired`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The WebSocket close code, when a close frame was exchanged (`disconnected` only): the
    /// worker's, or the client's when it closed first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
}

/// A worker generation that has left the cluster: its sessions are over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeLost {
    pub node: String,
    pub generation: u64,
    /// `dead`: it stopped answering and membership confirmed it gone, sessions and all;
    /// `restarted`: a newer generation of the node joined; `left`: it drained and left (its
    /// sessions wrote their own ends; this one only says no more will come).
    pub reason: String,
    /// Node id of the active leader that wrote it.
    pub by: String,
    /// When it was written, ms since the epoch.
    pub at: i64,
}

/// A lifecycle record as a sink stores it (`type` says which).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Lifecycle {
    Connected(SessionLife),
    Disconnected(SessionLife),
    /// Ends every session of `node` in `generation` (written at least once; a repeat is
    /// harmless).
    NodeLost(NodeLost),
}

/// One record of a sink: a client's event, or (with `--lifecycle-events`) a lifecycle record.
/// An event has no `type` field; a lifecycle record always has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SinkRecord {
    Lifecycle(Lifecycle),
    Event(StampedEvent),
}

impl From<StampedEvent> for SinkRecord {
    fn from(e: StampedEvent) -> SinkRecord {
        SinkRecord::Event(e)
    }
}

impl From<Lifecycle> for SinkRecord {
    fn from(l: Lifecycle) -> SinkRecord {
        SinkRecord::Lifecycle(l)
    }
}

impl SinkRecord {
    /// The JSON every sink writes, one record each.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The client the record belongs to (empty: none): sinks that partition or group keep one
    /// client's records together, in order.
    pub fn client_id(&self) -> &str {
        match self {
            SinkRecord::Event(e) => &e.client_id,
            SinkRecord::Lifecycle(Lifecycle::Connected(s) | Lifecycle::Disconnected(s)) => {
                &s.client_id
            }
            SinkRecord::Lifecycle(Lifecycle::NodeLost(_)) => "",
        }
    }

    /// The key that keeps related records in order where the client id cannot (a record
    /// without one): the session, or the lost node.
    pub fn order_key(&self) -> String {
        match self {
            SinkRecord::Event(e) => format!("{}-{}", e.node, e.session),
            SinkRecord::Lifecycle(Lifecycle::Connected(s) | Lifecycle::Disconnected(s)) => {
                format!("{}-{}", s.node, s.session)
            }
            SinkRecord::Lifecycle(Lifecycle::NodeLost(n)) => n.node.clone(),
        }
    }

    /// A key no other record shares, and copies of one record do (for deduplicating sinks).
    pub fn unique_key(&self) -> String {
        match self {
            SinkRecord::Event(e) => format!("{}-{}-{}", e.node, e.session, e.seq),
            SinkRecord::Lifecycle(Lifecycle::Connected(s) | Lifecycle::Disconnected(s)) => {
                format!("{}-{}-l{}", s.node, s.generation, s.node_seq)
            }
            SinkRecord::Lifecycle(Lifecycle::NodeLost(n)) => {
                format!("{}-{}-lost", n.node, n.generation)
            }
        }
    }
}

/// A session as the cluster names it: node, generation, session id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionKey {
    pub node: String,
    pub generation: u64,
    pub session: u64,
}

impl SessionKey {
    fn of(s: &SessionLife) -> SessionKey {
        SessionKey {
            node: s.node.clone(),
            generation: s.generation,
            session: s.session,
        }
    }
}

/// The online sessions, kept exact from lifecycle records delivered in any order and any
/// number of times (SQS standard queues do both): every `disconnected` leaves a tombstone, so
/// a `connected` that arrives after it (late, or delivered again) stays out, and a `node_lost`
/// keeps its whole generation out for good. The leader writes a `node_lost` for every
/// generation that leaves the cluster, drained or dead, so a generation's tombstones go with
/// it: the table holds the online sessions, the tombstones of live generations and one entry
/// per ended generation.
#[derive(Debug, Clone, Default)]
pub struct OnlineTable {
    online: BTreeMap<SessionKey, SessionLife>,
    ended: BTreeSet<SessionKey>,
    lost: BTreeSet<(String, u64)>,
}

impl OnlineTable {
    pub fn new() -> OnlineTable {
        OnlineTable::default()
    }

    /// Applies one record (an event changes nothing).
    pub fn apply(&mut self, record: &SinkRecord) {
        let SinkRecord::Lifecycle(l) = record else {
            return;
        };
        match l {
            Lifecycle::Connected(s) => {
                let key = SessionKey::of(s);
                if !self.ended.contains(&key)
                    && !self.lost.contains(&(s.node.clone(), s.generation))
                {
                    self.online.insert(key, s.clone());
                }
            }
            Lifecycle::Disconnected(s) => {
                let key = SessionKey::of(s);
                self.online.remove(&key);
                if !self.lost.contains(&(s.node.clone(), s.generation)) {
                    self.ended.insert(key);
                }
            }
            Lifecycle::NodeLost(n) => {
                self.online
                    .retain(|k, _| k.node != n.node || k.generation != n.generation);
                self.ended
                    .retain(|k| k.node != n.node || k.generation != n.generation);
                self.lost.insert((n.node.clone(), n.generation));
            }
        }
    }

    /// The sessions online now, by key.
    pub fn sessions(&self) -> impl Iterator<Item = (&SessionKey, &SessionLife)> {
        self.online.iter()
    }

    pub fn len(&self) -> usize {
        self.online.len()
    }

    pub fn is_empty(&self) -> bool {
        self.online.is_empty()
    }

    /// The distinct client ids online.
    pub fn clients(&self) -> BTreeSet<&str> {
        self.online.values().map(|s| s.client_id.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(node: &str, generation: u64, session: u64, node_seq: u64) -> SessionLife {
        SessionLife {
            client_id: format!("c{session}"),
            node: node.into(),
            generation,
            session,
            node_seq,
            route: "/ws".into(),
            at: 1,
            reason: None,
            code: None,
        }
    }

    fn on(s: SessionLife) -> SinkRecord {
        Lifecycle::Connected(s).into()
    }

    fn off(mut s: SessionLife) -> SinkRecord {
        s.reason = Some("client_left".into());
        s.code = Some(1000);
        Lifecycle::Disconnected(s).into()
    }

    fn lost(node: &str, generation: u64) -> SinkRecord {
        Lifecycle::NodeLost(NodeLost {
            node: node.into(),
            generation,
            reason: "dead".into(),
            by: "l1".into(),
            at: 2,
        })
        .into()
    }

    #[test]
    fn records_on_the_wire() {
        let r = off(life("w1", 7, 3, 9));
        assert_eq!(
            String::from_utf8(r.to_json()).unwrap(),
            r#"{"type":"disconnected","clientId":"c3","node":"w1","generation":7,"session":3,"nodeSeq":9,"route":"/ws","at":1,"reason":"client_left","code":1000}"#
        );
        assert_eq!(
            String::from_utf8(lost("w1", 7).to_json()).unwrap(),
            r#"{"type":"node_lost","node":"w1","generation":7,"reason":"dead","by":"l1","at":2}"#
        );
        // Events keep their shape, and each reads back as what it is.
        let e = StampedEvent {
            id: None,
            msg: "hi".into(),
            client_id: "c".into(),
            timestamp: 1,
            node: "w1".into(),
            session: 3,
            seq: 1,
            received_at: 2,
        };
        let json = SinkRecord::from(e.clone()).to_json();
        assert_eq!(json, e.to_json());
        for r in [SinkRecord::from(e), on(life("w1", 7, 3, 8)), lost("w", 1)] {
            let back: SinkRecord = serde_json::from_slice(&r.to_json()).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn the_table_follows_starts_and_ends() {
        let mut t = OnlineTable::new();
        t.apply(&on(life("w1", 7, 1, 1)));
        t.apply(&on(life("w1", 7, 2, 2)));
        t.apply(&on(life("w2", 5, 1, 1)));
        t.apply(&off(life("w1", 7, 1, 3)));
        // Delivered twice: no change.
        t.apply(&on(life("w2", 5, 1, 1)));
        t.apply(&on(life("w1", 7, 1, 1)));
        assert_eq!(t.clients().into_iter().collect::<Vec<_>>(), ["c1", "c2"]);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn an_end_that_overtakes_its_start_keeps_it_out() {
        let mut t = OnlineTable::new();
        t.apply(&off(life("w1", 7, 1, 2)));
        t.apply(&on(life("w1", 7, 1, 1)));
        assert!(t.is_empty());
    }

    #[test]
    fn a_lost_node_ends_its_generation_only() {
        let mut t = OnlineTable::new();
        t.apply(&on(life("w1", 7, 1, 1)));
        t.apply(&on(life("w1", 7, 2, 2)));
        // The same node restarted: a new generation, untouched by the old one's loss.
        t.apply(&on(life("w1", 8, 1, 1)));
        t.apply(&lost("w1", 7));
        // A start of the lost generation that arrives late stays out.
        t.apply(&on(life("w1", 7, 3, 3)));
        let keys: Vec<_> = t
            .sessions()
            .map(|(k, _)| (k.generation, k.session))
            .collect();
        assert_eq!(keys, [(8, 1)]);
        // The generation's tombstones went with it.
        t.apply(&off(life("w1", 7, 2, 4)));
        assert!(t.ended.is_empty());
    }
}
