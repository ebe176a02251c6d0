#!/usr/bin/env bash
# Runs the Packer provisioning for both roles for real into a throwaway root, then checks the
# installed limits, sysctl settings, units and user, and runs the boot-time ews-configure against
# a local IMDSv2 endpoint to check the /etc/ews/ews.env it writes.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
TOOLS="${EWS_TOOLS_DIR:-$HERE/.tools}"
imds_pid=""
imds2_pid=""
imds3_pid=""
loopdev=""
moto_pid=""
cleanup() {
  if [ -n "$imds_pid" ]; then kill "$imds_pid" 2>/dev/null || true; fi
  if [ -n "$imds2_pid" ]; then kill "$imds2_pid" 2>/dev/null || true; fi
  if [ -n "$imds3_pid" ]; then kill "$imds3_pid" 2>/dev/null || true; fi
  if [ -n "$loopdev" ]; then umount "$work/vol-root/var/lib/ews" 2>/dev/null || true; losetup -d "$loopdev" 2>/dev/null || true; fi
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
# unit_value FILE KEY: the value of KEY= in a unit file
unit_value() { sed -n "s/^$2=//p" "$1" | tail -n 1; }

for role in worker leader; do
  root="$work/$role-root"
  files="$work/$role-files"
  mkdir -p "$root" "$files"
  cp -r "$HERE/packer/files/." "$files/"
  printf '#!/bin/sh\necho ews-%s\n' "$role" >"$files/ews-$role"
  chmod +x "$files/ews-$role"
  EWS_ROOT="$root" EWS_FILES="$files" bash "$HERE/packer/scripts/provision.sh" "$role"

  [ -x "$root/usr/local/bin/ews-$role" ] && ok "$role: binary in /usr/local/bin" || fail "$role: binary missing"
  [ -x "$root/usr/local/sbin/ews-configure" ] && ok "$role: ews-configure installed" || fail "$role: ews-configure missing"

  # nofile limits: the paper's 100000 at least, soft and hard, for everyone and root.
  limits="$root/etc/security/limits.d/90-ews-nofile.conf"
  for who in '\*' root; do
    for kind in soft hard; do
      n="$(awk -v w="$who" -v k="$kind" '$1 ~ "^"w"$" && $2 == k && $3 == "nofile" { print $4 }' "$limits")"
      if [ -n "$n" ] && [ "$n" -ge 100000 ]; then ok "$role: limits.d $who $kind nofile $n"; else fail "$role: limits.d $who $kind nofile '$n'"; fi
    done
  done
  nofile="$(awk '$1 == "*" && $2 == "hard" && $3 == "nofile" { print $4 }' "$limits")"

  # sysctl: every key exists on a Linux kernel, and the values fit together.
  conf="$root/etc/sysctl.d/90-ews.conf"
  declare -A sc=()
  while IFS='=' read -r k v; do
    k="$(echo "$k" | xargs)"; v="$(echo "$v" | xargs)"
    case "$k" in '' | '#'*) continue ;; esac
    sc[$k]="$v"
    [ -e "/proc/sys/${k//.//}" ] || fail "$role: sysctl key $k does not exist on this kernel"
  done <"$conf"
  for k in fs.file-max fs.nr_open net.core.somaxconn net.ipv4.tcp_max_syn_backlog \
    net.ipv4.ip_local_port_range net.ipv4.tcp_rmem net.ipv4.tcp_wmem; do
    [ -n "${sc[$k]:-}" ] && ok "$role: sysctl $k = ${sc[$k]}" || fail "$role: sysctl $k not set"
  done
  [ "${sc[fs.nr_open]:-0}" -ge "$nofile" ] || fail "$role: fs.nr_open below the nofile limit"
  [ "${sc[fs.file-max]:-0}" -ge "${sc[fs.nr_open]:-0}" ] || fail "$role: fs.file-max below fs.nr_open"
  [ "${sc[net.core.somaxconn]:-0}" -ge 4096 ] || fail "$role: somaxconn too small"
  read -r lo hi <<<"${sc[net.ipv4.ip_local_port_range]:-0 0}"
  [ "$lo" -le 10000 ] && [ "$hi" -ge 60000 ] || fail "$role: ip_local_port_range too narrow"
  unset sc

  # The unit: binary, environment file, nofile, restart, stop timeout, enabled.
  unit="$root/etc/systemd/system/ews-$role.service"
  [ "$(unit_value "$unit" ExecStart)" = "/usr/local/bin/ews-$role" ] || fail "$role: ExecStart"
  [ "$(unit_value "$unit" EnvironmentFile)" = "/etc/ews/ews.env" ] || fail "$role: EnvironmentFile"
  [ "$(unit_value "$unit" LimitNOFILE)" = "$nofile" ] || fail "$role: LimitNOFILE differs from limits.d"
  [ "$(unit_value "$unit" Restart)" = "on-failure" ] || fail "$role: Restart policy"
  [ "$(unit_value "$unit" User)" = "ews" ] || fail "$role: runs as ews"
  [ "$(unit_value "$unit" StateDirectory)" = "ews" ] && [ "$(unit_value "$unit" WorkingDirectory)" = "/var/lib/ews" ] ||
    fail "$role: state and working directory /var/lib/ews"
  [ "$(unit_value "$unit" StandardOutput)" = "append:/var/log/ews/ews-$role.log" ] &&
    [ "$(unit_value "$unit" LogsDirectory)" = "ews" ] && ok "$role: logs to /var/log/ews/ews-$role.log" ||
    fail "$role: log file (StandardOutput/LogsDirectory)"
  grep -q '^/var/log/ews/\*.log {' "$root/etc/logrotate.d/ews" 2>/dev/null && ok "$role: logrotate bounds /var/log/ews" ||
    fail "$role: no logrotate entry for /var/log/ews"
  stop="$(unit_value "$unit" TimeoutStopSec)"
  if [ "$role" = worker ]; then min_stop=330; else min_stop=30; fi
  [ "${stop:-0}" -ge "$min_stop" ] && ok "$role: TimeoutStopSec=$stop" || fail "$role: TimeoutStopSec=$stop < $min_stop"
  for u in "ews-$role.service" ews-configure.service; do
    [ -L "$root/etc/systemd/system/multi-user.target.wants/$u" ] || fail "$role: $u not enabled"
  done
  if [ "$role" = worker ]; then
    [ -L "$root/etc/systemd/system/multi-user.target.wants/ews-lifecycle-watch.service" ] ||
      fail "worker: ews-lifecycle-watch not enabled"
  elif [ -e "$root/etc/systemd/system/ews-lifecycle-watch.service" ]; then
    fail "leader: has the worker-only lifecycle watch"
  fi
  grep -q '^ews:x:[0-9]*:[0-9]*:elastic-ws:/var/lib/ews:' "$root/etc/passwd" && ok "$role: user ews" ||
    fail "$role: user ews missing"
