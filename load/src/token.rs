//! Credentials: an HS256 JWT whose `sub` is the client id.
//!
//! The gateway takes the client id from the token's `sub`, so each simulated client carries its
//! own token; minting them here (rather than reading a token file) lets a run of any size
//! authenticate without preparing anything. `ews-load token` mints one for a person (a browser
//! tab, `websocat`, a curl script) with the same code.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use ews_http::args::Hs256Args;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde::Serialize;

/// The HS256 key and the claims a worker may check: one set of flags for `ews-load token` and
/// for the tokens every load mode mints per client.
#[derive(Args, Debug, Clone)]
pub struct JwtKey {
    /// The worker's HS256 secret (its `--jwt-hs256-secret[-file]`).
    #[command(flatten)]
    pub hs256: Hs256Args,
    /// `iss` claim, when the worker checks `--jwt-issuer`.
    #[arg(long, env = "EWS_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// `aud` claim, when the worker checks `--jwt-audience`.
    #[arg(long, env = "EWS_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

impl JwtKey {
    /// The secret from the flag or from its file; `None` if neither.
    pub fn secret(&self) -> Option<Vec<u8>> {
        self.hs256.secret().map(|s| s.expose().as_bytes().to_vec())
    }

    /// A minter with this key's claims and tokens living `ttl_secs`.
    pub fn minter(&self, secret: &[u8], ttl_secs: u64) -> Minter {
        Minter::new(
            secret,
            ttl_secs,
            self.jwt_issuer.clone(),
            self.jwt_audience.clone(),
        )
    }
}

/// `ews-load token`: prints one JWT the worker accepts.
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// Client id (the token's `sub`): what the gateway stamps on this client's events and what a
    /// publish to this client names.
    #[arg(long)]
    pub sub: String,
    /// Topics the client may subscribe to (the token's `topics` claim), comma-separated;
    /// `*` at the end of a name matches any suffix (`chat.*`).
    #[arg(long, value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Topics the client may publish to (the token's `publish` claim), comma-separated, in
    /// the grammar of `--topics`.
    #[arg(long, value_delimiter = ',')]
    pub publish: Vec<String>,
    /// Lifetime: seconds, or a number with s, m, h or d (`90s`, `15m`, `1h`, `7d`).
    #[arg(long, default_value = "1h")]
    pub ttl: Ttl,
    #[command(flatten)]
    pub key: JwtKey,
}

/// Mints the token `ews-load token` prints.
pub fn token(args: &TokenArgs) -> Result<String, String> {
    let secret = args
        .key
        .secret()
        .ok_or("give --jwt-hs256-secret-file (or --jwt-hs256-secret): the worker's HS256 secret")?;
    if args.sub.is_empty() {
        return Err("--sub must not be empty".into());
    }
    args.key
        .minter(&secret, args.ttl.0.as_secs())
        .mint_with(&args.sub, &args.topics, &args.publish)
        .map_err(|e| format!("cannot sign the token: {e}"))
}

/// A token lifetime parsed at the command line: `3600`, `90s`, `15m`, `1h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(pub Duration);

impl FromStr for Ttl {
    type Err = String;

    fn from_str(s: &str) -> Result<Ttl, String> {
        let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?}: a lifetime is a whole number with s, m, h or d"))?;
        let per = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
        };
        match n.checked_mul(per) {
            Some(0) => Err("a lifetime must be positive".into()),
            Some(secs) => Ok(Ttl(Duration::from_secs(secs))),
            None => Err(format!("{s:?}: too long")),
        }
    }
}

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
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    topics: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    publish: &'a [String],
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
        self.mint_with(sub, &[], &[])
    }

    /// Like [`Minter::mint`], with a `topics` claim (what it may join) and a `publish` claim
    /// (where it may publish) when they are not empty.
    pub fn mint_with(
        &self,
        sub: &str,
        topics: &[String],
        publish: &[String],
    ) -> Result<String, jsonwebtoken::errors::Error> {
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
            topics,
            publish,
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
    fn topics_and_publish_claims_appear_only_when_given() {
        let m = Minter::new(b"k", 60, None, None);
        let claims = |t: &str| {
            let mut v = Validation::new(Algorithm::HS256);
            v.validate_aud = false;
            decode::<serde_json::Value>(t, &DecodingKey::from_secret(b"k"), &v)
                .unwrap()
                .claims
        };
        let plain = claims(&m.mint("a").unwrap());
        assert!(plain.get("topics").is_none() && plain.get("publish").is_none());
        let both = claims(
            &m.mint_with("a", &["chat.*".into()], &["chat.lobby".into()])
                .unwrap(),
        );
        assert_eq!(both["topics"], serde_json::json!(["chat.*"]));
        assert_eq!(both["publish"], serde_json::json!(["chat.lobby"]));
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
    fn lifetimes_parse_with_units_and_reject_the_rest() {
        assert_eq!("90".parse::<Ttl>(), Ok(Ttl(Duration::from_secs(90))));
        assert_eq!("15m".parse::<Ttl>(), Ok(Ttl(Duration::from_secs(900))));
        assert_eq!("1h".parse::<Ttl>(), Ok(Ttl(Duration::from_secs(3600))));
        assert_eq!("7d".parse::<Ttl>(), Ok(Ttl(Duration::from_secs(604_800))));
        for bad in ["", "h", "1w", "-5m", "0", "1.5h", "99999999999999999999d"] {
            assert!(bad.parse::<Ttl>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_token_command_carries_sub_topics_and_lifetime() {
        let args = TokenArgs {
            sub: "alice".into(),
            topics: vec!["news".into(), "chat.*".into()],
            publish: vec![],
            ttl: Ttl(Duration::from_secs(600)),
            key: JwtKey {
                hs256: Hs256Args {
                    jwt_hs256_secret: Some(ews_http::args::Secret::new("k")),
                    jwt_hs256_secret_file: None,
                },
                jwt_issuer: None,
                jwt_audience: None,
            },
        };
        let t = token(&args).unwrap();
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_aud = false;
        let back = decode::<serde_json::Value>(&t, &DecodingKey::from_secret(b"k"), &v).unwrap();
        assert_eq!(back.claims["sub"], "alice");
        assert_eq!(back.claims["topics"], serde_json::json!(["news", "chat.*"]));
        let life = back.claims["exp"].as_u64().unwrap() - back.claims["iat"].as_u64().unwrap();
        assert_eq!(life, 600);
        let mut no_secret = args;
        no_secret.key.hs256.jwt_hs256_secret = None;
        assert!(token(&no_secret)
            .unwrap_err()
            .contains("--jwt-hs256-secret-file"));
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
        assert!(back.claims.get("topics").is_none());
    }
}
