# Worker launch template (IMDSv2 required) and Auto Scaling group. The group's size is owned by the
# scaler Lambdas after creation (desired_capacity is ignored here). A termination lifecycle hook
# holds a leaving worker in Terminating:Wait so ews-lifecycle-watch can drain it.
data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  asg_name       = "${var.name}-workers"
  hook_name      = "${var.name}-drain"
  asg_arn_prefix = "arn:${data.aws_partition.current.partition}:autoscaling:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:autoScalingGroup:*:autoScalingGroupName/${local.asg_name}"
  env = merge({
    EWS_SEEDS                        = join(",", var.seeds)
    EWS_LISTEN                       = "0.0.0.0:${var.public_port}"
    EWS_ADMIN_LISTEN                 = "0.0.0.0:${var.admin_port}"
    EWS_INTERNAL_LISTEN              = "0.0.0.0:${var.internal_port}"
    EWS_CLUSTER_SECRET_SSM_PARAMETER = var.cluster_secret_parameter_name
    EWS_ADMIN_TOKEN_SSM_PARAMETER    = var.admin_token_parameter_name
    EWS_DRAIN_SECONDS                = tostring(var.drain_seconds)
    EWS_PING_INTERVAL_SECS           = tostring(var.ping_interval_secs)
    EWS_QUEUE_DIR                    = "/var/lib/ews/queue"
    EWS_ASG_NAME                     = local.asg_name
    EWS_LIFECYCLE_HOOK_NAME          = local.hook_name
    EWS_LOG_GROUP                    = var.log_group_name
    EWS_MAX_CONNECTIONS              = tostring(var.max_clients)
    EWS_BUSY_FRACTION                = tostring(var.busy_fraction)
  }, local.accept_env, local.spot_env, var.auth_env, var.sink_env, var.extra_env)
  # Spot workers watch for their interruption notice and drain on it.
  spot_env = var.spot == null ? {} : { EWS_IMDS_URL = "http://169.254.169.254" }
  # The second secret of a rotation in progress (docs/deploy.md, "Rotating the cluster secret").
  accept_env = var.cluster_secret_accept_parameter_name == null ? {} : { EWS_CLUSTER_SECRET_ACCEPT_SSM_PARAMETER = var.cluster_secret_accept_parameter_name }
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

data "aws_iam_policy_document" "worker" {
  statement {
    sid       = "ShipLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${var.log_group_arn}:*"]
  }
  statement {
    sid       = "ReadSecrets"
    actions   = ["ssm:GetParameter"]
    resources = concat(var.cluster_secret_parameter_arns, [var.admin_token_parameter_arn], var.auth_secret_parameter_arns)
  }
  statement {
    sid       = "FinishDrain"
    actions   = ["autoscaling:CompleteLifecycleAction"]
    resources = [local.asg_arn_prefix]
  }
  # Backend hooks on Lambda: invoke the functions the hooks name, no other.
  dynamic "statement" {
    for_each = length(var.hook_lambda_arns) > 0 ? [var.hook_lambda_arns] : []
    content {
      sid       = "InvokeHooks"
      actions   = ["lambda:InvokeFunction"]
      resources = statement.value
    }
  }
  # Send only (SendMessageBatch is authorized as SendMessage): a worker can neither read nor
  # delete events, nor touch any other queue.
  dynamic "statement" {
    for_each = var.events_queue_arn == null ? [] : [var.events_queue_arn]
    content {
      sid       = "SendEvents"
      actions   = ["sqs:SendMessage"]
      resources = [statement.value]
    }
  }
}

