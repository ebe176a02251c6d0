//! Where a client's token comes from. Browsers cannot set headers on a WebSocket, so besides the
//! paper's `Authentication` header and `Authorization: Bearer` we accept the
//! `Sec-WebSocket-Protocol: bearer, <token>` convention and an `access_token` query parameter.
//! Tokens are secrets: nothing here logs them.

use http::HeaderMap;

/// The subprotocol a client offers to carry its token; the server selects it in the 101.
pub const BEARER_PROTOCOL: &str = "bearer";

/// A token and whether it came in `Sec-WebSocket-Protocol` (the upgrade must then select
/// [`BEARER_PROTOCOL`], or browsers fail the connection).
#[derive(Debug, PartialEq, Eq)]
pub struct Found<'a> {
    pub token: &'a str,
    pub via_subprotocol: bool,
}

/// The first token found, in order: `Authentication`, `Authorization: Bearer`,
/// `Sec-WebSocket-Protocol`, `access_token` query.
pub fn find<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<Found<'a>> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(v) = header("authentication") {
        let t = strip_bearer(v).unwrap_or(v).trim();
        if !t.is_empty() {
            return Some(Found {
                token: t,
                via_subprotocol: false,
            });
        }
    }
    if let Some(t) = header("authorization").and_then(strip_bearer) {
        return Some(Found {
            token: t.trim(),
            via_subprotocol: false,
        });
    }
    if let Some(v) = header("sec-websocket-protocol") {
        let mut parts = v.split(',').map(str::trim);
        while let Some(p) = parts.next() {
            if p.eq_ignore_ascii_case(BEARER_PROTOCOL) {
                if let Some(t) = parts.next().filter(|t| !t.is_empty()) {
                    return Some(Found {
                        token: t,
                        via_subprotocol: true,
                    });
                }
            }
        }
    }
    query_param(query?, "access_token")
        .filter(|t| !t.is_empty())
        .map(|token| Found {
            token,
            via_subprotocol: false,
        })
}

fn strip_bearer(v: &str) -> Option<&str> {
    let v = v.trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest)
}

/// A raw query parameter value (JWTs and our flags need no percent-decoding).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn sources_in_order() {
        let h = headers(&[
            ("authentication", "a.b.c"),
            ("authorization", "Bearer d.e.f"),
        ]);
        assert_eq!(find(&h, None).map(|f| f.token), Some("a.b.c"));
        let h = headers(&[("authentication", "Bearer a.b.c")]);
        assert_eq!(find(&h, None).map(|f| f.token), Some("a.b.c"));
        let h = headers(&[("authorization", "bearer d.e.f")]);
        assert_eq!(find(&h, None).map(|f| f.token), Some("d.e.f"));
        let h = headers(&[("authorization", "Basic xyz")]);
        assert_eq!(find(&h, None), None);
        let h = headers(&[("sec-websocket-protocol", "chat, bearer, g.h.i")]);
        assert_eq!(
            find(&h, None),
            Some(Found {
                token: "g.h.i",
                via_subprotocol: true
            })
        );
        let h = HeaderMap::new();
        assert_eq!(
            find(&h, Some("ack=1&access_token=j.k.l")).map(|f| f.token),
            Some("j.k.l")
        );
        assert_eq!(find(&h, Some("ack=1")), None);
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param("ack=1&x", "ack"), Some("1"));
        assert_eq!(query_param("ack=1&x", "x"), Some(""));
        assert_eq!(query_param("ack=1", "nack"), None);
    }
}
