//! A leader node: membership (a seed of the cluster), the choice of the active leader, the admin
//! port (with the publish front door), the internal port (the node link, which serves the
//! built-in queue while this leader is active), the takeover of what a standby holds and the
//! CloudWatch publisher. The same shape as a worker: [`Leader::build`] binds and joins, [`Leader::run`]
//! serves until its shutdown token is cancelled, then leaves the cluster.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ews_cluster::publish::Fanout;
use ews_cluster::{ClusterArgs, Membership, MembershipConfig, Role};
use ews_http::args::{positive_secs, AdminArgs, PortArgs};
use ews_http::link::LinkKey;
use ews_http::Ports;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::activity::{self, Activity, ActivityMetrics, LeaseArgs, Terms};
use crate::admin::Admin;
use crate::cloudwatch;
use crate::internal::InternalRoutes;
use crate::lost::{self, LostArgs, LostSink};
use crate::takeover::{Takeover, TakeoverMetrics};

/// Every flag of `ews-leader`.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderArgs {
    /// Admin HTTP port: /info, /members, /metrics. Never exposed through the load balancer.
    #[arg(long, env = "EWS_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,

    /// Internal port: gossip on UDP and node links on TCP (same port number).
    #[arg(long, env = "EWS_INTERNAL_LISTEN", default_value = "0.0.0.0:7070")]
    pub internal_listen: SocketAddr,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Publish the cluster-wide connected-client count to CloudWatch (active leader only).
    #[arg(long, env = "EWS_PUBLISH_METRIC")]
    pub publish_metric: bool,

    /// CloudWatch namespace of the published metric.
    #[arg(long, env = "EWS_CLOUDWATCH_NAMESPACE", default_value = "ElasticWS")]
    pub cloudwatch_namespace: String,

    /// CloudWatch metric name of the cluster-wide connected-client count.
    #[arg(
        long,
        env = "EWS_CLOUDWATCH_METRIC",
        default_value = "ConnectedClients"
    )]
    pub cloudwatch_metric: String,

    /// Value of the metric's `Deployment` dimension. Two deployments in one account and region
    /// would otherwise write one metric and feed each other's scaling alarms; Terraform sets it
    /// to the deployment's name. Empty: no dimension.
    #[arg(long, env = "EWS_CLOUDWATCH_DEPLOYMENT", default_value = "")]
    pub cloudwatch_deployment: String,

    /// Seconds between two publications (CloudWatch's standard resolution is 60 s).
    #[arg(
        long = "cloudwatch-interval-secs",
        env = "EWS_CLOUDWATCH_INTERVAL_SECS",
        default_value = "60",
        value_parser = positive_secs
    )]
    pub cloudwatch_interval: Duration,

    /// The built-in queue broker this leader hosts while it is active.
    #[command(flatten)]
    pub queue: ews_queue::args::QueueArgs,

    /// How the leaders agree on the active one.
    #[command(flatten)]
    pub lease: LeaseArgs,

    /// Where the active leader writes `node_lost` records (`--lifecycle-events`): the workers'
    /// sink.
    #[command(flatten)]
    pub sink: ews_sink::args::SinkArgs,

    #[command(flatten)]
    pub lost: LostArgs,

    /// Topics with history (the front door appends to them): the workers' settings.
    #[command(flatten)]
    pub history: ews_history::HistoryArgs,

    #[command(flatten)]
    pub ports: PortArgs,

    #[command(flatten)]
    pub admin: AdminArgs,
}

pub struct Leader {
    admin_listener: TcpListener,
    internal_listener: TcpListener,
    membership: Arc<Membership>,
    admin: Arc<Admin>,
    internal: Arc<InternalRoutes>,
    cloudwatch: Option<(cloudwatch::Settings, cloudwatch::PublishMetrics)>,
    limits: ews_http::Limits,
    lease: LeaseArgs,
    terms: Terms,
    activity: Activity,
    takeover: Arc<Takeover>,
    /// Writes `node_lost` records, with `--lifecycle-events`.
    lost: Option<(LostSink, Duration)>,
}

