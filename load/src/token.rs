//! Per-client credentials: an HS256 JWT whose `sub` is the client id.
//!
//! The gateway takes the client id from the token's `sub`, so each simulated client carries its
//! own token; minting them here (rather than reading a token file) lets a run of any size
//! authenticate without preparing anything.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde::Serialize;

/// Mints tokens for `client-<n>` style ids with one shared secret.
#[derive(Clone)]
pub struct Minter {
    key: EncodingKey,
    ttl_secs: u64,
    issuer: Option<String>,
    audience: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

impl Minter {
    pub fn new(
        secret: &[u8],
        ttl_secs: u64,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Self {
        Minter {
            key: EncodingKey::from_secret(secret),
            ttl_secs,
            issuer,
            audience,
        }
    }

    /// A signed HS256 token for `sub`, valid from now for the configured lifetime.
    pub fn mint(&self, sub: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = Claims {
            sub,
            iat: now,
            exp: now + self.ttl_secs,
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
        };
        encode(&Header::default(), &claims, &self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};

    #[derive(serde::Deserialize)]
    struct Back {
        sub: String,
        exp: u64,
        iss: String,
        aud: String,
    }

    #[test]
    fn mints_a_verifiable_hs256_token() {
        let m = Minter::new(b"s3cret", 60, Some("ews".into()), Some("gw".into()));
        let t = m.mint("client-7").unwrap();
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&["ews"]);
        v.set_audience(&["gw"]);
        let back = decode::<Back>(&t, &DecodingKey::from_secret(b"s3cret"), &v).unwrap();
        assert_eq!(back.claims.sub, "client-7");
        assert_eq!(back.claims.iss, "ews");
        assert_eq!(back.claims.aud, "gw");
        assert!(back.claims.exp > 0);
        let wrong = decode::<Back>(&t, &DecodingKey::from_secret(b"other"), &v);
        assert!(wrong.is_err());
    }

    #[test]
    fn optional_claims_are_omitted() {
        let m = Minter::new(b"k", 60, None, None);
        let t = m.mint("client-1").unwrap();
        let mut v = Validation::new(Algorithm::HS256);
        v.required_spec_claims.clear();
        v.validate_aud = false;
        let back = decode::<serde_json::Value>(&t, &DecodingKey::from_secret(b"k"), &v).unwrap();
        assert!(back.claims.get("iss").is_none());
        assert!(back.claims.get("aud").is_none());
    }
}
