#!/usr/bin/env bash
# The pipeline's plan jobs for staging and production, run by gitlab-ci-local with their own
# scripts against moto: OIDC into the plan role terraform/ci-roles makes, IAM enforced, one
# Terraform state per environment (tests/infra/ci_local_plan.sh). Exit 77 = skipped.
set -euo pipefail
exec bash "$(dirname "$0")/../../tests/infra/ci_local_plan.sh"
