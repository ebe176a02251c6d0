#!/usr/bin/env bash
# Installs every tool the tests need (idempotent; each installer in scripts/tools/ is standalone).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v bc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq bc >/dev/null
fi
for t in scripts/tools/*.sh; do
  [ "$(basename "$t")" = lib.sh ] && continue
  echo "[tools] $(basename "$t" .sh)"
  bash "$t"
done
