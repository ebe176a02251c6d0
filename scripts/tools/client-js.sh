#!/usr/bin/env bash
# The TypeScript client's toolchain (clients/js: TypeScript, esbuild, json-schema-to-typescript,
# playwright-core, ws), installed from the committed lock file, and Chromium (Debian's package)
# for the browser test. Needs Node.js 18 or later and npm.
source "$(dirname "$0")/lib.sh"
js="$REPO_ROOT/clients/js"
command -v npm >/dev/null || { log "npm not found: install Node.js 18 or later"; exit 1; }
# Reinstall only when the lock file changed since the last install.
stamp="$js/node_modules/.ews-lock-sha"
want="$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "npm ci in clients/js"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
fi
if ! command -v chromium >/dev/null; then
  log "installing chromium from apt"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
