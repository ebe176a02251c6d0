# elastic-ws on AWS: network, two leaders, the worker Auto Scaling group behind an ALB, and the two
# scaler Lambdas driven by connection-count alarms (the paper's Fig. 4).
data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only the first two zone names are used (slice); a zone AWS adds later does not change them.
  state = "available"
  # The region's own zones only: an account that opted in to Local Zones or Wavelength Zones sees
  # them listed too (us-west-2-lax-1a sorts before us-west-2a), and they lack most instance types,
  # NAT gateways and ALBs (https://docs.aws.amazon.com/local-zones/latest/ug/how-local-zones-work.html).
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

# Which of those zones offer the nodes' instance types: not every type is offered in every zone
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-type-offerings.html), and an
# Auto Scaling group in a zone without its type fails to launch there.
data "aws_ec2_instance_type_offerings" "zones" {
  location_type = "availability-zone"
  filter {
    name   = "instance-type"
    values = local.node_types
  }
  filter {
    name   = "location"
    values = length(var.availability_zones) == 2 ? var.availability_zones : data.aws_availability_zones.available.names
  }
}

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  node_amis  = { leader = var.leader_ami_id, worker = var.worker_ami_id }
  node_types = distinct([var.leader_instance_type, var.worker_instance_type])
  offerings  = data.aws_ec2_instance_type_offerings.zones
  # Zones (in the region's order) that offer every node type.
  offered_zones = [for z in data.aws_availability_zones.available.names : z
  if length(distinct([for i, where in local.offerings.locations : local.offerings.instance_types[i] if where == z])) == length(local.node_types)]
  azs            = length(var.availability_zones) == 2 ? var.availability_zones : slice(local.offered_zones, 0, min(2, length(local.offered_zones)))
  admin_cidrs    = length(var.admin_cidrs) > 0 ? var.admin_cidrs : [var.vpc_cidr]
  lambda_zip_dir = var.lambda_zip_dir != "" ? var.lambda_zip_dir : "${path.module}/../target/lambda"
  # Scale-in timeline (docs/deploy.md): Auto Scaling first deregisters a terminating worker from
  # the target group and waits out the deregistration delay, and only then puts it into
  # Terminating:Wait (https://docs.aws.amazon.com/autoscaling/ec2/userguide/lifecycle-hooks-overview.html).
  # IMDS shows the target lifecycle state `Terminated` as soon as the termination starts
  # (https://docs.aws.amazon.com/autoscaling/ec2/userguide/retrieving-target-lifecycle-state-through-imds.html),
  # so ews-lifecycle-watch starts the worker's 1012 drain at once. The delay covers the watcher's
  # poll (5 s), the drain window and a margin, so every client is closed by the worker, with a
  # reconnect hint, before the ALB cuts what is left.
  deregistration_delay_secs = var.drain_seconds + 15
  ssm_arn_prefix            = "arn:${data.aws_partition.current.partition}:ssm:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:parameter"

  auth_env = merge(
    var.auth.no_auth ? { EWS_NO_AUTH = "true" } : {},
    var.auth.jwks_url != "" ? { EWS_JWKS_URL = var.auth.jwks_url } : {},
    var.auth.issuer != "" ? { EWS_JWT_ISSUER = var.auth.issuer } : {},
    var.auth.audience != "" ? { EWS_JWT_AUDIENCE = var.auth.audience } : {},
    var.auth.leeway_secs != null ? { EWS_JWT_LEEWAY_SECS = tostring(var.auth.leeway_secs) } : {},
    var.auth.hs256_secret_ssm_parameter != "" ? { EWS_JWT_HS256_SECRET_SSM_PARAMETER = var.auth.hs256_secret_ssm_parameter } : {},
  )
  auth_secret_parameter_arns = var.auth.hs256_secret_ssm_parameter != "" ? [
    "${local.ssm_arn_prefix}/${trimprefix(var.auth.hs256_secret_ssm_parameter, "/")}"
  ] : []

  # Backend hooks: the hooks file the workers read (docs/hooks.md), passed whole in the user data
  # (ews-configure decodes EWS_HOOKS_B64 into /etc/ews/hooks), and the secret that signs the calls
  # to https backends.
  hooks_on     = length(var.hooks.routes) > 0
  hook_secret  = local.hooks_on && anytrue([for b in values(var.hooks.backends) : b.url != null])
  hook_lambdas = local.hooks_on ? sort(compact([for b in values(var.hooks.backends) : b.lambda_function_arn])) : []
  hooks_file = {
    backends = { for name, b in var.hooks.backends : name => { for k, v in {
      url             = b.url
      lambda          = b.lambda_function_arn
      timeoutMs       = b.timeout_ms
      concurrency     = b.concurrency
      breakerFailures = b.breaker_failures
      breakerOpenMs   = b.breaker_open_ms
    } : k => v if v != null } }
    routes = var.hooks.routes
  }
  hooks_env = merge(
    var.routes != "" ? { EWS_ROUTES = var.routes } : {},
    local.hooks_on ? { EWS_HOOKS_B64 = base64encode(jsonencode(local.hooks_file)) } : {},
    local.hook_secret ? { EWS_HOOK_SECRET_SSM_PARAMETER = aws_ssm_parameter.hook_secret[0].name } : {},
  )

  # Lifecycle records (docs/lifecycle.md): the workers write connected/disconnected to their sink,
  # the active leader node_lost to the same one.
  lifecycle_env = var.lifecycle_events ? { EWS_LIFECYCLE_EVENTS = "true" } : {}


  history_on = var.history_engine == "valkey" && (length(var.history_topics) > 0 || var.history_clients)
  # What both roles read (EWS_HISTORY_REDIS_URL_SSM_PARAMETER becomes EWS_HISTORY_REDIS_URL_FILE,
  # fetched at boot by ews-configure: the auth token never sits in user data).
  history_env = local.history_on ? merge({
    EWS_HISTORY_SIZE                    = tostring(var.history_size)
    EWS_HISTORY_TTL_SECS                = tostring(var.history_ttl_secs)
    EWS_HISTORY_REDIS_URL_SSM_PARAMETER = aws_ssm_parameter.history_url[0].name
    },
    length(var.history_topics) > 0 ? { EWS_HISTORY_TOPICS = join(",", var.history_topics) } : {},
    var.history_clients ? { EWS_HISTORY_CLIENTS = "true" } : {},
  ) : {}

  sink_env = {
    kafka = {
      EWS_SINK          = "kafka"
      EWS_KAFKA_BROKERS = var.kafka_brokers
      EWS_KAFKA_TOPIC   = var.kafka_topic
    }
    queue = {
      EWS_SINK       = "queue"
      EWS_QUEUE_NAME = var.queue_name
    }
    sqs = {
      EWS_SINK          = "sqs"
      EWS_SQS_QUEUE_URL = one(aws_sqs_queue.events[*].url)
    }
  }[var.sink]
}

