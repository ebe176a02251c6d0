#!/usr/bin/env bash
# redis-server (Debian): the history engine's real peer in the tests (ElastiCache Valkey speaks the
# same protocol). The tests run their own instances on free ports; the package's service is not
# started (RUNLEVEL=1 keeps invoke-rc.d from starting it).
source "$(dirname "$0")/lib.sh"
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] && exit 0
log "installing redis-server from apt"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq
RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
