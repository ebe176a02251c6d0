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
use ews_proto::ClientInfo;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

/// Node-link path of the local-only presence a worker serves.
pub const PRESENCE_PATH: &str = "/internal/v1/presence";
/// Client ids listed per page at most (per node and in the sum); `next` says where the next
/// page starts. The session counts are always complete.
pub const MAX_CLIENTS_LISTED: usize = 1000;
/// Bytes of client ids one node lists per page at most, whatever `limit` asks: a node's page
/// always fits the node-link answer, however long the ids (a JWT `sub` fits a request head, so
/// one id is below 16 KiB and a page below this plus one id).
pub const PAGE_BYTES: usize = 32 * 1024;

/// What presence is asked about, and which page of its client ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub about: About,
    /// List client ids after this one (the previous page's `next`).
    pub after: Option<String>,
    /// Client ids per page, 1..=[`MAX_CLIENTS_LISTED`].
    pub limit: usize,
}

/// Whose sessions: a topic's subscribers, or one client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum About {
    Topic(Topic),
    Client(String),
}

impl Query {
    /// From a query string: exactly one of `topic` and `clientId`, and optionally `after` and
    /// `limit`.
    pub fn parse(query: Option<&str>) -> Result<Query, String> {
        let mut topic = None;
        let mut client = None;
        let mut after = None;
        let mut limit = None;
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "topic" if topic.is_none() => topic = Some(v.into_owned()),
                "clientId" if client.is_none() => client = Some(v.into_owned()),
                "after" if after.is_none() => after = Some(v.into_owned()),
                "limit" if limit.is_none() => {
                    limit = Some(
                        v.parse::<usize>()
                            .ok()
                            .filter(|n| (1..=MAX_CLIENTS_LISTED).contains(n))
                            .ok_or_else(|| {
                                format!("limit must be within 1..={MAX_CLIENTS_LISTED}")
                            })?,
                    )
                }
                other => return Err(format!("unexpected or repeated parameter {other:?}")),
            }
        }
        let about = match (topic, client) {
            (Some(t), None) => Topic::parse(&t)
                .map(About::Topic)
                .map_err(|e| e.to_string())?,
            (None, Some(c)) if !c.is_empty() => About::Client(c),
            _ => return Err("give exactly one of topic and clientId".into()),
        };
        Ok(Query {
            about,
            after,
            limit: limit.unwrap_or(MAX_CLIENTS_LISTED),
        })
    }

    /// The query string that [`Query::parse`] reads back.
    pub fn to_query_string(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        match &self.about {
            About::Topic(t) => q.append_pair("topic", t.as_str()),
            About::Client(c) => q.append_pair("clientId", c),
        };
        if let Some(a) = &self.after {
            q.append_pair("after", a);
        }
        q.append_pair("limit", &self.limit.to_string());
        q.finish()
    }

    /// The first page of `about`.
    pub fn first(about: About) -> Query {
        Query {
            about,
            after: None,
            limit: MAX_CLIENTS_LISTED,
        }
    }
}

