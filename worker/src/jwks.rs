//! A JWKS endpoint (e.g. Cloud Foundry UAA `/token_keys`) cached in memory. Identity providers
//! rotate keys by publishing a new `kid` before signing with it, so an unknown `kid` triggers one
//! refetch; refetches are rate-limited so random `kid`s cannot hammer the provider.
//!
//! A fetch never holds up a token whose key is known: lookups read the cache under a short
//! lock, fetches are single-flight behind a separate one (only tokens with an unknown `kid` wait
//! for it), and a stale cache is refreshed in the background while its keys keep working.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
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
    state: RwLock<State>,
    /// Held for the length of one fetch: the single flight.
    fetching: Mutex<()>,
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
            state: RwLock::new(State::default()),
            fetching: Mutex::new(()),
        })
    }

    fn cached(&self, kid: &str) -> (Option<(DecodingKey, Algorithm)>, bool, bool) {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let stale = state.fetched.is_none_or(|t| t.elapsed() > MAX_AGE);
        let may_fetch = state.fetched.is_none_or(|t| t.elapsed() >= MIN_REFETCH);
        (state.keys.get(kid).cloned(), stale, may_fetch)
    }

    /// The key named `kid`. A known key answers at once (a stale set is refreshed in the
    /// background); an unknown one waits for the single fetch in flight, or starts it.
    pub async fn key(self: &Arc<Self>, kid: &str) -> Result<(DecodingKey, Algorithm), String> {
        let (known, stale, may_fetch) = self.cached(kid);
        if let Some(k) = known {
            if stale && may_fetch {
                let me = self.clone();
                tokio::spawn(async move { me.refresh(false).await });
            }
            return Ok(k);
        }
        self.refresh(true).await;
        self.cached(kid).0.ok_or_else(|| "unknown kid".to_string())
    }

    /// Fetches the set unless a fetch is running (`wait`: wait for it instead) or one ended less
    /// than [`MIN_REFETCH`] ago.
    async fn refresh(&self, wait: bool) {
        let _flight = if wait {
            self.fetching.lock().await
        } else {
            match self.fetching.try_lock() {
                Ok(g) => g,
                Err(_) => return,
            }
        };
        let recent = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            state.fetched.is_some_and(|t| t.elapsed() < MIN_REFETCH)
        };
        if recent {
            return;
        }
        let fetched = self.fetch().await;
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        match fetched {
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

    /// Fetches at start so the first clients do not wait; failure is logged, not fatal.
    pub async fn prefetch(&self) {
        self.refresh(true).await;
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
