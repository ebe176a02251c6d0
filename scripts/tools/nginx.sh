#!/usr/bin/env bash
# nginx (Debian): the TLS-terminating proxy in front of a worker in the ews-load wss:// test, as a
# load balancer would be. The tests run their own instance with their own configuration; the
# package's service is not started (RUNLEVEL=1 keeps invoke-rc.d from starting it).
source "$(dirname "$0")/lib.sh"
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] && exit 0
log "installing nginx from apt"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq
RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1 ||
  RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx >/dev/null
