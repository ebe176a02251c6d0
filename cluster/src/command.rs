//! What a backend asks about a client's sessions, beside publishing to them: disconnect them,
//! subscribe or unsubscribe them server-side, and which topics have subscribers. Like a
//! publish, each arrives on a worker's admin API or the leaders' front door, reaches every
//! worker that may hold the client over the node link, and is answered with every node's
//! outcome ([`Delivery`]: `delivered` counts the sessions it reached). And what workers tell
//! each other about topic membership: the join/leave events of topics that announce presence.
//!
//! Every body is parsed at the boundary into a type that cannot hold a bad value.

use std::collections::BTreeMap;

use ews_http::link::Accepted;
use ews_http::reply::{self, Body};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use ews_proto::topic::Topic;

use crate::publish::MAX_BODY;

/// Node-link path: close this node's sessions of a client.
pub const DISCONNECT_PATH: &str = "/internal/v1/disconnect";
/// Node-link path: subscribe this node's sessions of a client to a topic.
pub const SUBSCRIBE_PATH: &str = "/internal/v1/subscribe";
/// Node-link path: unsubscribe them.
pub const UNSUBSCRIBE_PATH: &str = "/internal/v1/unsubscribe";
/// Node-link path: this node's topics and their subscriber counts.
pub const TOPICS_PATH: &str = "/internal/v1/topics";
/// Node-link path: join/leave events for this node's presence-announcing subscribers.
pub const PRESENCE_EVENTS_PATH: &str = "/internal/v1/presence-events";

/// Node-link path: the active leader wrote a `node_lost` for this node's generation (it was
/// cut off long enough to be taken for dead). The worker ends its sessions and exits, to come
/// back as a new generation: a consumer of lifecycle records has ended every session of the
/// old one.
pub const LOST_PATH: &str = "/internal/v1/lost";

/// The body of [`LOST_PATH`]: the generation declared lost (the request is signed for that
/// node and generation too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lost {
    pub generation: u64,
}

/// Longest a disconnected client may be refused a reconnect.
pub const MAX_BAN_SECS: u64 = 3600;
/// Most topics one node lists; past it the answer says `truncated`.
pub const MAX_TOPICS_LISTED: usize = 10_000;

/// `POST /api/v1/disconnect {"clientId","code","reason","banSecs"}`: close every session of
/// `clientId` with `code` (1000, 1008, 1011 or 4000–4999; default 4003) and `reason`, after the
/// acknowledgements and pushes already taken; with `banSecs`, each worker refuses that
/// client's upgrades (403) for that long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DisconnectBody", into = "DisconnectBody")]
pub struct Disconnect {
    pub client_id: String,
    pub code: u16,
    pub reason: String,
    pub ban_secs: u64,
}

/// The close code of a disconnect that names none.
pub const DISCONNECT_CODE: u16 = 4003;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DisconnectBody {
    client_id: String,
    #[serde(default = "default_code")]
    code: u16,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    ban_secs: u64,
}

fn default_code() -> u16 {
    DISCONNECT_CODE
}

impl TryFrom<DisconnectBody> for Disconnect {
    type Error = String;

    fn try_from(b: DisconnectBody) -> Result<Disconnect, String> {
        if b.client_id.is_empty() {
            return Err("clientId is not empty".into());
        }
        if !matches!(b.code, 1000 | 1008 | 1011 | 4000..=4999) {
            return Err(format!(
                "code {} is not one a backend sends (1000, 1008, 1011, 4000-4999)",
                b.code
            ));
        }
        if b.reason.len() > 123 {
            return Err(format!(
                "a reason is at most 123 bytes, not {}",
                b.reason.len()
            ));
        }
        if b.ban_secs > MAX_BAN_SECS {
            return Err(format!("banSecs is at most {MAX_BAN_SECS}"));
        }
        Ok(Disconnect {
            client_id: b.client_id,
            code: b.code,
            reason: b.reason,
            ban_secs: b.ban_secs,
        })
    }
}

impl From<Disconnect> for DisconnectBody {
    fn from(d: Disconnect) -> DisconnectBody {
        DisconnectBody {
            client_id: d.client_id,
            code: d.code,
            reason: d.reason,
            ban_secs: d.ban_secs,
        }
    }
}

/// `POST /api/v1/subscribe` (or `unsubscribe`) `{"clientId","topic"}`: every session of the
/// client joins (leaves) the topic as if it had asked, whatever its token grants (the backend
/// decides), and hears `subscribed` (`unsubscribed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TopicChangeBody", into = "TopicChangeBody")]
pub struct TopicChange {
    pub client_id: String,
    pub topic: Topic,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TopicChangeBody {
    client_id: String,
    topic: String,
}

impl TryFrom<TopicChangeBody> for TopicChange {
    type Error = String;

