variable "name" {
  type        = string
  description = "Name prefix for every resource of this deployment."
}

variable "ami_id" {
  type        = string
  description = "Worker AMI built by packer/worker.pkr.hcl."
  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "instance_type" {
  type        = string
  description = "EC2 instance type of the workers (x86_64, like the release binaries)."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets the Auto Scaling group spreads the workers over."
}

variable "security_group_id" {
  type        = string
  description = "Security group of the workers."
}

variable "target_group_arn" {
  type        = string
  description = "ALB target group the workers register with."
}

variable "min_size" {
  type        = number
  description = "Minimum (and initial) number of workers; the scalers never go below it."
  validation {
    condition     = var.min_size >= 1
    error_message = "min_size must be at least 1."
  }
}

variable "max_size" {
  type        = number
  description = "Maximum number of workers; the scalers never go above it."
}

variable "seeds" {
  type        = list(string)
  description = "host:port of the leaders' internal port."
}

variable "public_port" {
  type        = number
  description = "WebSocket port the ALB forwards to: EWS_LISTEN."
}

variable "admin_port" {
  type        = number
  description = "Admin HTTP port (/metrics, /api/v1/publish): EWS_ADMIN_LISTEN."
}

variable "internal_port" {
  type        = number
  description = "Gossip (UDP) and node-link (TCP) port: EWS_INTERNAL_LISTEN."
}

variable "drain_seconds" {
  type        = number
  description = "Drain window after SIGTERM: EWS_DRAIN_SECONDS; the lifecycle hook waits this long plus a margin."
}

variable "ping_interval_secs" {
  type        = number
  description = "Server ping interval: EWS_PING_INTERVAL_SECS (below the ALB idle timeout)."
}

variable "cluster_secret_parameter_name" {
  type        = string
  description = "SSM SecureString holding the cluster secret the node signs with; fetched at boot into EWS_CLUSTER_SECRET_FILE."
}

variable "cluster_secret_accept_parameter_name" {
  type        = string
  description = "SSM SecureString holding a second cluster secret the node also accepts during a rotation (EWS_CLUSTER_SECRET_ACCEPT_FILE); null = none."
  default     = null
}

variable "admin_token_parameter_name" {
  type        = string
  description = "SSM SecureString holding the admin token; fetched at boot into EWS_ADMIN_TOKEN_FILE."
}

variable "admin_token_parameter_arn" {
  type        = string
  description = "ARN of that parameter, for the instance role."
}

variable "cluster_secret_parameter_arns" {
  type        = list(string)
  description = "ARNs of the cluster-secret parameters the node reads (the one it signs with and, during a rotation, the one it accepts), for the instance role."
}

variable "auth_env" {
  type        = map(string)
  description = "Authentication and client-facing settings (EWS_JWKS_URL, EWS_JWT_*; EWS_JWT_HS256_SECRET_SSM_PARAMETER for an SSM-held secret; EWS_ROUTES, EWS_HOOKS_B64, EWS_HOOK_SECRET_SSM_PARAMETER)."
}

variable "auth_secret_parameter_arns" {
  type        = list(string)
  description = "ARNs of SSM parameters named in auth_env, for the instance role."
  default     = []
}

variable "hook_lambda_arns" {
  type        = list(string)
  description = "Lambda functions the workers' backend hooks invoke: the instance role may invoke these and no other."
  default     = []
}

variable "sink_env" {
  type        = map(string)
  description = "Event sink settings (EWS_SINK, EWS_SQS_QUEUE_URL, EWS_KAFKA_*, EWS_QUEUE_NAME)."
}

variable "events_queue_arn" {
  type        = string
  description = "The SQS events queue workers may send to (sink = \"sqs\"); null for other sinks."
  default     = null
}

variable "extra_env" {
  type        = map(string)
  description = "Extra EWS_* settings for /etc/ews/ews.env on the workers."
  default     = {}
}

variable "enable_ssm_session_manager" {
  type        = bool
  description = "Attach AmazonSSMManagedInstanceCore so operators reach the nodes through Session Manager (no SSH, no bastion)."
}

variable "root_volume_size_gb" {
  type        = number
  description = "Root volume size of each worker."
}

variable "instance_warmup_secs" {
  type        = number
  description = "Seconds a new worker needs to boot, join and pass the health check (the group's default instance warmup)."
  default     = 120
}

variable "log_group_name" {
  type        = string
  description = "CloudWatch Logs group the CloudWatch agent ships the node logs (/var/log/ews) to (EWS_LOG_GROUP)."
}

variable "log_group_arn" {
  type        = string
  description = "ARN of that log group, for the instance role."
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}

variable "refresh_max_healthy_percentage" {
  type        = number
  description = "Instance refresh: the most of the group's desired capacity in service at once (101-200); the batch size is this minus 100 percent, at least one worker."
  default     = 110
  validation {
    condition     = var.refresh_max_healthy_percentage > 100 && var.refresh_max_healthy_percentage <= 200
    error_message = "refresh_max_healthy_percentage must be above 100 (launch before terminate) and at most 200."
  }
}

variable "refresh_checkpoint_percentages" {
  type        = list(number)
  description = "Instance refresh: percentages of the group replaced at which the refresh pauses for refresh_checkpoint_delay_secs; the last must be 100."
  default     = [20, 50, 100]
}

variable "refresh_checkpoint_delay_secs" {
  type        = number
  description = "Instance refresh: the pause at each checkpoint, for the alarms to see the new workers under load."
  default     = 300
}

variable "refresh_rollback_alarms" {
  type        = list(string)
  description = "CloudWatch alarm names: any in ALARM during an instance refresh fails it and rolls the group back to the previous launch template version. Empty = no rollback."
  default     = []
}

variable "max_clients" {
  type        = number
  description = "Clients one worker takes (EWS_MAX_CONNECTIONS)."
}

variable "busy_fraction" {
  type        = number
  description = "Fraction of max_clients above which a worker rebalances from half the margin (EWS_BUSY_FRACTION)."
}

variable "termination_policy_arn" {
  type        = string
  description = "Qualified ARN of the termination-policy Lambda, listed before NewestInstance; null: NewestInstance alone."
  default     = null
}

variable "spot" {
  type = object({
    on_demand_base = number
    instance_types = list(string)
  })
  description = "Spot above an On-Demand base over these instance types; null: On-Demand only."
  default     = null
}

variable "scheduled_capacity" {
  type = list(object({
    name     = string
    start    = string
    end      = string
    min_size = number
  }))
  description = "Scheduled minimums: from start to end (cron) the group keeps at least min_size workers."
  default     = []
}

variable "scheduled_capacity_time_zone" {
  type        = string
  description = "Time zone of scheduled_capacity's cron expressions."
  default     = "Etc/UTC"
}
