//! [`Client::connect`]: a client from a URL and a token function, for the common case where the
//! application has no dialer of its own. `ws://` is plain TCP; `wss://` is TLS (rustls, the
//! system's root certificates, `SSL_CERT_FILE` honoured), the token goes in `Authorization:
//! Bearer`, fetched again before every connection and on the server's `refresh_required`.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::WebSocketStream;
use tokio_util::either::Either;

use crate::{BoxFuture, Client, Dial, DialError, Options, Pushes};

/// A connection's stream: plain TCP for `ws://`, TLS for `wss://`.
pub type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// Where a token comes from: called before every connection and when the server asks for a
/// fresh one. An error is a failed dial (retried with back-off).
pub type TokenFn = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// Why [`Client::connect`] could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("{0:?} is not a ws:// or wss:// URL with a host")]
    Url(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// Dials one URL with a token from a function.
pub struct UrlDial {
    uri: Uri,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    token: Option<TokenFn>,
}

impl UrlDial {
    /// For `url` (`ws://` or `wss://`; `ack=1` is added to its query), with tokens from
    /// `token` (`None`: a worker run with `--no-auth`).
    pub fn new(url: &str, token: Option<TokenFn>) -> Result<UrlDial, ConnectError> {
        let bad = || ConnectError::Url(url.to_string());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(bad()),
        };
        let host = uri.host().ok_or_else(bad)?.to_string();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let with_ack = match uri.query() {
            Some(q) if q.split('&').any(|p| p == "ack=1") => uri.to_string(),
            Some(_) => format!("{uri}&ack=1"),
            None => format!("{uri}?ack=1"),
        };
        let uri: Uri = with_ack.parse().map_err(|_| bad())?;
        let tls = if secure {
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|_| bad())?;
            Some((tls_connector()?, name))
        } else {
            None
        };
        Ok(UrlDial {
            uri,
            host,
            port,
            tls,
            token,
        })
    }
}

impl Dial for UrlDial {
    type Stream = Stream;

    fn dial(&self) -> BoxFuture<'_, Result<WebSocketStream<Stream>, DialError>> {
        Box::pin(async move {
            let failed = |e: &dyn std::fmt::Display| DialError::Failed(e.to_string());
            let mut request = self
                .uri
                .clone()
                .into_client_request()
                .map_err(|e| failed(&e))?;
            if let Some(token) = &self.token {
                let t = token().await.map_err(|e| failed(&format!("token: {e}")))?;
                let value =
                    HeaderValue::from_str(&format!("Bearer {t}")).map_err(|e| failed(&e))?;
                request.headers_mut().insert("authorization", value);
            }
            let host = self.host.trim_matches(['[', ']']);
            let tcp = TcpStream::connect((host, self.port))
                .await
                .map_err(|e| failed(&e))?;
            let stream = match &self.tls {
                Some((tls, name)) => Either::Right(
                    tls.connect(name.clone(), tcp)
                        .await
                        .map_err(|e| failed(&format!("TLS: {e}")))?,
                ),
                None => Either::Left(tcp),
            };
            match tokio_tungstenite::client_async(request, stream).await {
                Ok((ws, _)) => Ok(ws),
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    Err(DialError::Refused(resp.status().as_u16()))
                }
                Err(e) => Err(failed(&e)),
            }
        })
    }

    fn token(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            match &self.token {
                Some(token) => token().await.ok(),
                None => None,
            }
        })
    }
}

impl Client {
    /// A client of the ingest route at `url` (`ws://…/ws` or `wss://…/ws`) whose tokens come
    /// from `token`, called before every connection and when the server asks for a fresh one:
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let (client, mut inbound) = ews_client::Client::connect(
    ///     "wss://ws.example.com/ws",
    ///     || async { Ok::<_, String>("<a JWT from your backend>".to_string()) },
    ///     ews_client::Options::new("device-42"),
    /// )?;
    /// let ack = client.send("hello".into(), 0).await?.await?;
    /// # Ok(()) }
    /// ```
    pub fn connect<F, Fut>(
        url: &str,
        token: F,
        options: Options,
    ) -> Result<(Client, Pushes), ConnectError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let token: TokenFn = Arc::new(move || Box::pin(token()));
        let dial = UrlDial::new(url, Some(token))?;
        Ok(Client::start(dial, None, options))
    }
}

/// rustls with the system's root certificates (`SSL_CERT_FILE` honoured), for `wss://`: what
/// [`Client::connect`] uses, and `ews-load`.
pub fn tls_connector() -> Result<TlsConnector, ConnectError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "none found".into());
        return Err(ConnectError::Tls(format!(
            "no trusted root certificates for wss:// ({why}); set SSL_CERT_FILE"
        )));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_ask_for_acks() {
        let d = UrlDial::new("ws://127.0.0.1:8080/ws", None).expect("valid");
        assert_eq!(d.uri.to_string(), "ws://127.0.0.1:8080/ws?ack=1");
        assert_eq!((d.host.as_str(), d.port), ("127.0.0.1", 8080));
        let d = UrlDial::new("ws://h/ws?x=1", None).expect("valid");
        assert_eq!(d.uri.to_string(), "ws://h/ws?x=1&ack=1");
        assert_eq!(d.port, 80);
        for bad in ["http://h/ws", "h/ws", "ws:///ws", "not a url"] {
            assert!(UrlDial::new(bad, None).is_err(), "{bad}");
        }
    }
}
