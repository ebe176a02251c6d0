variable "name" {
  type        = string
  description = "Name prefix for every resource of this deployment."
}

variable "ami_id" {
  type        = string
  description = "Leader AMI built by packer/leader.pkr.hcl."
  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "instance_type" {
  type        = string
  description = "EC2 instance type of the leaders (x86_64, like the release binaries)."
}

variable "vpc_id" {
  type        = string
  description = "VPC the private DNS zone is attached to."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Two private subnets in different zones: leader-1 goes to the first, leader-2 to the second."
  validation {
    condition     = length(var.subnet_ids) == 2
    error_message = "subnet_ids must list exactly two subnets."
  }
}

variable "security_group_id" {
  type        = string
  description = "Security group of the leaders (internal and admin ports only)."
}

variable "private_zone_name" {
  type        = string
  description = "Private Route 53 zone holding the leaders' names (leader-1.<zone>, leader-2.<zone>), the workers' seeds."
}

variable "internal_port" {
  type        = number
  description = "Gossip (UDP) and node-link (TCP) port: EWS_INTERNAL_LISTEN."
}

variable "admin_port" {
  type        = number
  description = "Admin HTTP port (/info, /members, /metrics): EWS_ADMIN_LISTEN."
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

variable "publish_metric" {
  type        = bool
  description = "Whether the active leader publishes the cluster-wide connected-client count to CloudWatch."
}

variable "cloudwatch_namespace" {
  type        = string
  description = "CloudWatch namespace of the cluster metric."
}

variable "cloudwatch_metric" {
  type        = string
  description = "CloudWatch metric name of the cluster-wide connected-client count."
}

variable "cloudwatch_interval_secs" {
  type        = number
  description = "How often the active leader publishes the cluster metric."
}

variable "sink_env" {
  type        = map(string)
  description = "With lifecycle records: the workers' sink settings and EWS_LIFECYCLE_EVENTS, EWS_NODE_LOST_AFTER_SECS (the active leader writes node_lost there); empty otherwise."
  default     = {}
}

variable "history_env" {
  type        = map(string)
  description = "History settings (EWS_HISTORY_*), the workers' own: the front door appends to the same engine."
  default     = {}
}

variable "history_parameter_arn" {
  type        = string
  description = "The SSM parameter holding the history engine's URL, which the leaders may read; null without history."
  default     = null
}

variable "node_lost_after_secs" {
  type        = number
  description = "With lifecycle records: seconds a worker stays unreachable before the active leader writes its node_lost; null otherwise."
  default     = null
}

variable "events_queue_arn" {
  type        = string
  description = "The SQS events queue the active leader may send node_lost records to; null when it writes none there."
  default     = null
}

variable "extra_env" {
  type        = map(string)
  description = "Extra EWS_* settings for /etc/ews/ews.env on the leaders."
  default     = {}
}

variable "enable_ssm_session_manager" {
  type        = bool
  description = "Attach AmazonSSMManagedInstanceCore so operators reach the nodes through Session Manager (no SSH, no bastion)."
}

variable "root_volume_size_gb" {
  type        = number
  description = "Root volume size; the built-in queue lives under /var/lib/ews on it."
}

variable "data_volume_size_gb" {
  type        = number
  description = "Size of each leader's data volume for the built-in queue (mounted at /var/lib/ews, kept across instance replacement); 0 = none."
  default     = 0
  validation {
    condition     = var.data_volume_size_gb == 0 || var.data_volume_size_gb >= 1
    error_message = "data_volume_size_gb must be 0 (none) or at least 1."
  }
}

variable "detailed_monitoring" {
  type        = bool
  description = "EC2 detailed (1-minute) monitoring of the leader instances."
  default     = true
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