module "network" {
  source                   = "./modules/network"
  name                     = var.name
  cidr_block               = var.vpc_cidr
  availability_zones       = local.azs
  nat_gateway_per_az       = var.nat_gateway_per_az
  flow_logs_retention_days = var.log_retention_days
  flow_logs_traffic_type   = var.flow_logs_traffic_type
  interface_endpoints      = var.interface_endpoints
}

# The cluster secret authenticates node-to-node links. Secrets Manager's GetRandomPassword makes it
# (an ephemeral value, never stored) and SSM Parameter Store keeps it as a write-only argument, so it
# is in neither the Terraform state nor a saved plan; nodes fetch it at boot, never from user data.
# Rotate without downtime through the second slot below (docs/deploy.md, "Rotating the cluster secret").
ephemeral "aws_secretsmanager_random_password" "cluster_secret" {
  password_length     = 48
  exclude_punctuation = true
}

resource "aws_ssm_parameter" "cluster_secret" {
  #checkov:skip=CKV_AWS_337:The AWS-managed aws/ssm key encrypts it; a customer-managed key is a per-organisation choice.
  name             = "/${var.name}/cluster-secret"
  description      = "elastic-ws ${var.name}: node-to-node cluster secret"
  type             = "SecureString"
  value_wo         = ephemeral.aws_secretsmanager_random_password.cluster_secret.random_password
  value_wo_version = var.cluster_secret_version
}

