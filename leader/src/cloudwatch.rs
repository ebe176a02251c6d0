//! The cluster-wide connected-client count as a CloudWatch custom metric, and beside it what the
//! scaling needs to see overload: the busiest and the quietest serving worker's clients
//! ([`BUSIEST_METRIC`], [`QUIETEST_METRIC`]; the busy-worker alarm fires when the busiest is
//! near its capacity while the quietest is not still filling) and each worker's clients
//! ([`WORKER_METRIC`] with a `Worker` dimension, the node id: the EC2 instance id in AWS), which
//! the termination-policy Lambda reads to remove the least-loaded worker.
//!
//! Only the leader holding the active term publishes, so the metric has one writer even though
//! both leaders run this loop (under a partition too, with the lease): when the active one dies,
//! the other takes over at its next tick after it took the term. Scaling alarms
//! can then use this metric instead of the ALB's `ActiveConnectionCount`, which counts
//! connections per load-balancer node and misses clients that bypass it.
//!
//! The count is [`ClusterView::scaling_count`]: a worker this leader has lost sight of (a
//! partition, a frozen process) keeps its last proven count until membership forgets it, so a
//! cut-off zone never reads as clients leaving and never fires a scale-in.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use ews_cluster::ClusterView;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::activity::Activity;

/// The busiest serving worker's connected clients.
pub const BUSIEST_METRIC: &str = "BusiestWorkerClients";
/// The quietest serving worker's connected clients.
pub const QUIETEST_METRIC: &str = "QuietestWorkerClients";
/// One serving worker's connected clients, dimension `Worker` = its node id.
pub const WORKER_METRIC: &str = "WorkerClients";
/// PutMetricData takes at most this many datums a call.
const DATUMS_PER_CALL: usize = 1000;

/// Every datum of one publication: the total, the busiest and quietest worker, each worker.
fn datums(settings: &Settings, view: &ClusterView) -> Vec<MetricDatum> {
    let deployment = settings
        .deployment
        .as_ref()
        .map(|d| Dimension::builder().name("Deployment").value(d).build());
    let datum = |name: &str, value: u64, worker: Option<&str>| {
        let mut dims: Vec<Dimension> = deployment.iter().cloned().collect();
        dims.extend(worker.map(|w| Dimension::builder().name("Worker").value(w).build()));
        MetricDatum::builder()
            .metric_name(name)
            .value(value as f64)
            .unit(StandardUnit::Count)
            .set_dimensions((!dims.is_empty()).then_some(dims))
            .build()
    };
    let workers = view.worker_counts();
    let mut out = vec![datum(&settings.metric, view.scaling_count(), None)];
    if let (Some(busiest), Some(quietest)) = (
        workers.iter().map(|w| w.1).max(),
        workers.iter().map(|w| w.1).min(),
    ) {
        out.push(datum(BUSIEST_METRIC, busiest, None));
        out.push(datum(QUIETEST_METRIC, quietest, None));
    }
    out.extend(
        workers
            .iter()
            .map(|(id, conns)| datum(WORKER_METRIC, *conns, Some(id))),
    );
    out
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub namespace: String,
    pub metric: String,
    /// `Deployment` dimension: keeps two deployments in one account and region apart.
    pub deployment: Option<String>,
    pub interval: Duration,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// `ews_cloudwatch_publish_total{outcome="ok|error"}`.
#[derive(Clone, Default)]
pub struct PublishMetrics(Family<Outcome, Counter>);

impl PublishMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ews_cloudwatch_publish",
            "PutMetricData calls of the cluster connection count, by outcome",
            self.0.clone(),
        );
    }

    fn record(&self, outcome: &'static str) {
        self.0.get_or_create(&Outcome { outcome }).inc();
    }
}

/// Publishes every `interval` while this leader holds the active term. The AWS configuration
/// comes from the environment (region, credentials, `AWS_ENDPOINT_URL`).
pub async fn run(
    settings: Settings,
    view: watch::Receiver<Arc<ClusterView>>,
    activity: Activity,
    metrics: PublishMetrics,
) {
    let config = aws_config::load_from_env().await;
    let client = aws_sdk_cloudwatch::Client::new(&config);
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_active = false;
    let mut was_partial = false;
    loop {
        tick.tick().await;
        let view = view.borrow().clone();
        let active = activity.borrow().is_some();
        if active != was_active {
            info!(
                active,
                "cluster metric publisher {}",
                if active { "active" } else { "standby" }
            );
            was_active = active;
        }
        if !active {
            continue;
        }
        // Workers this leader cannot reach still count, at their last proven count: a
        // partition must not read as clients leaving (a scale-in on a partial view).
        let partial = view.lost_workers > 0;
        if partial != was_partial {
            if partial {
                warn!(
                    unreachable = view.lost_workers,
                    held = view.held_connections,
                    "cluster metric: workers out of reach keep their last proven counts"
                );
            } else {
                info!("cluster metric: every worker in reach again");
            }
            was_partial = partial;
        }
        let mut sent = Ok(());
        for chunk in datums(&settings, &view).chunks(DATUMS_PER_CALL) {
            let put = client
                .put_metric_data()
                .namespace(&settings.namespace)
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await;
            if let Err(e) = put {
                sent = Err(e);
                break;
            }
        }
        match sent {
            Ok(_) => metrics.record("ok"),
            Err(e) => {
                metrics.record("error");
                warn!(error = %aws_sdk_cloudwatch::error::DisplayErrorContext(&e), "PutMetricData failed");
            }
        }
    }
}
