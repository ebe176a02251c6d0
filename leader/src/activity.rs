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

use crate::lease::{DynamoLease, LeaseStore};

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
    /// Told of every change (gossiped to peers); `None` in tests of the choice alone.
    membership: Option<Arc<Membership>>,
    metrics: ActivityMetrics,
}

impl Terms {
    pub fn new(membership: Arc<Membership>, metrics: ActivityMetrics) -> (Terms, Activity) {
        Terms::announcing(Some(membership), metrics)
    }

    fn announcing(
        membership: Option<Arc<Membership>>,
        metrics: ActivityMetrics,
    ) -> (Terms, Activity) {
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

    async fn announce(&self, epoch: Option<u64>) {
        if let Some(m) = &self.membership {
            m.set_active(epoch).await;
        }
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
        self.announce(Some(epoch)).await;
    }

    /// Stops acting first (queue connections close, writes stop), then tells peers.
    async fn end(&self) {
        let Some(term) = self.tx.send_replace(None) else {
            return;
        };
        term.ended.cancel();
        self.metrics.active.set(0);
        info!(epoch = term.epoch, "standby: this leader gave up its term");
        self.announce(None).await;
    }
}

/// Runs the choice `args` asks for until `stop`, then ends the term (and releases the lease).
pub async fn run(
    args: LeaseArgs,
    membership: Arc<Membership>,
    terms: Terms,
    stop: CancellationToken,
) {
    let me = membership.node_id().to_string();
    match &args.lease_table {
        Some(table) => {
            let lease = DynamoLease::new(table, &args.lease_name).await;
            info!(%table, name = %args.lease_name, ttl = ?args.lease_ttl, "leader choice: DynamoDB lease");
            // A leader that has not joined yet does not know whether its peer is active.
            let joined = || membership.own_state().status == Status::Up;
            by_lease(&lease, &me, args.lease_ttl, &terms, joined, &stop).await;
            if let Some(epoch) = terms.held() {
                terms.end().await;
                if let Err(e) = LeaseStore::release(&lease, &me, epoch).await {
                    warn!(error = %e, "could not release the lease; it expires by itself");
                }
            }
        }
        None => {
            info!("leader choice: each leader's own view (no lease table; not partition-safe)");
            by_view(&membership, &terms, &stop).await;
            terms.end().await;
        }
    }
}

/// Active while this leader is the lowest serving leader in its own view.
async fn by_view(membership: &Membership, terms: &Terms, stop: &CancellationToken) {
    let mut view = membership.watch_view();
    loop {
        let first = view.borrow_and_update().first_leader.clone();
        if first.as_deref() == Some(membership.node_id()) {
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

/// Takes, renews and gives up the lease as `me`; `joined` says whether this leader has heard
/// its cluster yet.
async fn by_lease(
    lease: &impl LeaseStore,
    me: &str,
    ttl: Duration,
    terms: &Terms,
    joined: impl Fn() -> bool,
    stop: &CancellationToken,
) {
    let every = ttl / 4;
    // The holder stops acting this long before its term could expire: room for clock skew
    // between the leaders and for a renewal that succeeded after we stopped waiting for it.
    let margin = ttl / 5;
    let mut valid_until: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let joined = joined();
        let outcome = match terms.held() {
            // A slow store is waited for as long as the term lasts, never longer: a renewal that
            // lands in time keeps it, however late; past the term this leader stops acting
            // whatever the answer would have been.
            Some(epoch) => {
                let limit = valid_until.unwrap_or(started + every);
                tokio::time::timeout_at(limit, lease.renew(me, epoch, ttl))
                    .await
                    .unwrap_or_else(|_| Err("renewal timed out".into()))
                    .map(|kept| kept.then_some(epoch))
            }
            // A leader that has not joined yet does not know whether its peer is active.
            None if !joined => Ok(None),
            None => tokio::time::timeout(every, lease.acquire(me, ttl))
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

#[cfg(test)]
mod tests {
    //! The step-down rule under paused time, against an in-memory lease that behaves as the
    //! DynamoDB item does (each caller judges expiry by its own clock, as the conditional write
    //! does with the `:now` it sends) and can fail, stall or answer late on demand.

    use std::sync::Mutex;

    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[derive(Default)]
    struct Item {
        holder: Option<String>,
        epoch: u64,
        /// ms on the store's reference clock.
        expires: u64,
    }

    /// How the store treats one caller.
    #[derive(Clone, Copy, Default)]
    struct Weather {
        /// Every call fails at once (AccessDenied, a partition from the store, throttling).
        failing: bool,
        /// Every call takes this long to answer; the write itself lands at once.
        late: Duration,
    }

    struct Shared {
        item: Mutex<Item>,
        /// The reference clock's zero: every caller's clock is this plus its skew.
        start: Instant,
    }

    impl Shared {
        fn new() -> Arc<Shared> {
            Arc::new(Shared {
                item: Mutex::default(),
                start: Instant::now(),
            })
        }
    }

    /// One leader's handle on the shared item: its own clock skew and weather.
    struct FakeLease {
        shared: Arc<Shared>,
        skew_ms: i64,
        weather: Arc<Mutex<Weather>>,
    }

    impl FakeLease {
        fn now_ms(&self) -> u64 {
            let t = self.shared.start.elapsed().as_millis() as i64 + 1_000_000 + self.skew_ms;
            t as u64
        }

        async fn call<T>(&self, f: impl FnOnce(&mut Item, u64) -> T) -> Result<T, String> {
            let w = *self.weather.lock().unwrap();
            if w.failing {
                return Err("store unreachable".into());
            }
            let out = f(&mut self.shared.item.lock().unwrap(), self.now_ms());
            tokio::time::sleep(w.late).await;
            Ok(out)
        }
    }

    impl LeaseStore for FakeLease {
        async fn acquire(&self, me: &str, ttl: Duration) -> Result<Option<u64>, String> {
            self.call(|item, now| {
                if item.holder.is_some() && item.expires >= now {
                    return None;
                }
                item.holder = Some(me.to_string());
                item.epoch += 1;
                item.expires = now + ttl.as_millis() as u64;
                Some(item.epoch)
            })
            .await
        }

        async fn renew(&self, me: &str, epoch: u64, ttl: Duration) -> Result<bool, String> {
            self.call(|item, now| {
                let mine = item.holder.as_deref() == Some(me) && item.epoch == epoch;
                if mine {
                    item.expires = now + ttl.as_millis() as u64;
                }
                mine
            })
            .await
        }

        async fn release(&self, me: &str, epoch: u64) -> Result<bool, String> {
            self.call(|item, _| {
                let mine = item.holder.as_deref() == Some(me) && item.epoch == epoch;
                if mine {
                    item.expires = 0;
                }
                mine
            })
            .await
        }
    }

    struct Leader {
        activity: Activity,
        weather: Arc<Mutex<Weather>>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    fn leader(shared: &Arc<Shared>, me: &'static str, skew_ms: i64) -> Leader {
        let weather = Arc::new(Mutex::new(Weather::default()));
        let lease = FakeLease {
            shared: shared.clone(),
            skew_ms,
            weather: weather.clone(),
        };
        let (terms, activity) = Terms::announcing(None, ActivityMetrics::default());
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            by_lease(&lease, me, TTL, &terms, || true, &s).await;
        });
        Leader {
            activity,
            weather,
            stop,
            task,
        }
    }

    /// leader-1 on `shared` and, `after` later, leader-2 with its clock `skew_ms` apart; both
    /// running until leader-1 holds the term (3 s).
    async fn pair(shared: &Arc<Shared>, after: Duration, skew_ms: i64) -> (Leader, Leader) {
        let a = leader(shared, "leader-1", 0);
        tokio::time::sleep(after).await;
        let b = leader(shared, "leader-2", skew_ms);
        let seen = watch_both(&a, &b, Duration::from_secs(3)).await;
        assert_eq!(seen.last(), Some(&(true, false)), "leader-1 holds");
        (a, b)
    }

    /// Steps paused time by `step` until `until` has passed, checking at every step that the
    /// two leaders never hold a term at once; the (holds a, holds b) seen at each step.
    async fn watch_both(a: &Leader, b: &Leader, until: Duration) -> Vec<(bool, bool)> {
        let step = Duration::from_millis(50);
        let end = Instant::now() + until;
        let mut seen = Vec::new();
        while Instant::now() < end {
            tokio::time::sleep(step).await;
            let both = (a.activity.borrow().is_some(), b.activity.borrow().is_some());
            assert!(
                !(both.0 && both.1),
                "two active leaders at {:?}",
                Instant::now()
            );
            seen.push(both);
        }
        seen
    }

    async fn stop(l: Leader) {
        l.stop.cancel();
        let _ = l.task.await;
    }

    /// The holder cut off from the store steps down a fifth of the TTL before its term can
    /// expire; the other takes over only once it has, and the epoch is new.
    #[tokio::test(start_paused = true)]
    async fn a_holder_cut_off_from_the_store_steps_down_before_its_term_expires() {
        let shared = Shared::new();
        let a = leader(&shared, "leader-1", 0);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let b = leader(&shared, "leader-2", 0);
        let seen = watch_both(&a, &b, Duration::from_secs(5)).await;
        assert!(
            seen.last() == Some(&(true, false)),
            "leader-1 holds: {seen:?}"
        );

        a.weather.lock().unwrap().failing = true;
        let cut = Instant::now();
        let mut stepped_down = None;
        let mut taken_over = None;
        while taken_over.is_none() {
            let both = watch_both(&a, &b, Duration::from_millis(50)).await;
            let (ha, hb) = both[0];
            if !ha && stepped_down.is_none() {
                stepped_down = Some(cut.elapsed());
            }
            if hb {
                taken_over = Some(cut.elapsed());
            }
            assert!(cut.elapsed() < TTL * 3, "nobody took over");
        }
        let (down, over) = (stepped_down.unwrap(), taken_over.unwrap());
        // Its last renewal was at most a quarter TTL before the cut: it stopped acting by
        // that renewal's expiry less the margin, and the other took over only after expiry.
        assert!(down <= TTL - TTL / 5, "stepped down after {down:?}");
        assert!(
            over > down,
            "took over at {over:?}, before the step-down at {down:?}"
        );
        assert_eq!(shared.item.lock().unwrap().epoch, 2);
        stop(a).await;
        stop(b).await;
    }

    /// A renewal that lands in the store after the holder stopped waiting for it: the holder
    /// has stopped acting (its term might have expired, for all it knows), and the other leader
    /// still cannot take the lease until the extended term expires. Never two.
    #[tokio::test(start_paused = true)]
    async fn a_renewal_answered_after_the_holder_stopped_waiting_never_makes_two() {
        let shared = Shared::new();
        let (a, b) = pair(&shared, Duration::from_millis(10), 0).await;
        // The store answers a whole term late; every write still lands at once.
        a.weather.lock().unwrap().late = TTL;
        let seen = watch_both(&a, &b, TTL * 4).await;
        assert!(seen.iter().any(|&(ha, _)| !ha), "leader-1 stepped down");
        assert!(
            seen.iter().any(|&(_, hb)| hb),
            "leader-2 took over in the end"
        );
        stop(a).await;
        stop(b).await;
    }

    /// Clocks apart by just under the margin (a fifth of the TTL), either way, and the
    /// standby's tries at every phase of the holder's renewals: still never two active leaders,
    /// through a holder cut off from the store.
    #[tokio::test(start_paused = true)]
    async fn clock_skew_within_the_margin_never_makes_two() {
        let margin = (TTL / 5).as_millis() as i64;
        let phases = [10, 500, 1000, 1500, 2000];
        for (skew, phase) in [margin - 20, -(margin - 20)]
            .into_iter()
            .flat_map(|s| phases.map(|p| (s, p)))
        {
            let shared = Shared::new();
            let (a, b) = pair(&shared, Duration::from_millis(phase), skew).await;
            a.weather.lock().unwrap().failing = true;
            let seen = watch_both(&a, &b, TTL * 2).await;
            assert!(
                seen.iter().any(|&(_, hb)| hb),
                "skew {skew}, phase {phase}: leader-2 took over"
            );
            stop(a).await;
            stop(b).await;
        }
    }

    /// A flaky store (every other call fails) and a slow one (answers within the term) keep
    /// the holder's term; the standby never gets it.
    #[tokio::test(start_paused = true)]
    async fn errors_and_throttling_within_the_term_keep_the_holder() {
        let shared = Shared::new();
        let (a, b) = pair(&shared, Duration::from_millis(10), 0).await;
        for _ in 0..8 {
            let failing = !a.weather.lock().unwrap().failing;
            a.weather.lock().unwrap().failing = failing;
            let seen = watch_both(&a, &b, TTL / 4).await;
            assert!(seen.iter().all(|&s| s == (true, false)), "{seen:?}");
        }
        *a.weather.lock().unwrap() = Weather {
            failing: false,
            late: TTL / 3,
        };
        let seen = watch_both(&a, &b, TTL * 3).await;
        assert!(seen.iter().all(|&s| s == (true, false)), "{seen:?}");
        stop(a).await;
        stop(b).await;
    }
}
