# Two leader instances in different zones with stable private DNS names. Each lists the other as
# its seed (the paper's Fig. 6); workers list both. The active one (built-in queue, cluster metric)
# holds a lease in a DynamoDB table, taken and renewed with conditional writes, so a partition
# between the leaders never makes both active (docs/failover.md).
locals {
  leaders = ["leader-1", "leader-2"]
  fqdn    = [for l in local.leaders : "${l}.${var.private_zone_name}"]
  # Fixed private addresses (the 10th of each subnet), so the DNS names exist before the instances
  # boot: a leader that starts before its peer's record would otherwise wait out its seed retries.
  private_ips = [for s in data.aws_subnet.leader : cidrhost(s.cidr_block, 10)]
  env = [
    for i, l in local.leaders : merge({
      EWS_NODE_ID                      = l
      EWS_SEEDS                        = "${local.fqdn[1 - i]}:${var.internal_port}"
      EWS_INTERNAL_LISTEN              = "0.0.0.0:${var.internal_port}"
      EWS_ADMIN_LISTEN                 = "0.0.0.0:${var.admin_port}"
      EWS_CLUSTER_SECRET_SSM_PARAMETER = var.cluster_secret_parameter_name
      EWS_ADMIN_TOKEN_SSM_PARAMETER    = var.admin_token_parameter_name
      EWS_QUEUE_DIR                    = "/var/lib/ews/queue"
      EWS_CLOUDWATCH_NAMESPACE         = var.cloudwatch_namespace
      EWS_CLOUDWATCH_METRIC            = var.cloudwatch_metric
      EWS_CLOUDWATCH_DEPLOYMENT        = var.name
      EWS_CLOUDWATCH_INTERVAL_SECS     = tostring(var.cloudwatch_interval_secs)
      EWS_LOG_GROUP                    = var.log_group_name
      EWS_LEASE_TABLE                  = aws_dynamodb_table.lease.name
      }, var.publish_metric ? { EWS_PUBLISH_METRIC = "true" } : {},
      # The second secret of a rotation in progress (docs/deploy.md, "Rotating the cluster secret").
      var.cluster_secret_accept_parameter_name == null ? {} : { EWS_CLUSTER_SECRET_ACCEPT_SSM_PARAMETER = var.cluster_secret_accept_parameter_name },
      # ews-configure mounts this volume at /var/lib/ews (the built-in queue) before the leader starts.
      var.data_volume_size_gb > 0 ? { EWS_DATA_VOLUME_ID = aws_ebs_volume.data[i].id } : {},
      var.sink_env, var.history_env,
      var.node_lost_after_secs == null ? {} : { EWS_NODE_LOST_AFTER_SECS = tostring(var.node_lost_after_secs) },
    var.extra_env)
  ]
}

# The active-leader lease: one item, a few conditional writes a second at most (PAY_PER_REQUEST).
resource "aws_dynamodb_table" "lease" {
  #checkov:skip=CKV_AWS_28:The item is a lease renewed every few seconds; restoring an old one would be wrong, not useful.
  #checkov:skip=CKV_AWS_119:It holds a node id, an epoch and a time; the AWS-owned key is enough.
  name         = "${var.name}-leader-lease"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "lease"
  attribute {
    name = "lease"
    type = "S"
  }
  server_side_encryption {
    enabled = true
  }
  tags = var.tags
}

resource "aws_route53_zone" "private" {
  #checkov:skip=CKV2_AWS_38:DNSSEC signing is not available for private hosted zones.
  #checkov:skip=CKV2_AWS_39:Query logging is not available for private hosted zones (only via Resolver query logs).
  name    = var.private_zone_name
  comment = "${var.name}: private names of the leader nodes"
  vpc {
    vpc_id = var.vpc_id
  }
  tags = var.tags
}

data "aws_subnet" "leader" {
  count = 2
  id    = var.subnet_ids[count.index]
}

resource "aws_route53_record" "leader" {
  #checkov:skip=CKV2_AWS_23:The record names the leader's network interface (attached to its instance), whose address outlives a replacement; the check knows only instances and EIPs.
  count   = 2
  zone_id = aws_route53_zone.private.zone_id
  name    = local.fqdn[count.index]
  type    = "A"
  ttl     = 30
  records = [aws_network_interface.leader[count.index].private_ip]
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "leader" {
  statement {
    sid       = "ShipLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${var.log_group_arn}:*"]
  }
  statement {
    sid       = "ReadSecrets"
    actions   = ["ssm:GetParameter"]
    resources = compact(concat(var.cluster_secret_parameter_arns, [var.admin_token_parameter_arn, var.history_parameter_arn]))
  }
  # Take, renew and release the active-leader lease: conditional UpdateItem on its table only.
  statement {
    sid       = "HoldLease"
    actions   = ["dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.lease.arn]
  }
  # node_lost records (lifecycle_events with sink = "sqs"): send only, to the events queue only.
  dynamic "statement" {
    for_each = var.events_queue_arn == null ? [] : [var.events_queue_arn]
    content {
      sid       = "SendLifecycleRecords"
      actions   = ["sqs:SendMessage"]
      resources = [statement.value]
    }
  }
  # PutMetricData has no resource-level permissions; the namespace condition is the scope.
  statement {
    sid       = "PublishClusterMetric"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.cloudwatch_namespace]
    }
  }
}

