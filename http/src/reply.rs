//! The plain answers every port gives: text and JSON with their content type.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// Every response body on our ports is one buffer: nothing we answer is streamed.
pub type Body = Full<Bytes>;

/// A response with `body` and the given content type.
pub fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A UTF-8 plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", body)
}

/// A JSON response. Our types serialise infallibly; should one not, the answer is a 500 that
/// says so rather than an empty 200.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(v) => with_type(status, "application/json", v),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the answer: {e}"),
        ),
    }
}

/// The OpenMetrics exposition of a Prometheus registry.
pub fn metrics(body: impl Into<Bytes>) -> Response<Body> {
    with_type(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body,
    )
}

/// A `401` asking for a bearer token.
pub fn unauthorized(why: &'static str) -> Response<Body> {
    let mut r = text(StatusCode::UNAUTHORIZED, why);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Marks an answer after which its connection must close (a refused node-link request): HTTP/1
/// gets `Connection: close`, an HTTP/2 connection is shut down gracefully. Honoured by
/// [`crate::serve`].
#[derive(Debug, Clone, Copy)]
pub struct CloseConnection;

/// `resp`, marked [`CloseConnection`].
pub fn closing<B>(mut resp: Response<B>) -> Response<B> {
    resp.extensions_mut().insert(CloseConnection);
    resp
}

/// An empty response.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_set() {
        let r = text(StatusCode::OK, "hi");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let r = json(StatusCode::NOT_FOUND, &serde_json::json!({"a": 1}));
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
