//! The scaler Lambda handler: one alarm transition in, at most one node of change out.
//!
//! Order of work and why:
//! 1. Ignore anything that is not a transition into ALARM of this function's alarms (scale-up
//!    answers the total's alarm and the busiest worker's).
//! 2. Describe the fired alarm: if it is no longer in ALARM, this delivery is a retry of an event
//!    already handled (we re-arm to OK at the end) or the load already recovered.
//! 3. Describe the group. Check the guards ([`Guards`]) against the time of the last steps,
//!    kept in group tags: a scale-in within the cool-down, or a busy-worker scale-out while the
//!    worker added last may still be filling, waits (`waiting`) and leaves the alarm in ALARM for
//!    the scheduled reconcile to re-arm, so a persisting breach is looked at again minutes later,
//!    never seconds. Record the event's key and the step's time in group tags *before* changing
//!    capacity, so a retry after a partial run cannot step twice (at worst a step is skipped,
//!    and the alarm fires again later if the breach persists).
//! 4. SetDesiredCapacity (clamped: moto does not enforce min/max, AWS rejects past them).
//! 5. Rewrite both alarms for the new capacity. PutMetricAlarm replaces the whole alarm
//!    configuration, so every field of the described alarm is copied and only the threshold
//!    changes (tags survive an update untouched). Then re-read the group and rewrite again until
//!    the thresholds match its desired capacity: the other direction's scaler may run at the
//!    same time ([`Scaler::settle_thresholds`]).
//! 6. Re-arm the fired alarm (SetAlarmState OK) so a persisting breach fires again.
//!
//! Transient AWS errors are retried with backoff by the SDK clients' retry policy
//! ([`retry_config`]); an error that remains names the failing call, and the function fails so
//! AWS retries the whole event (safe by steps 2 and 3). A failed run does **not** re-arm its
//! alarm: re-armed, the alarm would fire again within seconds and a persistent error
//! (AccessDenied, a scaling activity that never ends) would loop. Left in ALARM, it is re-armed
//! by the scheduled reconcile, at most once per `reconcile_minutes`, and the function's Errors
//! alarm says why.

use std::time::Duration;

use aws_sdk_autoscaling::types::{AutoScalingGroup, Tag as AsgTag};
use aws_sdk_cloudwatch::types::{AlarmType, MetricAlarm, StateValue};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::event::{classify_json, Verdict};
use crate::policy::{decide, thresholds, Bounds, Decision, Direction, Thresholds, Wait};

/// The group tag holding the key of the last alarm transition a scaler acted on.
pub const LAST_EVENT_TAG: &str = "ews:last-scaling-event";
/// The group tags holding when the scalers last stepped in and out (RFC 3339).
pub const LAST_SCALE_IN_TAG: &str = "ews:last-scale-in";
pub const LAST_SCALE_OUT_TAG: &str = "ews:last-scale-out";
/// The group tag counting the scalers' failed runs in a row: `<count>@<RFC 3339 time>`.
pub const FAILURES_TAG: &str = "ews:scaler-failures";

/// Five attempts with exponential backoff from 200 ms: rides out throttling and brief outages
/// well within a Lambda timeout.
pub fn retry_config() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(5)
        .with_initial_backoff(Duration::from_millis(200))
}

#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("{call} failed: {detail}")]
    Aws { call: &'static str, detail: String },
    #[error("{0}")]
    NotFound(String),
    /// The group kept changing size while the thresholds were rewritten; the function fails so
    /// AWS retries it.
    #[error("{0}")]
    Unsettled(String),
}

/// The capacity the thresholds were last written (and confirmed) for.
struct Settled {
    nodes: u32,
    thresholds: Thresholds,
}

/// The function error AWS records: `error_type` names the failing call.
impl From<ScaleError> for lambda_runtime::Diagnostic {
    fn from(e: ScaleError) -> Self {
        let error_type = match &e {
            ScaleError::Aws { call, .. } => (*call).to_string(),
            ScaleError::NotFound(_) => "NotFound".to_string(),
            ScaleError::Unsettled(_) => "Unsettled".to_string(),
        };
        lambda_runtime::Diagnostic {
            error_type,
            error_message: e.to_string(),
        }
    }
}

