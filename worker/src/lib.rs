//! `ews-worker`: the WebSocket gateway node.
//!
//! [`Worker::bind`] opens the public and admin ports; [`Worker::run`] serves until SIGTERM (or
//! [`WorkerHandle::begin_drain`]) and then drains. Other parts of the node hook in through
//! [`WorkerHandle`] (connection count, capacity, drain state, push to a client) and
//! [`Worker::add_admin_route`].

pub mod admin;
pub mod auth;
pub mod config;
mod frames;
pub mod handler;
mod jwks;
pub mod limits;
pub mod link;
pub mod membership;
pub mod metrics;
mod page;
pub mod registry;
mod server;
mod session;
pub mod sinks;
mod token;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ews_sink::Sink;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admin::AdminRoute;
pub use config::{JwtArgs, WorkerArgs};
pub use registry::PushResult;

use crate::auth::Authenticator;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::session::SessionEnv;

/// How long the sink gets to flush after the sessions are closed.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A cheap, cloneable view of a running worker for the rest of the node.
#[derive(Clone)]
pub struct WorkerHandle {
    active: Arc<AtomicUsize>,
    capacity: usize,
    drain: CancellationToken,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
}

impl WorkerHandle {
    /// Open WebSocket sessions.
    pub fn connections(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Most sessions this node accepts.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// Resolves once the drain has begun (SIGTERM or [`Self::begin_drain`]).
    pub async fn draining(&self) {
        self.drain.cancelled().await
    }

    /// Starts the drain as SIGTERM would.
    pub fn begin_drain(&self) {
        self.drain.cancel()
    }

    /// Pushes a text message to every session of `client_id` on this node; each session whose
    /// queue was full counts in `ews_dropped_total{reason="outbound_full"}`.
    pub fn push(&self, client_id: &str, msg: &str) -> Option<PushResult> {
        let r = self.registry.push(client_id, msg)?;
        for _ in 0..r.dropped {
            self.metrics.dropped("outbound_full");
        }
        Some(r)
    }
}

pub struct Worker {
    public_listener: TcpListener,
    admin_listener: TcpListener,
    public: Arc<server::Public>,
    admin_routes: Vec<AdminRoute>,
    peers: Option<Arc<link::Peers>>,
    sink: Arc<dyn Sink>,
    drain_window: Duration,
    ping_interval: Duration,
    ticks: watch::Sender<()>,
    handle: WorkerHandle,
}

impl Worker {
    /// Binds both ports and prepares auth, routes and limits. `node_id` stamps every event.
    pub async fn bind(
        args: WorkerArgs,
        node_id: String,
        sink: Arc<dyn Sink>,
    ) -> anyhow::Result<Worker> {
        let metrics = Arc::new(Metrics::new());
        let nofile = limits::raise_nofile().context("reading RLIMIT_NOFILE")?;
        let capacity = args
            .max_connections
            .unwrap_or_else(|| limits::max_connections_for(nofile));
        metrics.connections_max.set(capacity as i64);

        let public_listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding --listen {}", args.listen))?;
        let admin_listener = TcpListener::bind(args.admin_listen)
            .await
            .with_context(|| format!("binding --admin-listen {}", args.admin_listen))?;
        let public_addr = public_listener.local_addr()?;

        let auth = build_auth(&args, public_addr)?;
        if let Some(a) = &auth {
            a.prefetch().await;
        }

        let routes = handler::parse_routes(&args.routes, &sink, &metrics)?;

        let (ticks, ticks_rx) = watch::channel(());
        let drain = CancellationToken::new();
        let ping_interval = args.ping_interval();
        let env = Arc::new(SessionEnv {
            metrics: metrics.clone(),
            ticks: ticks_rx,
            drain: drain.clone(),
            drain_spread: args.drain_window() * 3 / 4,
            ack_window: args.ack_window,
            write_timeout: ping_interval * 2,
        });
        let max_msg = args.max_message_bytes.max(1024);
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(args.ws_read_buffer_bytes.max(64))
            // Write each frame at once; a session awaits every write before the next, so the
            // write buffer never holds more than one frame.
            .write_buffer_size(0)
            .max_message_size(Some(max_msg))
            .max_frame_size(Some(max_msg));
        let registry = Arc::new(Registry::default());
        let active = Arc::new(AtomicUsize::new(0));
        let public = Arc::new(server::Public {
            routes,
            auth,
            standalone: args.standalone,
            node: node_id.into(),
            metrics,
            registry: registry.clone(),
            env,
            ws_config,
            max_connections: capacity,
            active: active.clone(),
            outbound_queue: args.outbound_queue,
            handshake_timeout: args.handshake_timeout(),
            sessions: TaskTracker::new(),
        });
        tracing::info!(
            listen = %public_addr,
            admin = %admin_listener.local_addr()?,
            nofile,
            capacity,
            sink = sink.name(),
            "worker ready"
        );
        let handle_metrics = public.metrics.clone();
        Ok(Worker {
            public_listener,
            admin_listener,
            public,
            admin_routes: Vec::new(),
            peers: None,
            sink,
            drain_window: args.drain_window(),
            ping_interval,
            ticks,
            handle: WorkerHandle {
                active,
                capacity,
                drain,
                registry,
                metrics: handle_metrics,
            },
        })
    }