# The second slot of a rotation without downtime (docs/deploy.md, "Rotating the cluster secret"):
# nodes sign with one slot (cluster_secret_signing) and, while cluster_secret_accept_both is set,
# accept the other too, so old and new nodes of each rolling step always share a key. A node
# reads both at boot; the instance roles may read exactly the slots the nodes are told to.
ephemeral "aws_secretsmanager_random_password" "cluster_secret_2" {
  count               = var.cluster_secret_2_version > 0 ? 1 : 0
  password_length     = 48
  exclude_punctuation = true
}

resource "aws_ssm_parameter" "cluster_secret_2" {
  #checkov:skip=CKV_AWS_337:The AWS-managed aws/ssm key encrypts it; a customer-managed key is a per-organisation choice.
  count            = var.cluster_secret_2_version > 0 ? 1 : 0
  name             = "/${var.name}/cluster-secret-2"
  description      = "elastic-ws ${var.name}: second slot of the node-to-node cluster secret (rotation)"
  type             = "SecureString"
  value_wo         = ephemeral.aws_secretsmanager_random_password.cluster_secret_2[0].random_password
  value_wo_version = var.cluster_secret_2_version
}

locals {
  # Slot number => its parameter (slot 2 only while it exists; the variables' validation refuses
  # a setting that names it otherwise).
  cluster_secret_slots = { for i, p in concat([aws_ssm_parameter.cluster_secret], aws_ssm_parameter.cluster_secret_2) :
  i + 1 => { name = p.name, arn = p.arn } }
  cluster_secret_signing = lookup(local.cluster_secret_slots, var.cluster_secret_signing, local.cluster_secret_slots[1])
  cluster_secret_other   = lookup(local.cluster_secret_slots, 3 - var.cluster_secret_signing, local.cluster_secret_signing)
  cluster_secret_arns    = distinct(var.cluster_secret_accept_both ? [local.cluster_secret_signing.arn, local.cluster_secret_other.arn] : [local.cluster_secret_signing.arn])
}

# The hook secret signs every call to an https hooks backend (X-Ews-Signature); made and kept like
# the cluster secret, only when a backend needs it. The team's backend reads the same parameter.
ephemeral "aws_secretsmanager_random_password" "hook_secret" {
  count               = local.hook_secret ? 1 : 0
  password_length     = 48
  exclude_punctuation = true
}

resource "aws_ssm_parameter" "hook_secret" {
  #checkov:skip=CKV_AWS_337:The AWS-managed aws/ssm key encrypts it; a customer-managed key is a per-organisation choice.
  count            = local.hook_secret ? 1 : 0
  name             = "/${var.name}/hook-secret"
  description      = "elastic-ws ${var.name}: signs the workers' calls to backend hooks"
  type             = "SecureString"
  value_wo         = ephemeral.aws_secretsmanager_random_password.hook_secret[0].random_password
  value_wo_version = var.hook_secret_version
}

# The admin token guards every admin route of every node but /info and /metrics (publish, the
# session list, the cluster view), made and kept the same way as the cluster secret. Operators
# read it with `aws ssm get-parameter --with-decryption --name <admin_token_parameter>`. Rotate by
# raising admin_token_version and restarting the nodes.
ephemeral "aws_secretsmanager_random_password" "admin_token" {
  password_length     = 48
  exclude_punctuation = true
}