# IAM names are global to the account: the region keeps two regions' deployments apart.
resource "aws_iam_role" "worker" {
  name               = "${var.name}-worker-${data.aws_region.current.name}"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "worker" {
  name   = "${var.name}-worker"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker.json
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  count      = var.enable_ssm_session_manager ? 1 : 0
  role       = aws_iam_role.worker.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "worker" {
  name = "${var.name}-worker-${data.aws_region.current.name}"
  role = aws_iam_role.worker.name
  tags = var.tags
}

resource "aws_launch_template" "worker" {
  name_prefix            = "${var.name}-worker-"
  image_id               = var.ami_id
  instance_type          = var.instance_type
  vpc_security_group_ids = [var.security_group_id]
  ebs_optimized          = true
  update_default_version = true
  # Plain KEY=VALUE lines; ews-configure (packer/files) turns them into /etc/ews/ews.env.
  user_data = base64encode(join("\n", [for k, v in local.env : "${k}=${v}"]))

  iam_instance_profile {
    arn = aws_iam_instance_profile.worker.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  monitoring {
    enabled = true
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size_gb
      encrypted             = true
      delete_on_termination = true
    }
  }

  # What an instance launched from this template carries: the provider's default tags do not
  # reach it, its volume or its network interface by themselves
  # (https://registry.terraform.io/providers/hashicorp/aws/latest/docs/guides/resource-tagging),
  # so cost allocation and a tag-enforcing SCP need them here, on all three.
  dynamic "tag_specifications" {
    for_each = ["instance", "volume", "network-interface"]
    content {
      resource_type = tag_specifications.value
      tags          = merge(data.aws_default_tags.current.tags, var.tags, { Name = "${var.name}-worker", Role = "worker" })
    }
  }

  tags = var.tags
}

data "aws_default_tags" "current" {}

# The group's tags, each its own resource: see the lifecycle note on the group.
resource "aws_autoscaling_group_tag" "workers" {
  for_each               = merge(var.tags, { Name = "${var.name}-worker" })
  autoscaling_group_name = aws_autoscaling_group.workers.name
  tag {
    key                 = each.key
    value               = each.value
    propagate_at_launch = false
  }
}

resource "aws_autoscaling_group" "workers" {
  #checkov:skip=CKV_AWS_153:Instances are tagged by the launch template (tag_specifications); the group's own tags are aws_autoscaling_group_tag resources, so the scalers' tag is never drift.
  name                      = local.asg_name
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.min_size
  vpc_zone_identifier       = var.subnet_ids
  target_group_arns         = [var.target_group_arn]
  health_check_type         = "ELB"
  health_check_grace_period = 90
  # Scaling in removes the worker holding the fewest clients (the termination-policy Lambda,
  # given); NewestInstance after it, or alone without it (the paper's choice).
  termination_policies = var.termination_policy_arn == null ? ["NewestInstance"] : [var.termination_policy_arn, "NewestInstance"]
  # Spot: a replacement is launched on a rebalance recommendation, before the interruption.
  capacity_rebalance = var.spot != null
  # AZRebalance would terminate workers holding connections just to even out the zones
  # (https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-suspend-resume-processes.html);
  # the group only ever changes size through the scalers and health checks.
  suspended_processes = ["AZRebalance"]
  # A new worker counts towards the group's metrics (and instance refresh) only once it has booted,
  # joined the cluster and passed the ALB health check.
  default_instance_warmup = var.instance_warmup_secs
  # Free at one-minute granularity; the target-tracking mode divides by GroupInServiceInstances,
  # and the console's group graphs need them in either mode.
  enabled_metrics     = ["GroupDesiredCapacity", "GroupInServiceInstances", "GroupPendingInstances", "GroupTerminatingInstances"]
  metrics_granularity = "1Minute"

  dynamic "launch_template" {
    for_each = var.spot == null ? [1] : []
    content {
      id      = aws_launch_template.worker.id
      version = aws_launch_template.worker.latest_version
    }
  }

  # Spot above an On-Demand base, over several instance types of one size: the pools with the
  # most spare capacity at the lowest price, so interruptions are rare and spread.
  dynamic "mixed_instances_policy" {
    for_each = var.spot == null ? [] : [var.spot]
    content {
      instances_distribution {
        on_demand_base_capacity                  = mixed_instances_policy.value.on_demand_base
        on_demand_percentage_above_base_capacity = 0
        spot_allocation_strategy                 = "price-capacity-optimized"
      }
      launch_template {
        launch_template_specification {
          launch_template_id = aws_launch_template.worker.id
          version            = aws_launch_template.worker.latest_version
        }
        dynamic "override" {
          for_each = mixed_instances_policy.value.instance_types
          content {
            instance_type = override.value
          }
        }
      }
    }
  }

  # Part of the group from the start, so no instance is ever terminated without its drain.
  initial_lifecycle_hook {
    name                 = local.hook_name
    lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"
    heartbeat_timeout    = var.drain_seconds + 60
    default_result       = "CONTINUE"
  }

  # A new launch template version (new AMI, new settings) replaces the workers in small batches:
  # launch before terminate (min 100 %), at most max_healthy_percentage of the group at once
  # (110 %: one worker at a time up to ten, so each batch's clients reconnect to the others and
  # the fleet never doubles against the vCPU quota), a pause at each checkpoint, and a rollback
  # to the previous template version when an alarm fires (the workers' health, the ALB's 5xx)
  # (https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-overview.html,
  # https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-rollback.html).
  # The rollback needs a fixed template version, which the group uses (latest_version, never
  # $Latest). Each replaced worker drains through the lifecycle hook like any scale-in.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 100
      max_healthy_percentage = var.refresh_max_healthy_percentage
      checkpoint_percentages = var.refresh_checkpoint_percentages
      checkpoint_delay       = var.refresh_checkpoint_delay_secs
      skip_matching          = true
      auto_rollback          = length(var.refresh_rollback_alarms) > 0
      dynamic "alarm_specification" {
        for_each = length(var.refresh_rollback_alarms) > 0 ? [var.refresh_rollback_alarms] : []
        content {
          alarms = alarm_specification.value
        }
      }
    }
  }

  lifecycle {
    # The scaler Lambdas own the group's size once it exists, and its tag ews:last-scaling-event
    # (their idempotency key): the group's own tags are managed one by one below, so Terraform
    # never sees the scalers' tag as drift and deletes it (hashicorp/terraform-provider-aws#33492).
    ignore_changes = [desired_capacity, tag]
    precondition {
      condition     = var.max_size >= var.min_size
      error_message = "max_size must be at least min_size."
    }
    precondition {
      condition     = var.spot == null || var.drain_seconds <= 90
      error_message = "With spot, drain_seconds must be at most 90: the drain must end within the two-minute interruption notice."
    }
  }
}

# Scheduled capacity: before a known peak the group's minimum rises (and the desired capacity with
# it), afterwards it returns to min_size and the scale-in alarm brings the group back down, one
# worker per cool-down. The scalers read the group's minimum, so their thresholds follow.
resource "aws_autoscaling_schedule" "raise" {
  for_each               = { for s in var.scheduled_capacity : s.name => s }
  scheduled_action_name  = "${var.name}-${each.key}-start"
  autoscaling_group_name = aws_autoscaling_group.workers.name
  recurrence             = each.value.start
  time_zone              = var.scheduled_capacity_time_zone
  min_size               = min(each.value.min_size, var.max_size)
  max_size               = -1
  desired_capacity       = -1
}

resource "aws_autoscaling_schedule" "lower" {
  for_each               = { for s in var.scheduled_capacity : s.name => s }
  scheduled_action_name  = "${var.name}-${each.key}-end"
  autoscaling_group_name = aws_autoscaling_group.workers.name
  recurrence             = each.value.end
  time_zone              = var.scheduled_capacity_time_zone
  min_size               = var.min_size
  max_size               = -1
  desired_capacity       = -1
}
