//! A worker node: the gateway (public port and its sessions), the admin port, and, in a cluster,
//! membership and the node link; the sink its events go to and, outside a cluster, the embedded
//! queue broker that sink writes to. [`Node::build`] opens everything (so a bad flag or a taken
//! port fails before anything serves); [`Node::run`] serves until told to stop, then drains.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ews_cluster::publish::Fanout;
use ews_cluster::Membership;
use ews_queue::Broker;
use ews_sink::Sink;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use ews_http::Ports;

use crate::admin::Admin;
use crate::auth::{self, Authenticator};
use crate::handler::{Handler, Handlers, Reach, Services};
use crate::ids::NodeId;
use crate::lifecycle::LifecycleLog;
use crate::link::Link;
use crate::membership::{self, MembershipArgs};
use crate::metrics::Metrics;
use crate::public::{self, Public, Slots};
use crate::pubsub::PubSub;
use crate::rebalance::{self, RebalanceArgs};
use crate::registry::Registry;
use crate::remote::hosted::Hosted;
use crate::remote::Placer;
use crate::session::SessionEnv;
use crate::streams::NodeHistory;
use crate::{hooks, limits, sinks, WorkerArgs};

/// How long the sink gets to flush after the sessions are closed.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Every flag of `ews-worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub membership: MembershipArgs,
}

/// A worker's configuration: the gateway's settings and the cluster's, one field per flag.
/// [`Default`] is every flag's default (a worker on 0.0.0.0:8080 with the built-in queue,
/// outside any cluster); set the fields a program or a test needs, then [`Node::builder`],
/// which holds them to the bounds the flags enforce ([`ConfigError`](crate::ConfigError)).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub worker: WorkerArgs,
    pub membership: MembershipArgs,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            node: NodeArgs,
        }
        use clap::{CommandFactory, FromArgMatches};
        // The flags' own defaults, so there is one place that says what they are; not the
        // `EWS_*` variables of this process (a default is a default). Flags without a default
        // are optional, so an empty command line always parses.
        let command = Defaults::command().mut_args(|a| a.env(None::<&str>));
        #[allow(clippy::expect_used)]
        let d = command
            .try_get_matches_from(["ews-worker"])
            .and_then(|m| Defaults::from_arg_matches(&m))
            .expect("every flag has a default or is optional");
        d.node.into()
    }
}

impl From<NodeArgs> for WorkerConfig {
    fn from(a: NodeArgs) -> WorkerConfig {
        WorkerConfig {
            worker: a.worker,
            membership: a.membership,
        }
    }
}

/// Builds a [`Node`]: the configuration plus the handlers routes may name (the built-ins are
/// registered already).
pub struct NodeBuilder {
    config: WorkerConfig,
    handlers: Handlers,
}

impl NodeBuilder {
    /// Registers `handler` under `name` (panics on a name other than 1 to 64 of `a-z`, `0-9`,
    /// `-`, `_`: names are written in code); it may run on any worker (a route may place it
    /// `@random`, `@least-loaded` or `@key-hash`: register it on every worker then).
    pub fn handler<H: Handler>(mut self, name: &str, handler: H) -> NodeBuilder {
        self.handlers.insert(name, handler, Reach::AnyWorker);
        self
    }

    /// Registers `handler` under `name`, to run only on the worker holding the socket.
    pub fn local_handler<H: Handler>(mut self, name: &str, handler: H) -> NodeBuilder {
        self.handlers.insert(name, handler, Reach::SocketWorker);
        self
    }

    /// Joins the cluster (if any), opens the sink, binds every port and prepares auth.
    pub async fn build(self) -> anyhow::Result<Node> {
        Node::build_with(self.config, self.handlers).await
    }
}

/// A cheap, cloneable view of a running worker for the rest of the node.
#[derive(Clone)]
pub struct WorkerHandle {
    slots: Slots,
    drain: CancellationToken,
}

impl WorkerHandle {
    /// Open WebSocket sessions.
    pub fn connections(&self) -> usize {
        self.slots.in_use()
    }

    /// Most sessions this node accepts.
    pub fn capacity(&self) -> usize {
        self.slots.max()
    }

    /// Whether the drain has begun.
    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// Resolves once the drain has begun.
    pub async fn draining(&self) {
        self.drain.cancelled().await
    }

