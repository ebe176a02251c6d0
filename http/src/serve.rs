//! The accept loop. Modelled on mini-redis's listener: one place owns the connection limit, the
//! shutdown signal and waiting for the connections to finish.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::reply::{self, Body};

/// What one port tolerates from its peers.
#[derive(Clone, Debug)]
pub struct Limits {
    /// HTTP connections served at once. When a new connection arrives at the cap, the
    /// connection waiting longest without having sent a request is closed to make room, so
    /// silent sockets cannot keep a health check or a backend's publish waiting; with none such,
    /// new connections wait in the kernel's accept queue (they are not refused). A connection
    /// that has completed a request (a keep-alive) keeps its slot until its header timeout. Upgraded connections (WebSockets) leave the count when
    /// they upgrade; their own protocol bounds them.
    pub max_connections: usize,
    /// Connections one source address may hold at once: past it a new one closes that source's
    /// own connection waiting longest without a request, or, with none such, is closed at once. `None` for the public
    /// port, whose connections come from a load balancer's few addresses.
    pub max_per_source: Option<usize>,
    /// Time to send a complete request head, from the connection's start or from the end of
    /// the previous answer: a connection idle for this long is closed.
    pub header_read_timeout: Duration,
    /// Time a request may take once its head is in, its body and our answer included; past it
    /// the answer is `408` and the connection closes.
    pub request_timeout: Duration,
    /// Told of accept failures and timeouts (for metrics).
    pub events: Events,
    /// Also speak HTTP/2 with prior knowledge (node links: one connection per peer pair
    /// carries many session streams). A connection that sends neither protocol's preface
    /// within `header_read_timeout`, or has no stream open for that long, is closed.
    pub http2: bool,
}

impl Limits {
    /// For ports that serve operators, scrapers and other nodes, never clients: a small cap and
    /// short deadlines.
    pub fn internal() -> Limits {
        Limits {
            max_connections: 1024,
            max_per_source: Some(per_source(1024)),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            events: Events::default(),
            http2: false,
        }
    }
}

