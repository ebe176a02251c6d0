//! A client of the `/queue/{name}` WebSocket protocol: one connection, frames in and out. Higher
//! layers (the worker's queue sink, `ews-load verify`, tests) build windowing and reconnection on
//! it.

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use ews_http::args::Secret;
use ews_http::link::{Audience, LinkKey, REQUEST_HEADER};

use crate::protocol::{ClientFrame, ServerFrame};
use crate::QueueError;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The writing half of a queue connection.
pub struct FrameSender(SplitSink<Ws, Message>);

/// The reading half of a queue connection.
pub struct FrameReceiver {
    inner: SplitStream<Ws>,
    /// When the broker last sent anything (a frame or a pong).
    heard: tokio::time::Instant,
}

/// Longest wait for a broker to accept a connection and answer the upgrade.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a queue connection proves about its client.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// A leader's node link: the upgrade is signed with the cluster key, and the broker must
    /// prove the key in its answer before a single frame is sent.
    Link(&'a LinkKey),
    /// A node's admin port (a standalone worker's embedded queue): the admin token.
    Admin(&'a Secret),
}

impl<'a> Credential<'a> {
    /// The credential for a reader given a cluster key and/or an admin token: the node link's
    /// key when there is one (a leader's queue), else the token (a node's admin port).
    pub fn choose(link: Option<&'a LinkKey>, admin: Option<&'a Secret>) -> Option<Credential<'a>> {
        link.map(Credential::Link).or(admin.map(Credential::Admin))
    }
}

/// Connects to `url` (`ws://host:port/queue/{name}`) with `credential`, if the port wants one.
pub async fn connect(
    url: &str,
    credential: Option<Credential<'_>>,
) -> Result<(FrameSender, FrameReceiver), QueueError> {
    let mut req = url
        .into_client_request()
        .map_err(|e| QueueError::Connect(e.to_string()))?;
    if let Some(Credential::Admin(token)) = credential {
        let value = http::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| QueueError::Connect("the admin token is not valid header text".into()))?;
        req.headers_mut().insert(http::header::AUTHORIZATION, value);
    }
    let link = match credential {
        Some(Credential::Link(key)) => Some(key),
        _ => None,
    };
    let challenge = match link {
        Some(key) => {
            // A signature names the node it is for: ask who answers at this address first
            // (a request only a read of its public state can be).
            let authority = req
                .uri()
                .authority()
                .map(|a| a.as_str().to_string())
                .ok_or_else(|| QueueError::Connect(format!("{url}: no host")))?;
            let node = ews_http::link::discover(&authority, key, CONNECT_TIMEOUT)
                .await
                .map_err(QueueError::Connect)?;
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            let (header, challenge) =
                key.sign(&http::Method::GET, &target, b"", Audience::Node(&node));
            req.headers_mut().insert(REQUEST_HEADER, header);
            Some(challenge)
        }
        None => None,
    };
    let connecting =
        tokio_tungstenite::connect_async_with_config(req, Some(crate::server::ws_config()), true);
    let (ws, resp) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| QueueError::Connect(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| QueueError::Connect(e.to_string()))?;
    if let Some(c) = challenge {
        if let Err(e) = c.verify(resp.status(), resp.headers()) {
            let mut ws = ws;
            let _ = ws.close(None).await;
            return Err(QueueError::Untrusted(e));
        }
    }
    let (tx, rx) = ws.split();
    let rx = FrameReceiver {
        inner: rx,
        heard: tokio::time::Instant::now(),
    };
    Ok((FrameSender(tx), rx))
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

    /// Sends a WebSocket ping; the broker's pong shows in [`FrameReceiver::heard`].
    pub async fn ping(&mut self) -> Result<(), QueueError> {
        self.0
            .send(Message::Ping(Default::default()))
            .await
            .map_err(|e| QueueError::Connect(e.to_string()))
    }

    pub async fn close(mut self) {
        let _ = self.0.close().await;
    }
}

