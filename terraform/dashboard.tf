# One CloudWatch dashboard of the deployment (`<name>`): clients in all and per worker, the
# workers and every scale event, the pipeline's flow and lag, the load balancer's health, and the
# state of every alarm. https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch-Dashboard-Body-Structure.html
locals {
  region = data.aws_region.current.name
  lb     = module.alb.arn_suffix
  asg    = module.workers.asg_name
  # Clients: the active leader's cluster metric where it publishes one, else the ALB's count of
  # open connections (WebSockets included).
  clients_metric = local.publish_metric ? [var.cloudwatch_namespace, var.cloudwatch_metric, "Deployment", var.name, { id = "clients", stat = "Maximum", label = "clients" }] : ["AWS/ApplicationELB", "ActiveConnectionCount", "LoadBalancer", local.lb, { id = "clients", stat = "Sum", label = "open connections" }]
  widget = {
    type   = "metric"
    width  = 12
    height = 6
  }
  dashboard_widgets = concat([
    merge(local.widget, {
      properties = {
        title  = "Clients, and per in-service worker"
        region = local.region
        stat   = "Maximum"
        period = 60
        metrics = [
          local.clients_metric,
          ["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", local.asg, { id = "workers", visible = false }],
          [{ expression = "clients / IF(workers > 0, workers, 1)", label = "clients per worker", id = "per_worker" }],
        ]
      }
    }),
    merge(local.widget, {
      properties = {
        title  = "Workers (each step is a scale event)"
        region = local.region
        stat   = "Maximum"
        period = 60
        metrics = [
          ["AWS/AutoScaling", "GroupDesiredCapacity", "AutoScalingGroupName", local.asg, { label = "desired" }],
          ["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", local.asg, { label = "in service" }],
          ["AWS/AutoScaling", "GroupPendingInstances", "AutoScalingGroupName", local.asg, { label = "launching" }],
          ["AWS/AutoScaling", "GroupTerminatingInstances", "AutoScalingGroupName", local.asg, { label = "draining" }],
        ]
      }
    }),
    merge(local.widget, {
      properties = {
        title  = "Load balancer"
        region = local.region
        stat   = "Sum"
        period = 60
        metrics = [
          ["AWS/ApplicationELB", "NewConnectionCount", "LoadBalancer", local.lb, { label = "new connections" }],
          ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", local.lb, { label = "5xx from the ALB", yAxis = "right" }],
          ["AWS/ApplicationELB", "RejectedConnectionCount", "LoadBalancer", local.lb, { label = "rejected", yAxis = "right" }],
          ["AWS/ApplicationELB", "UnHealthyHostCount", "LoadBalancer", local.lb, "TargetGroup", module.alb.target_group_arn_suffix, { label = "unhealthy workers", stat = "Maximum", yAxis = "right" }],
        ]
      }
    }),
    ], var.sink == "sqs" ? [
    merge(local.widget, {
      properties = {
        title  = "Events: sent per second, waiting, age of the oldest (sink latency)"
        region = local.region
        period = 300
        metrics = [
          ["AWS/SQS", "NumberOfMessagesSent", "QueueName", "${var.name}-events", { stat = "Sum", id = "sent", visible = false }],
          [{ expression = "sent / PERIOD(sent)", label = "events/s", id = "rate" }],
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "${var.name}-events", { stat = "Maximum", label = "waiting" }],
          ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "${var.name}-events", { stat = "Maximum", label = "oldest (s)", yAxis = "right" }],
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "${var.name}-events-dlq", { stat = "Maximum", label = "dead letters" }],
        ]
      }
    }),
    ] : [], [
    {
      type   = "alarm"
      width  = 24
      height = 4
      properties = {
        title  = "Alarms"
        alarms = concat([for a in aws_cloudwatch_metric_alarm.ops : a.arn], [aws_cloudwatch_metric_alarm.unhealthy_workers.arn], [for a in aws_cloudwatch_metric_alarm.events : a.arn])
      }
    },
  ])
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}
