#!/usr/bin/env bash
# Runs jobs of .gitlab-ci.yml for real on this machine with gitlab-ci-local (npm), forcing its shell
# executor: the pipeline's own commands, not only its schema. Images are ignored (the jobs run on
# this machine as it is), so this exercises the lint and test jobs; the build, package and deploy
# jobs need GitLab's images, AWS credentials and Packer plugins.
#
# Usage: scripts/ci-local.sh [JOB...]          default: fmt-clippy infra test
#        scripts/ci-local.sh --list            the pipeline's jobs, stages and rules as GitLab sees them
# The cargo home and target dir of this checkout are shared with the jobs (no second cold build).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
TOOLS="${EWS_TOOLS_DIR:-$REPO/.tools}"
GCL="$TOOLS/gitlab-ci-local/node_modules/.bin/gitlab-ci-local"
EWS_TOOLS_DIR="$TOOLS" bash scripts/tools/gitlab-ci-local.sh

if [ "${1:-}" = "--list" ]; then
  exec "$GCL" --list-all
fi
[ "$#" -gt 0 ] || set -- fmt-clippy infra test

exec "$GCL" --force-shell-executor --no-artifacts-to-source \
  --variable "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" \
  --variable "CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}" \
  --variable "EWS_TOOLS_DIR=$TOOLS" \
  "$@"
