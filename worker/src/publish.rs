//! One publish, whichever port it arrives on: the admin API (`POST /api/v1/publish`, which fans
//! out to the cluster) and the node link (`POST /internal/v1/publish`, this node's sessions
//! only) read the same [`Publish`] body, count in the same [`Delivery`] and map it to a status
//! the same way.

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use ews_http::link::Accepted;
use ews_http::reply::{self, Body};

/// Largest publish body accepted, in bytes.
pub const MAX_BODY: usize = 256 * 1024;

/// `{"clientId","msg"}`: push `msg` to every session of `clientId`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Publish {
    pub client_id: String,
    pub msg: String,
}

/// What a publish reached: sessions that took the message, sessions whose queue was full, and
/// (in a cluster) the node ids of peers that did not answer.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Delivery {
    pub delivered: usize,
    pub dropped: usize,
    #[serde(default)]
    pub failed: Vec<String>,
}

impl Delivery {
    /// 200 when any session took the message; otherwise 502 if a peer failed (the client may be
    /// there), 503 if every queue was full, 404 if no node has the client.
    pub fn status(&self) -> StatusCode {
        if self.delivered > 0 {
            StatusCode::OK
        } else if !self.failed.is_empty() {
            StatusCode::BAD_GATEWAY
        } else if self.dropped > 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NOT_FOUND
        }
    }

    /// Adds another node's counts.
    pub fn add(&mut self, other: Delivery) {
        self.delivered += other.delivered;
        self.dropped += other.dropped;
        self.failed.extend(other.failed);
    }

    pub fn into_response(mut self) -> Response<Body> {
        self.failed.sort();
        reply::json(self.status(), &self)
    }
}

/// Reads and parses a publish body: 413 past [`MAX_BODY`], 400 for anything not a [`Publish`],
/// 401 if `signed` (a node-link request) covers another body.
pub async fn read(
    req: Request<Incoming>,
    signed: Option<&Accepted>,
) -> Result<Publish, Response<Body>> {
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

    fn d(delivered: usize, dropped: usize, failed: &[&str]) -> Delivery {
        Delivery {
            delivered,
            dropped,
            failed: failed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn status_prefers_delivery_then_failure() {
        assert_eq!(d(1, 3, &["w2"]).status(), StatusCode::OK);
        assert_eq!(d(0, 3, &["w2"]).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(d(0, 3, &[]).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(d(0, 0, &[]).status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn counts_parse_from_every_publish_answer() {
        let c: Delivery = serde_json::from_str(r#"{"delivered":2,"dropped":1}"#).unwrap();
        assert_eq!(c, d(2, 1, &[]));
        let mut all = d(1, 0, &[]);
        all.add(serde_json::from_str(r#"{"delivered":0,"dropped":0,"failed":["w3"]}"#).unwrap());
        assert_eq!(all, d(1, 0, &["w3"]));
        assert!(serde_json::from_str::<Delivery>("not json").is_err());
    }

    #[test]
    fn publish_refuses_unknown_fields() {
        assert!(serde_json::from_str::<Publish>(r#"{"clientId":"a","msg":"m"}"#).is_ok());
        assert!(serde_json::from_str::<Publish>(r#"{"clientId":"a","message":"m"}"#).is_err());
    }
}
