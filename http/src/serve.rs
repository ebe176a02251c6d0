//! The accept loop. Modelled on mini-redis's listener: one place owns the connection limit, the
//! shutdown signal and waiting for the connections to finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::reply::{self, Body};

/// What one port tolerates from its peers.
#[derive(Clone, Debug)]
pub struct Limits {
    /// HTTP connections served at once. Past it, new connections wait in the kernel's accept
    /// queue (they are not refused): the slots free up within `header_read_timeout` at most
    /// for connections that send nothing. Upgraded connections (WebSockets) leave the count
    /// when they upgrade; their own protocol bounds them.
    pub max_connections: usize,
    /// Time to send a complete request head, from the connection's start or from the end of
    /// the previous answer: a connection idle for this long is closed.
    pub header_read_timeout: Duration,
    /// Time a request may take once its head is in, its body and our answer included; past it
    /// the answer is `408` and the connection closes.
    pub request_timeout: Duration,
    /// Told of accept failures and timeouts (for metrics).
    pub events: Events,
}

impl Limits {
    /// For ports that serve operators, scrapers and other nodes, never clients: a small cap and
    /// short deadlines.
    pub fn internal() -> Limits {
        Limits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            events: Events::default(),
        }
    }
}

/// Something a port's owner may want to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `accept` failed for want of descriptors or memory; the loop backs off.
    AcceptExhausted,
    /// `accept` failed for another reason (e.g. the peer reset before we took it).
    AcceptFailed,
    /// A connection sent no complete request head in time, and was closed.
    HeaderTimeout,
    /// A request took longer than the request timeout, and was answered `408`.
    RequestTimeout,
}

/// A sink for [`Event`]s; none by default.
#[derive(Clone, Default)]
pub struct Events(Option<Arc<dyn Fn(Event) + Send + Sync>>);

impl Events {
    pub fn new(f: impl Fn(Event) + Send + Sync + 'static) -> Events {
        Events(Some(Arc::new(f)))
    }

    fn emit(&self, e: Event) {
        if let Some(f) = &self.0 {
            f(e)
        }
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Events(..)"
        } else {
            "Events(none)"
        })
    }
}

/// Largest request head accepted, in bytes (hyper's minimum is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Pause after `accept` fails for want of descriptors: the pending connection stays in the
/// kernel's queue until one frees up, instead of the loop spinning.
const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(100);

/// Serves HTTP/1.1 (with upgrades) on `listener` with `handler` until `shutdown` is cancelled,
/// then stops accepting, lets each connection finish the request it is in (idle ones close at
/// once) and returns when all have.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    shutdown: CancellationToken,
    limits: Limits,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let local = listener.local_addr().ok();
    let mut exhausted = false;
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_resource_exhaustion(&e) => {
                limits.events.emit(Event::AcceptExhausted);
                if !std::mem::replace(&mut exhausted, true) {
                    tracing::warn!(?local, error = %e, "accept: out of resources, backing off");
                }
                tokio::time::sleep(EXHAUSTED_BACKOFF).await;
                continue;
            }
            Err(e) => {
                limits.events.emit(Event::AcceptFailed);
                tracing::debug!(?local, error = %e, "accept failed");
                continue;
            }
        };
        if std::mem::take(&mut exhausted) {
            tracing::info!(?local, "accept: descriptors available again");
        }
        let (handler, limits, shutdown) = (handler.clone(), limits.clone(), shutdown.clone());
        connections.spawn(async move {
            serve_connection(tcp, peer, handler, &limits, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_connection<H, F>(
    tcp: TcpStream,
    peer: SocketAddr,
    handler: Arc<H>,
    limits: &Arc<Limits>,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let _ = tcp.set_nodelay(true);
    let l = limits.clone();
    let service = service_fn(move |req| {
        let answer = handler(req, peer);
        let l = l.clone();
        async move {
            Ok::<_, Infallible>(
                match tokio::time::timeout(l.request_timeout, answer).await {
                    Ok(r) => r,
                    Err(_) => {
                        l.events.emit(Event::RequestTimeout);
                        let mut r = reply::text(StatusCode::REQUEST_TIMEOUT, "request timed out");
                        r.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                        r
                    }
                },
            )
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        if e.is_timeout() {
            limits.events.emit(Event::HeaderTimeout);
        }
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Whether an accept error means "out of descriptors or memory" (back off, do not spin).
fn is_resource_exhaustion(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emfile_is_exhaustion() {
        let os = std::io::Error::from_raw_os_error;
        assert!(is_resource_exhaustion(&os(libc::EMFILE)));
        assert!(!is_resource_exhaustion(&os(libc::ECONNABORTED)));
    }
}