resource "aws_ssm_parameter" "admin_token" {
  #checkov:skip=CKV_AWS_337:The AWS-managed aws/ssm key encrypts it; a customer-managed key is a per-organisation choice.
  name             = "/${var.name}/admin-token"
  description      = "elastic-ws ${var.name}: admin API token"
  type             = "SecureString"
  value_wo         = ephemeral.aws_secretsmanager_random_password.admin_token.random_password
  value_wo_version = var.admin_token_version
}

# Application logs of the nodes (the CloudWatch agent ships /var/log/ews), one group per role.
resource "aws_cloudwatch_log_group" "nodes" {
  #checkov:skip=CKV_AWS_158:AWS-managed encryption at rest is enough for application logs; a CMK is a per-organisation choice.
  #checkov:skip=CKV_AWS_338:Retention is the variable log_retention_days (operational logs, 30 days by default).
  for_each          = toset(["leaders", "workers"])
  name              = "/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
}

module "leaders" {
  source                               = "./modules/leaders"
  name                                 = var.name
  ami_id                               = var.leader_ami_id
  instance_type                        = var.leader_instance_type
  vpc_id                               = module.network.vpc_id
  subnet_ids                           = module.network.private_subnet_ids
  security_group_id                    = aws_security_group.leaders.id
  private_zone_name                    = var.private_zone_name
  internal_port                        = var.internal_port
  admin_port                           = var.admin_port
  cluster_secret_parameter_name        = local.cluster_secret_signing.name
  cluster_secret_accept_parameter_name = var.cluster_secret_accept_both ? local.cluster_secret_other.name : null
  cluster_secret_parameter_arns        = local.cluster_secret_arns
  admin_token_parameter_name           = aws_ssm_parameter.admin_token.name
  admin_token_parameter_arn            = aws_ssm_parameter.admin_token.arn
  publish_metric                       = local.publish_metric
  cloudwatch_namespace                 = var.cloudwatch_namespace
  cloudwatch_metric                    = var.cloudwatch_metric
  cloudwatch_interval_secs             = var.cloudwatch_interval_secs
  extra_env                            = var.leader_extra_env
  enable_ssm_session_manager           = var.enable_ssm_session_manager
  root_volume_size_gb                  = var.root_volume_size_gb
  detailed_monitoring                  = var.leader_detailed_monitoring
  log_group_name                       = aws_cloudwatch_log_group.nodes["leaders"].name
  log_group_arn                        = aws_cloudwatch_log_group.nodes["leaders"].arn
  # The built-in queue keeps its events on a volume of its own only where it is the sink.
  data_volume_size_gb = var.sink == "queue" ? var.leader_data_volume_size_gb : 0
  # With lifecycle records the active leader writes node_lost to the workers' sink.
  sink_env = var.lifecycle_events ? merge(local.sink_env, local.lifecycle_env) : {}
  # The front door appends to history as the workers do.
  history_env           = local.history_env
  history_parameter_arn = one(aws_ssm_parameter.history_url[*].arn)
  node_lost_after_secs  = var.lifecycle_events ? var.node_lost_after_secs : null
  events_queue_arn      = var.lifecycle_events ? one(aws_sqs_queue.events[*].arn) : null
}

module "alb" {
  source                     = "./modules/alb"
  name                       = var.name
  vpc_id                     = module.network.vpc_id
  subnet_ids                 = module.network.public_subnet_ids
  security_group_id          = aws_security_group.alb.id
  target_port                = var.public_port
  health_check_path          = "/info"
  idle_timeout_secs          = var.alb_idle_timeout_secs
  deregistration_delay_secs  = local.deregistration_delay_secs
  certificate_arn            = var.certificate_arn
  deletion_protection        = var.alb_deletion_protection
  access_logs_bucket         = var.alb_access_logs_bucket
  access_logs_retention_days = var.alb_access_logs_retention_days
  waf_rate_limit             = var.waf_rate_limit
  waf_count_only             = var.waf_count_only
}

