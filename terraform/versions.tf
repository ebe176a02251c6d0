terraform {
  # 1.11: write-only arguments (`value_wo`), so the cluster secret is generated and stored in SSM
  # without ever entering the state or a saved plan.
  required_version = ">= 1.11.0"

  # GitLab-managed Terraform state: CI passes address, lock address and credentials through
  # TF_HTTP_* variables (see .gitlab-ci.yml); locally `terraform init -backend-config=...`.
  backend "http" {}

  # .terraform.lock.hcl records the version the test suite applies into moto (5.100.0). Only the
  # AWS provider: secrets come from Secrets Manager's GetRandomPassword and the outputs file from
  # `terraform output -json`, so neither hashicorp/random nor hashicorp/local is needed.
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 6.0"
    }
  }
}
