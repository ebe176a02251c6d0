//! A running cluster member: the gossip server, the seed-contact loop with its give-up deadline,
//! and the periodic refresh that turns gossip state into a [`ClusterView`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chitchat::transport::UdpTransport;
use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::args::{ClusterArgs, ClusterSecret};
use crate::interest::Interest;
use crate::link_client::{LinkClient, Proof};
use crate::metrics::ClusterMetrics;
use crate::node::NodeState;
use crate::node::{
    Role, Status, KEY_ACTIVE_EPOCH, KEY_ADMIN_ADDR, KEY_CAPACITY, KEY_CONNS, KEY_INTEREST,
    KEY_INTERNAL_ADDR, KEY_PUBLIC_ADDR, KEY_ROLE, KEY_STATUS, KEY_VERSION,
};
use crate::proof::{Proven, ProvenPeers, Prover};
use crate::seeds;
use crate::view::{ClusterView, RawNode, Trust};
use ews_http::link::{LinkKey, NodeRef, STATE_PATH};

/// How long an announcement of this node's state waits for each peer.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(2);
/// The same, for a peer this node does not hear from right now.
const ANNOUNCE_TIMEOUT_QUIET: Duration = Duration::from_millis(300);
/// Largest announced state read.
const MAX_STATE_BODY: usize = 16 * 1024;

/// What [`Membership::announce`] reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Announced {
    /// Peers that took the new state into their views.
    pub told: usize,
    /// Peers that did not answer in time or refused it.
    pub missed: usize,
}

/// Gossip only merges nodes that agree on this.
const CLUSTER_ID: &str = "elastic-ws";

/// The connection count changes with every client; gossiping it at most this often keeps the
/// gossip deltas small while the cluster metric (published every 60 s) stays fresh.
const CONNS_PUBLISH_PERIOD: Duration = Duration::from_secs(1);

/// Gossip rounds between announcing `leaving` and going quiet. Each round gossips with up to
/// three peers, so a handful of rounds reaches everyone in a cluster of this size.
pub const LEAVE_ROUNDS: u32 = 4;

/// Everything a node needs to join. Build it with [`MembershipConfig::from_args`].
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    pub node_id: String,
    pub role: Role,
    pub seeds: Vec<String>,
    /// Where gossip binds (UDP); the internal port.
    pub internal_listen: SocketAddr,
    pub advertise_host: Option<String>,
    /// Listen addresses advertised to peers (with the advertise IP when they bind 0.0.0.0).
    pub public_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub capacity: u64,
    pub gossip_interval: Duration,
    pub seed_node_timeout: Duration,
    /// `None`: keep trying forever.
    pub join_give_up: Option<Duration>,
    pub dead_node_grace: Duration,
    pub secret: Option<ClusterSecret>,
    /// Accepted on node links besides `secret`, never signed with (a rotation's middle step).
    pub accepted_secret: Option<ClusterSecret>,
}

impl MembershipConfig {
    /// Node `node_id` in `role`, gossiping on `internal_listen` and joining through `seeds`,
    /// with every other setting at its flag's default (no secret).
    pub fn new(
        node_id: impl Into<String>,
        role: Role,
        seeds: &[SocketAddr],
        internal_listen: SocketAddr,
    ) -> MembershipConfig {
        MembershipConfig {
            node_id: node_id.into(),
            role,
            seeds: seeds.iter().map(ToString::to_string).collect(),
            internal_listen,
            advertise_host: None,
            public_listen: None,
            admin_listen: None,
            capacity: 0,
            gossip_interval: Duration::from_millis(500),
            seed_node_timeout: Duration::from_secs(10),
            join_give_up: Some(Duration::from_secs(100)),
            dead_node_grace: Duration::from_secs(60),
            secret: None,
            accepted_secret: None,
        }
    }

