variable "name" {
  type        = string
  description = "Name prefix for every resource of this deployment."
}

variable "asg_name" {
  type        = string
  description = "Worker Auto Scaling group the scalers resize (WS_ASG_NAME)."
}

variable "asg_arn" {
  type        = string
  description = "ARN of that group, for the scalers' IAM policy."
}

variable "step" {
  type        = number
  description = "Clients per worker step (STEP); how the thresholds follow from it is threshold_formula's."
  validation {
    condition     = var.step >= 1 && floor(var.step) == var.step
    error_message = "step must be a positive whole number."
  }
}

variable "hysteresis" {
  type        = number
  description = "Clients per worker below the step before scaling down (HYSTERESIS), so a load hovering at a boundary does not flap."
  validation {
    condition     = var.hysteresis >= 0 && floor(var.hysteresis) == var.hysteresis
    error_message = "hysteresis must be a non-negative whole number."
  }
}

variable "bounds_override" {
  type = object({
    min_size = number
    max_size = number
  })
  description = "Optional MIN_SIZE/MAX_SIZE for the scalers instead of the group's own min/max; null = use the group's."
  default     = null
}

variable "metric_source" {
  type        = string
  description = "\"alb\": the ALB's ActiveConnectionCount (Sum, 60 s); \"cluster\": the active leader's published connected-client count."
  validation {
    condition     = contains(["alb", "cluster"], var.metric_source)
    error_message = "metric_source must be \"alb\" or \"cluster\"."
  }
}

variable "alb_arn_suffix" {
  type        = string
  description = "LoadBalancer dimension of the ALB metric."
}

variable "cloudwatch_namespace" {
  type        = string
  description = "Namespace of the cluster metric."
}

variable "cloudwatch_metric" {
  type        = string
  description = "Name of the cluster metric."
}

variable "scale_up_evaluation_periods" {
  type        = number
  description = "Minutes above the threshold before scaling up."
  default     = 1
}

variable "scale_down_evaluation_periods" {
  type        = number
  description = "Minutes below the threshold before scaling down."
  default     = 3
}

variable "lambda_zip_dir" {
  type        = string
  description = "Directory with <binary>/bootstrap.zip from `cargo lambda build --release --arm64 --output-format zip` (target/lambda)."
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the scalers' CloudWatch Logs."
  default     = 30
}

variable "reserved_concurrency" {
  type        = number
  description = "Reserved concurrency of each scaler; null = unreserved (accounts with a low concurrency quota cannot reserve any)."
  default     = null
  validation {
    condition     = var.reserved_concurrency == null || try(var.reserved_concurrency >= 1, false)
    error_message = "reserved_concurrency must be null or at least 1."
  }
}

variable "notification_topic_arns" {
  type        = list(string)
  description = "SNS topics the operational alarms (scaler errors) notify; empty = alarms without actions."
  default     = []
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}

variable "reconcile_minutes" {
  type        = number
  description = "Minutes between two scheduled reconciles of the scaling alarms with the group: an alarm a guard, a bound or a failure left in ALARM is looked at again this often."
  default     = 2
  validation {
    condition     = var.reconcile_minutes >= 2 && floor(var.reconcile_minutes) == var.reconcile_minutes
    error_message = "reconcile_minutes must be a whole number of minutes, at least 2 (EventBridge says rate(1 minute) for one)."
  }
}

variable "mode" {
  type        = string
  description = "\"lambda\": the paper's two alarms and scaler Lambdas, one worker per step; \"target-tracking\": an EC2 Auto Scaling target-tracking policy on connected clients per in-service worker."
  default     = "lambda"
  validation {
    condition     = contains(["lambda", "target-tracking"], var.mode)
    error_message = "mode must be \"lambda\" or \"target-tracking\"."
  }
}

variable "target_clients_per_worker" {
  type        = number
  description = "Target-tracking mode: connected clients per in-service worker the policy holds the group at."
  default     = 80000
  validation {
    condition     = var.target_clients_per_worker >= 1
    error_message = "target_clients_per_worker must be at least 1."
  }
}

variable "target_tracking_disable_scale_in" {
  type        = bool
  description = "Target-tracking mode: never scale in (an operator or a schedule shrinks the group), so no client is ever moved by a scale-in."
  default     = false
}

variable "instance_warmup_secs" {
  type        = number
  description = "Target-tracking mode: seconds before a new worker's clients count (the policy's estimated instance warmup)."
  default     = 120
}

variable "min_size" {
  type        = number
  description = "The group's minimum: the per-worker formula's initial scale-up threshold is min_size x step."
}

variable "threshold_formula" {
  type        = string
  description = "THRESHOLDS: \"per-worker\" or \"paper\"."
  default     = "per-worker"
}

variable "scale_in_cooldown_secs" {
  type        = number
  description = "SCALE_IN_COOLDOWN_SECS: no scale-in within this long of the last step."
  default     = 300
}

variable "fill_secs" {
  type        = number
  description = "FILL_SECS: no busy-worker scale-out within this long of the group's last launch."
  default     = 300
}

variable "busy_fraction" {
  type        = number
  description = "The busy-worker alarm's line as a fraction of worker_max_clients."
  default     = 0.9
}

variable "worker_max_clients" {
  type        = number
  description = "Clients one worker takes."
  default     = 100000
}
