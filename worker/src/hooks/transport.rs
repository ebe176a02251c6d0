//! A hook call on the wire: a POST of the JSON request to the backend's URL over a pooled,
//! kept-alive connection (HTTP/2 when the backend offers it over TLS), signed when the backend
//! has a secret; or an AWS Lambda `Invoke` of the function with the request as its payload.
//!
//! Signature: `X-Ews-Timestamp: <Unix seconds>` and `X-Ews-Signature: v1=<hex>`, the hex of
//! HMAC-SHA256 over `<timestamp>.<body>` with the backend's secret. The backend recomputes it
//! and refuses a stale timestamp, so a call cannot be forged or replayed later.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;

/// Largest answer read from a backend.
const MAX_ANSWER: usize = 1 << 20;

pub const TIMESTAMP: &str = "x-ews-timestamp";
pub const SIGNATURE: &str = "x-ews-signature";

/// Where a backend's calls go, ready to call.
pub enum Transport {
    /// Boxed: the pooled client is large, and a backend is made once.
    Http(Box<Http>),
    #[cfg(feature = "lambda")]
    Lambda(Lambda),
}

impl Transport {
    pub async fn new(
        target: super::config::Target,
        secret: Option<Vec<u8>>,
    ) -> Result<Transport, String> {
        match target {
            super::config::Target::Http(url) => {
                Http::new(url, secret).map(|h| Transport::Http(Box::new(h)))
            }
            #[cfg(feature = "lambda")]
            super::config::Target::Lambda(function) => {
                Ok(Transport::Lambda(Lambda::new(function).await))
            }
            #[cfg(not(feature = "lambda"))]
            super::config::Target::Lambda(_) => Err(
                "this ews-worker was built without Lambda hooks; build it with \
                 `cargo build --release -p ews-worker --features lambda` (or `full`; the release \
                 binaries and the AMIs have them)"
                    .into(),
            ),
        }
    }

    /// Sends the call; the answer's status (200 for an answer) and body.
    pub async fn call(&self, body: &[u8]) -> Result<(u16, Bytes), String> {
        match self {
            Transport::Http(h) => h.post(body).await,
            #[cfg(feature = "lambda")]
            Transport::Lambda(l) => l.invoke(body).await,
        }
    }
}

/// An AWS Lambda function, invoked with the worker's credentials (its instance role). The
/// endpoint is the SDK's: `AWS_ENDPOINT_URL_LAMBDA` points it elsewhere (`cargo lambda watch`).
#[cfg(feature = "lambda")]
pub struct Lambda {
    client: aws_sdk_lambda::Client,
    function: String,
}

#[cfg(feature = "lambda")]
impl Lambda {
    async fn new(function: String) -> Lambda {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        Lambda {
            client: aws_sdk_lambda::Client::new(&shared),
            function,
        }
    }

    /// A RequestResponse invoke: the function's result is the answer; a function error (it
    /// threw, timed out, ran out of memory) is a failed call.
    async fn invoke(&self, body: &[u8]) -> Result<(u16, Bytes), String> {
        let out = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(aws_sdk_lambda::primitives::Blob::new(body))
            .send()
            .await
            .map_err(|e| aws_sdk_lambda::error::DisplayErrorContext(e).to_string())?;
        if let Some(kind) = out.function_error() {
            let detail = out
                .payload()
                .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
                .unwrap_or_default();
            return Err(format!("function error {kind}: {detail}"));
        }
        let status = u16::try_from(out.status_code()).unwrap_or(500);
        let payload = out
            .payload()
            .map(|p| p.as_ref().to_vec())
            .unwrap_or_default();
        Ok((status, Bytes::from(payload)))
    }
}

/// An HTTP(S) backend.
pub struct Http {
    url: http::Uri,
    secret: Option<Vec<u8>>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Http {
    fn new(url: http::Uri, secret: Option<Vec<u8>>) -> Result<Http, String> {
        let connector = HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no trusted root certificates ({e}); set SSL_CERT_FILE"))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build(connector);
        Ok(Http {
            url,
            secret,
            client,
        })
    }

    /// POSTs `body`; the answer's status and (bounded) body.
    async fn post(&self, body: &[u8]) -> Result<(u16, Bytes), String> {
        let mut req = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "ews-worker");
        if let Some(secret) = &self.secret {
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .to_string();
            req = req
                .header(TIMESTAMP, &ts)
                .header(SIGNATURE, sign(secret, &ts, body));
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| {
            // The cause says what failed (refused, reset, certificate).
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        })?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, bytes))
    }
}

/// `v1=` and the hex HMAC-SHA256 of `<timestamp>.<body>`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", ews_http::link::hex(&mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_documented_hmac() {
        // HMAC-SHA256("secret", "1700000000.{}"), as `python3 -c 'import hmac,hashlib;
        // print(hmac.new(b"secret", b"1700000000.{}", hashlib.sha256).hexdigest())'` prints.
        assert_eq!(
            sign(b"secret", "1700000000", b"{}"),
            "v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }
}