fn aws_err<E>(call: &'static str) -> impl FnOnce(E) -> ScaleError
where
    E: std::error::Error + 'static,
{
    move |e| ScaleError::Aws {
        call,
        detail: aws_sdk_autoscaling::error::DisplayErrorContext(e).to_string(),
    }
}

/// What an invocation did; the function's response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub action: Action,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Desired capacity stepped by one.
    Scaled,
    /// Already at the bound: thresholds checked, alarm re-armed, capacity unchanged.
    AtBound,
    /// A guard holds the step back (the scale-in cool-down, a new worker still filling): the
    /// alarm stays in ALARM for the reconcile to re-arm.
    Waiting,
    /// The same transition was acted on before (a retried delivery after a partial run).
    Duplicate,
    /// A scheduled reconcile: thresholds rewritten for the group's actual capacity (and this
    /// function's alarm re-armed if it was stuck in ALARM).
    Reconciled,
    /// Not a request to scale.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub group: String,
    pub direction: Direction,
    pub bounds: Bounds,
    pub from: u32,
    pub to: u32,
    pub up_threshold: f64,
    pub down_threshold: f64,
    pub key: String,
}

/// A configured scaler with its AWS clients.
pub struct Scaler {
    cfg: Config,
    asg: aws_sdk_autoscaling::Client,
    cw: aws_sdk_cloudwatch::Client,
}

impl Scaler {
    pub fn new(
        cfg: Config,
        asg: aws_sdk_autoscaling::Client,
        cw: aws_sdk_cloudwatch::Client,
    ) -> Scaler {
        Scaler { cfg, asg, cw }
    }

    /// Clients from the Lambda environment (role credentials, region; `AWS_ENDPOINT_URL` for
    /// local runs against moto).
    pub async fn from_env(cfg: Config) -> Scaler {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(retry_config())
            .load()
            .await;
        Scaler::new(
            cfg,
            aws_sdk_autoscaling::Client::new(&shared),
            aws_sdk_cloudwatch::Client::new(&shared),
        )
    }

