//! Node-link authentication: every request between nodes proves it knows the cluster secret
//! without sending it, and every answer proves the same back, so a node never talks to (or
//! sends events to) a peer that cannot show the key.
//!
//! The key is derived from the cluster secret (HMAC-SHA256 of the secret over a fixed label).
//! A request carries one header, `x-ews-link: v1;ts=…;nonce=…;body=…;sig=…`: the signature
//! covers the method, the path and query, the time, a fresh random nonce and the SHA-256 of the
//! body. The server accepts it within [`WINDOW`] of its own clock and only once (nonces are
//! remembered for twice the window), and answers with `x-ews-link-proof`: a signature over the
//! client's nonce, the answer's status and, when the answer's body carries facts the client
//! will act on, the body's hash. The client checks it before it believes the answer.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use sha2::{Digest, Sha256};

use crate::args::Secret;

/// Header of a signed node-link request.
pub const REQUEST_HEADER: HeaderName = HeaderName::from_static("x-ews-link");
/// Header of the server's proof on the answer.
pub const PROOF_HEADER: HeaderName = HeaderName::from_static("x-ews-link-proof");
/// How far a request's time may be from the server's clock.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Nonces remembered at once; past it, requests are refused until old ones expire (a flood of
/// valid signatures needs the key, so this only bounds memory).
const MAX_NONCES: usize = 200_000;

type HmacSha256 = Hmac<Sha256>;

/// The key both sides of a node link derive from the cluster secret.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

/// Why a node-link request or answer is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("no node-link signature")]
    Missing,
    #[error("malformed node-link signature")]
    Malformed,
    #[error("node-link signature outside the time window (clocks apart?)")]
    Stale,
    #[error("node-link signature already used")]
    Replayed,
    #[error("wrong node-link signature: the peer does not have the cluster key")]
    BadSignature,
    #[error("the body does not match its signature")]
    BadBody,
    #[error("too many node-link requests in the window")]
    Busy,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl LinkKey {
    pub fn derive(secret: &Secret) -> LinkKey {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"elastic-ws node link v1");
        LinkKey(mac.finalize().into_bytes().into())
    }

    /// A key for one purpose within the link (e.g. one direction of one stream), so a tag made
    /// for it means nothing anywhere else.
    pub(crate) fn derive_sub(&self, parts: &[&[u8]]) -> LinkKey {
        LinkKey(self.mac(parts).finalize().into_bytes().into())
    }

    pub(crate) fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        for p in parts {
            mac.update(p);
            mac.update(b"\n");
        }
        mac
    }

    fn request_mac(
        &self,
        method: &Method,
        target: &str,
        ts: u64,
        nonce: &str,
        body: &str,
    ) -> HmacSha256 {
        self.mac(&[
            b"request",
            method.as_str().as_bytes(),
            target.as_bytes(),
            ts.to_string().as_bytes(),
            nonce.as_bytes(),
            body.as_bytes(),
        ])
    }

    /// Signs a request for `method` on `target` (path and query) with `body`: the header to
    /// send, and the challenge its answer must meet.
    pub fn sign(&self, method: &Method, target: &str, body: &[u8]) -> (HeaderValue, Challenge) {
        let nonce: [u8; 16] = rand::random();
        let nonce = hex(&nonce);
        let body = hex(&Sha256::digest(body));
        let ts = now_secs();
        let sig = hex(&self
            .request_mac(method, target, ts, &nonce, &body)
            .finalize()
            .into_bytes());
        let value = format!("v1;ts={ts};nonce={nonce};body={body};sig={sig}");
        let header = HeaderValue::from_str(&value).expect("hex and digits are valid header text");
        (
            header,
            Challenge {
                key: self.clone(),
                nonce,
            },
        )
    }

    fn proof_mac(&self, nonce: &str, status: u16, body: &str) -> HmacSha256 {
        self.mac(&[
            b"proof",
            nonce.as_bytes(),
            status.to_string().as_bytes(),
            body.as_bytes(),
        ])
    }
}