/// The per-source bound that goes with a connection cap: one host may hold half the port, so a
/// single stranger can never take every slot, while a busy peer (a leader fanning out publishes
/// over many pooled connections) still has room.
pub fn per_source(max_connections: usize) -> usize {
    (max_connections / 2).max(1)
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
    /// The port was full: the connection waiting longest without a request was closed to make
    /// room.
    Evicted,
    /// A source address already held its share of the port, none of it idle: its new connection
    /// was closed.
    SourceLimit,
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

/// HTTP/2 on node links: per-stream receive window. One stalled session stream holds at most
/// this much at its receiver, so a slow client behind a remote handler costs both nodes a
/// bounded amount.
pub const H2_STREAM_WINDOW: u32 = 64 * 1024;
/// HTTP/2 connection receive window: shared by every stream of a peer pair, so this many stalled
/// streams' windows fit before the others wait.
pub const H2_CONNECTION_WINDOW: u32 = 64 * 1024 * 1024;
/// HTTP/2 keep-alive: a ping this often, and a peer that has not answered within as long again
/// is gone (its streams fail): how a vanished node is noticed without a TCP reset.
pub const H2_KEEPALIVE: Duration = Duration::from_secs(5);
/// Most streams one HTTP/2 connection may have open (sessions between one pair of nodes).
const H2_MAX_STREAMS: u32 = 100_000;
/// Bytes hyper may buffer to send per stream beyond the peer's window.
const H2_SEND_BUF: usize = 64 * 1024;
/// The HTTP/2 connection preface begins with these bytes; no HTTP/1 method does.
const H2_PREFACE: &[u8] = b"PRI ";

/// Serves HTTP/1.1 (with upgrades) on `listener` with `handler` until `shutdown` is cancelled,
/// then stops accepting, lets each connection finish the request it is in (idle ones close at
/// once) and returns when all have. With [`Limits::http2`] it serves HTTP/2 with prior
/// knowledge too. Answers may stream (`B`); every answer of our own (a timeout) is whole.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    handler: H,
    shutdown: CancellationToken,
    limits: Limits,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes, Error = Infallible> + From<Body> + Send + Unpin + 'static,
{
    let handler = Arc::new(handler);
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let idle = Arc::new(IdleConnections::default());
    let sources = Arc::new(Sources::default());
    let connections = TaskTracker::new();
    let local = listener.local_addr().ok();
    let mut exhausted = false;
    loop {
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
        let source = match limits.max_per_source {
            None => None,
            Some(max) => match Sources::admit(&sources, peer.ip(), max) {
                Some(guard) => Some(guard),
                // The source holds its share: its own connection waiting longest without a
                // request makes room (so a client behind the same address as a flood still
                // gets in), else this one closes.
                None if idle.evict_oldest(Some(peer.ip())) => {
                    limits.events.emit(Event::Evicted);
                    Some(Sources::admit_over(&sources, peer.ip()))
                }
                None => {
                    limits.events.emit(Event::SourceLimit);
                    tracing::debug!(?local, %peer, "source holds its share of the port: closed");
                    continue;
                }
            },
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Full: the connection waiting longest without a request makes room (it frees
                // its slot as it closes); with none such, wait for a connection to end, as the
                // kernel's queue behind us does.
                if idle.evict_oldest(None) {
                    limits.events.emit(Event::Evicted);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let (handler, limits, shutdown) = (handler.clone(), limits.clone(), shutdown.clone());
        let conn = Conn::new(&idle, peer.ip());
        connections.spawn(async move {
            serve_connection(tcp, peer, handler, &limits, &conn, shutdown).await;
            conn.spoke();
            drop((permit, source));
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The connections of one port that have not sent a request yet, oldest first: the ones closed
/// to make room when the port is full. A connection that has completed a request (a peer's
/// pooled keep-alive, a load balancer's) is never closed for room: it spoke, and its idle time
/// is bounded by the header timeout as before.
#[derive(Default)]
struct IdleConnections {
    inner: Mutex<IdleInner>,
}

#[derive(Default)]
struct IdleInner {
    /// Stamps hand out in order, so the first entry is the one waiting longest.
    next: u64,
    by_stamp: BTreeMap<u64, (IpAddr, CancellationToken)>,
}

impl IdleConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, source: IpAddr, evict: &CancellationToken) -> u64 {
        let mut inner = self.lock();
        inner.next += 1;
        let stamp = inner.next;
        inner.by_stamp.insert(stamp, (source, evict.clone()));
        stamp
    }

    fn leave(&self, stamp: u64) {
        self.lock().by_stamp.remove(&stamp);
    }

    /// Closes the connection waiting longest without a request (of `source`, if given); false
    /// if there is none.
    fn evict_oldest(&self, source: Option<IpAddr>) -> bool {
        let mut inner = self.lock();
        let stamp = inner
            .by_stamp
            .iter()
            .find(|(_, (ip, _))| source.is_none_or(|s| s == *ip))
            .map(|(stamp, _)| *stamp);
        let evicted = stamp.and_then(|s| inner.by_stamp.remove(&s));
        drop(inner);
        evicted.map(|(_, evict)| evict.cancel()).is_some()
    }
}

/// One connection's place among those waiting for a first request, and the signals it obeys.
struct Conn {
    idle: Arc<IdleConnections>,
    /// `Some(stamp)` until its first request head is in.
    stamp: Mutex<Option<u64>>,
    /// Cancelled to close the connection: evicted while waiting, or asked to by an answer.
    close: CancellationToken,
    streams: Arc<Streams>,
    /// Speaks HTTP/2 (set once sniffed).
    h2: std::sync::atomic::AtomicBool,
}

impl Conn {
    /// A new connection from `source`: evictable until its first request head is in.
    fn new(idle: &Arc<IdleConnections>, source: IpAddr) -> Arc<Conn> {
        let close = CancellationToken::new();
        let stamp = idle.enter(source, &close);
        Arc::new(Conn {
            idle: idle.clone(),
            stamp: Mutex::new(Some(stamp)),
            close,
            streams: Arc::default(),
            h2: Default::default(),
        })
    }

    /// A request arrived (or the connection ended): not evictable any more.
    fn spoke(&self) {
        let taken = self.stamp.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(stamp) = taken {
            self.idle.leave(stamp);
        }
    }
}

/// How many connections each source address holds, for [`Limits::max_per_source`].
#[derive(Default)]
struct Sources(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its source until dropped.
struct SourceGuard {
    sources: Arc<Sources>,
    ip: IpAddr,
}

impl Sources {
    /// One more connection for `ip`, unless it holds `max` already.
    fn admit(sources: &Arc<Sources>, ip: IpAddr, max: usize) -> Option<SourceGuard> {
        let mut counts = sources.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceGuard {
            sources: sources.clone(),
            ip,
        })
    }

    /// Counts one more for `ip` past its share: it just closed an idle connection of its own,
    /// whose count goes as soon as that connection's task ends.
    fn admit_over(sources: &Arc<Sources>, ip: IpAddr) -> SourceGuard {
        let mut counts = sources.0.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(ip).or_default() += 1;
        SourceGuard {
            sources: sources.clone(),
            ip,
        }
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut counts = self.sources.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

async fn serve_connection<H, F, B>(
    tcp: TcpStream,
    peer: SocketAddr,
    handler: Arc<H>,
    limits: &Arc<Limits>,
    conn: &Arc<Conn>,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes, Error = Infallible> + From<Body> + Send + Unpin + 'static,
{
    let _ = tcp.set_nodelay(true);
    let l = limits.clone();
    let c = conn.clone();
    let service = service_fn(move |req| {
        let guard = StreamGuard::new(&c);
        let answer = handler(req, peer);
        let l = l.clone();
        let c = c.clone();
        async move {
            let r = match tokio::time::timeout(l.request_timeout, answer).await {
                Ok(r) => r,
                Err(_) => {
                    l.events.emit(Event::RequestTimeout);
                    let mut r =
                        reply::text(StatusCode::REQUEST_TIMEOUT, "request timed out").map(B::from);
                    r.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                    r
                }
            };
            let mut r = r;
            if r.extensions().get::<reply::CloseConnection>().is_some() {
                // Closed once this answer is out (HTTP/1: no keep-alive, and the answer says
                // so; HTTP/2: GOAWAY, connection headers being illegal there).
                if !c.h2.load(Ordering::Acquire) {
                    r.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                c.close.cancel();
            }
            // The stream stays open (for the idle check) until its answer is sent whole.
            Ok::<_, Infallible>(r.map(|inner| Tracked {
                inner,
                _guard: guard,
            }))
        }
    });
    if limits.http2 {
        let sniffed = tokio::select! {
            s = sniff(&tcp, limits.header_read_timeout) => s,
            _ = conn.close.cancelled() => Sniffed::Evicted,
        };
        match sniffed {
            Sniffed::Http2 => {
                conn.h2.store(true, Ordering::Release);
                return serve_h2(tcp, peer, service, limits, conn, shutdown).await;
            }
            Sniffed::Http1 => {}
            Sniffed::Silent => {
                limits.events.emit(Event::HeaderTimeout);
                return;
            }
            Sniffed::Gone | Sniffed::Evicted => return,
        }
    }
    let http = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(http);
    let ended = tokio::select! {
        r = http.as_mut() => r,
        _ = shutdown.cancelled() => {
            http.as_mut().graceful_shutdown();
            http.await
        }
        _ = conn.close.cancelled() => {
            http.as_mut().graceful_shutdown();
            http.await
        }
    };
    if let Err(e) = ended {
        if e.is_timeout() {
            limits.events.emit(Event::HeaderTimeout);
        }
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// What a connection's first bytes say it speaks.
enum Sniffed {
    Http1,
    Http2,
    /// Nothing (or too little to tell) within the header deadline.
    Silent,
    /// Closed before saying anything.
    Gone,
    /// Closed by us to make room while it was saying nothing.
    Evicted,
}

/// Peeks at the first bytes (they stay for the protocol that reads them).
async fn sniff(tcp: &TcpStream, deadline: Duration) -> Sniffed {
    let look = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            match tcp.peek(&mut buf).await {
                Ok(0) | Err(_) => return Sniffed::Gone,
                Ok(n) if buf[..n] != H2_PREFACE[..n] => return Sniffed::Http1,
                Ok(n) if n == H2_PREFACE.len() => return Sniffed::Http2,
                // A prefix of the preface so far: the rest is in flight (rare; peek would
                // return the same bytes at once, so wait a little before looking again).
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    tokio::time::timeout(deadline, look)
        .await
        .unwrap_or(Sniffed::Silent)
}

/// One HTTP/2 connection: many streams, closed once it has had none open for the header
/// deadline (so an idle or silent peer holds no slot for longer) and gracefully at shutdown.
async fn serve_h2<S, B>(
    tcp: TcpStream,
    peer: SocketAddr,
    service: S,
    limits: &Limits,
    conn: &Conn,
    shutdown: CancellationToken,
) where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<Tracked<B>>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Unpin + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_KEEPALIVE))
        .keep_alive_timeout(H2_KEEPALIVE)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_send_buf_size(H2_SEND_BUF)
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    let http = builder.serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(http);
    let streams = &conn.streams;
    let idle = limits.header_read_timeout;
    let mut seen = streams.started.load(Ordering::Acquire);
    let mut closing = false;
    let ended = loop {
        tokio::select! {
            r = http.as_mut() => break r,
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                http.as_mut().graceful_shutdown();
            }
            _ = conn.close.cancelled(), if !closing => {
                closing = true;
                http.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(idle), if !closing => {
                let started = streams.started.load(Ordering::Acquire);
                if started == seen && streams.open.load(Ordering::Acquire) == 0 {
                    if started == 0 {
                        limits.events.emit(Event::HeaderTimeout);
                    }
                    closing = true;
                    http.as_mut().graceful_shutdown();
                }
                seen = started;
            }
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "HTTP/2 connection ended with an error");
    }
}

/// Streams of one connection: how many are open and how many ever started.
#[derive(Default)]
struct Streams {
    open: AtomicUsize,
    started: AtomicU64,
}

/// One open stream, until its answer has been sent (or dropped).
struct StreamGuard(Arc<Conn>);

impl StreamGuard {
    fn new(c: &Arc<Conn>) -> StreamGuard {
        c.spoke();
        c.streams.open.fetch_add(1, Ordering::AcqRel);
        c.streams.started.fetch_add(1, Ordering::AcqRel);
        StreamGuard(c.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body with its stream's guard.
struct Tracked<B> {
    inner: B,
    _guard: StreamGuard,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
