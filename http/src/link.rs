//! Node-link authentication: every request between nodes proves it knows the cluster secret
//! without sending it, and every answer proves the same back, so a node never talks to (or
//! sends events to) a peer that cannot show the key.
//!
//! The key is derived from the cluster secret (HMAC-SHA256 of the secret over a fixed label).
//! A request carries one header, `x-ews-link: v2;ts=…;nonce=…;to=…;body=…;sig=…`: the
//! signature covers the method, the path and query, the time, a fresh random nonce, the node the
//! request is for ([`NodeRef`]: its id and the generation of its process) and the SHA-256 of the
//! body. The server accepts it within [`WINDOW`] of its own clock, only if it names this node in
//! its current generation, and only once (nonces are remembered for twice the window); it
//! answers with `x-ews-link-proof`: a signature over the client's nonce, the answer's status
//! and, when the answer's body carries facts the client will act on, the body's hash. The client
//! checks it before it believes the answer.
//!
//! Naming the destination is what makes a captured request worthless: nonce memories are per
//! node and per process, so without it a request overheard on its way to one node would be
//! accepted by any other node within the window, and by the same node after a restart. Bound to
//! `(node id, generation)`, it is refused by every other node and by the restarted process (a
//! new generation). The one exception is a request signed for [`Audience::Any`], which a
//! verifier accepts only on the read-only paths it lists ([`Verifier::allow_unbound`]: a node's
//! state, which is how a tool that knows only an address learns whom it talks to); replaying
//! one elsewhere gets the attacker a proven copy of a node's public state and changes nothing.

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
/// How far a request's time may be from the server's clock. Short, because it is how long a
/// captured request stays worth replaying at its own destination if that node's nonce memory
/// were lost without its generation changing (it cannot: both live in the process). Cluster
/// nodes keep their clocks within milliseconds (NTP, Amazon Time Sync), so 10 s is generous.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Node-link path of a node's own account of itself (`NodeState` in `ews-cluster`), the one
/// request a verifier usually accepts signed for [`Audience::Any`].
pub const STATE_PATH: &str = "/internal/v1/state";
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

/// One node in one run of its process: whom a signed request is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeRef {
    pub id: String,
    /// Start time of the node's process (ms since the epoch): a restart is a new generation.
    pub generation: u64,
}

impl NodeRef {
    pub fn new(id: impl Into<String>, generation: u64) -> NodeRef {
        NodeRef {
            id: id.into(),
            generation,
        }
    }

    /// `hex(id).generation`: header-safe whatever the id holds.
    fn to_field(&self) -> String {
        format!("{}.{}", hex(self.id.as_bytes()), self.generation)
    }

    fn from_field(s: &str) -> Option<NodeRef> {
        let (id, generation) = s.split_once('.')?;
        if id.len() % 2 != 0 {
            return None;
        }
        let bytes = (0..id.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(id.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(NodeRef {
            id: String::from_utf8(bytes).ok()?,
            generation: generation.parse().ok()?,
        })
    }
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.id, self.generation)
    }
}

/// Whom a request is signed for.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// This node, in this generation: refused anywhere else.
    Node(&'a NodeRef),
    /// Whichever node answers at the address: accepted only on the paths a verifier lists as
    /// unbound (read-only discovery of who is there).
    Any,
}

impl Audience<'_> {
    fn field(&self) -> String {
        match self {
            Audience::Node(n) => n.to_field(),
            Audience::Any => "*".to_string(),
        }
    }
}

/// Why a node-link request or answer is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("no node-link signature")]
    Missing,
    #[error("malformed node-link signature")]
    Malformed,
    #[error("node-link request signed for another node, or for an earlier run of this one")]
    WrongNode,
    #[error("node-link request must name the node it is for")]
    Unbound,
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

