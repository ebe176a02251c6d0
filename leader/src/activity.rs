//! Whether this leader is the active one: it then accepts queue writes, takes over what a
//! standby still holds and publishes the cluster metric. Everything that acts only while active
//! reads the same [`Term`], so "active" has one meaning in the process.
//!
//! Two ways to decide, as Akka's Split Brain Resolver names them:
//! * **lease** (`--lease-table`, the default in AWS): a term is held in DynamoDB (`lease`). The
//!   holder renews every quarter of the lease's time to live and stops acting one fifth of it
//!   before its last successful renewal could expire, so it has stepped down before anyone else
//!   can take over; a partition between the leaders can never give both a term.
//! * **view** (no lease store: one machine, development): the lowest serving leader in this
//!   node's own view is active. A partition between the leaders makes both active: documented
//!   as not partition-safe.
//!
//! A term is announced to peers with its epoch (`Membership::set_active`); workers follow the
//! claim with the highest epoch.

use std::sync::Arc;
use std::time::Duration;

use ews_cluster::{Membership, Status};
use ews_http::args::positive_secs;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::lease::DynamoLease;

/// How the leaders agree on the active one.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaseArgs {
    /// DynamoDB table holding the active-leader lease (string hash key `lease`). Without it,
    /// each leader decides from its own view of the cluster: not safe under a partition between
    /// the leaders (docs/failover.md).
    #[arg(long, env = "EWS_LEASE_TABLE")]
    pub lease_table: Option<String>,

    /// The lease's item in that table: one per cluster sharing the table.
    #[arg(long, env = "EWS_LEASE_NAME", default_value = "active-leader")]
    pub lease_name: String,

    /// Seconds a term lasts without renewal. A dead active leader is replaced within about this
    /// long; renewals go out every quarter of it.
    #[arg(
        long = "lease-ttl-secs",
        env = "EWS_LEASE_TTL_SECS",
        default_value = "10",
        value_parser = positive_secs
    )]
    pub lease_ttl: Duration,
}

/// The active term this leader holds: its epoch, and a token cancelled the moment it ends
/// (queue connections served during the term close on it).
#[derive(Debug, Clone)]
pub struct Term {
    pub epoch: u64,
    pub ended: CancellationToken,
}

/// `None` while standby.
pub type Activity = watch::Receiver<Option<Term>>;

/// `ews_leader_active` (1 while this leader holds a term) and `ews_leader_term_epoch`.
#[derive(Clone, Default)]
pub struct ActivityMetrics {
    active: Gauge,
    epoch: Gauge,
}

impl ActivityMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ews_leader_active",
            "1 while this leader holds the active term (accepts queue writes, publishes the metric)",
            self.active.clone(),
        );
        registry.register(
            "ews_leader_term_epoch",
            "Epoch of the term this leader holds or last held",
            self.epoch.clone(),
        );
    }
}

/// Owns the term: starts and ends it, tells peers and the rest of the process.
pub struct Terms {
    tx: watch::Sender<Option<Term>>,
    membership: Arc<Membership>,
    metrics: ActivityMetrics,
}

impl Terms {
    pub fn new(membership: Arc<Membership>, metrics: ActivityMetrics) -> (Terms, Activity) {
        let (tx, rx) = watch::channel(None);
        (
            Terms {
                tx,
                membership,
                metrics,
            },
            rx,
        )
    }

    fn held(&self) -> Option<u64> {
        self.tx.borrow().as_ref().map(|t| t.epoch)
    }

    async fn begin(&self, epoch: u64) {
        if self.held() == Some(epoch) {
            return;
        }
        self.end().await;
        info!(epoch, "active: this leader holds the term");
        self.tx.send_replace(Some(Term {
            epoch,
            ended: CancellationToken::new(),
        }));
        self.metrics.active.set(1);
        self.metrics.epoch.set(epoch as i64);
        self.membership.set_active(Some(epoch)).await;
    }

    /// Stops acting first (queue connections close, writes stop), then tells peers.
    async fn end(&self) {
        let Some(term) = self.tx.send_replace(None) else {
            return;
        };
        term.ended.cancel();
        self.metrics.active.set(0);
        info!(epoch = term.epoch, "standby: this leader gave up its term");
        self.membership.set_active(None).await;
    }
}

/// Runs the choice `args` asks for until `stop`, then ends the term (and releases the lease).
pub async fn run(args: LeaseArgs, terms: Terms, stop: CancellationToken) {
    match &args.lease_table {
        Some(table) => {
            let lease = DynamoLease::new(table, &args.lease_name).await;
            info!(%table, name = %args.lease_name, ttl = ?args.lease_ttl, "leader choice: DynamoDB lease");
            by_lease(&lease, args.lease_ttl, &terms, &stop).await;
            if let Some(epoch) = terms.held() {
                terms.end().await;
                let me = terms.membership.node_id().to_string();
                if let Err(e) = lease.release(&me, epoch).await {
                    warn!(error = %e, "could not release the lease; it expires by itself");
                }
            }
        }
        None => {
            info!("leader choice: each leader's own view (no lease table; not partition-safe)");
            by_view(&terms, &stop).await;
            terms.end().await;
        }
    }
}

/// Active while this leader is the lowest serving leader in its own view.
async fn by_view(terms: &Terms, stop: &CancellationToken) {
    let mut view = terms.membership.watch_view();
    loop {
        let first = view.borrow_and_update().first_leader.clone();
        if first.as_deref() == Some(terms.membership.node_id()) {
            terms.begin(0).await;
        } else {
            terms.end().await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = view.changed() => if changed.is_err() { return },
        }
    }
}

/// Takes, renews and gives up the lease.
async fn by_lease(lease: &DynamoLease, ttl: Duration, terms: &Terms, stop: &CancellationToken) {
    let me = terms.membership.node_id().to_string();
    let every = ttl / 4;
    // The holder stops acting this long before its term could expire: room for clock skew
    // between the leaders and for a renewal that succeeded after we stopped waiting for it.
    let margin = ttl / 5;
    let mut valid_until: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let joined = terms.membership.own_state().status == Status::Up;
        let outcome = match terms.held() {
            // A slow store is waited for as long as the term lasts, never longer: a renewal that
            // lands in time keeps it, however late; past the term this leader stops acting
            // whatever the answer would have been.
            Some(epoch) => {
                let limit = valid_until.unwrap_or(started + every);
                tokio::time::timeout_at(limit, lease.renew(&me, epoch, ttl))
                    .await
                    .unwrap_or_else(|_| Err("renewal timed out".into()))
                    .map(|kept| kept.then_some(epoch))
            }
            // A leader that has not joined yet does not know whether its peer is active.
            None if !joined => Ok(None),
            None => tokio::time::timeout(every, lease.acquire(&me, ttl))
                .await
                .unwrap_or_else(|_| Err("acquisition timed out".into())),
        };
        match outcome {
            Ok(Some(epoch)) => {
                valid_until = Some(started + ttl - margin);
                terms.begin(epoch).await;
            }
            Ok(None) => {
                if terms.held().is_some() {
                    warn!("lost the lease to another leader");
                }
                valid_until = None;
                terms.end().await;
            }
            Err(e) => warn!(error = %e, "lease store unreachable"),
        }
        let next = started + every;
        let wake = match valid_until {
            Some(until) if terms.held().is_some() => next.min(until),
            _ => next,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(wake) => {}
        }
        if valid_until.is_some_and(|until| Instant::now() >= until) && terms.held().is_some() {
            warn!("could not renew the lease in time: stepping down before it can expire");
            valid_until = None;
            terms.end().await;
        }
    }
}
