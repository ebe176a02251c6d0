#!/usr/bin/env bash
# Terraform evaluated for real: init, validate, and apply/re-plan/destroy of both examples into moto
# (tests/infra/terraform_moto.sh). Exit 77 = skipped (no terraform or AWS provider here).
set -euo pipefail
exec bash "$(dirname "$0")/../../tests/infra/terraform_moto.sh"