# IAM names are global to the account: the region keeps two regions' deployments apart.
resource "aws_iam_role" "leader" {
  name               = "${var.name}-leader-${data.aws_region.current.name}"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "leader" {
  name   = "${var.name}-leader"
  role   = aws_iam_role.leader.id
  policy = data.aws_iam_policy_document.leader.json
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  count      = var.enable_ssm_session_manager ? 1 : 0
  role       = aws_iam_role.leader.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

data "aws_partition" "current" {}
data "aws_region" "current" {}

resource "aws_iam_instance_profile" "leader" {
  name = "${var.name}-leader-${data.aws_region.current.name}"
  role = aws_iam_role.leader.name
  tags = var.tags
}

# Each leader's address lives on its own network interface, which outlives the instance: a leader
# replaced for a new AMI comes back at the address its DNS name (and every worker's seed) names.
resource "aws_network_interface" "leader" {
  count           = 2
  subnet_id       = var.subnet_ids[count.index]
  private_ips     = [local.private_ips[count.index]]
  security_groups = [var.security_group_id]
  description     = "${var.name}-${local.leaders[count.index]}"
  tags            = merge(var.tags, { Name = "${var.name}-${local.leaders[count.index]}" })
}

# The built-in queue's data, on a volume of its own: it survives the replacement of its leader
# (a new AMI) and is attached to the new instance. Whatever deletes it (destroying the
# deployment, or switching `sink` away from "queue") first takes a final snapshot, so
# acknowledged events stay readable (docs/deploy.md: restoring the queue from it).
resource "aws_ebs_volume" "data" {
  #checkov:skip=CKV_AWS_189:Encrypted with the AWS-managed EBS key, like the root volumes; a customer-managed key is a per-organisation choice.
  #checkov:skip=CKV2_AWS_9:Both volumes are in the daily backup plan (backup.tf, selected by ARN through the module's output); checkov follows only the first.
  count             = var.data_volume_size_gb > 0 ? 2 : 0
  availability_zone = data.aws_subnet.leader[count.index].availability_zone
  size              = var.data_volume_size_gb
  type              = "gp3"
  encrypted         = true
  final_snapshot    = true
  tags              = merge(var.tags, { Name = "${var.name}-${local.leaders[count.index]}-data" })
}

resource "aws_volume_attachment" "data" {
  count       = var.data_volume_size_gb > 0 ? 2 : 0
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data[count.index].id
  instance_id = aws_instance.leader[count.index].id
  # Stop the leader before the volume is taken away, so the queue's log is closed cleanly.
  stop_instance_before_detaching = true
}

resource "aws_instance" "leader" {
  count                       = 2
  ami                         = var.ami_id
  instance_type               = var.instance_type
  iam_instance_profile        = aws_iam_instance_profile.leader.name
  monitoring                  = var.detailed_monitoring
  ebs_optimized               = true
  user_data_replace_on_change = true
  # Plain KEY=VALUE lines; ews-configure (packer/files) turns them into /etc/ews/ews.env.
  user_data = join("\n", [for k, v in local.env[count.index] : "${k}=${v}"])

  network_interface {
    network_interface_id = aws_network_interface.leader[count.index].id
    device_index         = 0
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_volume_size_gb
    encrypted   = true
    # The provider's default tags reach the instance, not its root volume.
    tags = merge(data.aws_default_tags.current.tags, var.tags, { Name = "${var.name}-${local.leaders[count.index]}-root" })
  }

  tags = merge(var.tags, {
    Name = "${var.name}-${local.leaders[count.index]}"
    Role = "leader"
  })

  # A new AMI or new settings would replace both leaders in one apply: the whole cluster core and
  # the built-in queue's host at once. They stay as they are until an operator rolls them one at
  # a time (docs/deploy.md, "Rolling the leaders": `terraform apply -replace=...` per leader).
  lifecycle {
    ignore_changes = [ami, user_data]
  }

  depends_on = [aws_route53_record.leader]
}

data "aws_default_tags" "current" {}
