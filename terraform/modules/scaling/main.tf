# The scaling alarms and the two scaler Lambdas. Each alarm invokes its Lambda directly (CloudWatch
# alarm Lambda action); the Lambda steps the group's desired capacity by one and rewrites both
# threshold alarms for the new capacity. The thresholds set here are the policy's at min capacity:
# scale-up at min x STEP (per-worker) or STEP (paper), scale-down disabled. Beside them, on the
# cluster metric, the busy-worker alarm: a fixed line (busy_fraction of a worker's capacity) on
# the busiest worker, which the scale-up Lambda answers too.
data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  alarm_names = {
    up   = "${var.name}-scale-up"
    down = "${var.name}-scale-down"
    busy = "${var.name}-busy-worker"
  }
  alarm_arns = {
    for k, n in local.alarm_names :
    k => "arn:${data.aws_partition.current.partition}:cloudwatch:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:alarm:${n}"
  }
  lambda_mode = var.mode == "lambda"
  # The busy-worker alarm needs the per-worker figures only the leaders publish.
  busy_alarm = local.lambda_mode && var.metric_source == "cluster"
  # Empty in target-tracking mode: no alarms, functions, schedule or failure queue of ours.
  scalers = local.lambda_mode ? {
    up   = { bin = "ews-scale-up", function = "${var.name}-scale-up" }
    down = { bin = "ews-scale-down", function = "${var.name}-scale-down" }
  } : {}

  # What the scaler binaries read (lambdas/): both get the same configuration.
  lambda_env = merge({
    WS_ASG_NAME                        = var.asg_name
    SCALE_UP_ALARM                     = local.alarm_names.up
    SCALE_DOWN_ALARM                   = local.alarm_names.down
    STEP                               = tostring(var.step)
    HYSTERESIS                         = tostring(var.hysteresis)
    THRESHOLDS                         = var.threshold_formula
    SCALE_IN_COOLDOWN_SECS             = tostring(var.scale_in_cooldown_secs)
    FILL_SECS                          = tostring(var.fill_secs)
    }, local.busy_alarm ? { BUSY_ALARM = local.alarm_names.busy } : {}, var.bounds_override == null ? {} : {
    MIN_SIZE                           = tostring(var.bounds_override.min_size)
    MAX_SIZE                           = tostring(var.bounds_override.max_size)
  })

  # Both sources give the alarms one figure: connected WebSocket clients, which STEP is sized in.
  # ALB: ActiveConnectionCount (Sum per minute) counts each WebSocket twice, once from the client to
  # the ALB and once from the ALB to the worker ("The total number of concurrent TCP connections
  # active from clients to the load balancer and from the load balancer to targets",
  # https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html),
  # hence the division by two; and the ALB publishes no datapoint in a minute without traffic
  # (the same page: metrics are reported "only when requests are flowing"), hence FILL(m1, 0): a
  # quiet minute is zero clients, so the scale-down alarm fires at zero traffic.
  # Cluster: the active leader publishes one datapoint per interval, zero included, with a
  # Deployment dimension so two deployments in one account and region stay apart; Maximum keeps a
  # failover overlap from counting twice. A missing datapoint there means no active leader, not
  # zero clients, so it is not filled (and treat_missing_data keeps the alarms where they are).
  metric = var.metric_source == "alb" ? {
    namespace  = "AWS/ApplicationELB"
    name       = "ActiveConnectionCount"
    statistic  = "Sum"
    dimensions = { LoadBalancer = var.alb_arn_suffix }
    expression = "FILL(m1, 0) / 2"
    label      = "WebSocket clients (ALB connections, both sides, / 2; a quiet minute is 0)"
    } : {
    namespace  = var.cloudwatch_namespace
    name       = var.cloudwatch_metric
    statistic  = "Maximum"
    dimensions = { Deployment = var.name }
    expression = "m1"
    label      = "Connected clients (cluster)"
  }
  alarms = local.lambda_mode ? {
    up = {
      comparison          = "GreaterThanThreshold"
      evaluation_periods  = var.scale_up_evaluation_periods
      description_trigger = "above the current step"
    }
    down = {
      comparison          = "LessThanThreshold"
      evaluation_periods  = var.scale_down_evaluation_periods
      description_trigger = "below the current step minus hysteresis"
    }
  } : {}

  # The policy's thresholds (lambdas/src/policy.rs) at n = min: up = min x STEP (per-worker) or
  # (n - min + 1) x STEP = STEP (paper); down = -HYSTERESIS, which a connection count (never
  # negative) cannot go below, i.e. scale-down is disabled at min capacity. The first Lambda run
  # therefore finds both thresholds already right.
  initial_threshold = {
    up   = var.threshold_formula == "per-worker" ? var.min_size * var.step : var.step
    down = -var.hysteresis
  }
}

