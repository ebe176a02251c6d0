//! Verifies client JWTs. The algorithm is never taken on trust from the token: each configured
//! key source allows exactly one algorithm family (HS256 secret, RS256/ES256 PEM, JWKS keys), so
//! `alg: none` and HS/RS confusion (an RS public key used as an HMAC secret) fail.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::JwtArgs;
use ews_proto::topic::Grants;
use std::sync::{Arc, LazyLock};

use crate::jwks::Jwks;

use crate::handler::Claims;

/// What a session may ask for itself: the topics it may join (the token's `topics` claim) and
/// those it may publish to (its `publish` claim), each as exact names and `prefix.*` patterns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rights {
    pub subscribe: Grants,
    pub publish: Grants,
}

impl Rights {
    /// Every topic, both ways (`--topics-open`).
    pub fn any() -> Rights {
        Rights {
            subscribe: Grants::Any,
            publish: Grants::Any,
        }
    }

    /// What a session holds of these rights: every topic with `--topics-open`, else these. The
    /// common cases (none, any) are one shared value, so most sessions allocate none of their own.
    pub fn for_session(self, topics_open: bool) -> Arc<Rights> {
        static NONE: LazyLock<Arc<Rights>> = LazyLock::new(|| Arc::new(Rights::default()));
        static ANY: LazyLock<Arc<Rights>> = LazyLock::new(|| Arc::new(Rights::any()));
        if topics_open {
            ANY.clone()
        } else if self == Rights::default() {
            NONE.clone()
        } else {
            Arc::new(self)
        }
    }
}

/// Who a verified token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    pub rights: Rights,
    /// When the token expires, seconds since the epoch.
    pub exp: u64,
    /// Every claim, for the handler's `on_open` (dropped after it: an idle session keeps none).
    pub claims: Box<Claims>,
}

/// Why a token was refused (logged as a kind, never with the token).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

pub struct Authenticator {
    hs256: Option<DecodingKey>,
    pem: Option<(DecodingKey, Algorithm)>,
    jwks: Option<Arc<Jwks>>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

impl Authenticator {
    /// Builds from flags; `None` when no key source is configured.
    pub fn from_args(args: &JwtArgs) -> anyhow::Result<Option<Authenticator>> {
        let secret = args.hs256.secret().map(|s| s.expose().to_string());
        let pem = match &args.jwt_public_key_file {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                Some(parse_pem(&bytes)?)
            }
            None => None,
        };
        let jwks = args
            .jwks_url
            .as_deref()
            .map(|u| Jwks::new(u).map(Arc::new))
            .transpose()?;
        if secret.is_none() && pem.is_none() && jwks.is_none() {
            return Ok(None);
        }
        Ok(Some(Authenticator {
            hs256: secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            pem,
            jwks,
            issuer: args.jwt_issuer.clone(),
            audience: args.jwt_audience.clone(),
            leeway: args.jwt_leeway_secs,
        }))
    }

    /// A verifier for one HS256 secret (standalone development mode).
    pub fn hs256(secret: &[u8], leeway: u64) -> Authenticator {
        Authenticator {
            hs256: Some(DecodingKey::from_secret(secret)),
            pem: None,
            jwks: None,
            issuer: None,
            audience: None,
            leeway,
        }
    }

    pub async fn prefetch(&self) {
        if let Some(j) = &self.jwks {
            j.prefetch().await;
        }
    }

    /// Verifies `token` and returns who it names.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError(format!("malformed: {e}")))?;
        let (key, alg) = match header.alg {
            Algorithm::HS256 => match &self.hs256 {
                Some(k) => (k.clone(), Algorithm::HS256),
                None => return Err(AuthError("algorithm not allowed".into())),
            },
            Algorithm::RS256 | Algorithm::ES256 => {
                self.asymmetric_key(header.alg, header.kid.as_deref())
                    .await?
            }
            _ => return Err(AuthError("algorithm not allowed".into())),
        };
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        match &self.issuer {
            Some(iss) => v.set_issuer(&[iss]),
            None => v.iss = None,
        }
        match &self.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map_err(|e| AuthError(e.to_string()))?
            .claims;
        let sub = match claims.get("sub") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Err(AuthError("sub is not a string".into())),
        };
        // A blank `sub` names no client: every such token would share one identity.
        if sub.trim().is_empty() {
            return Err(AuthError("blank sub".into()));
        }
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| AuthError("exp is not a whole number of seconds".into()))?;
        let rights = Rights {
            subscribe: grants(&claims, "topics")?,
            publish: grants(&claims, "publish")?,
        };
        Ok(Identity {
            sub,
            rights,
            exp,
            claims: Box::new(claims),
        })
    }

    /// The token's leeway, in seconds: a session's token lasts this much past its `exp`.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    async fn asymmetric_key(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<(DecodingKey, Algorithm), AuthError> {
        if let (Some(kid), Some(jwks)) = (kid, &self.jwks) {
            let (key, key_alg) = jwks.key(kid).await.map_err(AuthError)?;
            if key_alg != alg {
                return Err(AuthError("algorithm does not match the key".into()));
            }
            return Ok((key, alg));
        }
        match &self.pem {
            Some((key, key_alg)) if *key_alg == alg => Ok((key.clone(), alg)),
            Some(_) => Err(AuthError("algorithm does not match the key".into())),
            None => Err(AuthError(
                if self.jwks.is_some() {
                    "no kid"
                } else {
                    "algorithm not allowed"
                }
                .into(),
            )),
        }
    }
}