    /// Starts the drain as a shutdown would.
    pub fn begin_drain(&self) {
        self.drain.cancel()
    }
}

/// The node link: its listener and routes.
struct NodeLink {
    listener: TcpListener,
    link: Arc<Link>,
}

impl NodeLink {
    fn new(
        listener: TcpListener,
        membership: Arc<Membership>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        hosted: Arc<Hosted>,
        (max_topics, history): (usize, Option<NodeHistory>),
    ) -> NodeLink {
        let link = Link {
            verifier: membership.link_verifier(),
            membership,
            registry,
            metrics,
            hosted,
            max_topics,
            history,
            lost: CancellationToken::new(),
        };
        NodeLink {
            listener,
            link: Arc::new(link),
        }
    }
}

pub struct Node {
    public_listener: TcpListener,
    admin_listener: TcpListener,
    public: Arc<Public>,
    admin: Arc<Admin>,
    link: Option<NodeLink>,
    membership: Option<Arc<Membership>>,
    port_limits: ews_http::Limits,
    sink: Arc<dyn Sink>,
    /// Held for the node's life: it keeps the queue directory locked.
    _broker: Option<Arc<Broker>>,
    drain_window: Duration,
    ping_interval: Duration,
    ticks: watch::Sender<()>,
    rebalance: RebalanceArgs,
    spot: crate::spot::SpotArgs,
    handle: WorkerHandle,
}

impl Node {
    /// A node of `config`, with the built-in handlers registered.
    pub fn builder(config: impl Into<WorkerConfig>) -> NodeBuilder {
        NodeBuilder {
            config: config.into(),
            handlers: Handlers::default(),
        }
    }

    /// A node of `config` with the built-in handlers only.
    pub async fn build(config: impl Into<WorkerConfig>) -> anyhow::Result<Node> {
        Node::builder(config).build().await
    }

