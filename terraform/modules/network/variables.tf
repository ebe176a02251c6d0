variable "name" {
  type        = string
  description = "Name prefix for every resource of this deployment."
}

variable "cidr_block" {
  type        = string
  description = "IPv4 CIDR of the VPC; split into two public and two private subnets."
  validation {
    condition     = can(cidrhost(var.cidr_block, 0)) && tonumber(split("/", var.cidr_block)[1]) <= 20
    error_message = "cidr_block must be a valid IPv4 CIDR of /20 or larger."
  }
}

variable "availability_zones" {
  type        = list(string)
  description = "Exactly two availability zones: leaders are spread over them, workers balanced across them."
  validation {
    condition     = length(var.availability_zones) == 2 && length(distinct(var.availability_zones)) == 2
    error_message = "availability_zones must list two distinct zones."
  }
}

variable "nat_gateway_per_az" {
  type        = bool
  description = "One NAT gateway per zone (survives a zone outage) instead of a single shared one (cheaper)."
  default     = true
}

variable "flow_logs_retention_days" {
  type        = number
  description = "Retention of the VPC flow logs in CloudWatch Logs; 0 disables flow logs."
  default     = 30
  validation {
    condition     = contains([0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653], var.flow_logs_retention_days)
    error_message = "flow_logs_retention_days must be 0 or a retention CloudWatch Logs supports."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}

variable "flow_logs_traffic_type" {
  type        = string
  description = "What the flow logs record: REJECT (refused connections only, a fraction of the volume and the cost) or ALL."
  default     = "REJECT"
  validation {
    condition     = contains(["REJECT", "ALL", "ACCEPT"], var.flow_logs_traffic_type)
    error_message = "flow_logs_traffic_type must be REJECT, ACCEPT or ALL."
  }
}

variable "interface_endpoints" {
  type        = list(string)
  description = "AWS services the private subnets reach through interface endpoints instead of the NAT gateways (e.g. sqs, logs, ssm); empty = none."
  default     = []
}
