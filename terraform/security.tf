# Security groups: only the ALB is reachable from outside. Workers accept the WebSocket port from
# the ALB only; leaders accept nothing but the internal port from nodes; admin ports are open to
# admin_cidrs (the VPC by default), never to the ALB. Egress: HTTPS to AWS APIs and the internal
# port inside the VPC.
resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "elastic-ws ALB: WebSocket clients in, workers out"
  vpc_id      = module.network.vpc_id
}

resource "aws_security_group" "workers" {
  name        = "${var.name}-workers"
  description = "elastic-ws workers: WebSockets from the ALB, cluster traffic from nodes"
  vpc_id      = module.network.vpc_id
}

resource "aws_security_group" "leaders" {
  name        = "${var.name}-leaders"
  description = "elastic-ws leaders: cluster traffic from nodes, admin from admin_cidrs"
  vpc_id      = module.network.vpc_id
}

# --- ALB ---
resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  #checkov:skip=CKV_AWS_260:Port 80 only redirects to HTTPS when a certificate is given; without one it is the trial ws:// listener.
  for_each          = toset(var.client_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "ws:// (or the redirect to wss://)"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each          = var.certificate_arn != "" ? toset(var.client_cidrs) : toset([])
  security_group_id = aws_security_group.alb.id
  description       = "wss://"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_workers" {
  security_group_id            = aws_security_group.alb.id
  description                  = "WebSockets and /info health checks to the workers"
  ip_protocol                  = "tcp"
  from_port                    = var.public_port
  to_port                      = var.public_port
  referenced_security_group_id = aws_security_group.workers.id
}

# --- workers ---
resource "aws_vpc_security_group_ingress_rule" "workers_public" {
  security_group_id            = aws_security_group.workers.id
  description                  = "WebSockets and health checks from the ALB"
  ip_protocol                  = "tcp"
  from_port                    = var.public_port
  to_port                      = var.public_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "workers_admin" {
  for_each          = toset(local.admin_cidrs)
  security_group_id = aws_security_group.workers.id
  description       = "Admin API and metrics"
  ip_protocol       = "tcp"
  from_port         = var.admin_port
  to_port           = var.admin_port
  cidr_ipv4         = each.value
}

# --- cluster traffic between all nodes (gossip on UDP, node links on TCP, same port) ---
locals {
  node_sgs = {
    workers = aws_security_group.workers.id
    leaders = aws_security_group.leaders.id
  }
  internal_rules = {
    for pair in setproduct(keys(local.node_sgs), keys(local.node_sgs), ["tcp", "udp"]) :
    "${pair[0]}-from-${pair[1]}-${pair[2]}" => { to = pair[0], from = pair[1], protocol = pair[2] }
  }
}

resource "aws_vpc_security_group_ingress_rule" "internal" {
  for_each                     = local.internal_rules
  security_group_id            = local.node_sgs[each.value.to]
  description                  = "Cluster ${upper(each.value.protocol)} from ${each.value.from}"
  ip_protocol                  = each.value.protocol
  from_port                    = var.internal_port
  to_port                      = var.internal_port
  referenced_security_group_id = local.node_sgs[each.value.from]
}

resource "aws_vpc_security_group_egress_rule" "internal" {
  for_each                     = local.internal_rules
  security_group_id            = local.node_sgs[each.value.from]
  description                  = "Cluster ${upper(each.value.protocol)} to ${each.value.to}"
  ip_protocol                  = each.value.protocol
  from_port                    = var.internal_port
  to_port                      = var.internal_port
  referenced_security_group_id = local.node_sgs[each.value.to]
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each          = local.node_sgs
  security_group_id = each.value
  description       = "HTTPS to AWS APIs (SSM, CloudWatch, Auto Scaling) and a JWKS endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "kafka" {
  for_each          = var.kafka_egress == null ? toset([]) : toset(var.kafka_egress.cidrs)
  security_group_id = aws_security_group.workers.id
  description       = "Kafka brokers"
  ip_protocol       = "tcp"
  from_port         = var.kafka_egress.port
  to_port           = var.kafka_egress.port
  cidr_ipv4         = each.value
}

# With lifecycle records the active leader produces node_lost to the same brokers.
resource "aws_vpc_security_group_egress_rule" "leaders_kafka" {
  for_each          = var.kafka_egress == null || !var.lifecycle_events ? toset([]) : toset(var.kafka_egress.cidrs)
  security_group_id = aws_security_group.leaders.id
  description       = "Kafka brokers (node_lost records)"
  ip_protocol       = "tcp"
  from_port         = var.kafka_egress.port
  to_port           = var.kafka_egress.port
  cidr_ipv4         = each.value
}

# --- leaders ---
resource "aws_vpc_security_group_ingress_rule" "leaders_admin" {
  for_each          = toset(local.admin_cidrs)
  security_group_id = aws_security_group.leaders.id
  description       = "Admin API (/info, /members, /metrics)"
  ip_protocol       = "tcp"
  from_port         = var.admin_port
  to_port           = var.admin_port
  cidr_ipv4         = each.value
}
