//! Helpers several end-to-end test files share (each test file is its own crate: `mod support;`,
//! and uses part of these).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use ews_http::args::Secret;
use ews_http::link::{Audience, LinkKey, NodeRef};

/// Who answers on the node link at `addr`, as the product's own discovery learns it. Callable
/// from a plain test and from inside a runtime alike (it asks on a thread of its own).
pub fn node_at(addr: SocketAddr, secret: &str) -> NodeRef {
    let key = LinkKey::derive(&Secret::new(secret));
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(ews_http::link::discover(
                &addr.to_string(),
                &key,
                Duration::from_secs(5),
            ))
    })
    .join()
    .expect("the discovery thread")
    .unwrap_or_else(|e| panic!("discover {addr}: {e}"))
}

/// An `x-ews-link` header for `method path` with `body`, signed with `secret` for `to`: what a
/// cluster node sends, as an eavesdropper on the node link would capture it.
pub fn link_header(secret: &str, method: &str, path: &str, body: &[u8], to: &NodeRef) -> String {
    let key = LinkKey::derive(&Secret::new(secret));
    let method: http::Method = method.parse().expect("a method");
    let (header, _) = key.sign(&method, path, body, Audience::Node(to));
    header.to_str().expect("ascii").to_string()
}

/// `POST /api/v1/publish` of `body` with the admin `token`: the status and the JSON answer.
pub fn publish(
    door: SocketAddr,
    token: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    admin(door, token, "POST", "/api/v1/publish", body)
}

/// One admin-API request with the admin `token` and a JSON `body` (none when null): the status
/// and the JSON answer (null when it is not JSON).
pub fn admin(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {token}");
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (code, text) = ews_testkit::net::http_request(
        addr,
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .expect("the admin port answers");
    (
        code,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// The worker ids `node` sees as serving (verified, reachable, not leaving), sorted; none while
/// its admin port (with `admin_token`) does not answer.
pub fn serving_workers(node: &ews_testkit::nodes::Node, admin_token: &str) -> Vec<String> {
    let auth = format!("Bearer {admin_token}");
    let Ok((200, body)) = ews_testkit::net::http_request(
        node.admin,
        "GET",
        "/members",
        &[("Authorization", &auth)],
        b"",
    ) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    let mut ids: Vec<String> = v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["role"] == "worker"
                && m["verified"] == true
                && m["reachable"] == true
                && m["status"] != "leaving"
        })
        .filter_map(|m| m["node_id"].as_str().map(String::from))
        .collect();
    ids.sort();
    ids
}

/// A client's WebSocket in these tests.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An HS256 token for `sub` signed with `secret`, valid `secs`, with `claims` added.
pub fn token(secret: &str, sub: &str, secs: u64, claims: serde_json::Value) -> String {
    let mut all = serde_json::json!({"sub": sub, "exp": ews_testkit::jwt::now_secs() + secs});
    if let (Some(all), Some(extra)) = (all.as_object_mut(), claims.as_object()) {
        all.extend(extra.clone());
    }
    ews_testkit::jwt::signed(secret, &all)
}

/// The next text frame as JSON; `{"close": code, "reason": …}` for a close frame. Panics
/// (naming `who`) when none comes within 15 s or the session ends.
pub async fn next_json(ws: &mut Ws, who: &str) -> serde_json::Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .unwrap_or_else(|_| panic!("{who}: no frame within 15 s"))
            .unwrap_or_else(|| panic!("{who}: session ended"))
            .unwrap_or_else(|e| panic!("{who}: {e}"));
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("a JSON frame"),
            Message::Close(Some(f)) => {
                return serde_json::json!({"close": u16::from(f.code), "reason": f.reason.as_str()})
            }
            _ => continue,
        }
    }
}

/// Sends `frame` as a text message.
pub async fn send_json(ws: &mut Ws, frame: serde_json::Value) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        frame.to_string(),
    ))
    .await
    .expect("sent");
}

/// A counter or gauge without labels from `node`'s `/metrics` (0 when absent).
pub fn metric(node: &ews_testkit::nodes::Node, name: &str) -> f64 {
    let (_, body) = ews_testkit::net::http_get(node.admin, "/metrics").expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}