    fn try_from(b: TopicChangeBody) -> Result<TopicChange, String> {
        if b.client_id.is_empty() {
            return Err("clientId is not empty".into());
        }
        Ok(TopicChange {
            client_id: b.client_id,
            topic: Topic::parse(&b.topic).map_err(|e| e.to_string())?,
        })
    }
}

impl From<TopicChange> for TopicChangeBody {
    fn from(c: TopicChange) -> TopicChangeBody {
        TopicChangeBody {
            client_id: c.client_id,
            topic: c.topic.as_str().to_string(),
        }
    }
}

/// `GET /api/v1/topics`: the topics with subscribers and how many sessions each has, summed
/// over the nodes that answered (`failed` names those that did not).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicCounts {
    pub topics: BTreeMap<String, usize>,
    /// A node held more than [`MAX_TOPICS_LISTED`] topics: some are missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

impl TopicCounts {
    /// Adds node `id`'s counts, or records that it gave none.
    pub fn add_node(&mut self, id: &str, outcome: Result<TopicCounts, String>) {
        match outcome {
            Ok(c) => {
                self.truncated |= c.truncated;
                for (t, n) in c.topics {
                    *self.topics.entry(t).or_default() += n;
                }
            }
            Err(_) => self.failed.push(id.to_string()),
        }
    }

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

/// A client joined or left a topic (on a route that announces presence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PresenceEvent {
    pub topic: Topic,
    pub client_id: String,
    pub joined: bool,
    /// What the client's backend said about it at connect, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<ews_proto::ClientInfo>,
}

/// One node's coalesced join/leave events, sent to every worker that may hold the topics.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceEvents {
    pub events: Vec<PresenceEvent>,
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes into `T`: 413 past it, 400 for anything not a
/// `T`, 401 if `signed` (a node-link request) covers another body.
pub async fn read<T: DeserializeOwned>(
    req: Request<Incoming>,
    signed: Option<&Accepted>,
) -> Result<T, Response<Body>> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(reply::text(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
    };
    if signed.is_some_and(|s| !s.body_matches(&body)) {
        return Err(reply::text(
            StatusCode::UNAUTHORIZED,
            "the body does not match its signature",
        ));
    }
    serde_json::from_slice(&body).map_err(|e| reply::text(StatusCode::BAD_REQUEST, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnect_bodies_are_checked() {
        let d: Disconnect = serde_json::from_str(r#"{"clientId":"a"}"#).unwrap();
        assert_eq!((d.code, d.reason.as_str(), d.ban_secs), (4003, "", 0));
        let d: Disconnect =
            serde_json::from_str(r#"{"clientId":"a","code":1008,"reason":"bye","banSecs":60}"#)
                .unwrap();
        assert_eq!((d.code, d.ban_secs), (1008, 60));
        for bad in [
            r#"{"clientId":""}"#,
            r#"{"clientId":"a","code":1006}"#,
            r#"{"clientId":"a","code":3000}"#,
            r#"{"clientId":"a","banSecs":3601}"#,
            r#"{"clientId":"a","extra":1}"#,
            r#"{"code":1000}"#,
        ] {
            assert!(serde_json::from_str::<Disconnect>(bad).is_err(), "{bad}");
        }
        let long = format!(r#"{{"clientId":"a","reason":"{}"}}"#, "x".repeat(124));
        assert!(serde_json::from_str::<Disconnect>(&long).is_err());
    }

    #[test]
    fn topic_changes_name_a_client_and_a_topic() {
        let c: TopicChange = serde_json::from_str(r#"{"clientId":"a","topic":"t.1"}"#).unwrap();
        assert_eq!(c.topic.as_str(), "t.1");
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"clientId":"a","topic":"t.1"}"#
        );
        for bad in [
            r#"{"clientId":"a","topic":"t.*"}"#,
            r#"{"clientId":"","topic":"t"}"#,
            r#"{"clientId":"a"}"#,
        ] {
            assert!(serde_json::from_str::<TopicChange>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_counts_sum_over_nodes() {
        let mut all = TopicCounts::default();
        let one = |t: &str, n| TopicCounts {
            topics: [(t.to_string(), n)].into(),
            ..TopicCounts::default()
        };
        all.add_node("w1", Ok(one("a", 2)));
        all.add_node("w2", Ok(one("a", 3)));
        all.add_node("w3", Err("no answer".into()));
        assert_eq!(all.topics["a"], 5);
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            r#"{"topics":{"a":5},"failed":["w3"]}"#
        );
    }
}
