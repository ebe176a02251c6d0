# History (docs/history.md): topics that keep their messages so that clients moved by a drain, a
# rebalance or a crash recover what they missed. In a cluster the history lives in an ElastiCache
# Valkey replication group that outlives any node: a primary and a replica in two zones with
# automatic failover (a failover that loses writes is an epoch change the clients are told of,
# never a silent gap), encrypted in transit (the nodes connect with rediss://) and at rest, behind
# an auth token, reachable from the workers and leaders only. `history_engine = "none"` deploys
# none (then no topic may keep history).

resource "aws_elasticache_subnet_group" "history" {
  count       = local.history_on ? 1 : 0
  name        = "${var.name}-history"
  description = "elastic-ws history: the private subnets"
  subnet_ids  = module.network.private_subnet_ids
}

resource "aws_security_group" "history" {
  count       = local.history_on ? 1 : 0
  name        = "${var.name}-history"
  description = "elastic-ws history (Valkey): port 6379 from workers and leaders only"
  vpc_id      = module.network.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "history" {
  for_each                     = local.history_on ? local.node_sgs : {}
  security_group_id            = aws_security_group.history[0].id
  description                  = "Valkey from ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = each.value
}

resource "aws_vpc_security_group_egress_rule" "to_history" {
  for_each                     = local.history_on ? local.node_sgs : {}
  security_group_id            = each.value
  description                  = "Valkey (history)"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.history[0].id
}

resource "aws_elasticache_replication_group" "history" {
  #checkov:skip=CKV_AWS_191:Encrypted at rest with the AWS-managed key; history is a short-lived cache of recent pushes.
  #checkov:skip=CKV_AWS_134:No backups: history lives minutes (history_ttl_secs), and a lost history is an epoch change the clients are told of.
  count                      = local.history_on ? 1 : 0
  replication_group_id       = "${var.name}-history"
  description                = "elastic-ws history: recent pushes per topic, for recovery after a move"
  engine                     = "valkey"
  engine_version             = "8.0"
  node_type                  = var.history_node_type
  port                       = 6379
  num_cache_clusters         = 2
  automatic_failover_enabled = true
  multi_az_enabled           = true
  transit_encryption_enabled = true
  at_rest_encryption_enabled = true
  # 64 random hex characters, made once: this provider version has no write-only auth token, so
  # it is kept in the (encrypted) state and, for the nodes, in an SSM SecureString.
  auth_token                 = "${replace(uuid(), "-", "")}${replace(uuid(), "-", "")}"
  subnet_group_name          = aws_elasticache_subnet_group.history[0].name
  security_group_ids         = [aws_security_group.history[0].id]
  apply_immediately          = true
  auto_minor_version_upgrade = true
  lifecycle {
    ignore_changes = [auth_token]
  }
}

resource "aws_ssm_parameter" "history_url" {
  #checkov:skip=CKV_AWS_337:The AWS-managed aws/ssm key encrypts it; a customer-managed key is a per-organisation choice.
  count       = local.history_on ? 1 : 0
  name        = "/${var.name}/history-redis-url"
  description = "elastic-ws: the history engine's URL with its auth token (rediss://)"
  type        = "SecureString"
  value       = "rediss://:${aws_elasticache_replication_group.history[0].auth_token}@${aws_elasticache_replication_group.history[0].primary_endpoint_address}:6379"
}