    /// The Lambda handler.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Outcome, ScaleError> {
        if is_reconcile(&event.payload) {
            return self.reconcile().await;
        }
        let mut first_reason = None;
        let mut acted = None;
        for own in self.cfg.own_alarms() {
            match classify_json(event.payload.clone(), own) {
                Verdict::Act { key, at } => {
                    acted = Some((own.to_string(), key, at));
                    break;
                }
                Verdict::Ignore(reason) => {
                    first_reason.get_or_insert(reason);
                }
            }
        }
        let Some((own, key, at)) = acted else {
            return Ok(ignored(first_reason.unwrap_or_default()));
        };
        let result = self.scale(&own, key, at).await;
        if let Err(e) = &result {
            // Not re-armed: it would fire again within seconds, and a persistent error would
            // loop. The reconcile re-arms it, backing off by the failures counted here.
            let counted = self.count_failure().await;
            tracing::warn!(error = %e, alarm = %own, failures_in_a_row = ?counted, "run failed; the alarm stays in ALARM until the scheduled reconcile re-arms it");
        }
        result
    }

    /// Counts a failed run in the group's [`FAILURES_TAG`] (best effort: the error that failed
    /// the run may fail this too, and then the reconcile re-arms at its own pace).
    async fn count_failure(&self) -> Option<u32> {
        let group = self.describe_group().await.ok()?;
        let (before, _) = failures(&group).unwrap_or((0, 0));
        let now = before.saturating_add(1);
        let value = format!("{now}@{}", chrono::Utc::now().to_rfc3339());
        self.asg
            .create_or_update_tags()
            .tags(self.tag(FAILURES_TAG, &value))
            .send()
            .await
            .ok()?;
        Some(now)
    }

    fn tag(&self, key: &str, value: &str) -> AsgTag {
        AsgTag::builder()
            .resource_id(&self.cfg.asg_name)
            .resource_type("auto-scaling-group")
            .key(key)
            .value(value)
            .propagate_at_launch(false)
            .build()
    }

    /// Acts on the transition `key` (at `at`) of this function's alarm `own`.
    async fn scale(
        &self,
        own: &str,
        key: String,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Outcome, ScaleError> {
        let alarms = self.describe_alarms().await?;
        let fired = find_alarm(&alarms, own)?;
        if fired.state_value != Some(StateValue::Alarm) {
            let now = fired
                .state_value
                .as_ref()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "unknown".into());
            return Ok(ignored(format!(
                "alarm {own:?} is {now} now, no longer ALARM: this transition was already \
                 handled or the load recovered"
            )));
        }

        // A retry of an older transition, delivered while the alarm is in ALARM for a newer one:
        // that newer one's own invocation acts (acting here would step twice, or re-arm the
        // alarm under it). AWS always reports StateTransitionedTimestamp; moto only the updated
        // one, which in AWS also moves with a new state reason, hence the order.
        let transitioned = fired
            .state_transitioned_timestamp()
            .or(fired.state_updated_timestamp())
            .and_then(|t| t.to_millis().ok())
            .and_then(chrono::DateTime::from_timestamp_millis);
        if let Some(current) = transitioned.filter(|t| at < *t - chrono::Duration::seconds(1)) {
            return Ok(ignored(format!(
                "stale event: alarm {own:?} went into ALARM again at {current} since this \
                 transition ({at}); that transition's own invocation acts"
            )));
        }

        let group = self.describe_group().await?;
        let (group_min, group_max, desired) = sizes(&group)?;
        let bounds = Bounds::effective(group_min, group_max, self.cfg.min_size, self.cfg.max_size);
        let duplicate = group
            .tags()
            .iter()
            .any(|t| t.key() == Some(LAST_EVENT_TAG) && t.value() == Some(key.as_str()));
        let decision = if duplicate {
            let n = bounds.clamp(desired);
            Decision {
                from: desired,
                to: n,
                thresholds: thresholds(n, bounds, self.cfg.steps),
            }
        } else {
            decide(desired, self.cfg.direction, bounds, self.cfg.steps)
        };
        let now = chrono::Utc::now();
        if !duplicate && decision.changes_capacity() {
            if let Err(wait) = self.guard(&group, own, now).await {
                let settled = self
                    .settle_thresholds(bounds.clamp(desired), bounds)
                    .await?;
                return Ok(self.waiting(own, wait, bounds, desired, settled, key));
            }
        }

        if !duplicate {
            let stepped = decision.changes_capacity().then_some(now);
            self.record_key(&key, stepped).await?;
        }
        if decision.changes_capacity() {
            self.set_desired(decision.to).await?;
        }
        let settled = self.settle_thresholds(decision.to, bounds).await?;
        // Re-armed, the alarm re-evaluates "often within seconds" (AWS) and fires again only if
        // the load still breaches the threshold just written, i.e. justifies one more node. At a
        // bound nothing would change: re-arming there would loop a no-op invocation every few
        // seconds while the breach lasts. The alarm stays in ALARM instead, and the scheduled
        // reconcile re-arms it every few minutes, so a raised bound takes effect then.
        let at_bound = !duplicate && !decision.changes_capacity();
        if !at_bound {
            self.rearm(own, &format!("at {} nodes", settled.nodes))
                .await?;
        }

        let (action, reason) = if duplicate {
            (
                Action::Duplicate,
                format!(
                    "transition {key} was already acted on; thresholds checked, alarm re-armed"
                ),
            )
        } else if decision.changes_capacity() {
            (
                Action::Scaled,
                format!(
                    "{} {} -> {} nodes",
                    self.cfg.direction.as_str(),
                    decision.from,
                    decision.to
                ),
            )
        } else {
            (
                Action::AtBound,
                format!(
                    "already at the {} bound ({} nodes); the alarm stays in ALARM until the \
                     scheduled reconcile re-arms it",
                    match self.cfg.direction {
                        Direction::Up => "max",
                        Direction::Down => "min",
                    },
                    decision.to
                ),
            )
        };
        tracing::info!(?action, %reason, "scaling event handled");
        Ok(Outcome {
            action,
            reason,
            change: Some(Change {
                group: self.cfg.asg_name.clone(),
                direction: self.cfg.direction,
                bounds,
                from: decision.from,
                to: decision.to,
                up_threshold: settled.thresholds.up,
                down_threshold: settled.thresholds.down,
                key,
            }),
        })
    }

    /// The guard for a step of `own`'s alarm at `now` ([`Guards`]), from the group's tags; for
    /// the busy-worker alarm also its instances (one still launching is capacity on its way) and
    /// its last launch (a replacement's too, which no tag records).
    async fn guard(
        &self,
        group: &AutoScalingGroup,
        own: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Wait> {
        let last_in = tag_time(group, LAST_SCALE_IN_TAG);
        let last_out = tag_time(group, LAST_SCALE_OUT_TAG);
        let guards = self.cfg.guards;
        match self.cfg.direction {
            Direction::Down => guards.scale_in(now.timestamp(), last_in, last_out),
            Direction::Up if self.cfg.busy_alarm.as_deref() == Some(own) => {
                let launching = group.instances().iter().any(|i| {
                    i.lifecycle_state()
                        .is_some_and(|s| s.as_str().starts_with("Pending"))
                });
                if launching {
                    return Err(Wait {
                        until: now.timestamp() + guards.fill_secs as i64,
                    });
                }
                let last_launch = self.last_launch().await;
                guards.busy_scale_out(now.timestamp(), last_out.max(last_launch))
            }
            Direction::Up => Ok(()),
        }
    }

    /// When the group last launched an instance, from its scaling activities (best effort:
    /// without it the tags' last scale-out still guards).
    async fn last_launch(&self) -> Option<i64> {
        let out = self
            .asg
            .describe_scaling_activities()
            .auto_scaling_group_name(&self.cfg.asg_name)
            .max_records(20)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %aws_sdk_autoscaling::error::DisplayErrorContext(&e), "DescribeScalingActivities failed; the last scale-out guards alone");
            })
            .ok()?;
        out.activities()
            .iter()
            .filter(|a| a.description().is_some_and(|d| d.starts_with("Launching")))
            .filter_map(|a| a.start_time().map(|t| t.secs()))
            .max()
    }

    fn waiting(
        &self,
        own: &str,
        wait: Wait,
        bounds: Bounds,
        desired: u32,
        settled: Settled,
        key: String,
    ) -> Outcome {
        let until = chrono::DateTime::from_timestamp(wait.until, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let reason = match self.cfg.direction {
            Direction::Down => format!(
                "scale-in cool-down until {until}; alarm {own:?} stays in ALARM until the \
                 scheduled reconcile re-arms it"
            ),
            Direction::Up => format!(
                "the worker added last may still be filling until {until}; alarm {own:?} stays \
                 in ALARM until the scheduled reconcile re-arms it"
            ),
        };
        tracing::info!(%reason, "step held back");
        Outcome {
            action: Action::Waiting,
            reason,
            change: Some(self.change(bounds, desired, &settled, key)),
        }
    }

    /// The response's account of the group: from `from` nodes to what the thresholds settled on.
    fn change(&self, bounds: Bounds, from: u32, settled: &Settled, key: String) -> Change {
        Change {
            group: self.cfg.asg_name.clone(),
            direction: self.cfg.direction,
            bounds,
            from,
            to: settled.nodes,
            up_threshold: settled.thresholds.up,
            down_threshold: settled.thresholds.down,
            key,
        }
    }

    /// The scheduled reconcile (EventBridge, every few minutes): whatever changed the group's
    /// desired capacity (an operator, another tool, a lost invocation), both thresholds are
    /// rewritten for what is there; and this function's alarm, if it has sat in ALARM past
    /// `REARM_STUCK_AFTER_SECS` (so no invocation is on its way to re-arm it), is re-armed, so
    /// CloudWatch invokes again next period if the breach persists. Safe to run at any time.
    async fn reconcile(&self) -> Result<Outcome, ScaleError> {
        let group = self.describe_group().await?;
        let (group_min, group_max, desired) = sizes(&group)?;
        let bounds = Bounds::effective(group_min, group_max, self.cfg.min_size, self.cfg.max_size);
        let settled = self
            .settle_thresholds(bounds.clamp(desired), bounds)
            .await?;
        let alarms = self.describe_alarms().await?;
        let mut rearmed = Vec::new();
        let backoff = failures(&group).and_then(|(n, at)| {
            let until = at + crate::policy::failure_backoff_secs(n) as i64;
            (n > 0 && chrono::Utc::now().timestamp() < until).then_some((n, until))
        });
        for own in self.cfg.own_alarms() {
            let alarm = find_alarm(&alarms, own)?;
            let since = alarm
                .state_transitioned_timestamp()
                .or(alarm.state_updated_timestamp())
                .and_then(|t| std::time::SystemTime::try_from(*t).ok())
                .and_then(|t| t.elapsed().ok());
            let stuck = alarm.state_value == Some(StateValue::Alarm)
                && since.is_none_or(|d| d >= self.cfg.rearm_stuck_after);
            if stuck && backoff.is_none() {
                self.rearm(
                    own,
                    "by the scheduled reconcile (no invocation re-armed it)",
                )
                .await?;
                rearmed.push(format!("{own:?}"));
            }
        }
        let reason = format!(
            "thresholds rewritten for the group's {} nodes{}{}",
            settled.nodes,
            if rearmed.is_empty() {
                String::new()
            } else {
                format!("; {} stuck in ALARM and re-armed", rearmed.join(" and "))
            },
            match backoff {
                Some((n, until)) => format!(
                    "; {n} failed runs in a row: no re-arm until {}",
                    chrono::DateTime::from_timestamp(until, 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default()
                ),
                None => String::new(),
            }
        );
        tracing::info!(%reason, "reconciled");
        Ok(Outcome {
            action: Action::Reconciled,
            reason,
            change: Some(self.change(bounds, desired, &settled, String::new())),
        })
    }

    /// Writes both alarms' thresholds for `nodes`, then re-reads the group: if its desired
    /// capacity moved meanwhile (the other direction's scaler, or an operator, acting at the same
    /// time), the thresholds are rewritten for what is there, until a read confirms them. Every
    /// threshold write is thus followed by a read that confirms it, so whichever scaler writes
    /// last leaves thresholds that match the group: the two functions need no shared lock
    /// (reserved concurrency is optional, and cannot serialize two functions anyway).
    async fn settle_thresholds(&self, nodes: u32, bounds: Bounds) -> Result<Settled, ScaleError> {
        /// Each round is a few API calls; two concurrent scalers settle in one or two.
        const ROUNDS: usize = 5;
        let mut nodes = nodes;
        for _ in 0..ROUNDS {
            let t = thresholds(nodes, bounds, self.cfg.steps);
            // Fresh copies: another scaler may have rewritten them since this one started.
            for alarm in &self.describe_alarms().await? {
                // The busy-worker alarm's line is the capacity's, not the fleet's: left alone.
                let threshold = match alarm.alarm_name() {
                    Some(n) if n == self.cfg.scale_up_alarm => t.up,
                    Some(n) if n == self.cfg.scale_down_alarm => t.down,
                    _ => continue,
                };
                self.put_threshold(alarm, threshold).await?;
            }
            let (_, _, desired) = sizes(&self.describe_group().await?)?;
            let now = bounds.clamp(desired);
            if now == nodes {
                return Ok(Settled {
                    nodes,
                    thresholds: t,
                });
            }
            tracing::info!(
                from = nodes,
                to = now,
                "desired capacity moved while rewriting thresholds; settling on the group's"
            );
            nodes = now;
        }
        Err(ScaleError::Unsettled(format!(
            "desired capacity kept changing over {ROUNDS} threshold rewrites (last {nodes})"
        )))
    }

    async fn describe_alarms(&self) -> Result<Vec<MetricAlarm>, ScaleError> {
        const CALL: &str = "cloudwatch:DescribeAlarms";
        let out = self
            .cw
            .describe_alarms()
            .set_alarm_names(Some(
                [&self.cfg.scale_up_alarm, &self.cfg.scale_down_alarm]
                    .into_iter()
                    .chain(self.cfg.busy_alarm.as_ref())
                    .cloned()
                    .collect(),
            ))
            .alarm_types(AlarmType::MetricAlarm)
            .send()
            .await
            .map_err(aws_err(CALL))?;
        let alarms = out.metric_alarms().to_vec();
        for name in [&self.cfg.scale_up_alarm, &self.cfg.scale_down_alarm]
            .into_iter()
            .chain(self.cfg.busy_alarm.as_ref())
        {
            find_alarm(&alarms, name)?;
        }
        Ok(alarms)
    }

    async fn describe_group(&self) -> Result<AutoScalingGroup, ScaleError> {
        const CALL: &str = "autoscaling:DescribeAutoScalingGroups";
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.cfg.asg_name)
            .send()
            .await
            .map_err(aws_err(CALL))?;
        out.auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(self.cfg.asg_name.as_str()))
            .cloned()
            .ok_or_else(|| {
                ScaleError::NotFound(format!(
                    "{CALL}: Auto Scaling group {:?} (WS_ASG_NAME) not found",
                    self.cfg.asg_name
                ))
            })
    }

    /// Records the transition's key and, for a step, its time as the last scale-in or -out.
    async fn record_key(
        &self,
        key: &str,
        stepped: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), ScaleError> {
        let mut put = self
            .asg
            .create_or_update_tags()
            .tags(self.tag(LAST_EVENT_TAG, key));
        if let Some(at) = stepped {
            let name = match self.cfg.direction {
                Direction::Up => LAST_SCALE_OUT_TAG,
                Direction::Down => LAST_SCALE_IN_TAG,
            };
            put = put
                .tags(self.tag(name, &at.to_rfc3339()))
                .tags(self.tag(FAILURES_TAG, &format!("0@{}", at.to_rfc3339())));
        }
        put.send()
            .await
            .map_err(aws_err("autoscaling:CreateOrUpdateTags"))?;
        Ok(())
    }

    async fn set_desired(&self, n: u32) -> Result<(), ScaleError> {
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(&self.cfg.asg_name)
            .desired_capacity(i32::try_from(n).unwrap_or(i32::MAX))
            .honor_cooldown(false)
            .send()
            .await
            .map_err(aws_err("autoscaling:SetDesiredCapacity"))?;
        Ok(())
    }

    /// Rewrites `alarm` with `threshold`, copying every other field (no-op when it already has
    /// that threshold). Tags are the exception: PutMetricAlarm ignores them when it updates an
    /// existing alarm, which keeps its tags, and passing them would need `cloudwatch:TagResource`.
    async fn put_threshold(&self, alarm: &MetricAlarm, threshold: f64) -> Result<(), ScaleError> {
        if alarm.threshold == Some(threshold) {
            return Ok(());
        }
        let mut put = self
            .cw
            .put_metric_alarm()
            .set_alarm_name(alarm.alarm_name.clone())
            .set_alarm_description(alarm.alarm_description.clone())
            .set_actions_enabled(alarm.actions_enabled)
            .set_ok_actions(alarm.ok_actions.clone())
            .set_alarm_actions(alarm.alarm_actions.clone())
            .set_insufficient_data_actions(alarm.insufficient_data_actions.clone())
            .set_metric_name(alarm.metric_name.clone())
            .set_namespace(alarm.namespace.clone())
            .set_statistic(alarm.statistic.clone())
            .set_extended_statistic(alarm.extended_statistic.clone())
            .set_dimensions(alarm.dimensions.clone())
            .set_period(alarm.period)
            .set_unit(alarm.unit.clone())
            .set_evaluation_periods(alarm.evaluation_periods)
            .set_datapoints_to_alarm(alarm.datapoints_to_alarm)
            .set_comparison_operator(alarm.comparison_operator.clone())
            .set_treat_missing_data(alarm.treat_missing_data.clone())
            .set_evaluate_low_sample_count_percentile(
                alarm.evaluate_low_sample_count_percentile.clone(),
            )
            .set_metrics(alarm.metrics.clone().filter(|m| !m.is_empty()));
        // An anomaly-detection band has no static threshold to rewrite; keep its band id.
        put = match &alarm.threshold_metric_id {
            Some(id) => put.threshold_metric_id(id),
            None => put.threshold(threshold),
        };
        put.send()
            .await
            .map_err(aws_err("cloudwatch:PutMetricAlarm"))?;
        Ok(())
    }

    /// Sets `alarm` to OK so a persisting breach fires (and invokes) again; `why` goes into the
    /// alarm's state reason.
    async fn rearm(&self, alarm: &str, why: &str) -> Result<(), ScaleError> {
        self.cw
            .set_alarm_state()
            .alarm_name(alarm)
            .state_value(StateValue::Ok)
            .state_reason(format!(
                "Re-armed by the ews {} scaler {why}, so a persisting breach fires again",
                self.cfg.direction.as_str(),
            ))
            .send()
            .await
            .map_err(aws_err("cloudwatch:SetAlarmState"))?;
        Ok(())
    }
}