module "workers" {
  source                               = "./modules/workers"
  name                                 = var.name
  ami_id                               = var.worker_ami_id
  instance_type                        = var.worker_instance_type
  subnet_ids                           = module.network.private_subnet_ids
  security_group_id                    = aws_security_group.workers.id
  target_group_arn                     = module.alb.target_group_arn
  min_size                             = var.worker_min_size
  max_size                             = var.worker_max_size
  seeds                                = module.leaders.seeds
  public_port                          = var.public_port
  admin_port                           = var.admin_port
  internal_port                        = var.internal_port
  drain_seconds                        = var.drain_seconds
  ping_interval_secs                   = var.ping_interval_secs
  cluster_secret_parameter_name        = local.cluster_secret_signing.name
  cluster_secret_accept_parameter_name = var.cluster_secret_accept_both ? local.cluster_secret_other.name : null
  cluster_secret_parameter_arns        = local.cluster_secret_arns
  admin_token_parameter_name           = aws_ssm_parameter.admin_token.name
  admin_token_parameter_arn            = aws_ssm_parameter.admin_token.arn
  auth_env                             = merge(local.auth_env, local.hooks_env, local.history_env)
  auth_secret_parameter_arns           = concat(local.auth_secret_parameter_arns, aws_ssm_parameter.hook_secret[*].arn, aws_ssm_parameter.history_url[*].arn)
  hook_lambda_arns                     = local.hook_lambdas
  sink_env                             = merge(local.sink_env, local.lifecycle_env)
  events_queue_arn                     = one(aws_sqs_queue.events[*].arn)
  extra_env                            = var.worker_extra_env
  enable_ssm_session_manager           = var.enable_ssm_session_manager
  root_volume_size_gb                  = var.root_volume_size_gb
  instance_warmup_secs                 = var.worker_instance_warmup_secs
  log_group_name                       = aws_cloudwatch_log_group.nodes["workers"].name
  log_group_arn                        = aws_cloudwatch_log_group.nodes["workers"].arn
  # By name: the alarms watch the ALB and its target group, and exist from the first apply on,
  # before any refresh (which only an update of the launch template starts).
  refresh_rollback_alarms        = ["${var.name}-unhealthy-workers", "${var.name}-alb-5xx"]
  refresh_max_healthy_percentage = var.worker_refresh_max_healthy_percentage
  refresh_checkpoint_delay_secs  = var.worker_refresh_checkpoint_delay_secs
  max_clients                    = var.worker_max_clients
  busy_fraction                  = var.busy_fraction
  termination_policy_arn         = one(aws_lambda_function.terminate[*].qualified_arn)
  spot                           = var.spot
  scheduled_capacity             = var.scheduled_capacity
  scheduled_capacity_time_zone   = var.scheduled_capacity_time_zone
}

module "scaling" {
  source                           = "./modules/scaling"
  name                             = var.name
  asg_name                         = module.workers.asg_name
  asg_arn                          = module.workers.asg_arn
  step                             = var.step
  hysteresis                       = var.hysteresis
  threshold_formula                = var.threshold_formula
  min_size                         = var.worker_min_size
  scale_in_cooldown_secs           = var.scale_in_cooldown_secs
  fill_secs                        = var.fill_secs
  busy_fraction                    = var.busy_fraction
  worker_max_clients               = var.worker_max_clients
  bounds_override                  = var.scaler_bounds_override
  metric_source                    = var.scaling_metric
  alb_arn_suffix                   = module.alb.arn_suffix
  cloudwatch_namespace             = var.cloudwatch_namespace
  cloudwatch_metric                = var.cloudwatch_metric
  scale_up_evaluation_periods      = var.scale_up_evaluation_periods
  scale_down_evaluation_periods    = var.scale_down_evaluation_periods
  lambda_zip_dir                   = local.lambda_zip_dir
  log_retention_days               = var.log_retention_days
  reserved_concurrency             = var.scaler_reserved_concurrency
  notification_topic_arns          = var.alarm_topic_arns
  mode                             = var.scaling_mode
  target_clients_per_worker        = var.target_clients_per_worker
  instance_warmup_secs             = var.worker_instance_warmup_secs
  target_tracking_disable_scale_in = var.target_tracking_disable_scale_in
}

