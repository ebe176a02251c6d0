//! The broker side of the `/queue/{name}` WebSocket protocol, for any hyper server: the leader's
//! internal router, the worker's public router, or the small `ews-queue` binary.

use std::sync::Arc;

use ews_http::reply::{self, Body};
use ews_http::WsUpgrade;
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

/// Answers a `GET /queue/{name}` WebSocket upgrade request: `101` and, on `connections`, a
/// task serving the connection; `404` for another path, a typed rejection for a request that is
/// not a valid handshake. The connection must be served by [`ews_http::serve`] (upgrades on).
pub fn upgrade<B>(
    broker: &Arc<Broker>,
    req: Request<B>,
    connections: &TaskTracker,
) -> Response<Body> {
    let Some(name) = queue_name(req.uri().path()).map(str::to_string) else {
        return reply::text(StatusCode::NOT_FOUND, "no such queue path\n");
    };
    upgrade_queue(broker, &name, req, connections, CancellationToken::new())
}

/// Like [`upgrade`] for the queue `name` (whatever the path), and the connection is closed as
/// soon as `stop` is cancelled: a leader that stops being the active one drops its queue
/// connections, so their clients find the new one.
pub fn upgrade_queue<B>(
    broker: &Arc<Broker>,
    name: &str,
    mut req: Request<B>,
    connections: &TaskTracker,
    stop: CancellationToken,
) -> Response<Body> {
    let upgrade = match WsUpgrade::from_request(&mut req) {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let (response, upgrading) = upgrade.accept();
    match broker.queue(name) {
        Ok(queue) => connections.spawn(async move {
            if let Some(ws) = upgrading.into_stream(ws_config()).await {
                tokio::select! {
                    _ = serve_socket(ws, queue) => {}
                    // Sends not yet answered were not acknowledged: their client resends them.
                    _ = stop.cancelled() => {}
                }
            }
        }),
        Err(e) => {
            tracing::warn!(queue = %name, error = %e, "cannot open queue");
            // Said in the protocol, so a client sees why rather than a bare status.
            let frame = ServerFrame::Error {
                error: format!("queue unavailable: {e}"),
            };
            connections.spawn(async move {
                if let Some(ws) = upgrading.into_stream(ws_config()).await {
                    refuse(ws, frame).await;
                }
            })
        }
    };
    response
}

/// Sleeps until `at`; never without one. (A `select!` builds every branch's future on every turn:
/// this builds a timer only when the connection is full.)
async fn wake_at(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Sends `frame` and closes: the queue the client asked for cannot be served.
async fn refuse<S>(mut ws: WebSocketStream<S>, frame: ServerFrame)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = ws.send(Message::text(frame.to_text())).await;
    let _ = ws.close(None).await;
}

/// What one connection holds delivered and not yet deleted, oldest first, so that past the
/// queue's `max_unacked` it gets nothing more. A delivery stops counting when it is deleted or
/// when its visibility timeout has passed (the queue then hands it to someone else).
struct Unacked {
    max: usize,
    timeout: std::time::Duration,
    held: std::collections::VecDeque<(tokio::time::Instant, u64)>,
    ids: std::collections::HashSet<u64>,
}

impl Unacked {
    fn new(queue: &Queue) -> Unacked {
        Unacked {
            max: queue.config().max_unacked.max(1),
            timeout: queue.config().visibility_timeout,
            held: Default::default(),
            ids: Default::default(),
        }
    }

    fn has_room(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        while let Some(&(at, id)) = self.held.front() {
            if !self.ids.contains(&id) {
                self.held.pop_front();
            } else if at + self.timeout <= now {
                self.held.pop_front();
                self.ids.remove(&id);
            } else {
                break;
            }
        }
        self.ids.len() < self.max
    }

    fn delivered(&mut self, id: u64) {
        if self.ids.insert(id) {
            self.held.push_back((tokio::time::Instant::now(), id));
        }
    }

    fn deleted(&mut self, id: u64) {
        self.ids.remove(&id);
    }

    /// When the oldest delivery stops counting, if the connection is full.
    fn frees_at(&self) -> Option<tokio::time::Instant> {
        (self.ids.len() >= self.max)
            .then(|| self.held.front().map(|&(at, _)| at + self.timeout))
            .flatten()
    }
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
    let mut unacked = Unacked::new(&queue);
    loop {
        let mut delivering = None;
        let room = unacked.has_room();
        let frees_at = unacked.frees_at();
        let reply = tokio::select! {
            biased;
            Some(sent) = sends.next(), if !sends.is_empty() => match sent {
                Ok(id) => ServerFrame::Sent { id },
                Err(e) => ServerFrame::Error { error: format!("send failed: {e}") },
            },
            d = queue.take(), if demand > 0 && room => {
                demand -= 1;
                delivering = Some(d.id);
                unacked.delivered(d.id);
                ServerFrame::Message { id: d.id, body: d.body, deliveries: d.deliveries }
            }
            // A full connection wakes when its oldest delivery times out.
            _ = wake_at(frees_at), if frees_at.is_some() => continue,
            msg = inp.next(), if sends.len() < SEND_WINDOW => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        let e = ServerFrame::Error { error: "binary frames are not part of the queue protocol".into() };
                        if out.send(Message::text(e.to_text())).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Some(Err(WsError::Capacity(_))) => {
                        let close = CloseFrame { code: CloseCode::Size, reason: "frame too large".into() };
                        let _ = out.send(Message::Close(Some(close))).await;
                        break;
                    }
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
                        unacked.deleted(id);
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
                unacked.deleted(id);
                queue.release(id);
            }
            break;
        }
    }
    // Sends still in `sends` complete durably but are not acknowledged: the client resends.
}

/// Serves `/queue/{name}` (and `GET /info` for readiness) on `listener` until `shutdown` is
/// cancelled; then waits for the HTTP requests in flight and closes the queue connections. Used
/// by the `ews-queue` binary and by tests.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
    limits: ews_http::Limits,
) {
    let connections = TaskTracker::new();
    let tracker = connections.clone();
    ews_http::serve(
        listener,
        move |req, _| {
            let resp = if req.uri().path() == "/info" {
                reply::text(StatusCode::OK, "Success")
            } else {
                upgrade(&broker, req, &tracker)
            };
            std::future::ready(resp)
        },
        shutdown,
        limits,
    )
    .await;
    connections.close();
}
