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
  description = "Directory holding the release binaries ews-worker and ews-leader; empty = target/release of this repository (found from this directory, so `packer build packer/` works from the repository root)."
  default     = ""
}

variable "version" {
  type        = string
  description = "Version label for the AMI names and tags (CI: the commit SHA)."
  default     = "dev"
}

variable "subnet_id" {
  type        = string
  description = "Subnet for the builder instance; empty = the region's default VPC. Accounts without a default VPC must name a subnet whose route reaches the internet (Packer connects over SSH)."
  default     = ""
}

variable "associate_public_ip_address" {
  type        = bool
  description = "Give the builder instance a public IP so Packer can reach it over SSH (needed in a public subnet that does not map public IPs by itself)."
  default     = true
}

# Packer's temporary security group opens SSH to 0.0.0.0/0 unless told otherwise
# (temporary_security_group_source_cidrs, https://developer.hashicorp.com/packer/integrations/hashicorp/amazon/latest/components/builder/ebs):
# only the builder's own address may connect. CI passes the runner's public address.
variable "ssh_source_cidr" {
  type        = string
  description = "The address Packer connects from, as a CIDR (your public IP plus /32: curl https://checkip.amazonaws.com). The builder instance accepts SSH from it only."
  validation {
    condition     = can(cidrhost(var.ssh_source_cidr, 0)) && var.ssh_source_cidr != "0.0.0.0/0"
    error_message = "The ssh_source_cidr must be the builder's own address as a CIDR (e.g. 203.0.113.7/32), never 0.0.0.0/0."
  }
}

locals {
  # Variable defaults cannot name path.root; a relative "../target/release" would resolve from the
  # working directory instead of this one.
  bin_dir = var.bin_dir != "" ? var.bin_dir : "${path.root}/../target/release"
}

variable "build_hash" {
  type        = string
  description = "SHA-256 of the binaries and packer/ (packer/scripts/amis.sh build-hash), tagged on the images as BuildHash so the pipeline reuses them while nothing changed; empty outside the pipeline."
  default     = ""
}