/// Whether a payload asks for a reconcile: the EventBridge schedule's event
/// (`"source": "aws.events"`, `"detail-type": "Scheduled Event"`) or `{"action": "reconcile"}`
/// (a local invocation).
pub fn is_reconcile(payload: &Value) -> bool {
    (payload["source"] == "aws.events" && payload["detail-type"] == "Scheduled Event")
        || payload["action"] == "reconcile"
}

fn ignored(reason: String) -> Outcome {
    tracing::info!(%reason, "event ignored");
    Outcome {
        action: Action::Ignored,
        reason,
        change: None,
    }
}

fn find_alarm<'a>(alarms: &'a [MetricAlarm], name: &str) -> Result<&'a MetricAlarm, ScaleError> {
    alarms
        .iter()
        .find(|a| a.alarm_name() == Some(name))
        .ok_or_else(|| {
            ScaleError::NotFound(format!(
                "cloudwatch:DescribeAlarms: metric alarm {name:?} not found"
            ))
        })
}

/// The failed runs in a row and the last one's time (seconds), from [`FAILURES_TAG`].
fn failures(group: &AutoScalingGroup) -> Option<(u32, i64)> {
    let value = group
        .tags()
        .iter()
        .find(|t| t.key() == Some(FAILURES_TAG))?
        .value()?;
    let (n, at) = value.split_once('@')?;
    let at = chrono::DateTime::parse_from_rfc3339(at).ok()?.timestamp();
    Some((n.parse().ok()?, at))
}

