output "seeds" {
  description = "host:port of both leaders' internal port (EWS_SEEDS for the workers)."
  value       = [for f in local.fqdn : "${f}:${var.internal_port}"]
  # Workers resolve these at boot: the records exist before any worker is launched.
  depends_on = [aws_route53_record.leader]
}

output "hostnames" {
  description = "Private DNS names of the leaders."
  value       = local.fqdn
}

output "instance_ids" {
  description = "EC2 instance ids of leader-1 and leader-2."
  value       = aws_instance.leader[*].id
}

output "private_ips" {
  description = "Private IPs of leader-1 and leader-2."
  value       = local.private_ips
}

output "lease_table" {
  description = "DynamoDB table of the active-leader lease (EWS_LEASE_TABLE)."
  value       = aws_dynamodb_table.lease.name
}

output "data_volume_arns" {
  description = "ARNs of the built-in queue's data volumes (empty without them), for the backup selection."
  value       = aws_ebs_volume.data[*].arn
}
