output "scale_up_alarm_name" {
  description = "Name of the scale-up alarm (SCALE_UP_ALARM)."
  value       = aws_cloudwatch_metric_alarm.scale["up"].alarm_name
}

output "scale_up_alarm_arn" {
  description = "ARN of the scale-up alarm."
  value       = aws_cloudwatch_metric_alarm.scale["up"].arn
}

output "scale_down_alarm_name" {
  description = "Name of the scale-down alarm (SCALE_DOWN_ALARM)."
  value       = aws_cloudwatch_metric_alarm.scale["down"].alarm_name
}

output "scale_down_alarm_arn" {
  description = "ARN of the scale-down alarm."
  value       = aws_cloudwatch_metric_alarm.scale["down"].arn
}

output "lambda_function_names" {
  description = "Names of the scaler Lambdas, by direction."
  value       = { for k, f in aws_lambda_function.scaler : k => f.function_name }
}

output "initial_thresholds" {
  description = "Thresholds at min capacity (the scalers rewrite them on every step)."
  value       = local.initial_threshold
}
