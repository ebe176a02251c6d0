//! A JWKS endpoint (e.g. Cloud Foundry UAA `/token_keys`) cached in memory. Identity providers
//! rotate keys by publishing a new `kid` before signing with it, so an unknown `kid` triggers one
//! refetch; refetches are rate-limited so random `kid`s cannot hammer the provider.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Mutex;

/// Shortest time between two fetches.
const MIN_REFETCH: Duration = Duration::from_secs(1);
/// Keys older than this are refetched on next use, so removed (revoked) keys stop working.
const MAX_AGE: Duration = Duration::from_secs(300);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BODY: usize = 1 << 20;

type Plain = Client<HttpConnector, Empty<Bytes>>;
type Tls = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// `https://` URLs verify the server against the system's roots (`SSL_CERT_FILE` /
/// `SSL_CERT_DIR` override them); `http://` stays plain for providers on a private network.
enum HttpClient {
    Plain(Plain),
    Tls(Tls),
}

impl HttpClient {
    fn for_url(url: &http::Uri) -> anyhow::Result<HttpClient> {
        let builder = Client::builder(TokioExecutor::new());
        match url.scheme_str() {
            Some("http") => Ok(HttpClient::Plain(builder.build_http())),
            Some("https") => {
                let connector = HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "no trusted root certificates for --jwks-url ({e}); set SSL_CERT_FILE"
                        )
                    })?
                    .https_only()
                    .enable_http1()
                    .build();
                Ok(HttpClient::Tls(builder.build(connector)))
            }
            _ => anyhow::bail!("--jwks-url must be an http:// or https:// URL"),
        }
    }

    fn get(&self, url: http::Uri) -> ResponseFuture {
        match self {
            HttpClient::Plain(c) => c.get(url),
            HttpClient::Tls(c) => c.get(url),
        }
    }
}

pub struct Jwks {
    url: http::Uri,
    client: HttpClient,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched: Option<Instant>,
}

impl Jwks {
    pub fn new(url: &str) -> anyhow::Result<Jwks> {
        let url: http::Uri = url.parse()?;
        Ok(Jwks {
            client: HttpClient::for_url(&url)?,
            url,
            state: Mutex::new(State::default()),
        })
    }

    /// The key named `kid`, fetching the set when it is unknown or stale.
    pub async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), String> {
        let mut state = self.state.lock().await;
        let stale = state.fetched.is_none_or(|t| t.elapsed() > MAX_AGE);
        let unknown = !state.keys.contains_key(kid);
        let may_fetch = state.fetched.is_none_or(|t| t.elapsed() >= MIN_REFETCH);
        if (stale || unknown) && may_fetch {
            match self.fetch().await {
                Ok(keys) => {
                    tracing::info!(keys = keys.len(), "JWKS fetched");
                    state.keys = keys;
                }
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "JWKS fetch failed; keeping cached keys"
                ),
            }
            state.fetched = Some(Instant::now());
        }
        state
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| "unknown kid".to_string())
    }

    /// Fetches at start so the first clients do not wait; failure is logged, not fatal.
    pub async fn prefetch(&self) {
        let _ = self.key("").await;
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, (DecodingKey, Algorithm)>> {
        let resp = tokio::time::timeout(FETCH_TIMEOUT, self.client.get(self.url.clone())).await??;
        anyhow::ensure!(
            resp.status().is_success(),
            "JWKS answered {}",
            resp.status()
        );
        let body = tokio::time::timeout(
            FETCH_TIMEOUT,
            Limited::new(resp.into_body(), MAX_BODY).collect(),
        )
        .await?
        .map_err(|e| anyhow::anyhow!("JWKS body: {e}"))?
        .to_bytes();
        let set: JwkSet = serde_json::from_slice(&body)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let alg = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => continue,
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, (key, alg));
                }
                Err(e) => tracing::warn!(kid, error = %e, "skipping unusable JWK"),
            }
        }
        Ok(keys)
    }
}
