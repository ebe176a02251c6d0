variable "region" {
  type        = string
  description = "AWS region the AMIs are built in (and registered in)."
  default     = "eu-central-1"
}

variable "instance_type" {
  type        = string
  description = "Builder instance type; x86_64, matching the release binaries CI builds."
  default     = "t3.small"
}

variable "bin_dir" {
  type        = string
  description = "Directory holding the release binaries ews-worker and ews-leader (CI: target/release)."
  default     = "../target/release"
}

variable "version" {
  type        = string
  description = "Version label for the AMI names and tags (CI: the commit SHA)."
  default     = "dev"
}

variable "subnet_id" {
  type        = string
  description = "Subnet for the builder instance; empty = the default VPC."
  default     = ""
}
