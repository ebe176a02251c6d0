//! The active leader publishes the cluster-wide connection count to CloudWatch (moto here).

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

    // A real cluster member on real UDP gossip, reporting 42 connected clients.
    let worker = Membership::start(MembershipConfig {
        capacity: 1000,
        gossip_interval: Duration::from_millis(200),
        seed_node_timeout: Duration::from_secs(1),
        join_give_up: None,
        ..MembershipConfig::new(
            "worker-1",
            Role::Worker,
            &[leader.internal],
            ([127, 0, 0, 1], ews_testkit::free_udp_port()).into(),
        )
    })
    .await
    .expect("start worker membership");
    worker.set_conns(42);

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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = cw
            .get_metric_statistics()
            .namespace(NAMESPACE)
            .metric_name(METRIC)
            .dimensions(
                aws_sdk_cloudwatch::types::Dimension::builder()
                    .name("Deployment")
                    .value(DEPLOYMENT)
                    .build(),
            )
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
        if max == 42.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metric never reached 42 (max {max}); leader log:\n{}",
            leader.proc.output()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, metrics) = ews_testkit::http_get(leader.admin, "/metrics").expect("GET /metrics");
    assert!(
        metrics.contains(r#"ews_cloudwatch_publish_total{outcome="ok"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("ews_cluster_connections 42"), "{metrics}");
    worker.shutdown().await;
}