resource "aws_cloudwatch_metric_alarm" "scale" {
  for_each            = local.alarms
  alarm_name          = local.alarm_names[each.key]
  alarm_description   = "${var.name}: connected clients ${each.value.description_trigger}; invokes ${local.scalers[each.key].function}. Threshold managed by the scalers."
  evaluation_periods  = each.value.evaluation_periods
  comparison_operator = each.value.comparison
  threshold           = local.initial_threshold[each.key]
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_lambda_function.scaler[each.key].arn]
  tags                = var.tags

  metric_query {
    id          = "clients"
    expression  = local.metric.expression
    label       = local.metric.label
    return_data = true
  }

  metric_query {
    id = "m1"
    metric {
      namespace   = local.metric.namespace
      metric_name = local.metric.name
      stat        = local.metric.statistic
      dimensions  = local.metric.dimensions
      period      = 60
    }
  }

  lifecycle {
    # The scalers rewrite the threshold on every step.
    ignore_changes = [threshold]
    precondition {
      condition     = var.hysteresis < var.step
      error_message = "hysteresis must be below step (the scalers reject it otherwise)."
    }
  }
}

resource "aws_cloudwatch_log_group" "scaler" {
  #checkov:skip=CKV_AWS_158:Scaler logs hold no sensitive data; AWS-managed encryption at rest is enough.
  #checkov:skip=CKV_AWS_338:Retention is the variable log_retention_days (operational logs, 30 days by default).
  for_each          = local.scalers
  name              = "/aws/lambda/${each.value.function}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

# The busiest worker near its capacity while the quietest is not still filling: the fleet is full,
# not uneven. A worker that just joined holds few clients (the quietest), which keeps the alarm at
# zero until rebalancing has filled it: adding another then would be the cascade that overshoots.
# Two minutes, so one datapoint from before a new worker joined cannot fire it. A missing
# datapoint (no active leader) is not breaching.
resource "aws_cloudwatch_metric_alarm" "busy" {
  count               = local.busy_alarm ? 1 : 0
  alarm_name          = local.alarm_names.busy
  alarm_description   = "${var.name}: the busiest worker holds more than ${var.busy_fraction * 100} % of its ${var.worker_max_clients} clients and the fleet is evenly busy; invokes ${local.scalers.up.function}."
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.busy_fraction * var.worker_max_clients
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_lambda_function.scaler["up"].arn]
  tags                = var.tags

  metric_query {
    id          = "busy"
    expression  = "IF(quietest * 2 >= busiest, busiest, 0)"
    label       = "Busiest worker's clients while the fleet is evenly busy"
    return_data = true
  }

  # The two figures the leader publishes beside the total, each with the statistic that keeps a
  # failover overlap from hiding it.
  dynamic "metric_query" {
    for_each = {
      busiest  = { name = "BusiestWorkerClients", stat = "Maximum" }
      quietest = { name = "QuietestWorkerClients", stat = "Minimum" }
    }
    content {
      id = metric_query.key
      metric {
        namespace   = var.cloudwatch_namespace
        metric_name = metric_query.value.name
        stat        = metric_query.value.stat
        dimensions  = { Deployment = var.name }
        period      = 60
      }
    }
  }
}

resource "aws_lambda_permission" "busy" {
  count          = local.busy_alarm ? 1 : 0
  statement_id   = "AllowInvokeFromBusyAlarm"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.scaler["up"].function_name
  principal      = "lambda.alarms.cloudwatch.amazonaws.com"
  source_arn     = local.alarm_arns.busy
  source_account = data.aws_caller_identity.current.account_id
}

