variable "name" {
  type        = string
  description = "Name prefix for every resource of this deployment."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the target group."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Public subnets (two zones) of the load balancer."
}

variable "security_group_id" {
  type        = string
  description = "Security group of the load balancer."
}

variable "target_port" {
  type        = number
  description = "Worker WebSocket port (EWS_LISTEN) the target group forwards to."
}

variable "health_check_path" {
  type        = string
  description = "Worker health path: 200 while serving, 503 once draining."
  default     = "/info"
}

variable "idle_timeout_secs" {
  type        = number
  description = "ALB idle timeout; must exceed the workers' ping interval so idle WebSockets stay open."
  validation {
    condition     = var.idle_timeout_secs >= 1 && var.idle_timeout_secs <= 4000
    error_message = "idle_timeout_secs must be within 1..4000 (the ALB's range)."
  }
}

variable "deregistration_delay_secs" {
  type        = number
  description = "How long the ALB keeps a deregistered worker's connections: the drain window."
  validation {
    condition     = var.deregistration_delay_secs >= 0 && var.deregistration_delay_secs <= 3600
    error_message = "deregistration_delay_secs must be within 0..3600."
  }
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate for the HTTPS (wss://) listener; empty = plain HTTP on port 80 only (trials)."
  default     = ""
}

variable "ssl_policy" {
  type        = string
  description = "TLS policy of the HTTPS listener."
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the load balancer from deletion."
  default     = false
}

variable "access_logs_bucket" {
  type        = string
  description = "S3 bucket for ALB access logs; empty disables them."
  default     = ""
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}

variable "access_logs_retention_days" {
  type        = number
  description = "Without access_logs_bucket: make a bucket for the access logs and keep each log this many days; 0 = no access logs."
  default     = 90
}

variable "waf_rate_limit" {
  type        = number
  description = "Attach an AWS WAF web ACL blocking an address that opens more than this many connections in five minutes (plus Amazon's IP reputation list and known bad inputs); 0 = no WAF."
  default     = 0
}

variable "waf_count_only" {
  type        = bool
  description = "The WAF's rules only count what they would block (to watch the metrics before blocking)."
  default     = false
}