done

# Boot-time configuration from user data over IMDSv2 (into the leader root), with the cluster
# secret fetched from SSM Parameter Store (moto, through the real AWS CLI).
root="$work/leader-root"
cat >"$work/user-data" <<'UD'
EWS_NODE_ID=leader-1
EWS_SEEDS=leader-2.ews.internal:7070
EWS_INTERNAL_LISTEN=0.0.0.0:7070
EWS_ADMIN_LISTEN=0.0.0.0:9191
# a comment
this line is not a setting
EWS_PUBLISH_METRIC=true
EWS_CLUSTER_SECRET_SSM_PARAMETER=/ews/cluster-secret
EWS_LOG_GROUP=/ews/leaders
EWS_HOOKS_B64=eyJiYWNrZW5kcyI6IHt9LCAicm91dGVzIjoge319
UD
python3 "$HERE/tests/infra/fake_imds.py" "$work/user-data" "$work/port" &
imds_pid=$!
moto_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$TOOLS/moto/bin/python" -m moto.server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 1 100); do
  [ -s "$work/port" ] && curl -sf "http://127.0.0.1:$moto_port/moto-api/" >/dev/null && break
  sleep 0.1
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export PATH="$TOOLS/awscli/bin:$PATH"
# A 4 GiB instance (the tcp_mem check below).
printf 'MemTotal:        4000000 kB\nMemFree:         3000000 kB\n' >"$work/meminfo"
# At first boot SSM can lag: the parameter appears only a few seconds after ews-configure starts,
# which must wait for it rather than give up.
EWS_ROOT="$root" EWS_IMDS_URL="http://127.0.0.1:$(cat "$work/port")" EWS_MEMINFO="$work/meminfo" \
  EWS_SSM_RETRY_SECS=60 "$root/usr/local/sbin/ews-configure" 2>"$work/configure.log" &
