//! The worker as a cluster member: it joins through the leaders (its seeds), gossips its live
//! connection count and capacity, turns `leaving` when its drain begins, keeps gossiping
//! through the drain and stops at its end. A worker that cannot join within
//! `--shutdown-after-unsuccessful-join-secs` exits non-zero.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ews_cluster::interest::Interest;
use ews_cluster::{ClusterArgs, Membership, MembershipConfig, Role};
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
use crate::{WorkerArgs, WorkerHandle};

/// How often the live session count is copied into the membership (which gossips it at most
/// once a second).
const CONNS_SAMPLE_PERIOD: Duration = Duration::from_millis(250);

/// The worker's cluster flags: the internal port and the shared cluster flags.
#[derive(Debug, Clone, clap::Args)]
pub struct MembershipArgs {
    /// Internal address: gossip on UDP and node links on TCP (same port number).
    #[arg(long, env = "EWS_INTERNAL_LISTEN", default_value = "0.0.0.0:7070")]
    pub internal_listen: SocketAddr,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Starts gossip, or returns `None` for a node outside any cluster (`--standalone`, or no
/// `--seeds`).
pub async fn start(
    args: &MembershipArgs,
    worker: &WorkerArgs,
) -> anyhow::Result<Option<Arc<Membership>>> {
    if worker.standalone || args.cluster.seeds.is_empty() {
        tracing::info!("no --seeds (or --standalone): running outside any cluster");
        return Ok(None);
    }
    let mut config =
        MembershipConfig::from_args(&args.cluster, Role::Worker, args.internal_listen)?;
    config.public_listen = Some(worker.listen);
    config.admin_listen = Some(worker.admin_listen);
    let membership = Membership::start(config).await?;
    Ok(Some(Arc::new(membership)))
}

/// Gossips the worker's bound addresses, capacity, live connection count and topic interest;
/// turns `leaving` as soon as the drain begins and keeps the count honest through the drain,
/// until `stop`.
pub async fn report(
    m: Arc<Membership>,
    worker: WorkerHandle,
    registry: Arc<Registry>,
    (public, admin): (SocketAddr, SocketAddr),
    stop: CancellationToken,
) {
    m.set_listen_addrs(Some(public), Some(admin)).await;
    m.set_capacity(worker.capacity() as u64).await;
    let mut topics = registry.watch_topics();
    topics.mark_changed();
    let announcing = m.secret().is_some();
    if announcing {
        registry.announce_interest();
    }
    let mut interest: Option<Interest> = None;
    let mut every = tokio::time::interval(CONNS_SAMPLE_PERIOD);
    let mut left = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => m.set_conns(worker.connections() as u64),
            // Told to every peer before a new subscriber hears `subscribed` (peers that miss
            // the announcement read it on their next probe of this node).
            Ok(()) = topics.changed() => {
                let seq = *topics.borrow_and_update();
                let names = registry.topics();
                let now = Interest::of(names.iter().map(|t| t.as_str()));
                if interest.as_ref() != Some(&now) {
                    m.set_interest(now.clone()).await;
                    interest = Some(now);
                    if announcing {
                        let told = m.announce().await;
                        if told.missed > 0 {
                            tracing::warn!(told = told.told, missed = told.missed, "topic interest: some peers not told (they read it on their next probe)");
                        }
                    }
                }
                registry.mark_advertised(seq);
            }
            _ = worker.draining(), if !left => {
                left = true;
                m.leave().await;
            }
        }
    }
}