    pub fn from_args(
        args: &ClusterArgs,
        role: Role,
        internal_listen: SocketAddr,
    ) -> anyhow::Result<MembershipConfig> {
        Ok(MembershipConfig {
            node_id: args.node_id(),
            role,
            seeds: args.seeds.iter().map(ToString::to_string).collect(),
            internal_listen,
            advertise_host: args.advertise_host.clone(),
            public_listen: None,
            admin_listen: None,
            capacity: 0,
            gossip_interval: args.gossip_interval,
            seed_node_timeout: args.seed_node_timeout,
            join_give_up: args.join_give_up(),
            dead_node_grace: args.dead_node_grace,
            secret: args.secret().cloned(),
            accepted_secret: args.accepted_secret().cloned(),
        })
    }
}

/// Where a node stands with respect to joining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinState {
    /// No seed has answered yet.
    Joining,
    /// In the cluster (`status=up`). A leader also gets here alone, after one seed-node timeout
    /// without an answer: it is a seed, the cluster forms around it.
    Joined,
    /// No seed answered within `shutdown_after_unsuccessful_join`: the worker should exit
    /// non-zero. Leaders never give up.
    GaveUp,
}

/// A running cluster member. Dropping it stops gossip abruptly; call [`Membership::leave`] and
/// [`Membership::shutdown`] for a graceful exit.
pub struct Membership {
    shared: Arc<Shared>,
    chitchat: Arc<ChitchatHandle>,
    view_rx: watch::Receiver<Arc<ClusterView>>,
    join_rx: watch::Receiver<JoinState>,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    config: MembershipConfig,
    self_id: ChitchatId,
    advertise_ip: IpAddr,
    conns: AtomicU64,
    metrics: ClusterMetrics,
    /// This node's own state, as its node link serves it ([`Membership::own_state`]).
    status: Mutex<Status>,
    /// The active term this node (a leader) holds, as it claims it.
    active_epoch: Mutex<Option<u64>>,
    /// The topics this node (a worker) has subscribers for.
    interest: Mutex<Option<Interest>>,
    capacity: AtomicU64,
    listen_addrs: Mutex<(Option<SocketAddr>, Option<SocketAddr>)>,
    /// Peers that proved the cluster key with their state (only with a secret).
    proven: Mutex<ProvenPeers>,
    /// Bumped on every change of this node's state that peers decide from (its interest):
    /// a peer keeps the newest state it was told or probed, whichever way it came.
    revision: AtomicU64,
    /// Rebuilds the view now rather than at the next gossip round (a peer told us its state).
    refresh_now: tokio::sync::Notify,
    /// Sends this node's state to its peers (with a secret): one connection pool for every
    /// announcement.
    announcer: Option<LinkClient>,
    /// What the configured seeds resolve to now: the only addresses a leader is accepted at.
    seed_addrs: Mutex<HashSet<SocketAddr>>,
}

