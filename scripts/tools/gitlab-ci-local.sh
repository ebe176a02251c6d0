#!/usr/bin/env bash
# gitlab-ci-local (npm): evaluates .gitlab-ci.yml as GitLab does (rules, needs, extends) and runs
# its jobs with a shell executor. scripts/check-infra.sh checks the pipeline's rules with it;
# scripts/ci-local.sh runs jobs with it. Pinned: 4.69 is the last release that runs on Node.js 20.
source "$(dirname "$0")/lib.sh"
VERSION="4.69.0"
dir="$EWS_TOOLS_DIR/gitlab-ci-local"
bin="$dir/node_modules/.bin/gitlab-ci-local"
if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null | tail -n 1)" = "$VERSION" ]; then exit 0; fi
if ! command -v npm >/dev/null; then
  log "installing nodejs and npm from apt"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
# It copies the tracked files with rsync before a job runs.
if ! command -v rsync >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync >/dev/null
fi
log "installing gitlab-ci-local $VERSION"
mkdir -p "$dir"
npm install --prefix "$dir" --no-audit --no-fund --silent "gitlab-ci-local@$VERSION"
