variable "region" {
  type        = string
  description = "Region of the provider (IAM itself is global)."
  default     = "eu-central-1"
}

variable "gitlab_url" {
  type        = string
  description = "The GitLab instance whose CI jobs assume the roles (the ID tokens' issuer)."
  default     = "https://gitlab.com"
  validation {
    condition     = can(regex("^https://[^/]+$", var.gitlab_url))
    error_message = "gitlab_url must be https://host, without a path."
  }
}

variable "oidc_provider_arn" {
  type        = string
  description = "An IAM OIDC provider for gitlab_url that already exists in the account (one per issuer per account); empty = create it."
  default     = ""
}

variable "project_path" {
  type        = string
  description = "The GitLab project (group/project) whose pipeline deploys."
  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$", var.project_path))
    error_message = "project_path must be group/project (subgroups allowed)."
  }
}

variable "default_branch" {
  type        = string
  description = "The protected branch the pipeline deploys from: only its jobs may assume the roles."
  default     = "main"
}

variable "audience" {
  type        = string
  description = "The aud of the package and plan jobs' ID tokens (.gitlab-ci.yml, .aws-oidc)."
  default     = "sts.amazonaws.com"
}

variable "deploy_audience" {
  type        = string
  description = "The aud of the apply jobs' ID tokens (.gitlab-ci.yml, .apply): only these are exchanged for the deploy role."
  default     = "elastic-ws-deploy"
}

variable "deployment_names" {
  type        = list(string)
  description = "The `name`s of the deployments the pipeline manages (staging and production): the deploy role may create and pass only IAM roles named after them."
  validation {
    condition     = length(var.deployment_names) > 0 && alltrue([for n in var.deployment_names : can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", n))])
    error_message = "deployment_names must list the deployments' names (the root module's `name`)."
  }
}

variable "role_prefix" {
  type        = string
  description = "Prefix of the three roles' names."
  default     = "elastic-ws-ci"
}
