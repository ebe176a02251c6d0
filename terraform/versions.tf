terraform {
  required_version = ">= 1.6.0"

  # GitLab-managed Terraform state: CI passes address, lock address and credentials through
  # TF_HTTP_* variables (see .gitlab-ci.yml); locally `terraform init -backend-config=...`.
  backend "http" {}

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    local = {
      source  = "hashicorp/local"
      version = "~> 2.5"
    }
  }
}
