//! `ews-leader`: a seed node of the cluster. Two run in separate availability zones, each seeding
//! the other; the live one with the lowest node id is active and publishes the cluster's
//! connected-client count. Leaders accept no client WebSockets.

mod admin;
mod cloudwatch;
mod http;
mod internal;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ews_cluster::{ClusterArgs, Membership, MembershipConfig, Role};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

#[derive(Debug, Parser)]
#[command(name = "ews-leader", version, about)]
struct Cli {
    /// Admin HTTP port: /info, /members, /metrics. Never exposed through the load balancer.
    #[arg(long, env = "EWS_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    admin_listen: SocketAddr,

    /// Internal port: gossip on UDP and node links on TCP (same port number).
    #[arg(long, env = "EWS_INTERNAL_LISTEN", default_value = "0.0.0.0:7070")]
    internal_listen: SocketAddr,

    #[command(flatten)]
    cluster: ClusterArgs,

    /// Publish the cluster-wide connected-client count to CloudWatch (active leader only).
    #[arg(long, env = "EWS_PUBLISH_METRIC")]
    publish_metric: bool,

    /// CloudWatch namespace of the published metric.
    #[arg(long, env = "EWS_CLOUDWATCH_NAMESPACE", default_value = "ElasticWS")]
    cloudwatch_namespace: String,

    /// CloudWatch metric name of the cluster-wide connected-client count.
    #[arg(
        long,
        env = "EWS_CLOUDWATCH_METRIC",
        default_value = "ConnectedClients"
    )]
    cloudwatch_metric: String,

    /// Value of the metric's `Deployment` dimension. Two deployments in one account and region
    /// would otherwise write one metric and feed each other's scaling alarms; Terraform sets it
    /// to the deployment's name. Empty: no dimension.
    #[arg(long, env = "EWS_CLOUDWATCH_DEPLOYMENT", default_value = "")]
    cloudwatch_deployment: String,

    /// Seconds between two publications (CloudWatch's standard resolution is 60 s).
    #[arg(long, env = "EWS_CLOUDWATCH_INTERVAL_SECS", default_value_t = 60)]
    cloudwatch_interval_secs: u64,

    /// The built-in queue broker this leader hosts while it is active.
    #[command(flatten)]
    queue: ews_queue::args::QueueArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "ews-leader failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let admin_listener = TcpListener::bind(cli.admin_listen)
        .await
        .with_context(|| format!("binding admin port {}", cli.admin_listen))?;
    let internal_listener = TcpListener::bind(cli.internal_listen)
        .await
        .with_context(|| format!("binding internal port {}", cli.internal_listen))?;

    let mut config = MembershipConfig::from_args(&cli.cluster, Role::Leader, cli.internal_listen)?;
    let (admin_addr, internal_addr) = (
        admin_listener.local_addr()?,
        internal_listener.local_addr()?,
    );
    config.admin_listen = Some(admin_addr);
    config.internal_listen = internal_addr;
    let membership = Membership::start(config)
        .await
        .context("starting cluster membership")?;

    let mut registry = Registry::default();
    membership.metrics().register(&mut registry);
    let publish_metrics = cloudwatch::PublishMetrics::default();
    publish_metrics.register(&mut registry);

    let admin = Arc::new(admin::Admin {
        view: membership.watch_view(),
        registry,
        draining: AtomicBool::new(false),
    });
    let internal = Arc::new(internal::InternalRoutes {
        secret: membership.secret().cloned(),
        queue: ews_queue::args::LazyBroker::new(cli.queue.clone()),
        view: membership.watch_view(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    {
        let admin = admin.clone();
        tasks.spawn(http::serve(admin_listener, move |req| {
            admin.clone().handle(req)
        }));
    }
    tasks.spawn(http::serve(internal_listener, move |req| {
        internal.clone().handle(req)
    }));
    if cli.publish_metric {
        tasks.spawn(cloudwatch::run(
            cloudwatch::Settings {
                namespace: cli.cloudwatch_namespace.clone(),
                metric: cli.cloudwatch_metric.clone(),
                deployment: Some(cli.cloudwatch_deployment.clone()).filter(|d| !d.is_empty()),
                interval: Duration::from_secs(cli.cloudwatch_interval_secs.max(1)),
            },
            membership.watch_view(),
            publish_metrics,
        ));
    }
    info!(
        node_id = membership.node_id(),
        admin = %admin_addr,
        internal = %internal_addr,
        publish_metric = cli.publish_metric,
        "ews-leader ready"
    );

    tokio::select! {
        _ = sigterm.recv() => info!("SIGTERM: leaving the cluster"),
        _ = sigint.recv() => info!("SIGINT: leaving the cluster"),
    }
    admin.draining.store(true, Ordering::Relaxed);
    membership.leave_and_shutdown().await;
    tasks.abort_all();
    info!("ews-leader stopped");
    Ok(())
}