/// What the answer to a signed request must prove.
#[derive(Debug, Clone)]
pub struct Challenge {
    key: LinkKey,
    nonce: String,
}

impl Challenge {
    pub(crate) fn key(&self) -> &LinkKey {
        &self.key
    }

    pub(crate) fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Whether the answer (its status and headers) proves the server holds the key.
    pub fn verify(&self, status: http::StatusCode, headers: &HeaderMap) -> Result<(), LinkError> {
        self.verify_proof(status, headers).map(|_| ())
    }

    /// Like [`Challenge::verify`], and the proof must also cover `body`: for answers whose body
    /// the client acts on.
    pub fn verify_with_body(
        &self,
        status: http::StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), LinkError> {
        match self.verify_proof(status, headers)? {
            Some(hash) if hash == hex(&Sha256::digest(body)) => Ok(()),
            _ => Err(LinkError::BadBody),
        }
    }

    /// The body hash the proof covers, if any.
    fn verify_proof(
        &self,
        status: http::StatusCode,
        headers: &HeaderMap,
    ) -> Result<Option<String>, LinkError> {
        let got = headers.get(PROOF_HEADER).ok_or(LinkError::Missing)?;
        let got = got.to_str().map_err(|_| LinkError::Malformed)?;
        let (body, sig) = got.split_once(';').ok_or(LinkError::Malformed)?;
        let sig: [u8; 32] = unhex(sig).ok_or(LinkError::Malformed)?;
        self.key
            .proof_mac(&self.nonce, status.as_u16(), body)
            .verify_slice(&sig)
            .map_err(|_| LinkError::BadSignature)?;
        Ok((body != "-").then(|| body.to_string()))
    }
}

/// A request accepted by [`Verifier::check`]: what its body must hash to, and the proof its
/// answer carries.
#[derive(Debug)]
pub struct Accepted {
    body: [u8; 32],
    key: LinkKey,
    nonce: String,
}

impl Accepted {
    pub(crate) fn key(&self) -> &LinkKey {
        &self.key
    }

    pub(crate) fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Whether `body` is the one the client signed.
    pub fn body_matches(&self, body: &[u8]) -> bool {
        Sha256::digest(body)[..] == self.body[..]
    }

    /// Adds the server's proof (of the key, bound to the client's nonce and the status) to an
    /// answer.
    pub fn prove<B>(&self, resp: &mut http::Response<B>) {
        self.insert_proof(resp, "-".to_string());
    }

    /// Like [`Accepted::prove`], the proof also covering `body` (the answer's whole body).
    pub fn prove_with_body<B>(&self, resp: &mut http::Response<B>, body: &[u8]) {
        self.insert_proof(resp, hex(&Sha256::digest(body)));
    }

    fn insert_proof<B>(&self, resp: &mut http::Response<B>, body: String) {
        let sig = hex(&self
            .key
            .proof_mac(&self.nonce, resp.status().as_u16(), &body)
            .finalize()
            .into_bytes());
        let value = HeaderValue::from_str(&format!("{body};{sig}"))
            .expect("hex and a dash are valid header text");
        resp.headers_mut().insert(PROOF_HEADER, value);
    }
}

/// The server side: checks signatures, times and nonces.
pub struct Verifier {
    /// The keys accepted: the node's own first, then one being rotated in or out. An answer is
    /// proven with the key its request was signed with.
    keys: Vec<LinkKey>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    nonces: HashMap<[u8; 16], u64>,
    order: VecDeque<(u64, [u8; 16])>,
}

impl Verifier {
    pub fn new(key: LinkKey) -> Verifier {
        Verifier::with_keys(vec![key])
    }