configure_pid=$!
sleep 3
aws ssm put-parameter --region eu-central-1 --name /ews/cluster-secret --type SecureString \
  --value 's3cret-value' >/dev/null
if wait "$configure_pid"; then ok "ews-configure waited for the late SSM parameter"; else
  fail "ews-configure gave up on a late SSM parameter: $(cat "$work/configure.log")"
fi
grep -q "attempt 1 failed" "$work/configure.log" && ok "the first SSM read failed and was retried" ||
  fail "the SSM parameter was there at once: the retry was not exercised"
env_file="$root/etc/ews/ews.env"
expect() { grep -qx "$1" "$env_file" && ok "ews.env has $1" || fail "ews.env lacks $1"; }
expect "EWS_ADVERTISE_HOST=10.40.8.15"
expect "AWS_REGION=eu-central-1"
expect "EWS_SEEDS=leader-2.ews.internal:7070"
expect "EWS_PUBLISH_METRIC=true"
# User data overrides the instance-id default: the last assignment wins in an EnvironmentFile.
[ "$(sed -n 's/^EWS_NODE_ID=//p' "$env_file" | tail -n 1)" = "leader-1" ] && ok "node id from user data" ||
  fail "EWS_NODE_ID override"
grep -q 'this line' "$env_file" && fail "malformed user data line copied" || ok "malformed line dropped"
[ "$(stat -c %a "$env_file")" = 600 ] && ok "ews.env mode 0600" || fail "ews.env mode $(stat -c %a "$env_file")"
# The secret: a file readable by group ews only, named in ews.env, never the value itself.
expect "EWS_CLUSTER_SECRET_FILE=/etc/ews/secrets/cluster-secret"
secret="$root/etc/ews/secrets/cluster-secret"
[ "$(cat "$secret" 2>/dev/null)" = "s3cret-value" ] && ok "secret fetched from SSM" || fail "secret file content"
ews_gid="$(awk -F: '$1 == "ews" { print $3 }' "$root/etc/group")"
[ "$(stat -c '%a %g' "$secret")" = "640 $ews_gid" ] && ok "secret mode 0640 group ews" ||
  fail "secret mode/group $(stat -c '%a %g' "$secret")"
grep -q 's3cret-value\|SSM_PARAMETER' "$env_file" && fail "secret or SSM line leaked into ews.env" ||
  ok "no secret in ews.env"
# A configuration file from user data (the workers' hooks JSON): decoded, group ews, named in ews.env.
expect "EWS_HOOKS_FILE=/etc/ews/hooks"
hooks_file="$root/etc/ews/hooks"
[ "$(cat "$hooks_file" 2>/dev/null)" = '{"backends": {}, "routes": {}}' ] && ok "hooks file decoded" ||
  fail "hooks file content: $(cat "$hooks_file" 2>/dev/null)"
[ "$(stat -c '%a %g' "$hooks_file")" = "640 $ews_gid" ] && ok "hooks file mode 0640 group ews" ||
  fail "hooks file mode/group $(stat -c '%a %g' "$hooks_file")"
grep -q '_B64' "$env_file" && fail "a _B64 line leaked into ews.env" || ok "no _B64 line in ews.env"

