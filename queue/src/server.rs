//! The broker side of the `/queue/{name}` WebSocket protocol, for any hyper server: the leader's
//! internal router, the worker's public router, or the small `ews-queue` binary.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::protocol::{ClientFrame, ServerFrame};
use crate::{Broker, Queue};

/// Sends one connection may have awaiting their durable write. Past it the connection is not
/// read, so a fast sender is slowed by TCP flow control.
pub const SEND_WINDOW: usize = 1024;

/// WebSocket settings for queue connections: small buffers, bounded frames.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(4 * 1024 * 1024)
        .max_message_size(Some(2 * 1024 * 1024))
        .max_frame_size(Some(2 * 1024 * 1024))
}

/// The queue name in a `/queue/{name}` path.
pub fn queue_name(path: &str) -> Option<&str> {
    path.strip_prefix("/queue/")
        .filter(|n| crate::broker::valid_name(n))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// Answers a `GET /queue/{name}` WebSocket upgrade request: `101` and a task serving the
/// connection, or `400`/`404` for a request that is not one. Plug it into a hyper service; the
/// connection must be served `with_upgrades()`.
pub fn upgrade<B: Send + 'static>(
    broker: &Arc<Broker>,
    mut req: Request<B>,
) -> Response<Full<Bytes>> {
    let Some(name) = queue_name(req.uri().path()) else {
        return plain(StatusCode::NOT_FOUND, "no such queue path\n");
    };
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (is_upgrade && req.method() == http::Method::GET, key) else {
        return plain(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
    };
    let queue = match broker.queue(name) {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(queue = name, error = %e, "cannot open queue");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "queue unavailable\n");
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config()),
                )
                .await;
                serve_socket(ws, queue).await;
            }
            Err(e) => tracing::debug!(error = %e, "queue upgrade failed"),
        }
    });
    let mut resp = plain(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
    h.insert(
        header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// Serves one client connection on `queue` until it closes: sends are pipelined (answered in
/// order once durable), deliveries are pushed while the connection's cumulative demand lasts.
pub async fn serve_socket<S>(ws: WebSocketStream<S>, queue: Queue)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut out, mut inp) = ws.split();
    let mut sends = FuturesOrdered::new();
    let mut demand: u64 = 0;
    loop {
        let mut delivering = None;
        let reply = tokio::select! {
            biased;
            Some(sent) = sends.next(), if !sends.is_empty() => match sent {
                Ok(id) => ServerFrame::Sent { id },
                Err(e) => ServerFrame::Error { error: format!("send failed: {e}") },
            },
            d = queue.take(), if demand > 0 => {
                demand -= 1;
                delivering = Some(d.id);
                ServerFrame::Message { id: d.id, body: d.body, deliveries: d.deliveries }
            }
            msg = inp.next(), if sends.len() < SEND_WINDOW => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                match serde_json::from_str::<ClientFrame>(&text) {
                    Ok(ClientFrame::Send { body }) => {
                        let q = queue.clone();
                        sends.push_back(async move { q.send(body).await });
                        continue;
                    }
                    Ok(ClientFrame::Receive { count }) => {
                        demand = demand.saturating_add(count);
                        continue;
                    }
                    Ok(ClientFrame::Delete { id }) => {
                        queue.delete(id).await;
                        continue;
                    }
                    Err(e) => ServerFrame::Error { error: format!("bad frame: {e}") },
                }
            }
        };
        if out.send(Message::text(reply.to_text())).await.is_err() {
            if let Some(id) = delivering {
                // Never reached the receiver: visible again now, not after the timeout.
                queue.release(id);
            }
            break;
        }
    }
    // Sends still in `sends` complete durably but are not acknowledged: the client resends.
}

/// Serves `/queue/{name}` (and `GET /info` for readiness) on `listener` until `shutdown`
/// resolves. Used by the `ews-queue` binary and by tests.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: impl Future<Output = ()>) {
    use hyper::service::service_fn;
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let broker = broker.clone();
                async move {
                    let resp = if req.uri().path() == "/info" {
                        plain(StatusCode::OK, "Success")
                    } else {
                        upgrade(&broker, req)
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "queue connection ended");
            }
        });
    }
}
