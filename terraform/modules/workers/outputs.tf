output "asg_name" {
  description = "Name of the worker Auto Scaling group (WS_ASG_NAME of the scalers)."
  value       = aws_autoscaling_group.workers.name
}

output "asg_arn" {
  description = "ARN of the worker Auto Scaling group."
  value       = aws_autoscaling_group.workers.arn
}

output "lifecycle_hook_name" {
  description = "Name of the termination lifecycle hook that gives a worker its drain window."
  value       = local.hook_name
}

output "launch_template_id" {
  description = "ID of the worker launch template."
  value       = aws_launch_template.worker.id
}