impl FrameReceiver {
    /// When the broker was last heard from (anything: a frame, a pong); a connection silent for
    /// long after a ping is dead, whatever TCP thinks.
    pub fn heard(&self) -> tokio::time::Instant {
        self.heard
    }

    /// The next frame from the broker; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<Result<ServerFrame, QueueError>> {
        loop {
            let message = self.inner.next().await?;
            self.heard = tokio::time::Instant::now();
            match message {
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

/// How [`read`] takes messages off a queue.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Acknowledge (`delete`) the messages read, consuming them (those `each` answers
    /// [`Taken::Keep`] for excepted); otherwise the broker delivers them again once their
    /// visibility timeout passes.
    pub delete: bool,
    /// Stop after this long without a message; `None`: keep reading until the connection ends.
    pub idle: Option<std::time::Duration>,
    /// Stop after this many messages.
    pub max: Option<u64>,
}

/// What [`read`]'s callback did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Taken: deleted when the read deletes.
    Take,
    /// Not this reader's: never deleted (it returns after its visibility timeout).
    Keep,
    /// Stop reading; this message is not deleted.
    Stop,
}

impl From<std::ops::ControlFlow<()>> for Taken {
    fn from(c: std::ops::ControlFlow<()>) -> Taken {
        match c {
            std::ops::ControlFlow::Continue(()) => Taken::Take,
            std::ops::ControlFlow::Break(()) => Taken::Stop,
        }
    }
}

/// Reads the messages of the queue at `url` in delivery order, handing each (id, body,
/// deliveries) to `each`, until `opts` says stop or `each` says [`Taken::Stop`] (the message it
/// stopped on is not deleted, nor those it answered [`Taken::Keep`]). Returns how many were
/// handed over; an error ends the read (what was handed over stays handed over).
pub async fn read<T: Into<Taken>>(
    url: &str,
    credential: Option<Credential<'_>>,
    opts: ReadOptions,
    mut each: impl FnMut(u64, String, u32) -> T,
) -> Result<u64, QueueError> {
    let (mut tx, mut rx) = connect(url, credential).await?;
    // Demand is cumulative: ask for what may be read, once.
    tx.send(&ClientFrame::Receive {
        count: opts.max.unwrap_or(u64::MAX),
    })
    .await?;
    let mut n = 0u64;
    let mut unflushed = false;
    let outcome = loop {
        if opts.max.is_some_and(|max| n >= max) {
            break Ok(n);
        }
        // What is ready now; when nothing is, the deletes fed so far go out before waiting: a
        // full queue frees room only once the broker has them.
        let frame = match futures_util::FutureExt::now_or_never(rx.next()) {
            Some(f) => f,
            None => {
                if unflushed {
                    tx.flush().await?;
                    unflushed = false;
                }
                match opts.idle {
                    Some(idle) => match tokio::time::timeout(idle, rx.next()).await {
                        Ok(f) => f,
                        Err(_) => break Ok(n),
                    },
                    None => rx.next().await,
                }
            }
        };
        match frame {
            Some(Ok(ServerFrame::Message {
                id,
                body,
                deliveries,
            })) => {
                // Deleted only once taken: a reader that stops keeps the message in the queue.
                let taken = each(id, body, deliveries).into();
                if taken == Taken::Stop {
                    break Ok(n);
                }
                if opts.delete && taken == Taken::Take {
                    tx.feed(&ClientFrame::Delete { id }).await?;
                    unflushed = true;
                }
                n += 1;
                // Deletes go out in bursts, at the latest when nothing more is ready.
                if n.is_multiple_of(256) {
                    tx.flush().await?;
                    unflushed = false;
                }
            }
            Some(Ok(ServerFrame::Error { error })) => break Err(QueueError::Protocol(error)),
            Some(Ok(ServerFrame::Sent { .. })) => {}
            Some(Err(e)) => break Err(e),
            None => break Ok(n),
        }
    };
    let _ = tx.flush().await;
    tx.close().await;
    outcome
}