    async fn build_with(config: WorkerConfig, handlers: Handlers) -> anyhow::Result<Node> {
        let WorkerConfig {
            worker: mut args,
            membership: cluster_args,
        } = config;
        // Before anything binds: a setting out of bounds, or a route naming a handler this node
        // lacks, is a start-up error.
        args.validate()?;
        let routes = handlers.serve(&args.routes).context("--routes")?;
        args.admin_listen = args.admin.listen(args.admin_listen);
        let backlog = args.ports.backlog();
        let (nofile, capacity) = capacity(&args)?;
        let metrics = Arc::new(Metrics::new());
        metrics.connections_max.set(capacity as i64);
        let routes = hooks::load(&args.hooks, routes, &metrics).await?;

        let public_listener = ews_http::bind(args.listen, backlog)
            .with_context(|| format!("binding --listen {}", args.listen))?;
        let admin_listener = ews_http::bind(args.admin_listen, backlog)
            .with_context(|| format!("binding --admin-listen {}", args.admin_listen))?;
        let public_addr = public_listener.local_addr()?;

        // Before the sink: in a cluster the queue sink follows the active leader.
        let membership = membership::start(&cluster_args, &args).await?;
        let link_listener = bind_link(&cluster_args, membership.as_deref(), backlog)?;
        let broker = sinks::embedded_broker(&args.sink, membership.is_some())?;
        let sink = sinks::build(&args.sink, membership.as_ref(), broker.as_ref()).await?;

        let auth = build_auth(&args, public_addr)?.map(Arc::new);
        if let Some(a) = &auth {
            a.prefetch().await;
        }
        let node_id: NodeId = cluster_args.cluster.node_id().as_str().into();
        let registry = Arc::new(Registry::default());
        let deadline = cluster_args.cluster.publish_peer_timeout;
        let history = ews_history::History::from_args(&args.history, membership.is_some())?
            .map(|h| (Arc::new(h), Arc::new(crate::streams::Streams::default())));
        let pubsub = Arc::new(PubSub {
            history: history.clone(),
            node: node_id.clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            cluster: membership
                .clone()
                .map(|m| (m.clone(), Fanout::new(m, deadline))),
            max_topics: args.max_topics_per_session,
        });
        // The generation a `node_lost` names: membership's, so the leader and the records
        // agree; outside a cluster, the start time as membership would take it.
        let generation = membership
            .as_ref()
            .map_or_else(|| crate::ids::now_ms() as u64, |m| m.own_state().generation);
        let lifecycle = args.sink.to.lifecycle_events.then(|| {
            Arc::new(LifecycleLog::new(
                node_id.clone(),
                generation,
                sink.clone(),
                metrics.clone(),
            ))
        });
        let services = Arc::new(Services {
            node: node_id.clone(),
            registry: registry.clone(),
            pubsub: pubsub.clone(),
            sink: sink.clone(),
            metrics: metrics.clone(),
            max_topics: args.max_topics_per_session,
            write_timeout: args.ping_interval * 2,
            lifecycle,
        });
        let drain = CancellationToken::new();
        let (ticks, env, hosted_env) = session_envs(&args, services, &drain, auth.clone());
        let sessions = TaskTracker::new();
        let slots = Slots::new(capacity);
        let public = Arc::new(Public {
            routes: routes.clone(),
            placer: membership
                .as_ref()
                .map(|m| Arc::new(Placer::new(m.clone(), deadline, args.max_message_bytes))),
            auth,
            test_page: args.standalone || args.test_page,
            node: node_id.clone(),
            metrics: metrics.clone(),
            registry: registry.clone(),
            env,
            ws_config: ws_config(&args),
            slots: slots.clone(),
            outbound_queue: args.outbound_queue,
            handshake_timeout: args.handshake_timeout,
            sessions: sessions.clone(),
            topics_open: args.topics_open || args.standalone,
            outlive_tokens: args.session_outlives_token,
        });
        let admin = Arc::new(Admin {
            token: args.admin.token().cloned(),
            metrics: metrics.clone(),
            registry: registry.clone(),
            pubsub,
            broker: broker.clone(),
            queue_connections: TaskTracker::new(),
            drain: drain.clone(),
        });
        let hosted = Arc::new(Hosted {
            node: node_id,
            routes,
            env: hosted_env,
            sessions,
            metrics: metrics.clone(),
            open: AtomicUsize::new(0),
            max: args.max_hosted_sessions.unwrap_or(capacity),
            max_message: args.max_message_bytes,
        });
        let link = link_listener.zip(membership.clone()).map(|(listener, m)| {
            NodeLink::new(
                listener,
                m,
                registry,
                metrics,
                hosted,
                (args.max_topics_per_session, history),
            )
        });
        tracing::info!(
            listen = %public_addr,
            admin = %admin_listener.local_addr()?,
            internal = ?link.as_ref().and_then(|l| l.listener.local_addr().ok()),
            nofile, capacity, backlog = %backlog, sink = sink.name(),
            "worker ready"
        );
        Ok(Node {
            public_listener,
            admin_listener,
            public,
            admin,
            link,
            membership,
            port_limits: args.ports.limits(),
            sink,
            _broker: broker,
            drain_window: args.drain_window,
            ping_interval: args.ping_interval,
            ticks,
            rebalance: args.rebalance.clone(),
            spot: args.spot.clone(),
            handle: WorkerHandle { slots, drain },
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

    /// Serves until `shutdown` is cancelled (or [`WorkerHandle::begin_drain`]), then drains:
    /// `/info` turns 503 and upgrades are refused (the listener stays open, so the load balancer
    /// sees the node leave rather than refused connections), sessions are closed with 1012
    /// spread over the drain window, the sink is flushed, the ports close, gossip says goodbye.
    /// Fails if the node gave up joining its cluster.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let public_addr = self.public_addr()?;
        let admin_addr = self.admin_addr()?;
        // Everything below stops when the ports close, after the drain.
        let ports = Ports::new();
        let p = self.public.clone();
        ports.serve(
            self.public_listener,
            move |req, peer| public::route(req, peer, p.clone()),
            public::limits(&self.public),
        );
        let admin = self.admin;
        let pubsub = admin.pubsub.clone();
        ports.spawn(|stop| async move { pubsub.run_presence_events(stop).await });
        ports.serve(
            self.admin_listener,
            move |req, peer| admin.clone().route(req, peer),
            self.port_limits.clone(),
        );
        let lost = self.link.as_ref().map(|l| l.link.lost.clone());
        if let Some(NodeLink { listener, link }) = self.link {
            // HTTP/2 too: one connection per peer pair carries every session stream.
            let limits = ews_http::Limits {
                http2: true,
                ..self.port_limits
            };
            ports.serve(
                listener,
                move |req, peer| link.clone().route(req, peer),
                limits,
            );
        }
        ports.spawn(|stop| tick(self.ping_interval, self.ticks, stop));
        let (spot, handle) = (self.spot.clone(), self.handle.clone());
        ports.spawn(move |stop| crate::spot::watch(spot, handle, stop));
        if let Some(membership) = &self.membership {
            let (m, worker) = (membership.clone(), self.handle.clone());
            let registry = self.public.registry.clone();
            ports.spawn(|stop| {
                membership::report(m, worker, registry, (public_addr, admin_addr), stop)
            });
            let (m, worker) = (membership.clone(), self.handle.clone());
            let (registry, metrics) = (self.public.registry.clone(), self.public.metrics.clone());
            let args = self.rebalance.clone();
            let max = self.public.slots.max();
            ports.spawn(move |stop| rebalance::run(args, max, m, registry, worker, metrics, stop));
        }

        let gave_up = async {
            match &self.membership {
                Some(m) => m.gave_up().await,
                None => std::future::pending().await,
            }
        };
        let written_off = async {
            match &lost {
                Some(l) => l.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            _ = shutdown.cancelled() => { tracing::info!("shutting down: draining"); Ok(()) }
            _ = self.handle.draining() => { tracing::info!("drain requested"); Ok(()) }
            _ = gave_up => Err(anyhow::anyhow!(
                "could not join the cluster: no seed node answered in time"
            )),
            // Its sessions are over for every consumer of lifecycle records: end them now
            // (no drain), and let the service manager start a new generation.
            _ = written_off => Err(anyhow::anyhow!(
                "the active leader wrote this worker off as lost (unreachable for longer than \
                 its --node-lost-after-secs): ending every session and exiting, to rejoin as a \
                 new generation"
            )),
        };
        self.handle.begin_drain();
        self.public.metrics.draining.set(1);
        if result.is_ok() {
            drain(&self.public, &self.handle, self.drain_window).await;
        }
        match tokio::time::timeout(FLUSH_TIMEOUT, self.sink.flush()).await {
            Ok(Ok(())) => tracing::info!(sink = self.sink.name(), "sink flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "sink flush failed"),
            Err(_) => tracing::warn!("sink flush timed out"),
        }
        ports.close().await;
        if let Some(m) = &self.membership {
            if result.is_ok() {
                m.leave_and_shutdown().await;
            } else {
                m.shutdown().await;
            }
        }
        tracing::info!("drained");
        result
    }
}

/// The open-files limit (raised to its hard limit) and the session capacity: `--max-connections`,
/// or what that limit allows.
fn capacity(args: &WorkerArgs) -> anyhow::Result<(u64, usize)> {
    let nofile = limits::raise_nofile().context("reading RLIMIT_NOFILE")?;
    let capacity = args
        .max_connections
        .unwrap_or_else(|| limits::max_connections_for(nofile));
    Ok((nofile, capacity))
}

/// The node-link listener, in a cluster: the TCP side of the internal port (gossip may have
/// picked the port number when `--internal-listen` asked for port 0).
fn bind_link(
    args: &MembershipArgs,
    membership: Option<&Membership>,
    backlog: ews_http::Backlog,
) -> anyhow::Result<Option<TcpListener>> {
    let Some(m) = membership else {
        return Ok(None);
    };
    let addr = SocketAddr::new(args.internal_listen.ip(), m.gossip_addr().port());
    let listener = ews_http::bind(addr, backlog)
        .with_context(|| format!("binding the internal TCP port {addr}"))?;
    Ok(Some(listener))
}

/// The session environments: the socket sessions' (pinged on the node-wide tick, whose sender
/// this returns) and the hosted sessions' (handlers for other workers' sockets), which never
/// tick: the socket's node pings its client, and the stream's end is the session's end.
fn session_envs(
    args: &WorkerArgs,
    services: Arc<Services>,
    drain: &CancellationToken,
    auth: Option<Arc<crate::auth::Authenticator>>,
) -> (watch::Sender<()>, Arc<SessionEnv>, Arc<SessionEnv>) {
    let (ticks, ticks_rx) = watch::channel(());
    let env = |ticks| SessionEnv {
        services: services.clone(),
        ticks,
        drain: drain.clone(),
        drain_spread: args.drain_window * 3 / 4,
        ack_window: args.ack_window,
        auth: auth.clone(),
        refresh_lead: args.refresh_lead,
        tick: args.ping_interval,
        publish_rate: args.client_publish_rate,
        topics_open: args.topics_open || args.standalone,
    };
    let hosted = Arc::new(env(watch::channel(()).1));
    (ticks, Arc::new(env(ticks_rx)), hosted)
}

/// Each session's WebSocket limits: small buffers for idle sessions, the largest message.
fn ws_config(args: &WorkerArgs) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(args.ws_read_buffer_bytes)
        // Write each frame at once; a session awaits every write before the next, so the
        // write buffer never holds more than one frame.
        .write_buffer_size(0)
        .max_message_size(Some(args.max_message_bytes))
        .max_frame_size(Some(args.max_message_bytes))
}

/// Closes every session (1012, spread over the window) and waits for them, at most `window`.
async fn drain(public: &Public, handle: &WorkerHandle, window: Duration) {
    tracing::info!(
        open = handle.connections(),
        window_secs = window.as_secs(),
        "closing sessions with 1012"
    );
    public.sessions.close();
    if tokio::time::timeout(window, public.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = handle.connections(),
            "drain window over with sessions still open"
        );
    }
}

/// The node-wide liveness tick every session pings and judges its peer on.
async fn tick(period: Duration, ticks: watch::Sender<()>, stop: CancellationToken) {
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {
                if ticks.send(()).is_err() {
                    return;
                }
            }
        }
    }
}