    /// A verifier accepting any of `keys` (during a rotation).
    pub fn with_keys(keys: Vec<LinkKey>) -> Verifier {
        Verifier {
            keys,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Checks the signed request `method target` by its headers.
    pub fn check(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
    ) -> Result<Accepted, LinkError> {
        self.check_at(method, target, headers, now_secs())
    }

    fn check_at(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        now: u64,
    ) -> Result<Accepted, LinkError> {
        let value = headers.get(REQUEST_HEADER).ok_or(LinkError::Missing)?;
        let value = value.to_str().map_err(|_| LinkError::Malformed)?;
        let mut parts = value.split(';');
        if parts.next() != Some("v1") {
            return Err(LinkError::Malformed);
        }
        let mut field = |name: &str| -> Result<&str, LinkError> {
            parts
                .next()
                .and_then(|p| p.strip_prefix(name))
                .and_then(|p| p.strip_prefix('='))
                .ok_or(LinkError::Malformed)
        };
        let ts: u64 = field("ts")?.parse().map_err(|_| LinkError::Malformed)?;
        let nonce_hex = field("nonce")?;
        let body_hex = field("body")?;
        let sig_hex = field("sig")?;
        let nonce: [u8; 16] = unhex(nonce_hex).ok_or(LinkError::Malformed)?;
        let body: [u8; 32] = unhex(body_hex).ok_or(LinkError::Malformed)?;
        let sig: [u8; 32] = unhex(sig_hex).ok_or(LinkError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| {
                k.request_mac(method, target, ts, nonce_hex, body_hex)
                    .verify_slice(&sig)
                    .is_ok()
            })
            .ok_or(LinkError::BadSignature)?;
        if ts.abs_diff(now) > WINDOW.as_secs() {
            return Err(LinkError::Stale);
        }
        self.remember(nonce, now)?;
        Ok(Accepted {
            body,
            key: key.clone(),
            nonce: nonce_hex.to_string(),
        })
    }

    fn remember(&self, nonce: [u8; 16], now: u64) -> Result<(), LinkError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let keep_until = now + 2 * WINDOW.as_secs();
        while let Some(&(until, n)) = seen.order.front() {
            if until > now {
                break;
            }
            seen.order.pop_front();
            seen.nonces.remove(&n);
        }
        if seen.nonces.contains_key(&nonce) {
            return Err(LinkError::Replayed);
        }
        if seen.nonces.len() >= MAX_NONCES {
            return Err(LinkError::Busy);
        }
        seen.nonces.insert(nonce, keep_until);
        seen.order.push_back((keep_until, nonce));
        Ok(())
    }
}

/// The node-link gate of a server: with a verifier, `req` must be signed (answer a refusal with
/// [`LinkError::into_response`]); without one (no cluster secret configured, loopback
/// development) it is let in. An accepted request's answer must carry [`Accepted::prove`].
pub fn admit<B>(
    verifier: Option<&Verifier>,
    req: &http::Request<B>,
) -> Result<Option<Accepted>, LinkError> {
    let Some(v) = verifier else {
        return Ok(None);
    };
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    v.check(req.method(), target, req.headers()).map(Some)
}

impl LinkError {
    /// The `401` that names why.
    pub fn into_response(self) -> http::Response<crate::Body> {
        tracing::warn!(error = %self, "node-link request refused");
        crate::reply::text(http::StatusCode::UNAUTHORIZED, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> LinkKey {
        LinkKey::derive(&Secret::new(s))
    }

    fn headers(v: HeaderValue) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_HEADER, v);
        h
    }