impl Membership {
    /// Binds the gossip socket, announces this node and starts contacting the seeds.
    pub async fn start(mut config: MembershipConfig) -> anyhow::Result<Membership> {
        if config.internal_listen.port() == 0 {
            // Peers need the real port in our advertised address: pick a free one now.
            config.internal_listen =
                std::net::UdpSocket::bind(config.internal_listen)?.local_addr()?;
        }
        let ip = seeds::advertise_ip(
            config.advertise_host.as_deref(),
            config.internal_listen,
            &config.seeds,
        )
        .await?;
        let advertise = |a: SocketAddr| advertised(ip, a).to_string();
        let gossip_addr = advertised(ip, config.internal_listen);
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let self_id = ChitchatId::new(config.node_id.clone(), generation, gossip_addr);
        let mut keys = vec![
            (KEY_ROLE, config.role.to_string()),
            (KEY_STATUS, Status::Joining.to_string()),
            (KEY_INTERNAL_ADDR, gossip_addr.to_string()),
            (KEY_CONNS, "0".to_string()),
            (KEY_CAPACITY, config.capacity.to_string()),
            (KEY_VERSION, env!("CARGO_PKG_VERSION").to_string()),
        ];
        if let Some(a) = config.public_listen {
            keys.push((KEY_PUBLIC_ADDR, advertise(a)));
        }
        if let Some(a) = config.admin_listen {
            keys.push((KEY_ADMIN_ADDR, advertise(a)));
        }
        let keys = keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect();

        let interval = config.gossip_interval;
        let failure_detector_config = FailureDetectorConfig {
            // The first heartbeat intervals are assumed to be about one gossip round, and a
            // silence of 10 rounds is never averaged in: detection stays a few rounds long.
            initial_interval: interval,
            max_interval: interval * 10,
            dead_node_grace_period: config.dead_node_grace,
            ..FailureDetectorConfig::default()
        };
        let chitchat_config = ChitchatConfig {
            chitchat_id: self_id.clone(),
            cluster_id: CLUSTER_ID.to_string(),
            gossip_interval: interval,
            listen_addr: config.internal_listen,
            seed_nodes: config.seeds.clone(),
            failure_detector_config,
            marked_for_deletion_grace_period: config.dead_node_grace,
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let chitchat = Arc::new(spawn_chitchat(chitchat_config, keys, &UdpTransport).await?);
        info!(
            node_id = %config.node_id, role = %config.role, gossip = %gossip_addr,
            generation, seeds = ?config.seeds, "gossip started"
        );

        let (join_tx, join_rx) = watch::channel(JoinState::Joining);
        let (view_tx, view_rx) = watch::channel(Arc::new(ClusterView::default()));
        let listen_addrs = (
            config.public_listen.map(|a| advertised(ip, a)),
            config.admin_listen.map(|a| advertised(ip, a)),
        );
        let announcer = config
            .secret
            .as_ref()
            .map(|s| LinkClient::new(Some(LinkKey::derive(s)), ANNOUNCE_TIMEOUT));
        let shared = Arc::new(Shared {
            capacity: AtomicU64::new(config.capacity),
            config,
            self_id,
            advertise_ip: ip,
            conns: AtomicU64::new(0),
            metrics: ClusterMetrics::default(),
            status: Mutex::new(Status::Joining),
            active_epoch: Mutex::new(None),
            interest: Mutex::new(None),
            listen_addrs: Mutex::new(listen_addrs),
            proven: Mutex::new(ProvenPeers::new()),
            seed_addrs: Mutex::new(HashSet::new()),
            revision: AtomicU64::new(0),
            refresh_now: tokio::sync::Notify::new(),
            announcer,
        });
        let mut tasks = vec![
            tokio::spawn(contact_seeds(
                shared.clone(),
                chitchat.clone(),
                join_rx.clone(),
            )),
            tokio::spawn(refresh(
                shared.clone(),
                chitchat.chitchat(),
                view_tx,
                join_tx,
            )),
        ];
        if let Some(secret) = &shared.config.secret {
            let prover = Prover::new(LinkKey::derive(secret));
            tasks.push(tokio::spawn(prove_peers(
                shared.clone(),
                chitchat.chitchat(),
                prover,
            )));
        }
        Ok(Membership {
            shared,
            chitchat,
            view_rx,
            join_rx,
            tasks,
        })
    }

    pub fn node_id(&self) -> &str {
        &self.shared.config.node_id
    }

    pub fn role(&self) -> Role {
        self.shared.config.role
    }

    /// The address peers gossip with (advertised internal address).
    pub fn gossip_addr(&self) -> SocketAddr {
        self.shared.self_id.gossip_advertise_addr
    }

    pub fn secret(&self) -> Option<&ClusterSecret> {
        self.shared.config.secret.as_ref()
    }

    /// The node-link verifier for this node's servers: the secret's key and, during a rotation,
    /// the accepted one's. `None` without a secret (loopback development: links are open).
    pub fn link_verifier(&self) -> Option<ews_http::link::Verifier> {
        let config = &self.shared.config;
        let primary = LinkKey::derive(config.secret.as_ref()?);
        let mut keys = vec![primary];
        keys.extend(config.accepted_secret.as_ref().map(LinkKey::derive));
        // A node's state may be asked for by a tool that knows only its address.
        Some(
            ews_http::link::Verifier::with_keys(keys, self.node_ref())
                .allow_unbound(http::Method::GET, STATE_PATH),
        )
    }

    /// This node in this run, as signed requests name it.
    pub fn node_ref(&self) -> NodeRef {
        NodeRef::new(
            self.shared.config.node_id.clone(),
            self.shared.self_id.generation_id,
        )
    }

    /// The latest view (refreshed every gossip round).
    pub fn view(&self) -> Arc<ClusterView> {
        self.view_rx.borrow().clone()
    }

    /// Notified on every refresh; e.g. to follow the active leader.
    pub fn watch_view(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view_rx.clone()
    }

    /// Internal address of the active leader, where the built-in queue lives.
    pub fn active_leader_internal_addr(&self) -> Option<SocketAddr> {
        self.view().active_leader_internal_addr()
    }

    pub fn join_state(&self) -> watch::Receiver<JoinState> {
        self.join_rx.clone()
    }

    /// Resolves only if the node gave up joining; a binary selects on it to exit non-zero.
    pub async fn gave_up(&self) {
        let mut rx = self.join_rx.clone();
        if rx.wait_for(|s| *s == JoinState::GaveUp).await.is_err() {
            // The refresh task is gone (shutdown): never resolve.
            std::future::pending::<()>().await;
        }
    }

    /// This node's own state, as its node link serves it to peers (who, with a cluster secret,
    /// believe nothing else about it).
    pub fn own_state(&self) -> NodeState {
        let sh = &self.shared;
        let (public_addr, admin_addr) = *lock(&sh.listen_addrs);
        NodeState {
            node_id: sh.config.node_id.clone(),
            generation: sh.self_id.generation_id,
            role: sh.config.role,
            status: *lock(&sh.status),
            conns: sh.conns.load(Ordering::Relaxed),
            capacity: sh.capacity.load(Ordering::Relaxed),
            internal_addr: sh.self_id.gossip_advertise_addr,
            public_addr,
            admin_addr,
            active_epoch: *lock(&sh.active_epoch),
            interest: lock(&sh.interest).clone(),
            revision: sh.revision.load(Ordering::Acquire),
        }
    }

    /// Claims (with the term's epoch) or gives up the active term: peers follow the claim with
    /// the highest epoch. Only a leader calls this, and only as its lease store allows.
    pub async fn set_active(&self, epoch: Option<u64>) {
        *lock(&self.shared.active_epoch) = epoch;
        let value = epoch.map(|e| e.to_string()).unwrap_or_default();
        self.set_key(KEY_ACTIVE_EPOCH, value).await;
    }

    /// Says which topics this node (a worker) has subscribers for; peers send topic publishes
    /// only where it may hold. They learn it on their next probe (every gossip interval), or at
    /// once from [`Membership::announce`].
    pub async fn set_interest(&self, interest: Interest) {
        let text = interest.to_string();
        *lock(&self.shared.interest) = Some(interest);
        self.shared.revision.fetch_add(1, Ordering::AcqRel);
        self.set_key(KEY_INTEREST, text).await;
    }

    /// Tells every reachable peer (workers and leaders) this node's state now, over the signed
    /// node link (`POST /internal/v1/state`), and returns once each has taken it into its view
    /// or [`ANNOUNCE_TIMEOUT`] has passed: the peers that answered now route by it. Without a
    /// cluster secret peers believe gossip, not the link: nothing to announce.
    pub async fn announce(&self) -> Announced {
        let Some(link) = &self.shared.announcer else {
            return Announced::default();
        };
        let body = bytes::Bytes::from(serde_json::to_vec(&self.own_state()).unwrap_or_default());
        let view = self.view();
        let seeds = lock(&self.shared.seed_addrs).clone();
        // Proven peers, a proven peer gone quiet (a failure detector's flap under load: it may
        // still route to this node; a short deadline, so one that really vanished costs little),
        // and a leader gossip hears at a seed address that this node has not proven yet (the
        // cluster is forming). Never an unproven address gossip alone names, which could stall
        // every announcement.
        let peers: Vec<(NodeRef, SocketAddr, Duration)> = view
            .members
            .iter()
            .filter(|m| !m.is_self)
            .filter_map(|m| Some((m, m.internal_addr?)))
            .filter_map(|(m, addr)| {
                let deadline = if m.verified && m.reachable {
                    ANNOUNCE_TIMEOUT
                } else if m.lost || (m.gossip_live && seeds.contains(&addr)) {
                    ANNOUNCE_TIMEOUT_QUIET
                } else {
                    return None;
                };
                Some((m.node_ref(), addr, deadline))
            })
            .collect();
        let answers = futures_util::future::join_all(peers.iter().map(|(to, addr, deadline)| {
            link.request(
                http::Method::POST,
                (to, *addr),
                STATE_PATH,
                body.clone(),
                Proof::Key,
                1024,
                *deadline,
            )
        }))
        .await;
        let mut done = Announced::default();
        for ((to, _, _), a) in peers.iter().zip(answers) {
            match a {
                Ok(a) if a.status.is_success() => done.told += 1,
                Ok(a) => {
                    warn!(peer = %to, status = %a.status, "state announcement refused");
                    done.missed += 1;
                }
                Err(e) => {
                    warn!(peer = %to, error = %e, "state announcement failed");
                    done.missed += 1;
                }
            }
        }
        done
    }

    /// The node-link side of [`Membership::announce`]: a peer's new state, believed like a
    /// probe's answer (signed with the cluster key, for a node and generation this node
    /// already proved, and newer than what it holds), and in this node's view before the
    /// answer goes back.
    pub async fn accept_state(
        &self,
        accepted: Option<&ews_http::link::Accepted>,
        req: http::Request<hyper::body::Incoming>,
    ) -> http::Response<ews_http::Body> {
        use http::StatusCode;
        use http_body_util::{BodyExt, Limited};
        let reply = |status: StatusCode, text: &'static str| {
            let mut resp = ews_http::reply::text(status, text);
            if let Some(a) = accepted {
                a.prove(&mut resp);
            }
            resp
        };
        let Some(accepted) = accepted else {
            // Without a secret states come from gossip.
            return reply(
                StatusCode::NOT_FOUND,
                "no announcements without a cluster secret",
            );
        };
        let body = match Limited::new(req.into_body(), MAX_STATE_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, "state too large"),
        };
        if !accepted.body_matches(&body) {
            return reply(
                StatusCode::UNAUTHORIZED,
                "the body does not match its signature",
            );
        }
        let Ok(state) = serde_json::from_slice::<NodeState>(&body) else {
            return reply(StatusCode::BAD_REQUEST, "not a node state");
        };
        let mut view = self.view_rx.clone();
        view.mark_unchanged();
        let (node, generation, interest) = (
            state.node_id.clone(),
            state.generation,
            state.interest.clone(),
        );
        {
            let key = (state.node_id.clone(), state.generation);
            let mut proven = lock(&self.shared.proven);
            match proven.get(&key) {
                Some(p) if p.state.revision < state.revision => {
                    proven.insert(
                        key,
                        Proven {
                            state,
                            at: Instant::now(),
                        },
                    );
                }
                // The same revision: a probe brought it first, and the view may not hold it
                // yet (a rebuild under way); wait for it below like for a new one.
                Some(p) if p.state.revision == state.revision => {}
                // Older: nothing to change, and nothing to wait for.
                Some(_) => return reply(StatusCode::NO_CONTENT, ""),
                None => return reply(StatusCode::NOT_FOUND, "not a node this one has proven"),
            }
        }
        self.shared.refresh_now.notify_one();
        // Until the view holds it: a rebuild that was under way when the state came in ends
        // without it, and a publish routed by that view would miss the new subscriber.
        let holds = |v: &ClusterView| {
            v.members
                .iter()
                .any(|m| m.node_id == node && m.generation == generation && m.interest == interest)
        };
        let _ = tokio::time::timeout(ANNOUNCE_TIMEOUT, async {
            while !holds(&view.borrow_and_update()) {
                if view.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        reply(StatusCode::NO_CONTENT, "")
    }

    /// The node-link answer to `GET /internal/v1/state`: [`Membership::own_state`] as JSON, the
    /// proof (when the request was signed) covering the body, since peers decide from it.
    pub fn state_answer(
        &self,
        accepted: Option<&ews_http::link::Accepted>,
    ) -> http::Response<ews_http::Body> {
        let body = serde_json::to_vec(&self.own_state()).unwrap_or_default();
        let mut resp =
            ews_http::reply::with_type(http::StatusCode::OK, "application/json", body.clone());
        if let Some(a) = accepted {
            a.prove_with_body(&mut resp, &body);
        }
        resp
    }

    /// Reports this node's live client connections; gossiped at most once a second.
    pub fn set_conns(&self, conns: u64) {
        self.shared.conns.store(conns, Ordering::Relaxed);
    }

    /// Advertises the public and admin addresses actually bound (e.g. after binding port 0).
    pub async fn set_listen_addrs(&self, public: Option<SocketAddr>, admin: Option<SocketAddr>) {
        let ip = self.shared.advertise_ip;
        {
            let mut addrs = lock(&self.shared.listen_addrs);
            if let Some(a) = public {
                addrs.0 = Some(advertised(ip, a));
            }
            if let Some(a) = admin {
                addrs.1 = Some(advertised(ip, a));
            }
        }
        for (key, addr) in [(KEY_PUBLIC_ADDR, public), (KEY_ADMIN_ADDR, admin)] {
            if let Some(a) = addr {
                self.set_key(key, advertised(ip, a).to_string()).await;
            }
        }
    }

    /// Updates the advertised capacity (e.g. once the worker knows its file-descriptor limit).
    pub async fn set_capacity(&self, capacity: u64) {
        self.shared.capacity.store(capacity, Ordering::Relaxed);
        self.set_key(KEY_CAPACITY, capacity.to_string()).await;
    }

    pub fn metrics(&self) -> &ClusterMetrics {
        &self.shared.metrics
    }

    /// Announces `status=leaving`: peers stop counting this node from their next gossip round.
    /// Gossip keeps running (a draining worker stays visible as leaving) until
    /// [`Membership::shutdown`].
    pub async fn leave(&self) {
        let cc = self.chitchat.chitchat();
        let mut guard = cc.lock().await;
        let state = guard.self_node_state();
        if state.get(KEY_STATUS) == Some(Status::Leaving.as_str()) {
            return;
        }
        state.set(KEY_STATUS, Status::Leaving);
        *lock(&self.shared.status) = Status::Leaving;
        drop(guard);
        info!(node_id = %self.node_id(), "leaving the cluster");
    }

    /// Announces `leaving` (if not done yet), keeps gossiping for [`LEAVE_ROUNDS`] rounds so
    /// every peer hears it from this node rather than from the failure detector, then stops.
    pub async fn leave_and_shutdown(&self) {
        self.leave().await;
        tokio::time::sleep(self.shared.config.gossip_interval * LEAVE_ROUNDS).await;
        self.shutdown().await;
    }

    /// Stops gossip at once. Prefer [`Membership::leave_and_shutdown`].
    pub async fn shutdown(&self) {
        for t in &self.tasks {
            t.abort();
        }
        let stopped = self.chitchat.termination_watcher();
        let _ = self.chitchat.initiate_shutdown();
        if let Err(e) = stopped.await {
            warn!(error = %e, "gossip did not stop cleanly");
        }
        info!("gossip stopped");
    }

    async fn set_key(&self, key: &str, value: String) {
        let cc = self.chitchat.chitchat();
        let mut guard = cc.lock().await;
        guard.self_node_state().set(key, value);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// How long a proof of a peer's state stays good: a few probe rounds, so one slow answer does
/// not drop a live peer, while a peer that stopped answering drops out within seconds.
fn proof_freshness(gossip_interval: Duration) -> Duration {
    gossip_interval * 5 + Duration::from_secs(2)
}

/// Every gossip round: ask each peer gossip knows of for its state over the signed node link;
/// keep what they prove, forget peers gossip no longer lists.
async fn prove_peers(shared: Arc<Shared>, chitchat: SharedChitchat, prover: Prover) {
    let mut tick = tokio::time::interval(shared.config.gossip_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let targets: Vec<(String, u64, SocketAddr)> = {
            let guard = chitchat.lock().await;
            guard
                .node_states()
                .iter()
                .filter(|(id, _)| **id != shared.self_id)
                .filter_map(|(id, state)| {
                    let addr = state.get(KEY_INTERNAL_ADDR)?.parse().ok()?;
                    Some((id.node_id.to_string(), id.generation_id, addr))
                })
                .collect()
        };
        let proven = prover.probe_all(&targets).await;
        let now = Instant::now();
        let mut map = lock(&shared.proven);
        map.retain(|(id, g), _| targets.iter().any(|(i, gen, _)| i == id && gen == g));
        for state in proven {
            let key = (state.node_id.clone(), state.generation);
            // A probe answered before an announcement it overlapped is older: keep the newer
            // state (it stays as fresh as this probe's answer).
            let state = match map.get(&key) {
                Some(p) if p.state.revision > state.revision => p.state.clone(),
                _ => state,
            };
            map.insert(key, Proven { state, at: now });
        }
    }
}

/// A poisoned lock still holds consistent data here (plain values): keep going.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn advertised(ip: IpAddr, listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::new(ip, listen.port())
    } else {
        listen
    }
}

type SharedChitchat = Arc<tokio::sync::Mutex<chitchat::Chitchat>>;

/// The paper's seed contact: every `seed_node_timeout`, resolve the seeds again and gossip with
/// each of them directly. chitchat alone re-resolves seed names only once a minute and only
/// gossips with seeds it resolved; this loop is what makes a worker started before its leaders
/// (or a leader whose DNS name moved) join within one `seed_node_timeout`.
async fn contact_seeds(
    shared: Arc<Shared>,
    chitchat: Arc<ChitchatHandle>,
    join_rx: watch::Receiver<JoinState>,
) {
    let config = &shared.config;
    let mut tick = tokio::time::interval(config.seed_node_timeout);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if *join_rx.borrow() == JoinState::GaveUp {
            return;
        }
        let resolved = seeds::resolve(&config.seeds).await;
        if !resolved.is_empty() || config.seeds.is_empty() {
            // A failed lookup keeps the last known addresses rather than dropping every leader.
            *lock(&shared.seed_addrs) = resolved.iter().copied().collect();
        }
        let targets: Vec<SocketAddr> = resolved
            .into_iter()
            // Our UDP socket speaks one address family: skip e.g. `localhost`'s ::1.
            .filter(|a| a.is_ipv4() == config.internal_listen.is_ipv4())
            .filter(|a| *a != shared.self_id.gossip_advertise_addr)
            .collect();
        if targets.is_empty() && !config.seeds.is_empty() {
            warn!(seeds = ?config.seeds, "no seed resolves; retrying");
        }
        for addr in targets {
            if chitchat.gossip(addr).is_err() {
                // The gossip server stopped (shutdown): nothing left to contact for.
                return;
            }
        }
    }
}

/// Every gossip round: rebuild the view, publish the connection count (throttled), move a worker
/// from joining to up once it hears a peer, and give up after the join deadline.
async fn refresh(
    shared: Arc<Shared>,
    chitchat: SharedChitchat,
    view_tx: watch::Sender<Arc<ClusterView>>,
    join_tx: watch::Sender<JoinState>,
) {
    let config = &shared.config;
    let started = Instant::now();
    let mut heard: HashMap<ChitchatId, (u64, Instant)> = HashMap::new();
    let mut published_conns = 0u64;
    let mut last_conns_publish = Instant::now();
    let mut tick = tokio::time::interval(config.gossip_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.refresh_now.notified() => {}
        }
        let now = Instant::now();
        let mut guard = chitchat.lock().await;

        let conns = shared.conns.load(Ordering::Relaxed);
        if conns != published_conns && now >= last_conns_publish + CONNS_PUBLISH_PERIOD {
            guard.self_node_state().set(KEY_CONNS, conns);
            published_conns = conns;
            last_conns_publish = now;
        }

        let live: Vec<ChitchatId> = guard.live_nodes().cloned().collect();
        let raw: Vec<RawNode> = guard
            .node_states()
            .iter()
            .map(|(id, state)| {
                let hb = u64::from(state.heartbeat());
                let entry = heard.entry(id.clone()).or_insert((hb, now));
                if entry.0 != hb {
                    *entry = (hb, now);
                }
                let is_self = *id == shared.self_id;
                RawNode {
                    node_id: id.node_id.to_string(),
                    generation: id.generation_id,
                    gossip_addr: id.gossip_advertise_addr,
                    keys: state
                        .key_values()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    live: is_self || live.contains(id),
                    last_heard: if is_self {
                        Duration::ZERO
                    } else {
                        now - entry.1
                    },
                    is_self,
                }
            })
            .collect();
        heard.retain(|id, _| guard.node_states().contains_key(id));

        let view = {
            let proven = lock(&shared.proven);
            let seed_addrs = lock(&shared.seed_addrs);
            ClusterView::build(
                &config.node_id,
                raw,
                &Trust {
                    proven: config.secret.is_some().then_some(&*proven),
                    fresh: proof_freshness(config.gossip_interval),
                    now,
                    seed_addrs: &seed_addrs,
                },
            )
        };
        // A worker has joined once anyone answers. A leader waits for the other leader, or forms
        // the cluster alone after one seed-node timeout (Akka's first seed node): until then it
        // is `joining`, so a leader that just (re)started never claims to be active before it
        // has heard whether its peer already is.
        let joined = match config.role {
            Role::Worker => view
                .members
                .iter()
                .any(|m| !m.is_self && m.reachable && m.verified),
            Role::Leader => {
                config.seeds.is_empty()
                    || started.elapsed() >= config.seed_node_timeout
                    || view
                        .members
                        .iter()
                        .any(|m| !m.is_self && m.reachable && m.verified && m.role == Role::Leader)
            }
        };
        let state = *join_tx.borrow();
        match state {
            JoinState::Joining if joined => {
                // Unless the node started leaving meanwhile.
                let self_state = guard.self_node_state();
                if self_state.get(KEY_STATUS) == Some(Status::Joining.as_str()) {
                    self_state.set(KEY_STATUS, Status::Up);
                    *lock(&shared.status) = Status::Up;
                }
                info!(
                    after_ms = started.elapsed().as_millis() as u64,
                    "joined the cluster"
                );
                let _ = join_tx.send(JoinState::Joined);
            }
            JoinState::Joining
                if config.role == Role::Worker
                    && config
                        .join_give_up
                        .is_some_and(|limit| started.elapsed() >= limit) =>
            {
                error!(
                    seeds = ?config.seeds,
                    after_secs = started.elapsed().as_secs(),
                    "could not join the cluster: no seed node answered; giving up \
                     (shutdown-after-unsuccessful-join)"
                );
                let _ = join_tx.send(JoinState::GaveUp);
            }
            _ => {}
        }
        drop(guard);

        shared.metrics.update(&view);
        view_tx.send_replace(Arc::new(view));
    }
}