/// One node's sessions for a query: all of them counted, one page of their client ids listed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Here {
    pub sessions: usize,
    /// Distinct client ids after the query's `after`, sorted: at most its `limit`, and at most
    /// [`PAGE_BYTES`] of them and their infos (at least one, when there is one).
    pub clients: Vec<String>,
    /// What their backend said about the listed clients that have an info.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub info: BTreeMap<String, ClientInfo>,
    /// Present when this node holds more ids past this page: ask again with `after` set to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl Here {
    /// From the sessions' client ids and infos (`None`: a session without an id, under
    /// `--no-auth`), the page `q` asks for.
    pub fn of<'a>(
        q: &Query,
        clients: impl IntoIterator<Item = Option<(&'a str, Option<&'a ClientInfo>)>>,
    ) -> Here {
        let mut sessions = 0;
        let mut ids: BTreeMap<&str, Option<&ClientInfo>> = BTreeMap::new();
        for c in clients {
            sessions += 1;
            if let Some((c, info)) = c.filter(|(c, _)| q.after.as_deref().is_none_or(|a| *c > a)) {
                let known = ids.entry(c).or_default();
                *known = known.or(info);
            }
        }
        let mut page = Vec::new();
        let mut infos = BTreeMap::new();
        let mut bytes = 0;
        let mut rest = ids.into_iter();
        for (id, info) in rest.by_ref() {
            page.push(id.to_string());
            bytes += id.len();
            if let Some(i) = info {
                bytes += i.len();
                infos.insert(id.to_string(), i.clone());
            }
            if page.len() >= q.limit || bytes >= PAGE_BYTES {
                break;
            }
        }
        let next = rest.next().and(page.last().cloned());
        Here {
            sessions,
            clients: page,
            info: infos,
            next,
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

/// The cluster-wide answer: every node's session count, and one page of the client ids of all
/// of them merged (a k-way merge over the nodes' pages, so paging through `next` lists every id
/// once, in order).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub sessions: usize,
    pub clients: Vec<String>,
    /// What their backend said about the listed clients that have an info.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub info: BTreeMap<String, ClientInfo>,
    /// Present when more ids follow: ask again with `after` set to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Workers that did not answer in time or are unreachable (their sessions are not counted).
    pub failed: Vec<String>,
    pub nodes: BTreeMap<String, NodePresence>,
}

impl Presence {
    pub fn add_node(&mut self, id: &str, outcome: Result<Here, String>) {
        let part = match outcome {
            Ok(h) => {
                self.sessions += h.sessions;
                NodePresence::Here(h)
            }
            Err(error) => {
                self.failed.push(id.to_string());
                NodePresence::Failed { error }
            }
        };
        self.nodes.insert(id.to_string(), part);
    }

    /// Merges the nodes' pages into the one page `q` asks for (at most its `limit` ids). Every
    /// node listed all its ids up to its own `next`, so the ids up to the smallest such cursor
    /// are complete across nodes.
    pub fn finish(&mut self, q: &Query) {
        self.failed.sort();
        let limit = q.limit;
        let pages = self.nodes.values().filter_map(|n| match n {
            NodePresence::Here(h) => Some(h),
            NodePresence::Failed { .. } => None,
        });
        let cutoff = pages.clone().filter_map(|h| h.next.clone()).min();
        let mut all: BTreeSet<&String> = pages.flat_map(|h| h.clients.iter()).collect();
        if let Some(c) = &cutoff {
            all.retain(|id| *id <= c);
        }
        let more = all.len() > limit;
        self.clients = all.into_iter().take(limit).cloned().collect();
        // Once, at the top (taken out of the nodes' parts, so a finished answer carries each
        // info once; finishing again keeps what the first finish gathered).
        let mut info = std::mem::take(&mut self.info);
        info.retain(|c, _| self.clients.binary_search(c).is_ok());
        for n in self.nodes.values_mut() {
            if let NodePresence::Here(h) = n {
                for (c, i) in std::mem::take(&mut h.info) {
                    if self.clients.binary_search(&c).is_ok() {
                        info.entry(c).or_insert(i);
                    }
                }
            }
        }
        self.info = info;
        self.next = if more {
            self.clients.last().cloned()
        } else {
            cutoff
        };
    }

    /// 200, or 502 when a worker failed to answer (the counts are then a lower bound).
    pub fn into_response(mut self, q: &Query) -> Response<Body> {
        self.finish(q);
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

    /// Sessions with these client ids and no infos.
    fn no_info<'a>(
        ids: impl IntoIterator<Item = Option<&'a str>>,
    ) -> impl Iterator<Item = Option<(&'a str, Option<&'a ClientInfo>)>> {
        ids.into_iter().map(|c| c.map(|c| (c, None)))
    }

    fn first(q: Option<&str>) -> Query {
        Query::parse(q).unwrap()
    }

    #[test]
    fn queries_parse_and_round_trip() {
        let t = first(Some("topic=chat.room%3A1"));
        assert_eq!(
            t,
            Query::first(About::Topic(Topic::parse("chat.room:1").unwrap()))
        );
        assert_eq!(Query::parse(Some(&t.to_query_string())), Ok(t));
        let c = first(Some("clientId=auth0%7Calice%40x&after=b%26c&limit=5"));
        assert_eq!(c.about, About::Client("auth0|alice@x".into()));
        assert_eq!((c.after.as_deref(), c.limit), (Some("b&c"), 5));
        assert_eq!(Query::parse(Some(&c.to_query_string())), Ok(c));
        for bad in [
            None,
            Some(""),
            Some("topic=a&clientId=b"),
            Some("topic=a b"),
            Some("topic=a&topic=b"),
            Some("clientId="),
            Some("x=1"),
            Some("topic=a&limit=0"),
            Some("topic=a&limit=1001"),
            Some("topic=a&limit=x"),
        ] {
            assert!(Query::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sums_nodes_and_names_failures() {
        let q = first(Some("topic=t"));
        let mut p = Presence::default();
        p.add_node(
            "w1",
            Ok(Here::of(
                &q,
                no_info([Some("alice"), Some("bob"), Some("alice")]),
            )),
        );
        p.add_node("w2", Ok(Here::of(&q, no_info([Some("carol"), None]))));
        p.add_node("w3", Err("no answer within 1000 ms".into()));
        assert_eq!(p.sessions, 5);
        assert_eq!(p.failed, ["w3"]);
        assert_eq!(
            p.clone().into_response(&q).status(),
            StatusCode::BAD_GATEWAY
        );
        p.finish(&q);
        assert_eq!(p.clients, ["alice", "bob", "carol"]);
        assert_eq!(p.next, None);
        let text = serde_json::to_string(&p.nodes["w1"]).unwrap();
        assert_eq!(text, r#"{"sessions":3,"clients":["alice","bob"]}"#);
    }

    #[test]
    fn infos_are_listed_once_for_the_clients_on_the_page() {
        let info: ClientInfo = serde_json::from_str(r#"{"name":"Alice"}"#).unwrap();
        let q = first(Some("topic=t&limit=1"));
        let mut p = Presence::default();
        let w1 = [Some(("alice", Some(&info))), Some(("alice", None))];
        p.add_node("w1", Ok(Here::of(&q, w1)));
        let w2 = [Some(("alice", None)), Some(("bob", Some(&info)))];
        p.add_node("w2", Ok(Here::of(&q, w2)));
        p.finish(&q);
        // Bob is past the page: his info waits for the next one.
        assert_eq!(p.clients, ["alice"]);
        assert_eq!(p.info.keys().collect::<Vec<_>>(), ["alice"]);
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(text.matches("Alice").count(), 1, "{text}");
        assert!(
            text.contains(r#""info":{"alice":{"name":"Alice"}}"#),
            "{text}"
        );
    }

    #[test]
    fn a_node_page_is_bounded_by_count_and_bytes_and_says_where_to_go_on() {
        let ids: Vec<String> = (0..1500).map(|i| format!("c{i:04}")).collect();
        let h = Here::of(
            &first(Some("topic=t")),
            no_info(ids.iter().map(|s| Some(s.as_str()))),
        );
        assert_eq!((h.sessions, h.clients.len()), (1500, 1000));
        assert_eq!(h.next.as_deref(), Some("c0999"));
        // Long ids: a page stops at its byte budget, never above it by more than one id.
        let long: Vec<String> = (0..1000)
            .map(|i| format!("{i:04}{}", "x".repeat(61)))
            .collect();
        let h = Here::of(
            &first(Some("topic=t")),
            no_info(long.iter().map(|s| Some(s.as_str()))),
        );
        let bytes: usize = h.clients.iter().map(String::len).sum();
        assert!((PAGE_BYTES..PAGE_BYTES + 65).contains(&bytes), "{bytes}");
        assert!(serde_json::to_vec(&h).unwrap().len() < 64 * 1024);
        assert!(h.next.is_some());
        // Exactly the last id: nothing more.
        let h = Here::of(
            &first(Some("topic=t&limit=2")),
            no_info([Some("a"), Some("b")]),
        );
        assert_eq!((h.clients.len(), h.next), (2, None));
    }

    /// Paging the cluster-wide answer through `next` lists every id exactly once, in order,
    /// whatever each node's page size.
    #[test]
    fn paging_through_merged_pages_lists_every_id_once() {
        let nodes: Vec<Vec<String>> = (0..3)
            .map(|n| {
                (0..700)
                    .filter(|i| i % 3 == n || i % 7 == 0)
                    .map(|i| format!("{i:04}{}", "y".repeat(if n == 1 { 200 } else { 10 })))
                    .collect()
            })
            .collect();
        let mut expected: BTreeSet<String> = BTreeSet::new();
        for n in &nodes {
            expected.extend(n.iter().cloned());
        }
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..100 {
            let q = Query {
                about: About::Topic(Topic::parse("t").unwrap()),
                after: after.clone(),
                limit: 250,
            };
            let mut p = Presence::default();
            for (i, n) in nodes.iter().enumerate() {
                p.add_node(
                    &format!("w{i}"),
                    Ok(Here::of(&q, no_info(n.iter().map(|s| Some(s.as_str()))))),
                );
            }
            p.finish(&q);
            assert!(p.clients.len() <= 250);
            seen.extend(p.clients.iter().cloned());
            match p.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, expected.into_iter().collect::<Vec<_>>());
    }
}
