//! A WebSocket upgrade checked before anything is spawned, in the shape of axum's
//! `WebSocketUpgrade`: [`WsUpgrade::from_request`] turns a request into a typed handshake or a
//! typed [`Rejection`]; [`WsUpgrade::accept`] answers `101` and runs the session once hyper hands
//! over the connection.

use base64::Engine;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::reply::{self, Body};

/// The server side of an upgraded WebSocket connection.
pub type WsStream = WebSocketStream<TokioIo<Upgraded>>;

/// Why a request is not a WebSocket handshake we accept (RFC 6455 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("a WebSocket handshake must be a GET")]
    NotGet,
    #[error("no WebSocket upgrade (Connection: upgrade and Upgrade: websocket)")]
    NotUpgrade,
    #[error("unsupported Sec-WebSocket-Version (only 13)")]
    BadVersion,
    #[error("Sec-WebSocket-Key must be the base64 of 16 bytes")]
    BadKey,
    #[error("the connection cannot be upgraded")]
    NoUpgrade,
}

impl Rejection {
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::NotGet => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::BadVersion => StatusCode::UPGRADE_REQUIRED,
            Rejection::NoUpgrade => StatusCode::INTERNAL_SERVER_ERROR,
            Rejection::NotUpgrade | Rejection::BadKey => StatusCode::BAD_REQUEST,
        }
    }

    /// The answer, with `Sec-WebSocket-Version: 13` where the version was the problem.
    pub fn into_response(self) -> Response<Body> {
        let mut r = reply::text(self.status(), self.to_string());
        if self == Rejection::BadVersion {
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        r
    }
}

/// A validated WebSocket handshake, not yet answered.
#[derive(Debug)]
pub struct WsUpgrade {
    accept_key: HeaderValue,
    protocol: Option<HeaderValue>,
    on_upgrade: OnUpgrade,
}

/// Whether a header lists `token` among its comma-separated values (case-insensitive).
fn lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

impl WsUpgrade {
    /// Whether the request asks for a WebSocket at all (routes that also serve plain GETs use
    /// this to choose).
    pub fn is_requested(headers: &HeaderMap) -> bool {
        lists(headers, header::UPGRADE, "websocket")
            && lists(headers, header::CONNECTION, "upgrade")
    }

    /// Checks the handshake and takes the connection's upgrade handle out of `req`.
    pub fn from_request<B>(req: &mut Request<B>) -> Result<WsUpgrade, Rejection> {
        let accept_key = check(req)?;
        let on_upgrade = req
            .extensions_mut()
            .remove::<OnUpgrade>()
            .ok_or(Rejection::NoUpgrade)?;
        Ok(WsUpgrade {
            accept_key,
            protocol: None,
            on_upgrade,
        })
    }

    /// Echoes `protocol` as the chosen `Sec-WebSocket-Protocol`.
    pub fn protocol(mut self, protocol: &'static str) -> WsUpgrade {
        self.protocol = Some(HeaderValue::from_static(protocol));
        self
    }

    /// Answers `101`; the [`Upgrading`] yields the WebSocket once hyper hands the connection
    /// over. The caller spawns the session around it, so a session task holds nothing twice
    /// (an idle session's size is the node's memory per connection).
    pub fn accept(self) -> (Response<Body>, Upgrading) {
        let WsUpgrade {
            accept_key,
            protocol,
            on_upgrade,
        } = self;
        let mut r = reply::empty(StatusCode::SWITCHING_PROTOCOLS);
        let h = r.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key);
        if let Some(p) = protocol {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
        }
        (r, Upgrading(on_upgrade))
    }
}

/// The server side of an accepted handshake, until the connection is handed over.
#[derive(Debug)]
pub struct Upgrading(OnUpgrade);

impl Upgrading {
    /// The WebSocket over the upgraded connection, with `config`; `None` if the upgrade failed
    /// (the client went away before the `101` reached it).
    pub async fn into_stream(self, config: WebSocketConfig) -> Option<WsStream> {
        match self.0.await {
            Ok(upgraded) => Some(
                WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await,
            ),
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                None
            }
        }
    }
}

/// Validates the handshake headers of `req`; the `Sec-WebSocket-Accept` value if they hold.
fn check<B>(req: &Request<B>) -> Result<HeaderValue, Rejection> {
    if req.method() != Method::GET {
        return Err(Rejection::NotGet);
    }
    let headers = req.headers();
    if !WsUpgrade::is_requested(headers) {
        return Err(Rejection::NotUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(Rejection::BadVersion);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(Rejection::BadKey)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key.as_bytes())
        .map_err(|_| Rejection::BadKey)?;
    if decoded.len() != 16 {
        return Err(Rejection::BadKey);
    }
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| Rejection::BadKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(key: &str, version: &str) -> Request<()> {
        Request::get("/ws")
            .header(header::CONNECTION, "keep-alive, Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, version)
            .header(header::SEC_WEBSOCKET_KEY, key)
            .body(())
            .unwrap()
    }

    #[test]
    fn checks_key_and_version() {
        let ok = check(&handshake("dGhlIHNhbXBsZSBub25jZQ==", "13"));
        assert_eq!(ok.unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let short = check(&handshake("c2hvcnQ=", "13"));
        assert_eq!(short.unwrap_err(), Rejection::BadKey);
        let junk = check(&handshake("not base64!!", "13"));
        assert_eq!(junk.unwrap_err(), Rejection::BadKey);
        let v8 = check(&handshake("dGhlIHNhbXBsZSBub25jZQ==", "8"));
        assert_eq!(v8.unwrap_err(), Rejection::BadVersion);
        assert_eq!(
            Rejection::BadVersion.into_response().headers()[header::SEC_WEBSOCKET_VERSION],
            "13"
        );
    }

    #[test]
    fn needs_get_and_upgrade_headers() {
        let mut post = handshake("dGhlIHNhbXBsZSBub25jZQ==", "13");
        *post.method_mut() = Method::POST;
        assert_eq!(check(&post).unwrap_err(), Rejection::NotGet);
        let plain = Request::get("/ws").body(()).unwrap();
        assert_eq!(check(&plain).unwrap_err(), Rejection::NotUpgrade);
        // Valid headers but a request hyper cannot upgrade.
        let mut valid = handshake("dGhlIHNhbXBsZSBub25jZQ==", "13");
        assert_eq!(
            WsUpgrade::from_request(&mut valid).unwrap_err(),
            Rejection::NoUpgrade
        );
    }
}
