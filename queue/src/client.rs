//! A client of the `/queue/{name}` WebSocket protocol: one connection, frames in and out. Higher
//! layers (the worker's queue sink, `ews-load verify`, tests) build windowing and reconnection on
//! it.

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::protocol::{ClientFrame, ServerFrame};
use crate::QueueError;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The writing half of a queue connection.
pub struct FrameSender(SplitSink<Ws, Message>);

/// The reading half of a queue connection.
pub struct FrameReceiver(SplitStream<Ws>);

/// Connects to `url` (`ws://host:port/queue/{name}`), adding `headers` to the upgrade request
/// (for example the cluster secret on a node link).
pub async fn connect(
    url: &str,
    headers: &[(String, String)],
) -> Result<(FrameSender, FrameReceiver), QueueError> {
    let mut req = url
        .into_client_request()
        .map_err(|e| QueueError::Connect(e.to_string()))?;
    for (k, v) in headers {
        let name = http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| QueueError::Connect(e.to_string()))?;
        let value =
            http::HeaderValue::from_str(v).map_err(|e| QueueError::Connect(e.to_string()))?;
        req.headers_mut().insert(name, value);
    }
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(req, Some(crate::server::ws_config()), true)
            .await
            .map_err(|e| QueueError::Connect(e.to_string()))?;
    let (tx, rx) = ws.split();
    Ok((FrameSender(tx), FrameReceiver(rx)))
}

impl FrameSender {
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), QueueError> {
        self.0
            .send(Message::text(frame.to_text()))
            .await
            .map_err(|e| QueueError::Connect(e.to_string()))
    }

    /// Queues a frame without flushing; call [`FrameSender::flush`] after a burst.
    pub async fn feed(&mut self, frame: &ClientFrame) -> Result<(), QueueError> {
        self.0
            .feed(Message::text(frame.to_text()))
            .await
            .map_err(|e| QueueError::Connect(e.to_string()))
    }

    pub async fn flush(&mut self) -> Result<(), QueueError> {
        self.0
            .flush()
            .await
            .map_err(|e| QueueError::Connect(e.to_string()))
    }

    pub async fn close(mut self) {
        let _ = self.0.close().await;
    }
}

impl FrameReceiver {
    /// The next frame from the broker; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<Result<ServerFrame, QueueError>> {
        loop {
            match self.0.next().await? {
                Ok(Message::Text(t)) => {
                    return Some(
                        serde_json::from_str(&t).map_err(|e| QueueError::Protocol(e.to_string())),
                    )
                }
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(e) => return Some(Err(QueueError::Connect(e.to_string()))),
            }
        }
    }
}
