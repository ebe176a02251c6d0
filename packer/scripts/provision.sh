#!/usr/bin/env bash
# Installs one elastic-ws role (worker or leader) into a filesystem root: the release binary, its
# systemd unit, the boot-time configuration script, nofile limits and kernel tuning.
#
# Usage: provision.sh worker|leader
#   EWS_ROOT   root prefix to install into (default /; tests use a throwaway directory)
#   EWS_FILES  directory holding packer/files/* and the release binary ews-<role> (default: ../files)
#   EWS_APPLY  1 (default when EWS_ROOT is /) also creates the user, enables the units and applies
#              sysctl now; 0 only writes files.
set -euo pipefail

role="${1:-}"
case "$role" in
  worker | leader) ;;
  *) echo "usage: $0 worker|leader" >&2; exit 2 ;;
esac

ROOT="${EWS_ROOT:-}"
ROOT="${ROOT%/}"
FILES="${EWS_FILES:-$(cd "$(dirname "$0")/../files" && pwd)}"
if [ -z "$ROOT" ]; then APPLY="${EWS_APPLY:-1}"; else APPLY="${EWS_APPLY:-0}"; fi

bin="$FILES/ews-$role"
[ -x "$bin" ] || { echo "provision: missing executable $bin (the release binary)" >&2; exit 1; }

install -d -m 0755 "$ROOT/usr/local/bin" "$ROOT/usr/local/sbin" "$ROOT/etc/systemd/system" \
  "$ROOT/etc/security/limits.d" "$ROOT/etc/sysctl.d" "$ROOT/usr/lib/sysusers.d" "$ROOT/etc/ews"
install -m 0755 "$bin" "$ROOT/usr/local/bin/ews-$role"
install -m 0755 "$FILES/ews-configure" "$ROOT/usr/local/sbin/ews-configure"
install -m 0644 "$FILES/ews-$role.service" "$ROOT/etc/systemd/system/ews-$role.service"
install -m 0644 "$FILES/ews-configure.service" "$ROOT/etc/systemd/system/ews-configure.service"
install -m 0644 "$FILES/90-ews-nofile.conf" "$ROOT/etc/security/limits.d/90-ews-nofile.conf"
install -m 0644 "$FILES/90-ews-sysctl.conf" "$ROOT/etc/sysctl.d/90-ews.conf"
install -m 0644 "$FILES/ews-sysusers.conf" "$ROOT/usr/lib/sysusers.d/ews.conf"
install -d -m 0755 "$ROOT/etc/logrotate.d"
install -m 0644 "$FILES/ews-logrotate" "$ROOT/etc/logrotate.d/ews"
units=("ews-configure.service" "ews-$role.service")
if [ "$role" = worker ]; then
  install -m 0755 "$FILES/ews-lifecycle-watch" "$ROOT/usr/local/sbin/ews-lifecycle-watch"
  install -m 0644 "$FILES/ews-lifecycle-watch.service" \
    "$ROOT/etc/systemd/system/ews-lifecycle-watch.service"
  units+=("ews-lifecycle-watch.service")
fi

# The service user, from the sysusers.d entry (works on a prefix too).
if [ -n "$ROOT" ]; then
  systemd-sysusers --root="$ROOT" "$ROOT/usr/lib/sysusers.d/ews.conf"
else
  systemd-sysusers /usr/lib/sysusers.d/ews.conf
fi

# Enable the units: the same symlinks `systemctl enable` makes, so it also works on a prefix.
install -d -m 0755 "$ROOT/etc/systemd/system/multi-user.target.wants"
for unit in "${units[@]}"; do
  ln -sfn "/etc/systemd/system/$unit" "$ROOT/etc/systemd/system/multi-user.target.wants/$unit"
done

if [ "$APPLY" = 1 ]; then
  # Ships /var/log/ews to CloudWatch Logs (configured at boot by ews-configure); logrotate bounds
  # the files. Both are Amazon Linux 2023 packages.
  dnf install -y -q amazon-cloudwatch-agent logrotate
  sysctl --system >/dev/null
  systemctl daemon-reload
fi
echo "provision: installed ews-$role into ${ROOT:-/}"