impl Leader {
    /// Binds both ports and starts gossip.
    pub async fn build(args: LeaderArgs) -> anyhow::Result<Leader> {
        let backlog = args.ports.backlog();
        let admin_listen = args.admin.listen(args.admin_listen);
        let admin_listener = ews_http::bind(admin_listen, backlog)
            .with_context(|| format!("binding admin port {admin_listen}"))?;
        let internal_listener = ews_http::bind(args.internal_listen, backlog)
            .with_context(|| format!("binding internal port {}", args.internal_listen))?;

        let mut config =
            MembershipConfig::from_args(&args.cluster, Role::Leader, args.internal_listen)?;
        config.admin_listen = Some(admin_listener.local_addr()?);
        config.internal_listen = internal_listener.local_addr()?;
        let membership = Arc::new(
            Membership::start(config)
                .await
                .context("starting cluster membership")?,
        );

        let mut registry = Registry::default();
        membership.metrics().register(&mut registry);
        let publish_metrics = cloudwatch::PublishMetrics::default();
        publish_metrics.register(&mut registry);
        let activity_metrics = ActivityMetrics::default();
        activity_metrics.register(&mut registry);
        let takeover_metrics = TakeoverMetrics::default();
        takeover_metrics.register(&mut registry);
        let (terms, activity) = Terms::new(membership.clone(), activity_metrics);
        let broker = Arc::new(ews_queue::args::LazyBroker::new(args.queue.clone()));
        let history = ews_history::History::from_args(&args.history, true)?.map(Arc::new);
        let admin = Arc::new(Admin {
            history,
            token: args.admin.token().cloned(),
            view: membership.watch_view(),
            registry,
            draining: AtomicBool::new(false),
            fanout: Fanout::new(membership.clone(), args.cluster.publish_peer_timeout),
        });
        let internal = Arc::new(InternalRoutes {
            verifier: membership.link_verifier(),
            queue: broker.clone(),
            activity: activity.clone(),
            connections: TaskTracker::new(),
            membership: membership.clone(),
        });
        let lost = match args.sink.lifecycle_events {
            true => Some((
                LostSink::new(&args.sink, broker.clone()).await?,
                args.lost.after,
            )),
            false => None,
        };
        let takeover = Arc::new(Takeover {
            link: membership.secret().map(LinkKey::derive),
            membership: membership.clone(),
            broker,
            metrics: takeover_metrics,
        });
        let cloudwatch = args.publish_metric.then(|| {
            (
                cloudwatch::Settings {
                    namespace: args.cloudwatch_namespace.clone(),
                    metric: args.cloudwatch_metric.clone(),
                    deployment: Some(args.cloudwatch_deployment.clone()).filter(|d| !d.is_empty()),
                    interval: args.cloudwatch_interval,
                },
                publish_metrics,
            )
        });
        info!(
            node_id = membership.node_id(),
            admin = %admin_listener.local_addr()?,
            internal = %internal_listener.local_addr()?,
            publish_metric = args.publish_metric,
            "ews-leader ready"
        );
        Ok(Leader {
            admin_listener,
            internal_listener,
            membership,
            admin,
            internal,
            cloudwatch,
            limits: args.ports.limits(),
            lease: args.lease,
            terms,
            activity,
            takeover,
            lost,
        })
    }

    /// Serves until `shutdown` is cancelled; then `/info` turns 503, the leader says it is
    /// leaving, gossip stops, the ports finish their requests in flight and close.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let ports = Ports::new();
        let a = self.admin.clone();
        ports.serve(
            self.admin_listener,
            move |req, peer| a.clone().route(req, peer),
            self.limits.clone(),
        );
        let i = self.internal.clone();
        ports.serve(
            self.internal_listener,
            move |req, peer| i.clone().route(req, peer),
            self.limits,
        );
        if let Some((settings, metrics)) = self.cloudwatch {
            let view = self.membership.watch_view();
            let activity = self.activity.clone();
            ports.spawn(|stop| async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = cloudwatch::run(settings, view, activity, metrics) => {}
                }
            });
        }
        // Every term this leader holds, it takes over what the other leaders still hold.
        let mut terms_seen = self.activity.clone();
        let takeover = self.takeover.clone();
        ports.spawn(|stop| async move {
            loop {
                let term = terms_seen.borrow_and_update().clone();
                if let Some(term) = term {
                    tokio::spawn(takeover.clone().run(term));
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = terms_seen.changed() => if changed.is_err() { return },
                }
            }
        });
        if let Some((sink, after)) = self.lost {
            let (m, a) = (self.membership.clone(), self.activity.clone());
            ports.spawn(move |stop| lost::run(m, a, sink, after, stop));
        }
        let choosing = CancellationToken::new();
        let choice = tokio::spawn(activity::run(
            self.lease,
            self.membership.clone(),
            self.terms,
            choosing.clone(),
        ));

        shutdown.cancelled().await;
        info!("leaving the cluster");
        self.admin.draining.store(true, Ordering::Relaxed);
        // Give up the term first (the lease is released): the other leader takes over at once
        // instead of after the lease's time to live.
        choosing.cancel();
        let _ = choice.await;
        self.membership.leave_and_shutdown().await;
        self.internal.connections.close();
        ports.close().await;
        info!("ews-leader stopped");
        Ok(())
    }
}