    #[test]
    fn a_signed_request_is_accepted_once_and_proves_back() {
        let k = key("s3cret");
        let server = Verifier::new(k.clone());
        let (sig, challenge) = k.sign(&Method::POST, "/internal/v1/publish", b"{}");
        let h = headers(sig);
        assert!(!h[REQUEST_HEADER].to_str().unwrap().contains("s3cret"));
        let ok = server
            .check(&Method::POST, "/internal/v1/publish", &h)
            .unwrap();
        assert!(ok.body_matches(b"{}"));
        assert!(!ok.body_matches(b"{\"x\":1}"));
        let mut resp = http::Response::new(());
        ok.prove(&mut resp);
        assert_eq!(challenge.verify(resp.status(), resp.headers()), Ok(()));
        // The proof is bound to the status: a 200 cannot pass for a 404.
        assert_eq!(
            challenge.verify(http::StatusCode::NOT_FOUND, resp.headers()),
            Err(LinkError::BadSignature)
        );
        // And, where the answer says so, to its body.
        let mut resp = http::Response::new(());
        ok.prove_with_body(&mut resp, b"{\"role\":\"leader\"}");
        assert_eq!(
            challenge.verify_with_body(resp.status(), resp.headers(), b"{\"role\":\"leader\"}"),
            Ok(())
        );
        assert_eq!(
            challenge.verify_with_body(resp.status(), resp.headers(), b"{\"role\":\"worker\"}"),
            Err(LinkError::BadBody)
        );
        // The same request again is a replay.
        assert_eq!(
            server
                .check(&Method::POST, "/internal/v1/publish", &h)
                .unwrap_err(),
            LinkError::Replayed
        );
    }

    #[test]
    fn the_wrong_key_the_wrong_target_and_old_times_are_refused() {
        let server = Verifier::new(key("right"));
        let (sig, _) = key("wrong").sign(&Method::GET, "/info", b"");
        assert_eq!(
            server
                .check(&Method::GET, "/info", &headers(sig))
                .unwrap_err(),
            LinkError::BadSignature
        );
        let (sig, _) = key("right").sign(&Method::GET, "/info", b"");
        assert_eq!(
            server
                .check(&Method::GET, "/queue/events", &headers(sig.clone()))
                .unwrap_err(),
            LinkError::BadSignature
        );
        assert_eq!(
            server
                .check_at(&Method::GET, "/info", &headers(sig), now_secs() + 3600)
                .unwrap_err(),
            LinkError::Stale
        );
        assert_eq!(
            server
                .check(&Method::GET, "/info", &HeaderMap::new())
                .unwrap_err(),
            LinkError::Missing
        );
        let mut h = HeaderMap::new();
        h.insert(REQUEST_HEADER, HeaderValue::from_static("v1;ts=1;nonce=zz"));
        assert_eq!(
            server.check(&Method::GET, "/info", &h).unwrap_err(),
            LinkError::Malformed
        );
    }

    #[test]
    fn during_a_rotation_both_keys_are_accepted_and_each_answer_proves_its_own() {
        let server = Verifier::with_keys(vec![key("new"), key("old")]);
        for k in [key("new"), key("old")] {
            let (sig, challenge) = k.sign(&Method::GET, "/info", b"");
            let ok = server.check(&Method::GET, "/info", &headers(sig)).unwrap();
            let mut resp = http::Response::new(());
            ok.prove(&mut resp);
            assert_eq!(challenge.verify(resp.status(), resp.headers()), Ok(()));
        }
        let (sig, _) = key("other").sign(&Method::GET, "/info", b"");
        assert_eq!(
            server
                .check(&Method::GET, "/info", &headers(sig))
                .unwrap_err(),
            LinkError::BadSignature
        );
    }

    #[test]
    fn a_server_without_the_key_cannot_prove_it() {
        let (_, challenge) = key("right").sign(&Method::GET, "/queue/events", b"");
        let impostor = Verifier::new(key("wrong"));
        let (sig, _) = key("wrong").sign(&Method::GET, "/queue/events", b"");
        let accepted = impostor
            .check(&Method::GET, "/queue/events", &headers(sig))
            .unwrap();
        let mut resp = http::Response::new(());
        accepted.prove(&mut resp);
        assert_eq!(
            challenge.verify(resp.status(), resp.headers()),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            challenge.verify(resp.status(), &HeaderMap::new()),
            Err(LinkError::Missing)
        );
    }
}