/// An RSA (→ RS256) or EC P-256 (→ ES256) public key in PEM.
/// A claim listing topics (`topics`, `publish`) as grants; absent or null grants none.
fn grants(claims: &Claims, name: &str) -> Result<Grants, AuthError> {
    let list: Vec<String> = match claims.get(name) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(t) => Vec::<String>::deserialize(t)
            .map_err(|_| AuthError(format!("{name} claim: not a list of strings")))?,
    };
    Grants::from_claim(&list).map_err(|e| AuthError(format!("{name} claim: {e}")))
}

fn parse_pem(bytes: &[u8]) -> anyhow::Result<(DecodingKey, Algorithm)> {
    if let Ok(k) = DecodingKey::from_rsa_pem(bytes) {
        return Ok((k, Algorithm::RS256));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(bytes) {
        return Ok((k, Algorithm::ES256));
    }
    anyhow::bail!("--jwt-public-key-file is neither an RSA nor an EC public key in PEM")
}

/// A random 32-byte HS256 secret (hex) for standalone development mode.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    ews_http::link::hex(&bytes)
}

/// A development token for `sub`, valid for `valid_secs`.
pub fn dev_token(secret: &[u8], sub: &str, valid_secs: u64) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct Dev<'a> {
        sub: &'a str,
        exp: u64,
        iat: u64,
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = Dev {
        sub,
        exp: now + valid_secs,
        iat: now,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dev_tokens_verify_and_wrong_secrets_fail() {
        let t = dev_token(b"s3cret", "alice", 60).expect("token");
        assert_eq!(
            Authenticator::hs256(b"s3cret", 0)
                .verify(&t)
                .await
                .expect("valid")
                .sub,
            "alice"
        );
        assert!(Authenticator::hs256(b"other", 0).verify(&t).await.is_err());
        assert!(Authenticator::hs256(b"s3cret", 0)
            .verify("not.a.token")
            .await
            .is_err());
    }

    #[tokio::test]
    async fn the_topics_claim_becomes_grants() {
        let token = |topics: &[&str]| {
            let claims =
                serde_json::json!({"sub": "alice", "exp": 9_999_999_999u64, "topics": topics});
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(b"s"))
                .expect("token")
        };
        let auth = Authenticator::hs256(b"s", 0);
        let id = auth
            .verify(&token(&["chat.1", "news.*"]))
            .await
            .expect("valid");
        let t = |s| ews_proto::topic::Topic::parse(s).unwrap();
        assert!(
            id.rights.subscribe.allows(&t("news.sport"))
                && !id.rights.subscribe.allows(&t("chat.2"))
        );
        let none = auth.verify(&token(&[])).await.expect("valid");
        assert_eq!(none.rights.subscribe, Grants::None);
        let err = auth
            .verify(&token(&["bad topic"]))
            .await
            .expect_err("refused");
        assert!(err.0.contains("topics claim"), "{err}");
        // Publishing is granted by its own claim, with the same grammar.
        let claims = serde_json::json!({"sub": "a", "exp": 9_999_999_999u64,
            "topics": ["chat.*"], "publish": ["chat.room1"]});
        let t2 = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(b"s"))
            .expect("token");
        let id = auth.verify(&t2).await.expect("valid");
        assert!(id.rights.publish.allows(&t("chat.room1")));
        assert!(!id.rights.publish.allows(&t("chat.room2")));
        assert_eq!(id.exp, 9_999_999_999);
        let bad = serde_json::json!({"sub": "a", "exp": 9_999_999_999u64, "publish": "chat"});
        let t3 = jsonwebtoken::encode(&Header::default(), &bad, &EncodingKey::from_secret(b"s"))
            .expect("token");
        let err = auth.verify(&t3).await.expect_err("refused");
        assert!(err.0.contains("publish claim"), "{err}");
    }

    #[tokio::test]
    async fn asymmetric_tokens_need_a_key() {
        // An RS256 header with no PEM or JWKS configured.
        let t = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.c2ln";
        let err = Authenticator::hs256(b"s", 0)
            .verify(t)
            .await
            .expect_err("refused");
        assert!(err.0.contains("not allowed"), "{err}");
    }
}