# Logs: the CloudWatch agent ships the unit's log file to the deployment's group, one stream per
# instance; EWS_LOG_GROUP itself is for ews-configure, not the node.
agent_conf="$root/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json"
if python3 - "$agent_conf" <<'PY'
import json, sys
files = json.load(open(sys.argv[1]))["logs"]["logs_collected"]["files"]["collect_list"]
assert files == [{"file_path": "/var/log/ews/*.log", "log_group_name": "/ews/leaders",
                  "log_stream_name": "{instance_id}"}], files
PY
then ok "CloudWatch agent ships /var/log/ews/*.log to /ews/leaders"; else fail "CloudWatch agent configuration"; fi
grep -q EWS_LOG_GROUP "$env_file" && fail "EWS_LOG_GROUP leaked into ews.env" || ok "EWS_LOG_GROUP consumed at boot"

# TCP memory from the instance's memory: 4,000,000 kB = 1,000,000 pages -> 1/4, 3/8, 1/2.
tcp_mem="$(sed -n 's/^net.ipv4.tcp_mem = //p' "$root/etc/sysctl.d/91-ews-tcp-mem.conf" 2>/dev/null)"
[ "$tcp_mem" = "250000 375000 500000" ] && ok "tcp_mem from MemTotal ($tcp_mem pages)" ||
  fail "tcp_mem '$tcp_mem' (want 250000 375000 500000 for 4,000,000 kB)"
# The ports the user data listens on are reserved (no outgoing connection takes them first).
reserved="$(sed -n 's/^net.ipv4.ip_local_reserved_ports = //p' "$root/etc/sysctl.d/92-ews-reserved-ports.conf" 2>/dev/null)"
[ "$reserved" = "7070,9191" ] && ok "listening ports reserved ($reserved)" ||
  fail "ip_local_reserved_ports '$reserved' (want 7070,9191)"
for k in $(awk -F' = ' '/^net/ { print $1 }' "$root/etc/sysctl.d/91-ews-tcp-mem.conf") net.ipv4.ip_local_reserved_ports; do
  [ -e "/proc/sys/${k//.//}" ] || fail "tcp_mem key $k does not exist on this kernel"
done

# The leaders' data volume: a blank EBS volume (a loop device here) gets a file system and is
# mounted at /var/lib/ews; a second boot (a replaced leader) keeps what is on it.
if command -v mkfs.ext4 >/dev/null && losetup -f >/dev/null 2>&1; then
  vol_root="$work/vol-root"
  mkdir -p "$vol_root/etc" "$work/by-id"
  cp "$root/etc/passwd" "$root/etc/group" "$vol_root/etc/"
  truncate -s 64M "$work/vol.img"
  loopdev="$(losetup -f --show "$work/vol.img")"
  ln -s "$loopdev" "$work/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"
  printf 'EWS_NODE_ID=leader-1\nEWS_DATA_VOLUME_ID=vol-0123456789abcdef0\n' >"$work/user-data-vol"
  python3 "$HERE/tests/infra/fake_imds.py" "$work/user-data-vol" "$work/port3" &
  imds3_pid=$!
  for _ in $(seq 1 50); do [ -s "$work/port3" ] && break; sleep 0.1; done
  boot_with_volume() {
    EWS_ROOT="$vol_root" EWS_IMDS_URL="http://127.0.0.1:$(cat "$work/port3")" EWS_MEMINFO="$work/meminfo" \
      EWS_DEVICE_DIR="$work/by-id" EWS_DATA_VOLUME_WAIT_SECS=5 "$vol_root/../leader-root/usr/local/sbin/ews-configure"
  }
  if boot_with_volume 2>"$work/vol.log" && mountpoint -q "$vol_root/var/lib/ews"; then
    ok "data volume formatted and mounted at /var/lib/ews"
    echo "acked event" >"$vol_root/var/lib/ews/marker"
    umount "$vol_root/var/lib/ews"
    boot_with_volume 2>>"$work/vol.log"
    [ "$(cat "$vol_root/var/lib/ews/marker" 2>/dev/null)" = "acked event" ] &&
      ok "a second boot keeps the volume's data (no new file system)" || fail "data volume lost its data on a second boot"
    [ "$(grep -c '/var/lib/ews ext4' "$vol_root/etc/fstab")" = 1 ] && ok "one fstab entry for the data volume" ||
      fail "fstab: $(cat "$vol_root/etc/fstab")"
    grep -q EWS_DATA_VOLUME_ID "$vol_root/etc/ews/ews.env" && fail "EWS_DATA_VOLUME_ID leaked into ews.env" || true
    umount "$vol_root/var/lib/ews" || true
  else
    fail "data volume not mounted: $(cat "$work/vol.log")"
  fi
  losetup -d "$loopdev" || true
  # A volume with data but no file system blkid knows (a damaged superblock, say) is never
  # formatted: the boot stops and says so, and the data stays.
  truncate -s 64M "$work/vol2.img"
  printf 'acked events, no file system' | dd of="$work/vol2.img" bs=1 seek=4096 conv=notrunc status=none
  loopdev="$(losetup -f --show "$work/vol2.img")"
  ln -sfn "$loopdev" "$work/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"
  if boot_with_volume 2>"$work/vol2.log"; then
    fail "a non-blank volume without a file system was accepted: $(cat "$work/vol2.log")"
  elif grep -q "not blank: refusing to format" "$work/vol2.log" &&
    [ "$(dd if="$loopdev" bs=1 skip=4096 count=29 status=none)" = "acked events, no file system" ]; then
    ok "a non-blank volume without a file system is refused, not formatted"
  else
    fail "non-blank volume: $(cat "$work/vol2.log")"
  fi
  losetup -d "$loopdev" || true
  loopdev=""
