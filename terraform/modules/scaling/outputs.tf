output "scale_up_alarm_name" {
  description = "Name of the scale-up alarm (SCALE_UP_ALARM); null in target-tracking mode."
  value       = try(aws_cloudwatch_metric_alarm.scale["up"].alarm_name, null)
}

output "scale_up_alarm_arn" {
  description = "ARN of the scale-up alarm."
  value       = try(aws_cloudwatch_metric_alarm.scale["up"].arn, null)
}

output "scale_down_alarm_name" {
  description = "Name of the scale-down alarm (SCALE_DOWN_ALARM); null in target-tracking mode."
  value       = try(aws_cloudwatch_metric_alarm.scale["down"].alarm_name, null)
}

output "scale_down_alarm_arn" {
  description = "ARN of the scale-down alarm."
  value       = try(aws_cloudwatch_metric_alarm.scale["down"].arn, null)
}

output "lambda_function_names" {
  description = "Names of the scaler Lambdas, by direction."
  value       = { for k, f in aws_lambda_function.scaler : k => f.function_name }
}

output "initial_thresholds" {
  description = "Thresholds at min capacity (the scalers rewrite them on every step)."
  value       = local.initial_threshold
}

output "scaler_failures_queue_url" {
  description = "SQS queue of the scalers' failed invocations (on-failure destination); null in target-tracking mode."
  value       = try(aws_sqs_queue.scaler_failures[0].url, null)
}

output "target_tracking_policy_arn" {
  description = "The target-tracking policy; null in lambda mode."
  value       = try(aws_autoscaling_policy.target_tracking[0].arn, null)
}

output "busy_alarm_name" {
  description = "Name of the busy-worker alarm (BUSY_ALARM); null without it (target tracking, the ALB metric)."
  value       = try(aws_cloudwatch_metric_alarm.busy[0].alarm_name, null)
}