# The AMIs must exist where we deploy: a var file for another region than the one the package
# stage built in fails in the checks below, before anything is created. (aws_ami_ids finds nothing
# without failing, so the error can say what is wrong; aws_ami then reads the ones that exist.)
data "aws_ami_ids" "node" {
  for_each = local.node_amis
  owners   = ["self", "amazon", "aws-marketplace"]
  filter {
    name   = "image-id"
    values = [each.value]
  }
}

data "aws_ami" "node" {
  for_each = { for role, found in data.aws_ami_ids.node : role => found.ids[0] if length(found.ids) > 0 }
  owners   = ["self", "amazon", "aws-marketplace"]
  filter {
    name   = "image-id"
    values = [each.value]
  }
}

# An unhealthy worker is taken out of the ALB and replaced; several at once is an incident.
resource "aws_cloudwatch_metric_alarm" "unhealthy_workers" {
  alarm_name          = "${var.name}-unhealthy-workers"
  alarm_description   = "${var.name}: workers failing the ALB's /info health check."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = { LoadBalancer = module.alb.arn_suffix, TargetGroup = module.alb.target_group_arn_suffix }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_topic_arns
  ok_actions          = var.alarm_topic_arns
  tags                = var.tags
}

# Settings that only make sense together.
resource "terraform_data" "checks" {
  lifecycle {
    precondition {
      condition     = var.alb_idle_timeout_secs > var.ping_interval_secs
      error_message = "alb_idle_timeout_secs must exceed ping_interval_secs, or the ALB cuts idle WebSockets between pings."
    }
    precondition {
      condition     = var.worker_max_size >= var.worker_min_size
      error_message = "worker_max_size must be at least worker_min_size."
    }
    precondition {
      condition     = length(local.azs) == 2
      error_message = "fewer than two zones of ${data.aws_region.current.name} offer ${join(" and ", local.node_types)} (offered in: ${join(", ", local.offered_zones)}): choose other instance types or set availability_zones."
    }
    precondition {
      condition = alltrue([for z in local.azs : length(distinct([for i, where in local.offerings.locations :
      local.offerings.instance_types[i] if where == z])) == length(local.node_types)])
      error_message = "${join(" and ", local.node_types)} are not offered in every zone of ${join(", ", local.azs)} (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-type-offerings.html): choose other zones or instance types."
    }
    precondition {
      condition     = alltrue([for z in local.azs : startswith(z, data.aws_region.current.name)])
      error_message = "availability_zones (${join(", ", local.azs)}) are not in the region ${data.aws_region.current.name}: the var file and the region (CI: AWS_REGION) disagree."
    }
    precondition {
      condition     = length(data.aws_ami.node) == 2
      error_message = "AMI ${join(" and ", [for role, found in data.aws_ami_ids.node : "${role}_ami_id = ${local.node_amis[role]}" if length(found.ids) == 0])} does not exist in ${data.aws_region.current.name}: the AMIs were built in another region (CI: AWS_REGION) or not at all."
    }
    precondition {
      condition     = alltrue([for k, ami in data.aws_ami.node : ami.architecture == "x86_64"])
      error_message = "leader_ami_id and worker_ami_id must be x86_64 AMIs (the release binaries are x86-64)."
    }
    precondition {
      condition     = var.sink != "kafka" || (var.kafka_brokers != "" && var.kafka_egress != null)
      error_message = "sink = \"kafka\" needs kafka_brokers and kafka_egress."
    }
  }
}