# Least privilege: read and resize this one group, read and rewrite these alarms, write logs.
data "aws_iam_policy_document" "scaler" {
  for_each = local.scalers
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.scaler[each.key].arn}:*"]
  }
  # DescribeAutoScalingGroups and DescribeScalingActivities (the group's last launch, which the
  # busy-worker alarm's scale-out waits on) support no resource-level permissions.
  statement {
    sid       = "ReadGroup"
    actions   = ["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeScalingActivities"]
    resources = ["*"]
  }
  statement {
    # CreateOrUpdateTags: the scalers record the last alarm transition they acted on in the
    # group tag ews:last-scaling-event, so a retried event never steps twice.
    sid       = "ResizeGroup"
    actions   = ["autoscaling:SetDesiredCapacity", "autoscaling:CreateOrUpdateTags"]
    resources = [var.asg_arn]
  }
  statement {
    sid       = "RewriteAlarms"
    actions   = ["cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:SetAlarmState"]
    resources = local.busy_alarm ? values(local.alarm_arns) : [local.alarm_arns.up, local.alarm_arns.down]
  }
  # Lambda itself sends a failed asynchronous invocation's record to the on-failure destination,
  # with the function's role.
  statement {
    sid       = "RecordFailures"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.scaler_failures[0].arn]
  }
}

resource "aws_iam_role" "scaler" {
  for_each = local.scalers
  # IAM names are global to the account: the region keeps two regions' deployments apart.
  name               = "${each.value.function}-${data.aws_region.current.name}"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "scaler" {
  for_each = local.scalers
  name     = each.value.function
  role     = aws_iam_role.scaler[each.key].id
  policy   = data.aws_iam_policy_document.scaler[each.key].json
}

resource "aws_lambda_function" "scaler" {
  #checkov:skip=CKV_AWS_50:X-Ray tracing adds cost and permissions for a once-per-alarm function; logs suffice.
  #checkov:skip=CKV_AWS_116:Failed invocations go to the on-failure destination (aws_lambda_function_event_invoke_config below, the successor of a dead-letter queue for asynchronous invocations) and raise the Errors alarm; the scheduled reconcile re-arms an alarm a lost invocation left in ALARM.
  #checkov:skip=CKV_AWS_117:Talks only to AWS APIs; a VPC would add NAT dependencies and no protection.
  #checkov:skip=CKV_AWS_173:The environment holds names and numbers only, no secrets.
  #checkov:skip=CKV_AWS_272:Code signing needs an organisation's signing profile; CI builds the zips from this repository.
  for_each         = local.scalers
  function_name    = each.value.function
  description      = "${var.name}: ${each.value.bin} (elastic-ws scaler)"
  role             = aws_iam_role.scaler[each.key].arn
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  handler          = "bootstrap"
  filename         = "${var.lambda_zip_dir}/${each.value.bin}/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.lambda_zip_dir}/${each.value.bin}/bootstrap.zip")
  memory_size      = 128
  timeout          = 30
  # Off by default: reserving concurrency fails on accounts whose concurrency quota is low (new
  # accounts: "decreases account's UnreservedConcurrentExecution below its minimum value of
  # [10]", https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
  # -1 = unreserved.
  reserved_concurrent_executions = var.reserved_concurrency == null ? -1 : var.reserved_concurrency

  environment {
    variables = local.lambda_env
  }

  tags       = var.tags
  depends_on = [aws_cloudwatch_log_group.scaler]
}

