//! The active leader publishes the cluster-wide connection count, the busiest and quietest
//! worker's, and each worker's to CloudWatch (moto here).

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::Statistic;
use ews_cluster::{Membership, MembershipConfig, Role};
use ews_testkit::moto::Moto;
use ews_testkit::nodes::{Node, NodeSpec};

const NAMESPACE: &str = "ElasticWSTest";
const METRIC: &str = "ConnectedClients";
/// The dimension the scaling alarms select on (Terraform: the deployment's name).
const DEPLOYMENT: &str = "ews-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_leader_publishes_cluster_connections() {
    let moto = Moto::start();
    let endpoint = moto.endpoint();
    let aws_env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let leader = Node::leader(&NodeSpec {
        extra: &[
            "--publish-metric",
            "--cloudwatch-interval-secs",
            "1",
            "--cloudwatch-namespace",
            NAMESPACE,
            "--cloudwatch-deployment",
            DEPLOYMENT,
        ],
        env: &aws_env,
        ..NodeSpec::new("leader-1", &[])
    });

    // Real cluster members on real UDP gossip, reporting 42 and 7 connected clients.
    let mut workers = Vec::new();
    for (id, conns) in [("worker-1", 42), ("worker-2", 7)] {
        let worker = Membership::start(MembershipConfig {
            capacity: 1000,
            gossip_interval: Duration::from_millis(200),
            seed_node_timeout: Duration::from_secs(1),
            join_give_up: None,
            ..MembershipConfig::new(
                id,
                Role::Worker,
                &[leader.internal],
                ([127, 0, 0, 1], ews_testkit::free_udp_port()).into(),
            )
        })
        .await
        .expect("start worker membership");
        worker.set_conns(conns);
        workers.push(worker);
    }

    let config = aws_config::from_env()
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let now = SystemTime::now();
    // The total, the busiest and quietest worker, and each worker by its node id.
    let want: [(&str, Option<&str>, f64); 5] = [
        (METRIC, None, 49.0),
        ("BusiestWorkerClients", None, 42.0),
        ("QuietestWorkerClients", None, 7.0),
        ("WorkerClients", Some("worker-1"), 42.0),
        ("WorkerClients", Some("worker-2"), 7.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    for (metric, worker, value) in want {
        loop {
            let mut dims = vec![aws_sdk_cloudwatch::types::Dimension::builder()
                .name("Deployment")
                .value(DEPLOYMENT)
                .build()];
            dims.extend(worker.map(|w| {
                aws_sdk_cloudwatch::types::Dimension::builder()
                    .name("Worker")
                    .value(w)
                    .build()
            }));
            let stats = cw
                .get_metric_statistics()
                .namespace(NAMESPACE)
                .metric_name(metric)
                .set_dimensions(Some(dims))
                .start_time(DateTime::from(now - Duration::from_secs(600)))
                .end_time(DateTime::from(now + Duration::from_secs(600)))
                .period(60)
                .statistics(Statistic::Maximum)
                .send()
                .await
                .expect("GetMetricStatistics");
            let max = stats
                .datapoints()
                .iter()
                .filter_map(|d| d.maximum())
                .fold(0.0f64, f64::max);
            if max == value {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{metric} {worker:?} never reached {value} (max {max}); leader log:\n{}",
                leader.proc.output()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let (_, metrics) = ews_testkit::http_get(leader.admin, "/metrics").expect("GET /metrics");
    assert!(
        metrics.contains(r#"ews_cloudwatch_publish_total{outcome="ok"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("ews_cluster_connections 49"), "{metrics}");
    for worker in workers {
        worker.shutdown().await;
    }
}
