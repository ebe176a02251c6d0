//! The termination-policy Lambda against moto: the leader's per-worker metric put as the leader
//! puts it, the documented request in, the least-loaded worker of each zone out.

use aws_sdk_cloudwatch::config::Credentials;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use ews_lambdas::terminate::{TerminateConfig, Terminator, WORKER_METRIC};
use ews_testkit::moto::Moto;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

async fn client(moto: &Moto) -> aws_sdk_cloudwatch::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new("eu-central-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    aws_sdk_cloudwatch::Client::new(&shared)
}

async fn put(cw: &aws_sdk_cloudwatch::Client, deployment: &str, worker: &str, clients: f64) {
    put_at(cw, deployment, worker, clients, 0).await
}

/// A datapoint `minutes_ago`.
async fn put_at(
    cw: &aws_sdk_cloudwatch::Client,
    deployment: &str,
    worker: &str,
    clients: f64,
    minutes_ago: u64,
) {
    let at = std::time::SystemTime::now() - std::time::Duration::from_secs(60 * minutes_ago);
    cw.put_metric_data()
        .namespace("ElasticWS")
        .metric_data(
            MetricDatum::builder()
                .metric_name(WORKER_METRIC)
                .timestamp(at.into())
                .value(clients)
                .unit(StandardUnit::Count)
                .dimensions(
                    Dimension::builder()
                        .name("Deployment")
                        .value(deployment)
                        .build(),
                )
                .dimensions(Dimension::builder().name("Worker").value(worker).build())
                .build(),
        )
        .send()
        .await
        .expect("PutMetricData");
}

fn request() -> Value {
    let path = format!(
        "{}/events/terminate-scale-in.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn the_least_loaded_worker_of_each_zone_is_removed() {
    let moto = Moto::start();
    let cw = client(&moto).await;
    // A count from three minutes ago: the newest datapoint is the one that counts.
    put_at(&cw, "ews", "i-0a0000000000000a2", 95_000.0, 3).await;
    for (worker, clients) in [
        ("i-0a0000000000000a1", 61_000.0),
        ("i-0a0000000000000a2", 14_000.0),
        ("i-0a0000000000000a3", 60_000.0),
        ("i-0b0000000000000b1", 20_000.0),
        ("i-0b0000000000000b2", 58_000.0),
    ] {
        put(&cw, "ews", worker, clients).await;
    }
    // Another deployment in the same account: not ours to read.
    put(&cw, "other", "i-0b0000000000000b2", 1.0).await;
    let t = Terminator::new(
        TerminateConfig {
            namespace: "ElasticWS".into(),
            deployment: "ews".into(),
        },
        cw.clone(),
    );
    let out = t
        .handle(LambdaEvent::new(request(), Context::default()))
        .await
        .expect("handled");
    assert_eq!(
        serde_json::to_value(&out).unwrap(),
        json!({"InstanceIDs": ["i-0a0000000000000a2", "i-0b0000000000000b1"]})
    );

    // Not a termination request: a clear error, nothing chosen.
    let err = t
        .handle(LambdaEvent::new(
            json!({"Instances": 7}),
            Context::default(),
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("termination request"), "{err}");

    // CloudWatch unreachable: an error naming the call (the group then keeps its next policy).
    drop(moto);
    let err = t
        .handle(LambdaEvent::new(request(), Context::default()))
        .await
        .unwrap_err();
    let diag: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diag.error_type, "cloudwatch:GetMetricData");
}