# A failed run is recorded, not just logged: Lambda retries an asynchronous invocation twice, then
# sends the event and the error to this queue (kept 14 days) for whoever reads the Errors alarm.
# Events older than 15 minutes are dropped there too: by then the scheduled reconcile has made the
# alarms consistent with the group, and acting on such an old breach would do harm.
resource "aws_sqs_queue" "scaler_failures" {
  count                     = local.lambda_mode ? 1 : 0
  name                      = "${var.name}-scaler-failures"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

resource "aws_lambda_function_event_invoke_config" "scaler" {
  for_each                     = local.scalers
  function_name                = aws_lambda_function.scaler[each.key].function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 900
  destination_config {
    on_failure {
      destination = aws_sqs_queue.scaler_failures[0].arn
    }
  }
}

# CloudWatch alarms invoke Lambdas as this service principal; scoped to the one alarm.
resource "aws_lambda_permission" "alarm" {
  for_each       = local.scalers
  statement_id   = "AllowInvokeFromAlarm"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.scaler[each.key].function_name
  principal      = "lambda.alarms.cloudwatch.amazonaws.com"
  source_arn     = local.alarm_arns[each.key]
  source_account = data.aws_caller_identity.current.account_id
}

# A scaler that fails is worth a page: its alarm stays in ALARM without stepping.
resource "aws_cloudwatch_metric_alarm" "scaler_errors" {
  for_each            = local.scalers
  alarm_name          = "${each.value.function}-errors"
  alarm_description   = "${var.name}: ${each.value.function} failed; the group may not have been resized. See its log group."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.scaler[each.key].function_name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.notification_topic_arns
  ok_actions          = var.notification_topic_arns
  tags                = var.tags
}

# A failed run that exhausted its retries is in the failures queue: worth a page even when the
# next reconcile repaired the alarms, because the error may come back (AccessDenied, a quota).
resource "aws_cloudwatch_metric_alarm" "scaler_failures" {
  count               = local.lambda_mode ? 1 : 0
  alarm_name          = "${var.name}-scaler-failures"
  alarm_description   = "${var.name}: a scaler invocation failed after its retries; its event and error are in ${aws_sqs_queue.scaler_failures[0].name} (kept 14 days)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.scaler_failures[0].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.notification_topic_arns
  ok_actions          = var.notification_topic_arns
  tags                = var.tags
}

# The scheduled reconcile: every few minutes each scaler rewrites both thresholds for the group's
# actual desired capacity (an operator's resize, a lost invocation) and re-arms its alarm if it
# has sat in ALARM with no invocation on its way, which CloudWatch would never invoke again.
resource "aws_cloudwatch_event_rule" "reconcile" {
  count               = local.lambda_mode ? 1 : 0
  name                = "${var.name}-scaling-reconcile"
  description         = "${var.name}: reconcile the scaling alarms with the worker group"
  schedule_expression = "rate(${var.reconcile_minutes} minutes)"
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "reconcile" {
  for_each  = local.scalers
  rule      = aws_cloudwatch_event_rule.reconcile[0].name
  target_id = "${each.key}-reconcile"
  arn       = aws_lambda_function.scaler[each.key].arn
}

resource "aws_lambda_permission" "reconcile" {
  for_each      = local.scalers
  statement_id  = "AllowInvokeFromReconcileSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.scaler[each.key].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.reconcile[0].arn
}

# Target-tracking mode: EC2 Auto Scaling's own policy keeps connected clients per in-service worker
# near the target. AWS creates and owns its two alarms: it scales out in proportion to the excess
# as soon as the metric is above target for 3 minutes, and in only after 15 minutes below 90 % of
# it, and never while instances added earlier are still warming up
# (https://docs.aws.amazon.com/autoscaling/ec2/userguide/target-tracking-scaling-policy-overview.html).
# GroupInServiceInstances needs the group's metrics collection (the workers module enables it).
resource "aws_autoscaling_policy" "target_tracking" {
  count                     = local.lambda_mode ? 0 : 1
  name                      = "${var.name}-clients-per-worker"
  autoscaling_group_name    = var.asg_name
  policy_type               = "TargetTrackingScaling"
  estimated_instance_warmup = var.instance_warmup_secs

  target_tracking_configuration {
    target_value     = var.target_clients_per_worker
    disable_scale_in = var.target_tracking_disable_scale_in

    customized_metric_specification {
      metrics {
        id          = "clients"
        expression  = local.metric.expression
        label       = local.metric.label
        return_data = false
      }
      metrics {
        id = "m1"
        metric_stat {
          metric {
            namespace   = local.metric.namespace
            metric_name = local.metric.name
            dimensions {
              name  = keys(local.metric.dimensions)[0]
              value = values(local.metric.dimensions)[0]
            }
          }
          stat = local.metric.statistic
        }
        return_data = false
      }
      metrics {
        id = "workers"
        metric_stat {
          metric {
            namespace   = "AWS/AutoScaling"
            metric_name = "GroupInServiceInstances"
            dimensions {
              name  = "AutoScalingGroupName"
              value = var.asg_name
            }
          }
          stat = "Average"
        }
        return_data = false
      }
      metrics {
        id          = "per_worker"
        expression  = "clients / workers"
        label       = "Connected clients per in-service worker"
        return_data = true
      }
    }
  }
}