/// The token verifier, or `None` with `--no-auth`. Standalone without a key gets a random
/// HS256 secret and a development token printed once, as a ready URL.
/// The secret a standalone worker without a key signs its development tokens with: kept beside
/// the embedded queue's data (`<queue dir>/../standalone-jwt-secret`, mode 0600) when that is
/// where events go, so a restart keeps accepting the page's token; made fresh otherwise (a
/// worker that writes nothing to disk does not start now). The answer names the file it is in.
fn standalone_secret(args: &WorkerArgs) -> anyhow::Result<(String, Option<std::path::PathBuf>)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let sink = &args.sink;
    if sink.to.sink != ews_sink::args::SinkKind::Queue || sink.queue_url.is_some() {
        return Ok((auth::random_secret(), None));
    }
    let dir = sink
        .queue
        .queue_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let file = dir.join("standalone-jwt-secret");
    match std::fs::read_to_string(&file) {
        Ok(s) if s.trim().len() >= 32 => return Ok((s.trim().to_string(), Some(file))),
        Ok(_) => anyhow::bail!(
            "{}: not a development secret (32 characters or more); delete it to make a new one",
            file.display()
        ),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(anyhow::anyhow!("reading {}: {e}", file.display()))
        }
        Err(_) => {}
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let secret = auth::random_secret();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("creating {}", file.display()))?;
    f.write_all(secret.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", file.display()))?;
    Ok((secret, Some(file)))
}

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
            if args.jwt.hs256.secret().is_some() {
                println!(
                    "a token for it: ews-load token --sub NAME --jwt-hs256-secret-file <the file of your secret>"
                );
            }
        }
        return Ok(Some(a));
    }
    anyhow::ensure!(
        args.standalone,
        "no JWT key configured: pass --jwt-hs256-secret[-file], --jwt-public-key-file or --jwks-url (or --no-auth for tests)"
    );
    let (secret, kept) = standalone_secret(args)?;
    let token = auth::dev_token(secret.as_bytes(), "dev-client", 24 * 3600)?;
    // The one place a token is printed: the developer asked for a ready-to-use URL.
    println!(
        "test page: http://127.0.0.1:{}/?access_token={token}",
        public.port()
    );
    match kept {
        Some(file) => println!(
            "development secret: {} (kept across restarts, so the page's token stays valid; more tokens: ews-load token --sub NAME --jwt-hs256-secret-file {})",
            file.display(),
            file.display()
        ),
        None => println!(
            "development secret: this run's own (a restart makes a new one and refuses old tokens; the queue sink keeps it beside its data)"
        ),
    }
    Ok(Some(Authenticator::hs256(
        secret.as_bytes(),
        args.jwt.jwt_leeway_secs,
    )))
}
