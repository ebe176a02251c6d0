//! The test page: `/` and `/test-page.js`, built from the TypeScript client library
//! (`clients/js`, bundled by `npm run page` into `page/page.js`, checked by `scripts/test.sh`).
//! Browsers also ask every site for `/favicon.ico`: it is answered `204`, not counted as a
//! failed handshake.

use ews_http::reply::{self, Body};
use http::{Response, StatusCode};

const HTML: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/page.js");

/// The answer to a plain (not WebSocket) `GET path`, if the page has one; `enabled` is whether
/// this worker serves the test page.
pub fn serve(path: &str, enabled: bool) -> Option<Response<Body>> {
    match path {
        "/favicon.ico" => Some(reply::empty(StatusCode::NO_CONTENT)),
        "/" if enabled => Some(reply::with_type(
            StatusCode::OK,
            "text/html; charset=utf-8",
            HTML,
        )),
        "/test-page.js" if enabled => Some(reply::with_type(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            SCRIPT,
        )),
        _ => None,
    }
}
