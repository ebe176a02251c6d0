//! Client tokens for tests: an HS256 JWT as a worker started with `--jwt-hs256-secret` accepts.

use std::time::{SystemTime, UNIX_EPOCH};

/// A token for `sub`, valid ten minutes, granting `topics` (a `topics` claim only when there
/// are any), signed with `secret`.
pub fn client_token(secret: &str, sub: &str, topics: &[&str]) -> String {
    let now = now_secs();
    let mut claims = serde_json::json!({"sub": sub, "iat": now, "exp": now + 600});
    if !topics.is_empty() {
        claims["topics"] = serde_json::json!(topics);
    }
    signed(secret, &claims)
}

/// Seconds since the epoch, as tokens count.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A token of exactly `claims` (a test's own `exp`, `publish`, …), signed with `secret`.
pub fn signed(secret: &str, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing takes any key")
}
