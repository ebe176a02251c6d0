output "dns_name" {
  description = "DNS name of the load balancer (point your wss:// name at it)."
  value       = aws_lb.this.dns_name
}

output "zone_id" {
  description = "Route 53 zone id of the load balancer, for an alias record."
  value       = aws_lb.this.zone_id
}

output "arn_suffix" {
  description = "ARN suffix of the load balancer: the LoadBalancer dimension of its CloudWatch metrics."
  value       = aws_lb.this.arn_suffix
}

output "target_group_arn" {
  description = "ARN of the worker target group."
  value       = aws_lb_target_group.workers.arn
}

output "url" {
  description = "WebSocket URL of the default /ws route."
  value       = "${local.https ? "wss" : "ws"}://${aws_lb.this.dns_name}/ws"
}

output "target_group_arn_suffix" {
  description = "ARN suffix of the worker target group: the TargetGroup dimension of its CloudWatch metrics."
  value       = aws_lb_target_group.workers.arn_suffix
}
