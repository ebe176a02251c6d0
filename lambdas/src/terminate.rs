//! `ews-terminate`: the worker group's custom termination policy. EC2 Auto Scaling asks it which
//! instances to remove on a scale-in (or an instance refresh, a rebalance); it answers with the
//! ones holding the fewest clients, so a scale-in moves the fewest clients it can.
//!
//! The counts come from the per-worker metric the active leader publishes (`WorkerClients`,
//! dimensions `Deployment` and `Worker` = the instance id). A candidate without a recent
//! datapoint counts as empty: it has not joined the cluster yet (still booting) or has left it,
//! and either way removing it moves nobody.
//!
//! The request and response are EC2 Auto Scaling's
//! (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/lambda-custom-termination-policy.html>):
//! `CapacityToTerminate` says how many to remove per zone and market option, `Instances` lists
//! the candidates; the answer lists instance ids, at most that many per zone and market.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};

/// The per-worker metric the active leader publishes (`leader/src/cloudwatch.rs`).
pub const WORKER_METRIC: &str = "WorkerClients";
/// GetMetricData takes at most this many queries a call.
const QUERIES_PER_CALL: usize = 500;
/// How far back a worker's count is looked for: the leader publishes every minute.
const LOOKBACK: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(default)]
    pub auto_scaling_group_name: String,
    #[serde(default)]
    pub capacity_to_terminate: Vec<Capacity>,
    #[serde(default)]
    pub instances: Vec<Candidate>,
    #[serde(default)]
    pub cause: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Capacity {
    pub availability_zone: String,
    pub capacity: usize,
    #[serde(default)]
    pub instance_market_option: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Candidate {
    pub availability_zone: String,
    pub instance_id: String,
    #[serde(default)]
    pub instance_type: Option<String>,
    #[serde(default)]
    pub instance_market_option: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Response {
    #[serde(rename = "InstanceIDs")]
    pub instance_ids: Vec<String>,
}

/// For each zone and market option, that many candidates from it, the fewest clients first (a
/// candidate without a count as empty; ties by instance id, so the answer is stable). The
/// answer is ordered by clients, fewest first.
pub fn choose(req: &Request, clients: &HashMap<String, u64>) -> Vec<String> {
    let count = |c: &Candidate| clients.get(&c.instance_id).copied().unwrap_or(0);
    let mut chosen: Vec<&Candidate> = Vec::new();
    for want in &req.capacity_to_terminate {
        let mut pool: Vec<&Candidate> = req
            .instances
            .iter()
            .filter(|c| c.availability_zone == want.availability_zone)
            .filter(|c| {
                want.instance_market_option.is_none()
                    || c.instance_market_option == want.instance_market_option
            })
            .filter(|c| !chosen.iter().any(|x| x.instance_id == c.instance_id))
            .collect();
        pool.sort_by(|a, b| (count(a), &a.instance_id).cmp(&(count(b), &b.instance_id)));
        chosen.extend(pool.into_iter().take(want.capacity));
    }
    chosen.sort_by(|a, b| (count(a), &a.instance_id).cmp(&(count(b), &b.instance_id)));
    chosen.into_iter().map(|c| c.instance_id.clone()).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum TerminateError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("not an EC2 Auto Scaling termination request: {0}")]
    BadRequest(String),
    #[error("cloudwatch:GetMetricData failed: {0}")]
    Metrics(String),
}

impl From<TerminateError> for lambda_runtime::Diagnostic {
    fn from(e: TerminateError) -> Self {
        let error_type = match &e {
            TerminateError::Missing(_) => "Configuration",
            TerminateError::BadRequest(_) => "BadRequest",
            TerminateError::Metrics(_) => "cloudwatch:GetMetricData",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// `METRIC_NAMESPACE` (default `ElasticWS`) and `DEPLOYMENT` (the `Deployment` dimension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminateConfig {
    pub namespace: String,
    pub deployment: String,
}

impl TerminateConfig {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, TerminateError> {
        let non_empty = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Ok(TerminateConfig {
            namespace: non_empty("METRIC_NAMESPACE").unwrap_or_else(|| "ElasticWS".into()),
            deployment: non_empty("DEPLOYMENT").ok_or(TerminateError::Missing("DEPLOYMENT"))?,
        })
    }
}

/// The configured function with its CloudWatch client.
pub struct Terminator {
    cfg: TerminateConfig,
    cw: aws_sdk_cloudwatch::Client,
}

impl Terminator {
    pub fn new(cfg: TerminateConfig, cw: aws_sdk_cloudwatch::Client) -> Terminator {
        Terminator { cfg, cw }
    }

    /// The Lambda handler.
    pub async fn handle(
        &self,
        event: LambdaEvent<serde_json::Value>,
    ) -> Result<Response, TerminateError> {
        let req: Request = serde_json::from_value(event.payload)
            .map_err(|e| TerminateError::BadRequest(e.to_string()))?;
        let ids: Vec<&str> = req
            .instances
            .iter()
            .map(|c| c.instance_id.as_str())
            .collect();
        let clients = self.clients(&ids).await?;
        let chosen = choose(&req, &clients);
        tracing::info!(
            group = %req.auto_scaling_group_name,
            cause = %req.cause,
            ?clients,
            ?chosen,
            "least-loaded workers chosen"
        );
        Ok(Response {
            instance_ids: chosen,
        })
    }

    /// Each instance's latest count of clients, for those that have one.
    pub async fn clients(&self, ids: &[&str]) -> Result<HashMap<String, u64>, TerminateError> {
        // A minute ahead: a datapoint stamped this very second is in the window too.
        let now = std::time::SystemTime::now();
        let (start, end) = (now - LOOKBACK, now + Duration::from_secs(60));
        let mut out = HashMap::new();
        for (chunk_no, chunk) in ids.chunks(QUERIES_PER_CALL).enumerate() {
            let queries: Vec<MetricDataQuery> = chunk
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let metric = Metric::builder()
                        .namespace(&self.cfg.namespace)
                        .metric_name(WORKER_METRIC)
                        .dimensions(
                            Dimension::builder()
                                .name("Deployment")
                                .value(&self.cfg.deployment)
                                .build(),
                        )
                        .dimensions(Dimension::builder().name("Worker").value(*id).build())
                        .build();
                    MetricDataQuery::builder()
                        .id(format!("w{}", chunk_no * QUERIES_PER_CALL + i))
                        .metric_stat(
                            MetricStat::builder()
                                .metric(metric)
                                .period(60)
                                .stat("Maximum")
                                .build(),
                        )
                        .return_data(true)
                        .build()
                })
                .collect();
            let mut next: Option<String> = None;
            loop {
                let got = self
                    .cw
                    .get_metric_data()
                    .set_metric_data_queries(Some(queries.clone()))
                    .start_time(start.into())
                    .end_time(end.into())
                    .scan_by(aws_sdk_cloudwatch::types::ScanBy::TimestampDescending)
                    .set_next_token(next.take())
                    .send()
                    .await
                    .map_err(|e| {
                        TerminateError::Metrics(
                            aws_sdk_cloudwatch::error::DisplayErrorContext(e).to_string(),
                        )
                    })?;
                for r in got.metric_data_results() {
                    let Some(i) = r
                        .id()
                        .and_then(|id| id.strip_prefix('w'))
                        .and_then(|n| n.parse::<usize>().ok())
                    else {
                        continue;
                    };
                    // Newest first (TimestampDescending), whatever order a page comes in.
                    let newest = r
                        .timestamps()
                        .iter()
                        .zip(r.values())
                        .max_by_key(|(t, _)| t.secs())
                        .map(|(_, v)| *v);
                    if let (Some(id), Some(v)) = (ids.get(i), newest) {
                        out.entry(id.to_string()).or_insert(v.max(0.0) as u64);
                    }
                }
                next = got.next_token().map(str::to_string);
                if next.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// The binary's `main`: configuration checked at cold start.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let cfg = TerminateConfig::from_lookup(|k| std::env::var(k).ok()).map_err(|e| {
        tracing::error!(error = %e, "invalid configuration");
        e
    })?;
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(crate::scaler::retry_config())
        .load()
        .await;
    let t = Terminator::new(cfg, aws_sdk_cloudwatch::Client::new(&shared));
    let t = &t;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move { t.handle(event).await },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        serde_json::from_str(include_str!("../events/terminate-scale-in.json")).unwrap()
    }

    #[test]
    fn parses_the_documented_request() {
        let r = request();
        assert_eq!(r.auto_scaling_group_name, "ews-workers");
        assert_eq!(r.cause, "SCALE_IN");
        assert_eq!(r.capacity_to_terminate.len(), 2);
        assert_eq!(r.instances.len(), 5);
    }

    #[test]
    fn chooses_the_least_loaded_per_zone() {
        let r = request();
        let clients: HashMap<String, u64> = [
            ("i-0a0000000000000a1", 90_000),
            ("i-0a0000000000000a2", 12_000),
            ("i-0a0000000000000a3", 88_000),
            ("i-0b0000000000000b1", 91_000),
            // i-0b0000000000000b2 has no count: new or gone, it moves nobody.
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // One from eu-central-1a, one from eu-central-1b: the emptiest of each, emptiest first.
        assert_eq!(
            choose(&r, &clients),
            ["i-0b0000000000000b2", "i-0a0000000000000a2"]
        );
        let out = serde_json::to_value(Response {
            instance_ids: choose(&r, &clients),
        })
        .unwrap();
        assert_eq!(out["InstanceIDs"][1], "i-0a0000000000000a2");
    }

    #[test]
    fn never_more_than_asked_and_never_twice() {
        let mut r = request();
        r.capacity_to_terminate = vec![
            Capacity {
                availability_zone: "eu-central-1a".into(),
                capacity: 2,
                instance_market_option: Some("on-demand".into()),
            },
            Capacity {
                availability_zone: "eu-central-1a".into(),
                capacity: 5,
                instance_market_option: None,
            },
        ];
        let chosen = choose(&r, &HashMap::new());
        assert_eq!(chosen.len(), 3, "{chosen:?}");
        let mut unique = chosen.clone();
        unique.dedup();
        assert_eq!(unique.len(), 3);
        // Nothing asked, nothing chosen.
        r.capacity_to_terminate.clear();
        assert!(choose(&r, &HashMap::new()).is_empty());
    }

    #[test]
    fn spot_capacity_takes_spot_instances_only() {
        let mut r = request();
        r.capacity_to_terminate = vec![Capacity {
            availability_zone: "eu-central-1b".into(),
            capacity: 1,
            instance_market_option: Some("spot".into()),
        }];
        assert_eq!(choose(&r, &HashMap::new()), ["i-0b0000000000000b1"]);
    }

    #[test]
    fn configuration() {
        let cfg = TerminateConfig::from_lookup(|k| (k == "DEPLOYMENT").then(|| "ews".into()));
        assert_eq!(
            cfg.unwrap(),
            TerminateConfig {
                namespace: "ElasticWS".into(),
                deployment: "ews".into()
            }
        );
        let err = TerminateConfig::from_lookup(|_| None).unwrap_err();
        assert!(err.to_string().contains("DEPLOYMENT"), "{err}");
    }
}
