//! The scaler handlers against moto: real SDK calls, real event JSON, the handler called
//! in-process exactly as `lambda_runtime` would call it.

use aws_sdk_autoscaling::config::Credentials;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat, StandardUnit,
    StateValue, Statistic, Tag,
};
use ews_lambdas::config::Config;
use ews_lambdas::policy::Direction;
use ews_lambdas::scaler::{
    Action, Outcome, Scaler, FAILURES_TAG, LAST_EVENT_TAG, LAST_SCALE_IN_TAG, LAST_SCALE_OUT_TAG,
};
use ews_testkit::moto::Moto;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

const ASG: &str = "ews-workers";
const UP: &str = "ews-scale-up-alarm";
const DOWN: &str = "ews-scale-down-alarm";
const BUSY: &str = "ews-busy-worker-alarm";
const UP_FN: &str = "arn:aws:lambda:us-east-1:123456789012:function:ews-scale-up";
const DOWN_FN: &str = "arn:aws:lambda:us-east-1:123456789012:function:ews-scale-down";

struct Env {
    moto: Option<Moto>,
    asg: aws_sdk_autoscaling::Client,
    cw: aws_sdk_cloudwatch::Client,
}

impl Env {
    /// moto with a worker group of `desired` nodes (bounds 2..10) and both alarms at the
    /// per-worker thresholds for that capacity (STEP 50,000, HYSTERESIS 5,000).
    async fn start(desired: i32) -> Env {
        let moto = Moto::start();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(moto.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .retry_config(ews_lambdas::scaler::retry_config())
            .load()
            .await;
        let env = Env {
            moto: Some(moto),
            asg: aws_sdk_autoscaling::Client::new(&shared),
            cw: aws_sdk_cloudwatch::Client::new(&shared),
        };
        env.asg
            .create_launch_configuration()
            .launch_configuration_name("ews-worker")
            .image_id("ami-12c6146b")
            .instance_type("t2.medium")
            .send()
            .await
            .unwrap();
        env.asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(ASG)
            .launch_configuration_name("ews-worker")
            .min_size(2)
            .max_size(10)
            .desired_capacity(desired)
            .availability_zones("us-east-1a")
            .send()
            .await
            .unwrap();
        env.create_up_alarm(desired).await;
        env.create_down_alarm(desired).await;
        env.create_busy_alarm().await;
        env
    }

    /// The busy-worker alarm: a static line the scalers never rewrite.
    async fn create_busy_alarm(&self) {
        self.cw
            .put_metric_alarm()
            .alarm_name(BUSY)
            .alarm_actions(UP_FN)
            .namespace("ElasticWS")
            .metric_name("BusiestWorkerClients")
            .statistic(Statistic::Maximum)
            .period(60)
            .evaluation_periods(2)
            .threshold(90_000.0)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .treat_missing_data("notBreaching")
            .send()
            .await
            .unwrap();
    }

    /// Sets a group tag as a scaler would have.
    async fn tag(&self, key: &str, value: &str) {
        self.asg
            .create_or_update_tags()
            .tags(
                aws_sdk_autoscaling::types::Tag::builder()
                    .resource_id(ASG)
                    .resource_type("auto-scaling-group")
                    .key(key)
                    .value(value)
                    .propagate_at_launch(false)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    async fn group_tag(&self, key: &str) -> Option<String> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(ASG)
            .send()
            .await
            .unwrap();
        out.auto_scaling_groups()[0]
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value().map(str::to_string))
    }

    /// The scale-up alarm at its threshold for `desired` nodes.
    async fn create_up_alarm(&self, desired: i32) {
        // Scale-up: a plain metric alarm on the cluster metric, with every optional field set.
        self.cw
            .put_metric_alarm()
            .alarm_name(UP)
            .alarm_description("Connected clients above the capacity of the current worker count")
            .actions_enabled(true)
            .alarm_actions(UP_FN)
            .ok_actions("arn:aws:sns:us-east-1:123456789012:ews-ops")
            .insufficient_data_actions("arn:aws:sns:us-east-1:123456789012:ews-ops")
            .namespace("ElasticWS")
            .metric_name("ConnectedClients")
            .dimensions(Dimension::builder().name("Cluster").value("ews").build())
            .statistic(Statistic::Maximum)
            .period(60)
            .unit(StandardUnit::Count)
            .evaluation_periods(3)
            .datapoints_to_alarm(2)
            .threshold(initial_up(desired))
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .treat_missing_data("notBreaching")
            .tags(Tag::builder().key("Project").value("elastic-ws").build())
            .send()
            .await
            .unwrap();
    }

    /// The scale-down alarm at its threshold for `desired` nodes (what `terraform apply` restores).
    async fn create_down_alarm(&self, desired: i32) {
        // Scale-down: a metric-math alarm on the ALB's connection count.
        self.cw
            .put_metric_alarm()
            .alarm_name(DOWN)
            .alarm_description("Connected clients fit one worker fewer")
            .actions_enabled(true)
            .alarm_actions(DOWN_FN)
            .metrics(
                MetricDataQuery::builder()
                    .id("e1")
                    .expression("m1")
                    .label("Connections")
                    .return_data(true)
                    .build(),
            )
            .metrics(
                MetricDataQuery::builder()
                    .id("m1")
                    .metric_stat(
                        MetricStat::builder()
                            .metric(
                                Metric::builder()
                                    .namespace("AWS/ApplicationELB")
                                    .metric_name("ActiveConnectionCount")
                                    .dimensions(
                                        Dimension::builder()
                                            .name("LoadBalancer")
                                            .value("app/ews/0123456789abcdef")
                                            .build(),
                                    )
                                    .build(),
                            )
                            .period(60)
                            .stat("Sum")
                            .build(),
                    )
                    .return_data(false)
                    .build(),
            )
            .evaluation_periods(5)
            .datapoints_to_alarm(5)
            .threshold(initial_down(desired))
            .comparison_operator(ComparisonOperator::LessThanThreshold)
            .treat_missing_data("ignore")
            .tags(Tag::builder().key("Project").value("elastic-ws").build())
            .send()
            .await
            .unwrap();
    }

    fn scaler(&self, direction: Direction) -> Scaler {
        self.scaler_with(direction, &[])
    }

    fn scaler_with(&self, direction: Direction, extra: &[(&str, &str)]) -> Scaler {
        let mut vars = vec![
            ("WS_ASG_NAME", ASG),
            ("SCALE_UP_ALARM", UP),
            ("SCALE_DOWN_ALARM", DOWN),
            ("STEP", "50000"),
            ("HYSTERESIS", "5000"),
            ("BUSY_ALARM", BUSY),
        ];
        vars.extend_from_slice(extra);
        let cfg = Config::from_lookup(direction, |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        Scaler::new(cfg, self.asg.clone(), self.cw.clone())
    }

    async fn desired(&self) -> i32 {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(ASG)
            .send()
            .await
            .unwrap();
        out.auto_scaling_groups()[0].desired_capacity().unwrap()
    }

    async fn set_desired(&self, n: i32) {
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(ASG)
            .desired_capacity(n)
            .send()
            .await
            .unwrap();
    }

    async fn alarm(&self, name: &str) -> MetricAlarm {
        let out = self
            .cw
            .describe_alarms()
            .alarm_names(name)
            .send()
            .await
            .unwrap();
        out.metric_alarms()[0].clone()
    }

    async fn tags(&self, name: &str) -> Vec<Tag> {
        let arn = self.alarm(name).await.alarm_arn.unwrap();
        self.cw
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap()
            .tags
            .unwrap_or_default()
    }

    /// Puts `name` into ALARM as CloudWatch would and returns the event its alarm action
    /// delivers (the sample event with this alarm's name and state timestamp).
    async fn breach(&self, name: &str) -> Value {
        self.cw
            .set_alarm_state()
            .alarm_name(name)
            .state_value(StateValue::Alarm)
            .state_reason("Threshold Crossed (test)")
            .send()
            .await
            .unwrap();
        let at = self.alarm(name).await.state_updated_timestamp.unwrap();
        let at = chrono::DateTime::from_timestamp_millis(at.to_millis().unwrap()).unwrap();
        let file = if name == UP || name == BUSY {
            "scale-up-alarm.json"
        } else {
            "scale-down-alarm.json"
        };
        let mut event = sample(file);
        event["alarmData"]["alarmName"] = name.into();
        event["alarmData"]["state"]["timestamp"] = at.to_rfc3339().into();
        event
    }
}

fn initial_up(n: i32) -> f64 {
    f64::from(n) * 50_000.0
}

fn initial_down(n: i32) -> f64 {
    if n <= 2 {
        -5_000.0
    } else {
        f64::from(n - 1) * 45_000.0
    }
}

fn sample(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn invoke(scaler: &Scaler, payload: Value) -> Outcome {
    scaler
        .handle(LambdaEvent::new(payload, Context::default()))
        .await
        .unwrap()
}

/// Every field the scaler must carry over unchanged: the alarm minus threshold, state and
/// timestamps.
fn configuration(a: &MetricAlarm) -> MetricAlarm {
    let mut a = a.clone();
    a.threshold = None;
    a.state_value = None;
    a.state_reason = None;
    a.state_reason_data = None;
    a.state_updated_timestamp = None;
    a.state_transitioned_timestamp = None;
    a.alarm_configuration_updated_timestamp = None;
    a.evaluation_state = None;
    a
}

/// Asserts the group and both alarms are exactly what `n` nodes call for, every other alarm
/// field unchanged from `before`.
async fn assert_state(env: &Env, n: i32, before: &[(MetricAlarm, Vec<Tag>)]) {
    assert_eq!(env.desired().await, n, "desired capacity");
    for (old, old_tags) in before {
        let name = old.alarm_name().unwrap();
        let now = env.alarm(name).await;
        let want = if name == UP {
            initial_up(n)
        } else {
            initial_down(n)
        };
        assert_eq!(now.threshold, Some(want), "{name} threshold at {n} nodes");
        assert_eq!(configuration(&now), configuration(old), "{name} fields");
        assert_eq!(&env.tags(name).await, old_tags, "{name} tags");
    }
}

async fn snapshot(env: &Env) -> Vec<(MetricAlarm, Vec<Tag>)> {
    let mut out = Vec::new();
    for name in [UP, DOWN] {
        out.push((env.alarm(name).await, env.tags(name).await));
    }
    // The comparison is only as good as what moto keeps: make sure it kept the rich fields.
    let (up, up_tags) = &out[0];
    let (down, down_tags) = &out[1];
    assert_eq!(up.dimensions().len(), 1, "{up:?}");
    assert_eq!(up.datapoints_to_alarm, Some(2), "{up:?}");
    assert!(
        !up.alarm_actions().is_empty() && !up.ok_actions().is_empty(),
        "{up:?}"
    );
    assert_eq!(down.metrics().len(), 2, "{down:?}");
    assert_eq!(down.treat_missing_data(), Some("ignore"), "{down:?}");
    assert!(!up_tags.is_empty() && !down_tags.is_empty());
    out
}

#[tokio::test]
async fn scale_up_rethresholds_both_alarms_rearms_and_is_idempotent() {
    let env = Env::start(2).await;
    let before = snapshot(&env).await;
    let up = env.scaler(Direction::Up);

    let event = env.breach(UP).await;
    let out = invoke(&up, event.clone()).await;
    assert_eq!(out.action, Action::Scaled, "{out:?}");
    let change = out.change.clone().unwrap();
    assert_eq!((change.from, change.to), (2, 3));
    assert_eq!(
        (change.up_threshold, change.down_threshold),
        (150_000.0, 90_000.0)
    );
    assert_state(&env, 3, &before).await;
    assert_eq!(env.alarm(UP).await.state_value, Some(StateValue::Ok));

    // AWS retries the same event: the alarm is OK again, nothing changes.
    let again = invoke(&up, event).await;
    assert_eq!(again.action, Action::Ignored, "{again:?}");
    assert!(again.reason.contains("no longer ALARM"), "{}", again.reason);
    assert_state(&env, 3, &before).await;

    // A second breach after the re-arm steps again.
    let second = env.breach(UP).await;
    let out = invoke(&up, second).await;
    assert_eq!(out.action, Action::Scaled, "{out:?}");
    assert_state(&env, 4, &before).await;
}

#[tokio::test]
async fn a_retry_after_a_partial_run_does_not_step_twice() {
    let env = Env::start(3).await;
    let before = snapshot(&env).await;
    let up = env.scaler(Direction::Up);
    let event = env.breach(UP).await;
    let key = match ews_lambdas::event::classify_json(event.clone(), UP) {
        ews_lambdas::event::Verdict::Act { key, .. } => key,
        other => panic!("{other:?}"),
    };
    // A first delivery recorded the key and stepped, then died before re-arming.
    env.asg
        .create_or_update_tags()
        .tags(
            aws_sdk_autoscaling::types::Tag::builder()
                .resource_id(ASG)
                .resource_type("auto-scaling-group")
                .key(LAST_EVENT_TAG)
                .value(&key)
                .propagate_at_launch(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    env.set_desired(4).await;

    let out = invoke(&up, event).await;
    assert_eq!(out.action, Action::Duplicate, "{out:?}");
    assert_state(&env, 4, &before).await;
    assert_eq!(env.alarm(UP).await.state_value, Some(StateValue::Ok));
}

#[tokio::test]
async fn never_past_the_max_bound() {
    let env = Env::start(9).await;
    let before = snapshot(&env).await;
    let up = env.scaler(Direction::Up);
    let out = invoke(&up, env.breach(UP).await).await;
    assert_eq!(out.action, Action::Scaled, "{out:?}");
    assert_state(&env, 10, &before).await;
    for _ in 0..2 {
        let out = invoke(&up, env.breach(UP).await).await;
        assert_eq!(out.action, Action::AtBound, "{out:?}");
        assert_state(&env, 10, &before).await;
        // Not re-armed at a bound: that would loop a no-op invocation every few seconds.
        assert_eq!(env.alarm(UP).await.state_value, Some(StateValue::Alarm));
    }
    // The reconcile re-arms it once it has sat there (every few minutes in AWS).
    let patient = env.scaler_with(Direction::Up, &[("REARM_STUCK_AFTER_SECS", "0")]);
    let out = invoke(&patient, json!({"action": "reconcile"})).await;
    assert!(out.reason.contains("re-armed"), "{}", out.reason);
    assert_eq!(env.alarm(UP).await.state_value, Some(StateValue::Ok));
    // moto does not enforce the group's max: a group already past it is pulled back.
    env.set_desired(12).await;
    let out = invoke(&up, env.breach(UP).await).await;
    assert_eq!(out.change.unwrap().to, 10);
    assert_state(&env, 10, &before).await;
}

#[tokio::test]
async fn scale_down_to_min_and_no_further() {
    let env = Env::start(3).await;
    let before = snapshot(&env).await;
    let down = env.scaler(Direction::Down);
    let out = invoke(&down, env.breach(DOWN).await).await;
    assert_eq!(out.action, Action::Scaled, "{out:?}");
    assert_state(&env, 2, &before).await;
    assert_eq!(env.alarm(DOWN).await.state_value, Some(StateValue::Ok));
    let out = invoke(&down, env.breach(DOWN).await).await;
    assert_eq!(out.action, Action::AtBound, "{out:?}");
    assert_state(&env, 2, &before).await;
    assert_eq!(env.alarm(DOWN).await.state_value, Some(StateValue::Alarm));
}

#[tokio::test]
async fn other_events_are_ignored_with_a_reason() {
    let env = Env::start(2).await;
    let before = snapshot(&env).await;
    let up = env.scaler(Direction::Up);
    let down = env.scaler(Direction::Down);
    // The scale-down function receives the scale-up alarm's event.
    let out = invoke(&down, env.breach(UP).await).await;
    assert_eq!(out.action, Action::Ignored);
    assert!(
        out.reason.contains("this function acts on"),
        "{}",
        out.reason
    );
    // An OK transition.
    let out = invoke(&up, sample("scale-up-ok.json")).await;
    assert_eq!(out.action, Action::Ignored);
    assert!(out.reason.contains("not ALARM"), "{}", out.reason);
    assert_state(&env, 2, &before).await;
}

#[tokio::test]
async fn a_missing_group_is_an_error_naming_the_call() {
    let env = Env::start(2).await;
    env.asg
        .delete_auto_scaling_group()
        .auto_scaling_group_name(ASG)
        .force_delete(true)
        .send()
        .await
        .unwrap();
    let up = env.scaler(Direction::Up);
    let err = up
        .handle(LambdaEvent::new(env.breach(UP).await, Context::default()))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("DescribeAutoScalingGroups"), "{msg}");
    assert!(msg.contains("WS_ASG_NAME"), "{msg}");
    // Not re-armed: a persistent error would loop every few seconds. The reconcile re-arms it.
    assert_eq!(env.alarm(UP).await.state_value, Some(StateValue::Alarm));
}

#[tokio::test]
async fn an_unreachable_aws_is_retried_then_reported_with_the_call() {
    let mut env = Env::start(2).await;
    let event = env.breach(UP).await;
    drop(env.moto.take()); // AWS goes away
    let up = env.scaler(Direction::Up);
    let err = up
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("cloudwatch:DescribeAlarms failed"), "{msg}");
    let diag: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diag.error_type, "cloudwatch:DescribeAlarms");
}

/// Scale-up, scale-down and the scheduled reconcile at once (a load at a step boundary, a retry
/// overlapping the other alarm, the schedule landing then): without a lock between them, whichever
/// writes last must leave both thresholds matching the group's final desired capacity, 20 rounds
/// in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_up_down_and_reconcile_leave_thresholds_matching_the_group() {
    let env = Env::start(5).await;
    let up = env.scaler(Direction::Up);
    let down = env.scaler(Direction::Down);
    let reconciler = env.scaler(Direction::Down);
    for round in 0..20 {
        let up_event = env.breach(UP).await;
        let down_event = env.breach(DOWN).await;
        // The scheduled reconcile lands in the middle of it, as it may at any time.
        let (a, b, c) = tokio::join!(
            up.handle(LambdaEvent::new(up_event, Context::default())),
            down.handle(LambdaEvent::new(down_event, Context::default())),
            reconciler.handle(LambdaEvent::new(
                json!({"action": "reconcile"}),
                Context::default()
            ))
        );
        let (a, b) = (a.expect("scale-up"), b.expect("scale-down"));
        c.expect("reconcile");
        let n = env.desired().await;
        assert!((2..=10).contains(&n), "round {round}: desired {n}");
        assert_eq!(
            env.alarm(UP).await.threshold,
            Some(initial_up(n)),
            "round {round}: up threshold at {n} nodes ({a:?} / {b:?})"
        );
        assert_eq!(
            env.alarm(DOWN).await.threshold,
            Some(initial_down(n)),
            "round {round}: down threshold at {n} nodes ({a:?} / {b:?})"
        );
    }
}

/// An operator (or another tool) sets the group's size; the next scheduled reconcile rewrites
/// both alarms for it, and leaves an alarm alone that is not stuck.
#[tokio::test]
async fn reconcile_rewrites_thresholds_for_a_manual_resize() {
    let env = Env::start(2).await;
    let before = snapshot(&env).await;
    env.set_desired(5).await;
    let schedule = json!({
        "version": "0",
        "id": "89d1a02d-5ec7-412e-82f5-13505f849b41",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-30T01:00:00Z",
        "region": "eu-central-1",
        "resources": ["arn:aws:events:eu-central-1:123456789012:rule/ews-reconcile"],
        "detail": {}
    });
    let out = invoke(&env.scaler(Direction::Up), schedule).await;
    assert_eq!(out.action, Action::Reconciled, "{out:?}");
    assert_state(&env, 5, &before).await;
    assert_eq!(env.alarm(UP).await.state_value, Some(StateValue::Ok));
    // Safe to run again at once: nothing changes.
    let again = invoke(&env.scaler(Direction::Down), json!({"action": "reconcile"})).await;
    assert_eq!(again.action, Action::Reconciled, "{again:?}");
    assert_state(&env, 5, &before).await;
}

/// An invocation failed past its retries and left the alarm in ALARM, where CloudWatch will not
/// invoke again: the reconcile re-arms it, and the next breach scales as expected.
#[tokio::test]
async fn reconcile_rearms_an_alarm_a_lost_invocation_left_in_alarm() {
    let env = Env::start(2).await;
    let before = snapshot(&env).await;
    // The breach happened, but the invocation never ran: the alarm sits in ALARM.
    let lost = env.breach(UP).await;
    assert_eq!(env.alarm(UP).await.state_value, Some(StateValue::Alarm));
    let up = env.scaler_with(Direction::Up, &[("REARM_STUCK_AFTER_SECS", "0")]);
    let out = invoke(&up, json!({"action": "reconcile"})).await;
    assert_eq!(out.action, Action::Reconciled, "{out:?}");
    assert!(out.reason.contains("re-armed"), "{}", out.reason);
    assert_eq!(env.alarm(UP).await.state_value, Some(StateValue::Ok));
    assert_state(&env, 2, &before).await;
    // The lost event arriving late finds the alarm OK: ignored, no step.
    assert_eq!(invoke(&up, lost).await.action, Action::Ignored);
    // The breach persists: CloudWatch fires again, and the scaler steps.
    let next = env.breach(UP).await;
    assert_eq!(invoke(&up, next).await.action, Action::Scaled);
    assert_state(&env, 3, &before).await;
}

/// AWS retries an older transition's event while the alarm is in ALARM for a newer one: the
/// retry is rejected as stale (it neither steps nor re-arms the alarm under the newer
/// transition), and the newer event then steps.
#[tokio::test]
async fn a_stale_retry_of_an_older_transition_is_rejected() {
    let env = Env::start(2).await;
    let before = snapshot(&env).await;
    let up = env.scaler(Direction::Up);
    let first = env.breach(UP).await;
    assert_eq!(invoke(&up, first.clone()).await.action, Action::Scaled);
    assert_state(&env, 3, &before).await;
    // The next transition comes measurably later (timestamps have second precision in places).
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let second = env.breach(UP).await;

    let retry = invoke(&up, first).await;
    assert_eq!(retry.action, Action::Ignored, "{retry:?}");
    assert!(retry.reason.contains("stale"), "{}", retry.reason);
    assert_eq!(env.alarm(UP).await.state_value, Some(StateValue::Alarm));
    assert_state(&env, 3, &before).await;

    assert_eq!(invoke(&up, second).await.action, Action::Scaled);
    assert_state(&env, 4, &before).await;
}

/// A run that fails (here the scale-down alarm was deleted, so the scaler cannot rewrite it and
/// refuses to step) leaves its alarm in ALARM and counts the failure on the group; the
/// reconcile re-arms the alarm only once the back-off (a minute, doubling per failure in a row,
/// at most an hour) is over, so a persistent error costs a few runs an hour, not one every few
/// seconds. Once the alarm is back, the next breach steps and the count starts over.
#[tokio::test]
async fn a_failed_run_backs_off_and_the_next_breach_steps() {
    let env = Env::start(2).await;
    let up = env.scaler(Direction::Up);
    env.cw
        .delete_alarms()
        .alarm_names(DOWN)
        .send()
        .await
        .unwrap();
    let err = up
        .handle(LambdaEvent::new(env.breach(UP).await, Context::default()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(DOWN), "{err}");
    assert_eq!(env.alarm(UP).await.state_value, Some(StateValue::Alarm));
    assert_eq!(env.desired().await, 2, "no step without both alarms");
    let count = env.group_tag(FAILURES_TAG).await.unwrap();
    assert!(count.starts_with("1@"), "{count}");

    // `terraform apply` puts the alarm back, at its initial threshold.
    env.create_down_alarm(2).await;
    let before = snapshot(&env).await;
    let patient = env.scaler_with(Direction::Up, &[("REARM_STUCK_AFTER_SECS", "0")]);
    let out = invoke(&patient, json!({"action": "reconcile"})).await;
    assert_eq!(out.action, Action::Reconciled, "{out:?}");
    assert!(
        out.reason.contains("1 failed runs in a row"),
        "{}",
        out.reason
    );
    assert_eq!(env.alarm(UP).await.state_value, Some(StateValue::Alarm));
    assert_state(&env, 2, &before).await;
    // A minute later (the tag says so) the back-off is over and the reconcile re-arms.
    let earlier = chrono::Utc::now() - chrono::Duration::seconds(61);
    env.tag(FAILURES_TAG, &format!("1@{}", earlier.to_rfc3339()))
        .await;
    let out = invoke(&patient, json!({"action": "reconcile"})).await;
    assert!(out.reason.contains("re-armed"), "{}", out.reason);
    assert_eq!(env.alarm(UP).await.state_value, Some(StateValue::Ok));

    // The breach persists: the alarm fires again and the scaler steps; the count starts over.
    let out = invoke(&up, env.breach(UP).await).await;
    assert_eq!(out.action, Action::Scaled, "{out:?}");
    assert_state(&env, 3, &before).await;
    let count = env.group_tag(FAILURES_TAG).await.unwrap();
    assert!(count.starts_with("0@"), "{count}");
}

/// One scale-in per cool-down: a second breach within it waits, leaving the alarm in ALARM for
/// the reconcile; once the cool-down is over (the tag says the last scale-in was long ago) the
/// next breach steps.
#[tokio::test]
async fn scale_in_waits_out_the_cool_down() {
    let env = Env::start(5).await;
    let before = snapshot(&env).await;
    let down = env.scaler(Direction::Down);
    let out = invoke(&down, env.breach(DOWN).await).await;
    assert_eq!(out.action, Action::Scaled, "{out:?}");
    assert_state(&env, 4, &before).await;
    assert!(env.group_tag(LAST_SCALE_IN_TAG).await.is_some());

    let out = invoke(&down, env.breach(DOWN).await).await;
    assert_eq!(out.action, Action::Waiting, "{out:?}");
    assert!(out.reason.contains("cool-down until"), "{}", out.reason);
    assert_state(&env, 4, &before).await;
    assert_eq!(env.alarm(DOWN).await.state_value, Some(StateValue::Alarm));

    let long_ago = chrono::Utc::now() - chrono::Duration::seconds(301);
    env.tag(LAST_SCALE_IN_TAG, &long_ago.to_rfc3339()).await;
    let out = invoke(&down, env.breach(DOWN).await).await;
    assert_eq!(out.action, Action::Scaled, "{out:?}");
    assert_state(&env, 3, &before).await;

    // No scale-in within a cool-down of a scale-out either.
    let up = env.scaler(Direction::Up);
    assert_eq!(
        invoke(&up, env.breach(UP).await).await.action,
        Action::Scaled
    );
    env.tag(LAST_SCALE_IN_TAG, &long_ago.to_rfc3339()).await;
    let out = invoke(&down, env.breach(DOWN).await).await;
    assert_eq!(out.action, Action::Waiting, "{out:?}");
    assert_state(&env, 4, &before).await;
}

/// The busiest worker's alarm steps out like the total's; a second breach while the worker
/// added last may still be filling waits. The busy alarm's line is never rewritten.
#[tokio::test]
async fn the_busy_alarm_steps_then_waits_for_the_new_worker_to_fill() {
    let env = Env::start(3).await;
    let before = snapshot(&env).await;
    let eager = env.scaler_with(Direction::Up, &[("FILL_SECS", "0")]);
    let out = invoke(&eager, env.breach(BUSY).await).await;
    assert_eq!(out.action, Action::Scaled, "{out:?}");
    assert_state(&env, 4, &before).await;
    assert_eq!(env.alarm(BUSY).await.state_value, Some(StateValue::Ok));
    assert!(env.group_tag(LAST_SCALE_OUT_TAG).await.is_some());

    let up = env.scaler(Direction::Up);
    let out = invoke(&up, env.breach(BUSY).await).await;
    assert_eq!(out.action, Action::Waiting, "{out:?}");
    assert!(out.reason.contains("still be filling"), "{}", out.reason);
    assert_eq!(env.alarm(BUSY).await.state_value, Some(StateValue::Alarm));
    assert_state(&env, 4, &before).await;
    assert_eq!(env.alarm(BUSY).await.threshold, Some(90_000.0));
    // The total's alarm is not held back by it.
    let out = invoke(&up, env.breach(UP).await).await;
    assert_eq!(out.action, Action::Scaled, "{out:?}");
    assert_state(&env, 5, &before).await;
    // The scale-down function does not answer the busy alarm.
    let down = env.scaler(Direction::Down);
    assert_eq!(
        invoke(&down, env.breach(BUSY).await).await.action,
        Action::Ignored
    );
}
