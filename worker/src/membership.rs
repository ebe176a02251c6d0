//! The worker as a cluster member: it joins through the leaders (its seeds), gossips its live
//! connection count and capacity, serves the cluster view on the admin port (`/members`), turns
//! `leaving` when its drain begins, keeps gossiping through the drain and stops at its end. A
//! worker that cannot join within `--shutdown-after-unsuccessful-join-secs` exits non-zero.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ews_cluster::{ClusterArgs, Membership, MembershipConfig, Role};
use http::StatusCode;

use crate::admin::respond;
use crate::{Worker, WorkerArgs};

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
/// `--seeds`). Called before the worker binds, so the sink can already follow the active leader.
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

/// Wires a started membership to the worker: `/members` on the admin port, the connection count
/// and capacity into gossip, `leaving` as soon as the drain begins.
pub fn attach(membership: &Arc<Membership>, worker: &mut Worker) {
    let m = membership.clone();
    worker.add_admin_route((
        "/members",
        Arc::new(move || respond(StatusCode::OK, "application/json", m.view().to_json())),
    ));
    let handle = worker.handle();
    let (public, admin) = (worker.public_addr().ok(), worker.admin_addr().ok());
    let m = membership.clone();
    tokio::spawn(async move {
        m.set_listen_addrs(public, admin).await;
        m.set_capacity(handle.capacity() as u64).await;
        let mut every = tokio::time::interval(CONNS_SAMPLE_PERIOD);
        loop {
            tokio::select! {
                _ = every.tick() => m.set_conns(handle.connections() as u64),
                _ = handle.draining() => break,
            }
        }
        m.leave().await;
        // Sessions keep closing through the drain: keep the count honest while gossip runs.
        loop {
            every.tick().await;
            m.set_conns(handle.connections() as u64);
        }
    });
}

/// Runs the worker to the end of its drain, then stops gossip. Fails (non-zero exit) if the
/// node gave up joining the cluster.
pub async fn serve(worker: Worker, membership: Option<Arc<Membership>>) -> anyhow::Result<()> {
    let Some(m) = membership else {
        return worker.run().await;
    };
    let give_up = m.gave_up();
    tokio::pin!(give_up);
    let result = tokio::select! {
        r = worker.run() => r,
        _ = &mut give_up => Err(anyhow::anyhow!(
            "could not join the cluster: no seed node answered in time"
        )),
    };
    if result.is_ok() {
        m.leave_and_shutdown().await;
    } else {
        m.shutdown().await;
    }
    result
}
