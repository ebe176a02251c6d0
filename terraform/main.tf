# elastic-ws on AWS: network, two leaders, the worker Auto Scaling group behind an ALB, and the two
# scaler Lambdas driven by connection-count alarms (the paper's Fig. 4).
data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only the first two zone names are used (slice); a zone AWS adds later does not change them.
  state = "available"
}

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  azs            = length(var.availability_zones) == 2 ? var.availability_zones : slice(data.aws_availability_zones.available.names, 0, 2)
  admin_cidrs    = length(var.admin_cidrs) > 0 ? var.admin_cidrs : [var.vpc_cidr]
  lambda_zip_dir = var.lambda_zip_dir != "" ? var.lambda_zip_dir : "${path.module}/../target/lambda"
  outputs_file   = var.outputs_file != "" ? var.outputs_file : "${path.module}/ews-outputs.json"
  ssm_arn_prefix = "arn:${data.aws_partition.current.partition}:ssm:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:parameter"

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

  sink_env = var.sink == "kafka" ? {
    EWS_SINK          = "kafka"
    EWS_KAFKA_BROKERS = var.kafka_brokers
    EWS_KAFKA_TOPIC   = var.kafka_topic
    } : {
    EWS_SINK       = "queue"
    EWS_QUEUE_NAME = var.queue_name
  }
}

module "network" {
  source                   = "./modules/network"
  name                     = var.name
  cidr_block               = var.vpc_cidr
  availability_zones       = local.azs
  nat_gateway_per_az       = var.nat_gateway_per_az
  flow_logs_retention_days = var.log_retention_days
}

# The cluster secret authenticates node-to-node links. It lives in SSM Parameter Store (and in the
# Terraform state, which GitLab encrypts); nodes fetch it at boot, it is never in user data.
resource "random_password" "cluster_secret" {
  length  = 48
  special = false
}

resource "aws_ssm_parameter" "cluster_secret" {
  #checkov:skip=CKV_AWS_337:The AWS-managed aws/ssm key encrypts it; a customer-managed key is a per-organisation choice.
  name        = "/${var.name}/cluster-secret"
  description = "elastic-ws ${var.name}: node-to-node cluster secret"
  type        = "SecureString"
  value       = random_password.cluster_secret.result
}

module "leaders" {
  source                        = "./modules/leaders"
  name                          = var.name
  ami_id                        = var.leader_ami_id
  instance_type                 = var.leader_instance_type
  vpc_id                        = module.network.vpc_id
  subnet_ids                    = module.network.private_subnet_ids
  security_group_id             = aws_security_group.leaders.id
  private_zone_name             = var.private_zone_name
  internal_port                 = var.internal_port
  admin_port                    = var.admin_port
  cluster_secret_parameter_name = aws_ssm_parameter.cluster_secret.name
  cluster_secret_parameter_arn  = aws_ssm_parameter.cluster_secret.arn
  publish_metric                = var.publish_cluster_metric || var.scaling_metric == "cluster"
  cloudwatch_namespace          = var.cloudwatch_namespace
  cloudwatch_metric             = var.cloudwatch_metric
  cloudwatch_interval_secs      = var.cloudwatch_interval_secs
  extra_env                     = var.leader_extra_env
  enable_ssm_session_manager    = var.enable_ssm_session_manager
  root_volume_size_gb           = var.root_volume_size_gb
}

module "alb" {
  source                    = "./modules/alb"
  name                      = var.name
  vpc_id                    = module.network.vpc_id
  subnet_ids                = module.network.public_subnet_ids
  security_group_id         = aws_security_group.alb.id
  target_port               = var.public_port
  health_check_path         = "/info"
  idle_timeout_secs         = var.alb_idle_timeout_secs
  deregistration_delay_secs = var.drain_seconds
  certificate_arn           = var.certificate_arn
  deletion_protection       = var.alb_deletion_protection
  access_logs_bucket        = var.alb_access_logs_bucket
}

module "workers" {
  source                        = "./modules/workers"
  name                          = var.name
  ami_id                        = var.worker_ami_id
  instance_type                 = var.worker_instance_type
  subnet_ids                    = module.network.private_subnet_ids
  security_group_id             = aws_security_group.workers.id
  target_group_arn              = module.alb.target_group_arn
  min_size                      = var.worker_min_size
  max_size                      = var.worker_max_size
  seeds                         = module.leaders.seeds
  public_port                   = var.public_port
  admin_port                    = var.admin_port
  internal_port                 = var.internal_port
  drain_seconds                 = var.drain_seconds
  ping_interval_secs            = var.ping_interval_secs
  cluster_secret_parameter_name = aws_ssm_parameter.cluster_secret.name
  cluster_secret_parameter_arn  = aws_ssm_parameter.cluster_secret.arn
  auth_env                      = local.auth_env
  auth_secret_parameter_arns    = local.auth_secret_parameter_arns
  sink_env                      = local.sink_env
  extra_env                     = var.worker_extra_env
  enable_ssm_session_manager    = var.enable_ssm_session_manager
  root_volume_size_gb           = var.root_volume_size_gb
}

module "scaling" {
  source                        = "./modules/scaling"
  name                          = var.name
  asg_name                      = module.workers.asg_name
  asg_arn                       = module.workers.asg_arn
  step                          = var.step
  hysteresis                    = var.hysteresis
  bounds_override               = var.scaler_bounds_override
  metric_source                 = var.scaling_metric
  alb_arn_suffix                = module.alb.arn_suffix
  cloudwatch_namespace          = var.cloudwatch_namespace
  cloudwatch_metric             = var.cloudwatch_metric
  scale_up_evaluation_periods   = var.scale_up_evaluation_periods
  scale_down_evaluation_periods = var.scale_down_evaluation_periods
  lambda_zip_dir                = local.lambda_zip_dir
  log_retention_days            = var.log_retention_days
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
      condition     = var.sink != "kafka" || (var.kafka_brokers != "" && var.kafka_egress != null)
      error_message = "sink = \"kafka\" needs kafka_brokers and kafka_egress."
    }
  }
}

# The paper writes the alarm names/ARNs and the group name to a file for the Lambdas' settings;
# here Terraform wires them directly, and the file is for operators and scripts.
resource "local_file" "outputs" {
  filename        = local.outputs_file
  file_permission = "0644"
  content = jsonencode({
    asg_name              = module.workers.asg_name
    scale_up_alarm_name   = module.scaling.scale_up_alarm_name
    scale_up_alarm_arn    = module.scaling.scale_up_alarm_arn
    scale_down_alarm_name = module.scaling.scale_down_alarm_name
    scale_down_alarm_arn  = module.scaling.scale_down_alarm_arn
    alb_dns_name          = module.alb.dns_name
    websocket_url         = module.alb.url
    leader_hostnames      = module.leaders.hostnames
    scaler_functions      = module.scaling.lambda_function_names
  })
}