/// Lower-case hex of `bytes` (signatures on the wire, development secrets).
pub fn hex(bytes: &[u8]) -> String {
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
        to: &str,
        body: &str,
    ) -> HmacSha256 {
        self.mac(&[
            b"request v2",
            method.as_str().as_bytes(),
            target.as_bytes(),
            ts.to_string().as_bytes(),
            nonce.as_bytes(),
            to.as_bytes(),
            body.as_bytes(),
        ])
    }

    /// Signs a request for `method` on `target` (path and query) with `body`, for `to`: the
    /// header to send, and the challenge its answer must meet.
    pub fn sign(
        &self,
        method: &Method,
        target: &str,
        body: &[u8],
        to: Audience<'_>,
    ) -> (HeaderValue, Challenge) {
        self.sign_at(method, target, body, to, now_secs())
    }

    fn sign_at(
        &self,
        method: &Method,
        target: &str,
        body: &[u8],
        to: Audience<'_>,
        ts: u64,
    ) -> (HeaderValue, Challenge) {
        let nonce: [u8; 16] = rand::random();
        let nonce = hex(&nonce);
        let body = hex(&Sha256::digest(body));
        let to = to.field();
        let sig = hex(&self
            .request_mac(method, target, ts, &nonce, &to, &body)
            .finalize()
            .into_bytes());
        let value = format!("v2;ts={ts};nonce={nonce};to={to};body={body};sig={sig}");
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

/// The server side: checks signatures, destinations, times and nonces.
pub struct Verifier {
    /// The keys accepted: the node's own first, then one being rotated in or out. An answer is
    /// proven with the key its request was signed with.
    keys: Vec<LinkKey>,
    /// This node in this run: what a bound request must name.
    me: NodeRef,
    /// `(method, path)` accepted when signed for [`Audience::Any`]: read-only answers only.
    unbound: Vec<(Method, &'static str)>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    nonces: HashMap<[u8; 16], u64>,
    order: VecDeque<(u64, [u8; 16])>,
}

impl Verifier {
    /// A verifier for node `me` holding `key`.
    pub fn new(key: LinkKey, me: NodeRef) -> Verifier {
        Verifier::with_keys(vec![key], me)
    }

    /// A verifier accepting any of `keys` (during a rotation).
    pub fn with_keys(keys: Vec<LinkKey>, me: NodeRef) -> Verifier {
        Verifier {
            keys,
            me,
            unbound: Vec::new(),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Also accepts `method path` signed for [`Audience::Any`]. Only for read-only answers that
    /// reveal nothing a peer could not learn from gossip: a replay elsewhere must change nothing.
    pub fn allow_unbound(mut self, method: Method, path: &'static str) -> Verifier {
        self.unbound.push((method, path));
        self
    }

    /// The node this verifier accepts requests for.
    pub fn node(&self) -> &NodeRef {
        &self.me
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
        if parts.next() != Some("v2") {
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
        let to = field("to")?;
        let body_hex = field("body")?;
        let sig_hex = field("sig")?;
        let nonce: [u8; 16] = unhex(nonce_hex).ok_or(LinkError::Malformed)?;
        let body: [u8; 32] = unhex(body_hex).ok_or(LinkError::Malformed)?;
        let sig: [u8; 32] = unhex(sig_hex).ok_or(LinkError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| {
                k.request_mac(method, target, ts, nonce_hex, to, body_hex)
                    .verify_slice(&sig)
                    .is_ok()
            })
            .ok_or(LinkError::BadSignature)?;
        // Signed by a cluster node: now whether it was meant for this one.
        if to == "*" {
            let path = target.split('?').next().unwrap_or(target);
            if !self.unbound.iter().any(|(m, p)| m == method && *p == path) {
                return Err(LinkError::Unbound);
            }
        } else if NodeRef::from_field(to).ok_or(LinkError::Malformed)? != self.me {
            return Err(LinkError::WrongNode);
        }
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
    /// The `401` that names why, and that ends its connection: a peer that cannot sign gets no
    /// second request on it, so it cannot hold a slot by asking again and again.
    pub fn into_response(self) -> http::Response<crate::Body> {
        tracing::warn!(error = %self, "node-link request refused");
        crate::reply::closing(crate::reply::text(
            http::StatusCode::UNAUTHORIZED,
            self.to_string(),
        ))
    }
}

/// Largest state answer [`discover`] reads.
const MAX_STATE_ANSWER: usize = 16 * 1024;

/// Learns which node answers at `authority` (the `host:port` of its node link), for a tool that
/// knows only an address: a request signed for [`Audience::Any`] on [`STATE_PATH`], believed
/// only once the answer proves the key over its body. What it returns is what to sign the real
/// request for.
pub async fn discover(
    authority: &str,
    key: &LinkKey,
    deadline: Duration,
) -> Result<NodeRef, String> {
    use http_body_util::{BodyExt, Empty, Limited};

    #[derive(serde::Deserialize)]
    struct Identity {
        node_id: String,
        generation: u64,
    }

    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let (header, challenge) = key.sign(&Method::GET, STATE_PATH, b"", Audience::Any);
        let req = http::Request::get(STATE_PATH)
            .header(http::header::HOST, authority)
            .header(REQUEST_HEADER, header)
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_STATE_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("answer unreadable: {e}"))?
            .to_bytes();
        challenge
            .verify_with_body(parts.status, &parts.headers, &body)
            .map_err(|e| format!("{authority} cannot prove the cluster key: {e}"))?;
        if parts.status != http::StatusCode::OK {
            return Err(format!("{authority} answered {}", parts.status));
        }
        let id: Identity =
            serde_json::from_slice(&body).map_err(|e| format!("state unreadable: {e}"))?;
        Ok(NodeRef::new(id.node_id, id.generation))
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("{authority}: no answer within {deadline:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> LinkKey {
        LinkKey::derive(&Secret::new(s))
    }

    fn me() -> NodeRef {
        NodeRef::new("worker-1", 1_700_000_000_000)
    }

    fn verifier(k: LinkKey) -> Verifier {
        Verifier::new(k, me())
    }

    fn headers(v: HeaderValue) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_HEADER, v);
        h
    }

    #[test]
    fn a_signed_request_is_accepted_once_and_proves_back() {
        let k = key("s3cret");
        let server = verifier(k.clone());
        let (sig, challenge) = k.sign(
            &Method::POST,
            "/internal/v1/publish",
            b"{}",
            Audience::Node(&me()),
        );
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
    fn a_request_for_one_node_is_refused_by_another_and_after_a_restart() {
        let k = key("s3cret");
        let (sig, _) = k.sign(
            &Method::POST,
            "/internal/v1/publish",
            b"{}",
            Audience::Node(&me()),
        );
        let h = headers(sig);
        let other = Verifier::new(k.clone(), NodeRef::new("worker-2", me().generation));
        assert_eq!(
            other
                .check(&Method::POST, "/internal/v1/publish", &h)
                .unwrap_err(),
            LinkError::WrongNode
        );
        // The same node restarted: a new generation, an empty nonce memory.
        let restarted = Verifier::new(k.clone(), NodeRef::new("worker-1", me().generation + 1));
        assert_eq!(
            restarted
                .check(&Method::POST, "/internal/v1/publish", &h)
                .unwrap_err(),
            LinkError::WrongNode
        );
        // Changing the destination in the header breaks the signature.
        let forged = h[REQUEST_HEADER].to_str().unwrap().replace(
            &me().to_field(),
            &NodeRef::new("worker-2", me().generation).to_field(),
        );
        assert_eq!(
            other
                .check(
                    &Method::POST,
                    "/internal/v1/publish",
                    &headers(HeaderValue::from_str(&forged).unwrap())
                )
                .unwrap_err(),
            LinkError::BadSignature
        );
        assert!(verifier(k)
            .check(&Method::POST, "/internal/v1/publish", &h)
            .is_ok());
    }

    #[test]
    fn an_unbound_request_is_accepted_only_where_allowed() {
        let k = key("s3cret");
        let server = verifier(k.clone()).allow_unbound(Method::GET, STATE_PATH);
        let (sig, _) = k.sign(&Method::GET, STATE_PATH, b"", Audience::Any);
        assert!(server
            .check(&Method::GET, STATE_PATH, &headers(sig))
            .is_ok());
        let (sig, _) = k.sign(&Method::POST, "/internal/v1/publish", b"", Audience::Any);
        assert_eq!(
            server
                .check(&Method::POST, "/internal/v1/publish", &headers(sig))
                .unwrap_err(),
            LinkError::Unbound
        );
        assert_eq!(
            NodeRef::from_field(&NodeRef::new("a;b=c é", 7).to_field()),
            Some(NodeRef::new("a;b=c é", 7))
        );
    }

    #[test]
    fn the_wrong_key_the_wrong_target_and_old_times_are_refused() {
        let server = verifier(key("right"));
        let to = me();
        let (sig, _) = key("wrong").sign(&Method::GET, "/info", b"", Audience::Node(&to));
        assert_eq!(
            server
                .check(&Method::GET, "/info", &headers(sig))
                .unwrap_err(),
            LinkError::BadSignature
        );
        let (sig, _) = key("right").sign(&Method::GET, "/info", b"", Audience::Node(&to));
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
        // Just outside the window either way; just inside is fine.
        let now = now_secs();
        let w = WINDOW.as_secs();
        for (ts, ok) in [(now - w - 1, false), (now + w + 1, false), (now - w, true)] {
            let (sig, _) =
                key("right").sign_at(&Method::GET, "/info", b"", Audience::Node(&to), ts);
            assert_eq!(
                server
                    .check_at(&Method::GET, "/info", &headers(sig), now)
                    .is_ok(),
                ok,
                "ts {ts} at {now}"
            );
        }
        assert_eq!(
            server
                .check(&Method::GET, "/info", &HeaderMap::new())
                .unwrap_err(),
            LinkError::Missing
        );
        let mut h = HeaderMap::new();
        h.insert(REQUEST_HEADER, HeaderValue::from_static("v2;ts=1;nonce=zz"));
        assert_eq!(
            server.check(&Method::GET, "/info", &h).unwrap_err(),
            LinkError::Malformed
        );
    }

    #[test]
    fn during_a_rotation_both_keys_are_accepted_and_each_answer_proves_its_own() {
        let server = Verifier::with_keys(vec![key("new"), key("old")], me());
        let to = me();
        for k in [key("new"), key("old")] {
            let (sig, challenge) = k.sign(&Method::GET, "/info", b"", Audience::Node(&to));
            let ok = server.check(&Method::GET, "/info", &headers(sig)).unwrap();
            let mut resp = http::Response::new(());
            ok.prove(&mut resp);
            assert_eq!(challenge.verify(resp.status(), resp.headers()), Ok(()));
        }
        let (sig, _) = key("other").sign(&Method::GET, "/info", b"", Audience::Node(&to));
        assert_eq!(
            server
                .check(&Method::GET, "/info", &headers(sig))
                .unwrap_err(),
            LinkError::BadSignature
        );
    }

    #[test]
    fn a_server_without_the_key_cannot_prove_it() {
        let to = me();
        let (_, challenge) =
            key("right").sign(&Method::GET, "/queue/events", b"", Audience::Node(&to));
        let impostor = verifier(key("wrong"));
        let (sig, _) = key("wrong").sign(&Method::GET, "/queue/events", b"", Audience::Node(&to));
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
