//! Authentication of node-to-node links (HTTP on the internal TCP port).
//!
//! A connecting node sends the cluster secret in [`SECRET_HEADER`]; the serving node compares it
//! in constant time. Without a configured secret the links are open (loopback development); in
//! AWS the security groups restrict the internal port to cluster members in addition.

use http::{HeaderMap, HeaderValue};

use crate::args::ClusterSecret;

/// Header carrying the cluster secret on node-to-node requests.
pub const SECRET_HEADER: &str = "x-ews-cluster-secret";

/// The header to add to an outgoing node-link request, if a secret is configured.
pub fn secret_header(secret: Option<&ClusterSecret>) -> Option<(&'static str, HeaderValue)> {
    let value = HeaderValue::from_str(secret?.expose()).ok()?;
    Some((SECRET_HEADER, value))
}

/// Whether an incoming node-link request may proceed.
pub fn authorized(headers: &HeaderMap, secret: Option<&ClusterSecret>) -> bool {
    let Some(secret) = secret else {
        return true;
    };
    headers
        .get(SECRET_HEADER)
        .is_some_and(|v| constant_time_eq(v.as_bytes(), secret.expose().as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requires_the_secret_when_configured() {
        let secret = ClusterSecret::new("abc");
        let mut headers = HeaderMap::new();
        assert!(authorized(&headers, None));
        assert!(!authorized(&headers, Some(&secret)));
        headers.insert(SECRET_HEADER, HeaderValue::from_static("abd"));
        assert!(!authorized(&headers, Some(&secret)));
        let (name, value) = secret_header(Some(&secret)).unwrap();
        headers.insert(name, value);
        assert!(authorized(&headers, Some(&secret)));
    }
}
