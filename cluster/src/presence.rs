//! Who is online, cluster-wide: `GET /api/v1/presence?topic=T` (sessions subscribed to `T`) or
//! `?clientId=C` (sessions of client `C`), on a worker's admin port and the leaders' front door.
//! The node that is asked answers for itself and asks every serving worker over the node link
//! (`GET /internal/v1/presence?...`, that worker's sessions only) through the same [`Fanout`]
//! as a publish; the answer sums them and names each node's part. Every worker is asked, not
//! only those whose topic interest matches: interest is a filter with false positives and a
//! propagation delay, presence must be exact.
//!
//! [`Fanout`]: crate::publish::Fanout

use std::collections::{BTreeMap, BTreeSet};

use ews_http::reply::{self, Body};
use ews_proto::topic::Topic;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

/// Node-link path of the local-only presence a worker serves.
pub const PRESENCE_PATH: &str = "/internal/v1/presence";
/// Client ids listed per answer at most (per node and in the sum); `truncated` says when more
/// were there. The session counts are always complete.
pub const MAX_CLIENTS_LISTED: usize = 1000;

/// What presence is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Topic(Topic),
    Client(String),
}

impl Query {
    /// From a query string: exactly one of `topic` and `clientId`.
    pub fn parse(query: Option<&str>) -> Result<Query, String> {
        let mut topic = None;
        let mut client = None;
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "topic" if topic.is_none() => topic = Some(v.into_owned()),
                "clientId" if client.is_none() => client = Some(v.into_owned()),
                other => return Err(format!("unexpected or repeated parameter {other:?}")),
            }
        }
        match (topic, client) {
            (Some(t), None) => Topic::parse(&t)
                .map(Query::Topic)
                .map_err(|e| e.to_string()),
            (None, Some(c)) if !c.is_empty() => Ok(Query::Client(c)),
            _ => Err("give exactly one of topic and clientId".into()),
        }
    }

    /// The query string that [`Query::parse`] reads back.
    pub fn to_query_string(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        match self {
            Query::Topic(t) => q.append_pair("topic", t.as_str()),
            Query::Client(c) => q.append_pair("clientId", c),
        };
        q.finish()
    }
}

/// One node's sessions for a query.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Here {
    pub sessions: usize,
    /// Distinct client ids, sorted, at most [`MAX_CLIENTS_LISTED`].
    pub clients: Vec<String>,
    #[serde(default)]
    pub truncated: bool,
}

impl Here {
    /// From the sessions' client ids (`None`: a session without one, under `--no-auth`).
    pub fn of<'a>(clients: impl IntoIterator<Item = Option<&'a str>>) -> Here {
        let mut sessions = 0;
        let mut ids = BTreeSet::new();
        for c in clients {
            sessions += 1;
            if let Some(c) = c {
                ids.insert(c);
            }
        }
        let truncated = ids.len() > MAX_CLIENTS_LISTED;
        Here {
            sessions,
            clients: ids
                .into_iter()
                .take(MAX_CLIENTS_LISTED)
                .map(str::to_string)
                .collect(),
            truncated,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        reply::json(StatusCode::OK, &self)
    }
}

/// A node's part: its sessions, or why it gave none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodePresence {
    Here(Here),
    Failed { error: String },
}

/// The cluster-wide answer.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub sessions: usize,
    pub clients: Vec<String>,
    pub truncated: bool,
    /// Workers that did not answer in time (their sessions are not counted).
    pub failed: Vec<String>,
    pub nodes: BTreeMap<String, NodePresence>,
}

impl Presence {
    pub fn add_node(&mut self, id: &str, outcome: Result<Here, String>) {
        let part = match outcome {
            Ok(h) => {
                self.sessions += h.sessions;
                self.truncated |= h.truncated;
                let mut all: BTreeSet<String> =
                    std::mem::take(&mut self.clients).into_iter().collect();
                all.extend(h.clients.iter().cloned());
                if all.len() > MAX_CLIENTS_LISTED {
                    self.truncated = true;
                }
                self.clients = all.into_iter().take(MAX_CLIENTS_LISTED).collect();
                NodePresence::Here(h)
            }
            Err(error) => {
                self.failed.push(id.to_string());
                NodePresence::Failed { error }
            }
        };
        self.nodes.insert(id.to_string(), part);
    }

    /// 200, or 502 when a worker failed to answer (the counts are then a lower bound).
    pub fn into_response(mut self) -> Response<Body> {
        self.failed.sort();
        let status = if self.failed.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::BAD_GATEWAY
        };
        reply::json(status, &self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_round_trip() {
        let t = Query::parse(Some("topic=chat.room%3A1")).unwrap();
        assert_eq!(t, Query::Topic(Topic::parse("chat.room:1").unwrap()));
        assert_eq!(Query::parse(Some(&t.to_query_string())), Ok(t));
        let c = Query::parse(Some("clientId=auth0%7Calice%40x")).unwrap();
        assert_eq!(c, Query::Client("auth0|alice@x".into()));
        assert_eq!(Query::parse(Some(&c.to_query_string())), Ok(c));
        for bad in [
            None,
            Some(""),
            Some("topic=a&clientId=b"),
            Some("topic=a b"),
            Some("topic=a&topic=b"),
            Some("clientId="),
            Some("x=1"),
        ] {
            assert!(Query::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sums_nodes_and_names_failures() {
        let mut p = Presence::default();
        p.add_node(
            "w1",
            Ok(Here::of([Some("alice"), Some("bob"), Some("alice")])),
        );
        p.add_node("w2", Ok(Here::of([Some("carol"), None])));
        p.add_node("w3", Err("no answer within 1000 ms".into()));
        assert_eq!(p.sessions, 5);
        assert_eq!(p.clients, ["alice", "bob", "carol"]);
        assert_eq!(p.failed, ["w3"]);
        assert_eq!(p.clone().into_response().status(), StatusCode::BAD_GATEWAY);
        let text = serde_json::to_string(&p.nodes["w1"]).unwrap();
        assert_eq!(
            text,
            r#"{"sessions":3,"clients":["alice","bob"],"truncated":false}"#
        );
    }

    #[test]
    fn long_lists_are_cut_and_say_so() {
        let ids: Vec<String> = (0..1500).map(|i| format!("c{i:04}")).collect();
        let h = Here::of(ids.iter().map(|s| Some(s.as_str())));
        assert_eq!(
            (h.sessions, h.clients.len(), h.truncated),
            (1500, 1000, true)
        );
    }
}
