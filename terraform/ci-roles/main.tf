# The pipeline's three AWS roles, for an administrator to apply once per account (local state is
# enough: nothing here changes per deploy). GitLab's ID tokens are exchanged for them by web
# identity (https://docs.gitlab.com/ci/cloud_services/aws/): no stored keys anywhere.
#
# What the trust policies can check: AWS evaluates only the token's `aud` and `sub` for an OIDC
# provider (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#condition-keys-wif),
# and GitLab's `sub` is `project_path:<group/project>:ref_type:<branch|tag>:ref:<name>` (a project
# may reorder or drop ref and ref_type, never add the environment: gitlab-org/gitlab#477260).
# So every role requires this project's protected default branch, exactly; a job of another branch,
# a tag or a fork gets nothing. The environment is GitLab's boundary: the apply jobs run in the
# protected environments `staging` and `production` (only approved deployers run them), and each
# environment's scoped variables (AWS_DEPLOY_ROLE_ARN, DEPLOY_TFVARS) reach only its jobs.
provider "aws" {
  region = var.region
  default_tags {
    tags = { Application = "elastic-ws", Role = "ci" }
  }
}

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  issuer_host  = trimprefix(var.gitlab_url, "https://")
  provider_arn = var.oidc_provider_arn != "" ? var.oidc_provider_arn : aws_iam_openid_connect_provider.gitlab[0].arn
  sub          = "project_path:${var.project_path}:ref_type:branch:ref:${var.default_branch}"
  iam_prefix   = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}"
  # The deploy policy (deploy-policy.json: every action `terraform apply` and `destroy` of the root
  # module call, checked by applying into moto with IAM enforced, tests/infra/terraform_moto.sh),
  # with its IAM statements narrowed to the deployments' own roles: the role that may create roles
  # must not be able to mint an administrator.
  deploy_policy = jsondecode(file("${path.module}/deploy-policy.json"))
  own_roles = flatten([for n in var.deployment_names : [
    "${local.iam_prefix}:role/${n}-*",
    "${local.iam_prefix}:instance-profile/${n}-*",
  ]])
  deploy_statements = [for s in local.deploy_policy.Statement :
    merge(s, { for k, v in { Resource = local.own_roles } : k => v if contains(["Roles", "PassRolesToTheirServices"], s.Sid) })
  ]
}

# GitLab as an identity provider of the account. IAM trusts the issuer's TLS certificate chain
# itself for well-known CAs; the thumbprint is only a fallback it no longer needs.
resource "aws_iam_openid_connect_provider" "gitlab" {
  count           = var.oidc_provider_arn == "" ? 1 : 0
  url             = var.gitlab_url
  client_id_list  = [var.audience, var.deploy_audience]
  thumbprint_list = []
}

# trust[aud]: the protected branch, and the audience of the role's jobs. The apply jobs ask for
# tokens of their own audience (deploy_audience), so a token a plan or package job holds (and
# might leak into a log) cannot be exchanged for the deploy role.
data "aws_iam_policy_document" "trust" {
  for_each = toset([var.audience, var.deploy_audience])
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [local.provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer_host}:aud"
      values   = [each.key]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer_host}:sub"
      values   = [local.sub]
    }
  }
}

# package-amis: Packer's EC2 calls (https://developer.hashicorp.com/packer/integrations/hashicorp/amazon#iam-task-or-instance-role)
# and the image cleanup (packer/scripts/amis.sh).
resource "aws_iam_role" "package" {
  name                 = "${var.role_prefix}-package"
  assume_role_policy   = data.aws_iam_policy_document.trust[var.audience].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "package" {
  name   = "packer"
  role   = aws_iam_role.package.id
  policy = file("${path.module}/package-policy.json")
}

# terraform-plan-*: reads everything the plan refreshes, and opens the ephemeral random
# passwords (GetRandomPassword generates a value, it reads no secret). The parameters are
# SecureStrings: reading them back needs GetParameter (ReadOnlyAccess has it) and kms:Decrypt
# through SSM on the AWS-managed key.
resource "aws_iam_role" "plan" {
  name                 = "${var.role_prefix}-plan"
  assume_role_policy   = data.aws_iam_policy_document.trust[var.audience].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy_attachment" "plan_read_only" {
  role       = aws_iam_role.plan.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/ReadOnlyAccess"
}

data "aws_iam_policy_document" "plan" {
  statement {
    sid       = "OpenEphemeralPasswords"
    actions   = ["secretsmanager:GetRandomPassword"]
    resources = ["*"]
  }
  statement {
    sid       = "ReadDeploymentParameters"
    actions   = ["ssm:GetParameter", "ssm:GetParameters"]
    resources = [for n in var.deployment_names : "arn:${data.aws_partition.current.partition}:ssm:*:${data.aws_caller_identity.current.account_id}:parameter/${n}/*"]
  }
  statement {
    sid       = "DecryptThroughSsm"
    actions   = ["kms:Decrypt"]
    resources = ["*"]
    condition {
      test     = "StringLike"
      variable = "kms:ViaService"
      values   = ["ssm.*.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "plan" {
  name   = "plan"
  role   = aws_iam_role.plan.id
  policy = data.aws_iam_policy_document.plan.json
}

# terraform-apply-*: deploy-policy.json, narrowed as above.
resource "aws_iam_role" "deploy" {
  name                 = "${var.role_prefix}-deploy"
  assume_role_policy   = data.aws_iam_policy_document.trust[var.deploy_audience].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "deploy" {
  name   = "deploy"
  role   = aws_iam_role.deploy.id
  policy = jsonencode(merge(local.deploy_policy, { Statement = local.deploy_statements }))
}
