//! The sessions open on this node, by id and by client id, so the admin API can list them and
//! push to a client. Each session's pushed messages wait in a small bounded queue; the overflow
//! policy is *drop the newest and tell the publisher*: a slow reader never makes the node buffer
//! without bound, and never stalls the publisher.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ews_proto::ServerFrame;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use ews_cluster::publish::Delivery;

/// The part of a session other tasks can reach.
pub struct SessionShared {
    pub id: u64,
    pub client_id: Option<Arc<str>>,
    pub route: Arc<str>,
    pub peer: SocketAddr,
    pub connected_at_ms: i64,
    outbound: Mutex<VecDeque<Utf8Bytes>>,
    capacity: usize,
    pub wake: Notify,
}

impl SessionShared {
    /// Queues a pushed message; `false` (dropped) when the queue is full.
    pub fn push(&self, msg: Utf8Bytes) -> bool {
        let Ok(mut q) = self.outbound.lock() else {
            return false;
        };
        if q.len() >= self.capacity {
            return false;
        }
        q.push_back(msg);
        drop(q);
        self.wake.notify_one();
        true
    }

    pub fn pop(&self) -> Option<Utf8Bytes> {
        self.outbound.lock().ok()?.pop_front()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: u64,
    pub client_id: Option<String>,
    pub route: String,
    pub peer: String,
    pub connected_at: i64,
}

#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    by_id: HashMap<u64, Arc<SessionShared>>,
    by_client: HashMap<Arc<str>, Vec<u64>>,
}

impl Registry {
    pub fn register(
        &self,
        client_id: Option<Arc<str>>,
        route: Arc<str>,
        peer: SocketAddr,
        outbound_capacity: usize,
    ) -> Arc<SessionShared> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.next_id += 1;
        let s = Arc::new(SessionShared {
            id: g.next_id,
            client_id: client_id.clone(),
            route,
            peer,
            connected_at_ms: crate::handler::now_ms(),
            outbound: Mutex::new(VecDeque::new()),
            capacity: outbound_capacity.max(1),
            wake: Notify::new(),
        });
        g.by_id.insert(s.id, s.clone());
        if let Some(c) = client_id {
            g.by_client.entry(c).or_default().push(s.id);
        }
        s
    }

    pub fn unregister(&self, s: &SessionShared) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.by_id.remove(&s.id);
        if let Some(c) = &s.client_id {
            if let Some(ids) = g.by_client.get_mut(c) {
                ids.retain(|&i| i != s.id);
                if ids.is_empty() {
                    g.by_client.remove(c);
                }
            }
        }
    }

    /// Pushes `msg` to every session of `client_id` on this node (none: all counts zero).
    pub fn push(&self, client_id: &str, msg: &str) -> Delivery {
        let targets: Vec<Arc<SessionShared>> = {
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let ids = g.by_client.get(client_id).map(Vec::as_slice).unwrap_or(&[]);
            ids.iter().filter_map(|i| g.by_id.get(i).cloned()).collect()
        };
        let mut r = Delivery::default();
        if targets.is_empty() {
            return r;
        }
        let frame = Utf8Bytes::from(ServerFrame::Push { msg: msg.into() }.to_text());
        for s in targets {
            if s.push(frame.clone()) {
                r.delivered += 1;
            } else {
                r.dropped += 1;
            }
        }
        r
    }

    pub fn list(&self) -> Vec<SessionInfo> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<SessionInfo> = g
            .by_id
            .values()
            .map(|s| SessionInfo {
                id: s.id,
                client_id: s.client_id.as_deref().map(str::to_string),
                route: s.route.to_string(),
                peer: s.peer.to_string(),
                connected_at: s.connected_at_ms,
            })
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(delivered: usize, dropped: usize) -> Delivery {
        Delivery::counts(delivered, dropped)
    }

    #[test]
    fn push_is_bounded_per_session() {
        let r = Registry::default();
        let peer: SocketAddr = ([127, 0, 0, 1], 1).into();
        let a = r.register(Some("alice".into()), "/ws".into(), peer, 2);
        assert_eq!(r.push("bob", "x"), counts(0, 0));
        assert_eq!(r.push("alice", "1"), counts(1, 0));
        assert_eq!(r.push("alice", "2"), counts(1, 0));
        assert_eq!(r.push("alice", "3"), counts(0, 1));
        assert!(a.pop().is_some());
        assert_eq!(r.list().len(), 1);
        r.unregister(&a);
        assert!(r.list().is_empty());
        assert_eq!(r.push("alice", "4"), counts(0, 0));
    }
}