/// A step time recorded in a group tag, in seconds; an unreadable one counts as none.
fn tag_time(group: &AutoScalingGroup, key: &str) -> Option<i64> {
    group
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
        .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.timestamp())
}

fn sizes(group: &AutoScalingGroup) -> Result<(u32, u32, u32), ScaleError> {
    let get = |v: Option<i32>, what: &str| {
        v.and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
            ScaleError::NotFound(format!(
                "autoscaling:DescribeAutoScalingGroups: group has no valid {what}"
            ))
        })
    };
    Ok((
        get(group.min_size(), "MinSize")?,
        get(group.max_size(), "MaxSize")?,
        get(group.desired_capacity(), "DesiredCapacity")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_shape() {
        let ignored = serde_json::to_value(ignored("why".into())).unwrap();
        assert_eq!(
            ignored,
            serde_json::json!({"action": "ignored", "reason": "why"})
        );
        let at_bound = Outcome {
            action: Action::AtBound,
            reason: "already at the max bound (10 nodes)".into(),
            change: Some(Change {
                group: "workers".into(),
                direction: Direction::Up,
                bounds: Bounds { min: 2, max: 10 },
                from: 10,
                to: 10,
                up_threshold: 450_000.0,
                down_threshold: 395_000.0,
                key: "up@2026-01-05T10:15:00.123Z".into(),
            }),
        };
        let v = serde_json::to_value(at_bound).unwrap();
        assert_eq!(v["action"], "at-bound");
        assert_eq!(v["change"]["direction"], "up");
        assert_eq!(v["change"]["bounds"]["max"], 10);
    }

    #[test]
    fn errors_become_diagnostics_naming_the_call() {
        let d: lambda_runtime::Diagnostic = ScaleError::Aws {
            call: "autoscaling:SetDesiredCapacity",
            detail: "throttled".into(),
        }
        .into();
        assert_eq!(d.error_type, "autoscaling:SetDesiredCapacity");
        assert_eq!(
            d.error_message,
            "autoscaling:SetDesiredCapacity failed: throttled"
        );
    }
}
