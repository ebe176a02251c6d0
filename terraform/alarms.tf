# What an operator is paged for besides the pipeline's queues (events.tf) and the scalers
# (modules/scaling): each alarm says what it means and what to do, to var.alarm_topic_arns.
# Metrics: https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-metrics.html,
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html.
locals {
  publish_metric = var.publish_cluster_metric || var.scaling_metric == "cluster"
  ops_alarms = merge({
    # The group's maximum is a ceiling the scalers cannot pass: clients keep arriving onto full
    # workers (Minimum over 15 minutes: a scale-out passing through max does not page).
    workers-at-max = {
      namespace  = "AWS/AutoScaling"
      metric     = "GroupInServiceInstances"
      dimensions = { AutoScalingGroupName = module.workers.asg_name }
      statistic  = "Minimum"
      period     = 300
      periods    = 3
      comparison = "GreaterThanOrEqualToThreshold"
      threshold  = var.worker_max_size
      missing    = "notBreaching"
      what       = "the worker group has been at its maximum (${var.worker_max_size}) for 15 minutes: raise worker_max_size, capacity no longer follows the clients"
    }
    # The ALB answered 5xx itself (no healthy worker, a worker that reset or timed out).
    alb-5xx = {
      namespace  = "AWS/ApplicationELB"
      metric     = "HTTPCode_ELB_5XX_Count"
      dimensions = { LoadBalancer = module.alb.arn_suffix }
      statistic  = "Sum"
      period     = 60
      periods    = 3
      comparison = "GreaterThanThreshold"
      threshold  = 10
      missing    = "notBreaching"
      what       = "the load balancer answered over 10 errors (5xx) a minute for 3 minutes: look for unhealthy or overloaded workers"
    }
    # The ALB refused connections: it reached its own connection limit.
    alb-rejected = {
      namespace  = "AWS/ApplicationELB"
      metric     = "RejectedConnectionCount"
      dimensions = { LoadBalancer = module.alb.arn_suffix }
      statistic  = "Sum"
      period     = 60
      periods    = 1
      comparison = "GreaterThanThreshold"
      threshold  = 0
      missing    = "notBreaching"
      what       = "the load balancer rejected client connections (its connection limit)"
    }
    }, local.publish_metric ? {
    # The active leader publishes the cluster metric every interval, zero included: no datapoint
    # for 5 minutes means no active leader (both down, or none holds the lease).
    no-active-leader = {
      namespace  = var.cloudwatch_namespace
      metric     = var.cloudwatch_metric
      dimensions = { Deployment = var.name }
      statistic  = "Maximum"
      period     = 60
      periods    = 5
      comparison = "LessThanThreshold"
      threshold  = 0
      missing    = "breaching"
      what       = "no active leader has published ${var.cloudwatch_metric} for 5 minutes: both leaders down or none holds the lease; publishes through the leaders and the cluster metric's scaling have stopped"
    }
  } : {})
}

resource "aws_cloudwatch_metric_alarm" "ops" {
  for_each            = local.ops_alarms
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = "${var.name}: ${each.value.what}."
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.statistic
  period              = each.value.period
  evaluation_periods  = each.value.periods
  comparison_operator = each.value.comparison
  threshold           = each.value.threshold
  treat_missing_data  = each.value.missing
  alarm_actions       = var.alarm_topic_arns
  ok_actions          = var.alarm_topic_arns
  tags                = var.tags
}