    pub fn handle(&self) -> WorkerHandle {
        self.handle.clone()
    }

    pub fn public_addr(&self) -> std::io::Result<SocketAddr> {
        self.public_listener.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Adds a GET route to the admin port (e.g. `/members`).
    pub fn add_admin_route(&mut self, route: AdminRoute) {
        self.admin_routes.push(route);
    }

    /// Makes the admin publish reach the other workers of the cluster too.
    pub fn set_peers(&mut self, peers: Arc<link::Peers>) {
        self.peers = Some(peers);
    }

    /// Serves until SIGTERM/SIGINT or [`WorkerHandle::begin_drain`], then drains: `/info` turns
    /// 503, the listener closes, sessions are closed with 1012 spread over the drain window, the
    /// sink is flushed. Returns once all sessions are gone or the window has passed.
    pub async fn run(self) -> anyhow::Result<()> {
        let Worker {
            public_listener,
            admin_listener,
            public,
            admin_routes,
            peers,
            sink,
            drain_window,
            ping_interval,
            ticks,
            handle,
        } = self;
        let stop_accept = CancellationToken::new();
        let stop_admin = CancellationToken::new();
        let accept = tokio::spawn(server::serve(
            public_listener,
            public.clone(),
            stop_accept.clone(),
        ));
        let admin = Arc::new(admin::Admin {
            metrics: public.metrics.clone(),
            registry: public.registry.clone(),
            extra: admin_routes,
            peers,
        });
        let admin_task = tokio::spawn(admin::serve(admin_listener, admin, stop_admin.clone()));
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(ping_interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                if ticks.send(()).is_err() {
                    break;
                }
            }
        });

        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
            _ = handle.drain.cancelled() => tracing::info!("drain requested"),
        }
        // The listener stays open through the drain: `/info` answers 503 and upgrades are
        // refused with 503, so the load balancer sees the node leave instead of refused
        // connections.
        handle.drain.cancel();
        public.metrics.draining.set(1);

        let open = handle.connections();
        tracing::info!(
            open,
            window_secs = drain_window.as_secs(),
            "closing sessions with 1012"
        );
        public.sessions.close();
        if tokio::time::timeout(drain_window, public.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = handle.connections(),
                "drain window over with sessions still open"
            );
        }
        match tokio::time::timeout(FLUSH_TIMEOUT, sink.flush()).await {
            Ok(Ok(())) => tracing::info!(sink = sink.name(), "sink flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "sink flush failed"),
            Err(_) => tracing::warn!("sink flush timed out"),
        }
        ticker.abort();
        stop_accept.cancel();
        let _ = accept.await;
        stop_admin.cancel();
        let _ = admin_task.await;
        tracing::info!("drained");
        Ok(())
    }
}

/// The token verifier, or `None` with `--no-auth`. Standalone without a key gets a random
/// HS256 secret and a development token printed once, as a ready URL.
fn build_auth(args: &WorkerArgs, public: SocketAddr) -> anyhow::Result<Option<Authenticator>> {
    if args.no_auth {
        tracing::warn!("--no-auth: clients are NOT authenticated; never use this in production");
        return Ok(None);
    }
    if let Some(a) = Authenticator::from_args(&args.jwt)? {
        if args.standalone {
            println!(
                "test page: http://127.0.0.1:{}/?access_token=<your token>",
                public.port()
            );
        }
        return Ok(Some(a));
    }
    anyhow::ensure!(
        args.standalone,
        "no JWT key configured: pass --jwt-hs256-secret[-file], --jwt-public-key-file or --jwks-url (or --no-auth for tests)"
    );
    let secret = auth::random_secret();
    let token = auth::dev_token(secret.as_bytes(), "dev-client", 24 * 3600)?;
    // The one place a token is printed: the developer asked for a ready-to-use URL.
    println!(
        "test page: http://127.0.0.1:{}/?access_token={token}",
        public.port()
    );
    Ok(Some(Authenticator::hs256(
        secret.as_bytes(),
        args.jwt.jwt_leeway_secs,
    )))
}
