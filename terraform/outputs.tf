output "asg_name" {
  description = "Worker Auto Scaling group."
  value       = module.workers.asg_name
}

output "scale_up_alarm_name" {
  description = "Scale-up alarm name."
  value       = module.scaling.scale_up_alarm_name
}

output "scale_up_alarm_arn" {
  description = "Scale-up alarm ARN."
  value       = module.scaling.scale_up_alarm_arn
}

output "scale_down_alarm_name" {
  description = "Scale-down alarm name."
  value       = module.scaling.scale_down_alarm_name
}

output "scale_down_alarm_arn" {
  description = "Scale-down alarm ARN."
  value       = module.scaling.scale_down_alarm_arn
}

output "alb_dns_name" {
  description = "DNS name of the ALB; point your WebSocket host name at it."
  value       = module.alb.dns_name
}

output "websocket_url" {
  description = "URL of the default /ws route."
  value       = module.alb.url
}

output "leader_hostnames" {
  description = "Private DNS names of the two leaders (the workers' seeds)."
  value       = module.leaders.hostnames
}

output "scaler_functions" {
  description = "Names of the scaler Lambdas, by direction."
  value       = module.scaling.lambda_function_names
}

output "busy_alarm_name" {
  description = "The busy-worker alarm (the busiest worker near its capacity); null without it."
  value       = module.scaling.busy_alarm_name
}

output "termination_function" {
  description = "The termination-policy Lambda (ews-terminate), which the group asks which worker to remove; null without it."
  value       = one(aws_lambda_function.terminate[*].function_name)
}

output "admin_token_parameter" {
  description = "SSM parameter holding the admin token (Authorization: Bearer <token> on the admin ports)."
  value       = aws_ssm_parameter.admin_token.name
}

output "events_queue_url" {
  description = "With sink = \"sqs\": the SQS queue events arrive in (consume it with any AWS SDK); null otherwise."
  value       = one(aws_sqs_queue.events[*].url)
}

output "events_dead_letter_queue_url" {
  description = "With sink = \"sqs\": where messages go after sqs.max_receive_count failed receives; null otherwise."
  value       = one(aws_sqs_queue.events_dlq[*].url)
}

output "leader_lease_table" {
  description = "DynamoDB table holding the active-leader lease: the item names which leader is active and its epoch."
  value       = module.leaders.lease_table
}

output "scaler_failures_queue_url" {
  description = "SQS queue holding the scalers' failed invocations (event and error); null with scaling_mode = \"target-tracking\"."
  value       = module.scaling.scaler_failures_queue_url
}

output "target_tracking_policy_arn" {
  description = "The target-tracking scaling policy; null with scaling_mode = \"lambda\"."
  value       = module.scaling.target_tracking_policy_arn
}

output "hook_secret_parameter" {
  description = "The SSM SecureString whose value signs the workers' calls to https hooks backends (X-Ews-Signature): give the backend read access to it. Null without such a backend."
  value       = one(aws_ssm_parameter.hook_secret[*].name)
}