else
  echo "skipped: data volume check (no mkfs.ext4 or loop device on this machine)"
fi

# The worker's drain on Auto Scaling termination: with IMDS reporting target lifecycle state
# `Terminated`, ews-lifecycle-watch must stop ews-worker (the drain) and only then complete the
# lifecycle action for this instance. systemd and the Auto Scaling API are not available here
# (moto lacks CompleteLifecycleAction), so both commands are recorded by stand-ins on PATH.
shims="$work/shims"
mkdir -p "$shims"
printf '#!/bin/sh\necho "systemctl $*" >> "%s/calls"\n' "$work" >"$shims/systemctl"
# The Auto Scaling API refuses the completion until the deregistration delay is over (the
# instance is not yet in Terminating:Wait): the stand-in fails twice, then succeeds.
printf '#!/bin/sh\necho "aws $*" >> "%s/calls"\n[ "$(grep -c "^aws " "%s/calls")" -ge 3 ]\n' \
  "$work" "$work" >"$shims/aws"
chmod +x "$shims/systemctl" "$shims/aws"
python3 "$HERE/tests/infra/fake_imds.py" "$work/user-data" "$work/port2" Terminated &
imds2_pid=$!
for _ in $(seq 1 50); do [ -s "$work/port2" ] && break; sleep 0.1; done
if PATH="$shims:$PATH" EWS_IMDS_URL="http://127.0.0.1:$(cat "$work/port2")" EWS_LIFECYCLE_POLL_SECS=0.1 \
  EWS_ASG_NAME=ews-workers EWS_LIFECYCLE_HOOK_NAME=ews-drain \
  timeout 20 "$work/worker-root/usr/local/sbin/ews-lifecycle-watch"; then
  ok "lifecycle watch finished"
else
  fail "lifecycle watch did not finish"
fi
kill "$imds2_pid" 2>/dev/null || true
complete="aws autoscaling complete-lifecycle-action --region eu-central-1 --auto-scaling-group-name ews-workers --lifecycle-hook-name ews-drain --instance-id i-0123456789abcdef0 --lifecycle-action-result CONTINUE"
want_calls="systemctl stop ews-worker.service
$complete
$complete
$complete"
[ "$(cat "$work/calls" 2>/dev/null)" = "$want_calls" ] && ok "drain, then complete the lifecycle action (retried until Terminating:Wait)" ||
  fail "lifecycle watch calls: $(cat "$work/calls" 2>/dev/null)"

[ "$fails" = 0 ] || { echo "--- ews.env:"; cat "$env_file"; }
echo "provision test: $fails failure(s)"
[ "$fails" = 0 ]
