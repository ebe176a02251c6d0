#!/usr/bin/env bash
# Runs a whole cluster on this machine: 2 leaders (each seeding the other) and N workers (seeding
# both), on loopback, from already built binaries. Prints where everything is; Ctrl-C stops all
# of it (SIGTERM, so workers drain and leave the cluster as in production).
#
#   cargo build --release -p ews-leader -p ews-worker
#   scripts/local-cluster.sh [N]            # N workers, default 3
#
# Environment:
#   EWS_BIN_DIR        directory holding ews-leader and ews-worker (default: target/release, else
#                      target/debug, under $CARGO_TARGET_DIR if set)
#   EWS_LOCAL_DIR      logs and queue data (default: target/local-cluster)
#   EWS_PORT_OFFSET    added to every port below (default 0), to run beside other services
#   Any EWS_* flag variable (EWS_SINK, EWS_JWT_HS256_SECRET, EWS_GOSSIP_INTERVAL_MS, ...) is
#   passed through to the nodes. Without a JWT key variable the workers run --no-auth.
#
# Ports: leader-K internal 707K (UDP gossip + TCP node link), admin 909K;
#        worker-I public 8080+I, admin 9100+I, internal 7100+I.
set -euo pipefail

workers=${1:-3}
if ! [[ $workers =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [number-of-workers]" >&2
    exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
bin_dir=${EWS_BIN_DIR:-}
if [[ -z $bin_dir ]]; then
    for d in "$target/release" "$target/debug"; do
        if [[ -x $d/ews-leader && -x $d/ews-worker ]]; then
            bin_dir=$d
            break
        fi
    done
fi
if [[ -z $bin_dir || ! -x $bin_dir/ews-leader || ! -x $bin_dir/ews-worker ]]; then
    echo "ews-leader/ews-worker not found; build them: cargo build --release -p ews-leader -p ews-worker" >&2
    exit 1
fi

dir=${EWS_LOCAL_DIR:-$root/target/local-cluster}
off=${EWS_PORT_OFFSET:-0}
host=127.0.0.1
mkdir -p "$dir"

auth=()
if [[ -z ${EWS_JWT_HS256_SECRET:-}${EWS_JWT_HS256_SECRET_FILE:-}${EWS_JWT_PUBLIC_KEY_FILE:-}${EWS_JWKS_URL:-} ]]; then
    auth=(--no-auth)
fi

names=()
pids=()
stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping (workers drain for up to ${EWS_DRAIN_SECONDS:-5} s)..."
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    wait || true
    echo "stopped; logs in $dir"
    exit 0
}
trap stop INT TERM EXIT

start() {
    local name=$1
    shift
    "$@" >"$dir/$name.log" 2>&1 &
    names+=("$name")
    pids+=("$!")
}

l1=$host:$((7071 + off))
l2=$host:$((7072 + off))
start leader-1 "$bin_dir/ews-leader" --node-id leader-1 --internal-listen "$l1" \
    --admin-listen "$host:$((9091 + off))" --seeds "$l2" --queue-dir "$dir/leader-1/queue"
start leader-2 "$bin_dir/ews-leader" --node-id leader-2 --internal-listen "$l2" \
    --admin-listen "$host:$((9092 + off))" --seeds "$l1" --queue-dir "$dir/leader-2/queue"

for i in $(seq 1 "$workers"); do
    start "worker-$i" "$bin_dir/ews-worker" --node-id "worker-$i" \
        --listen "$host:$((8080 + i + off))" --admin-listen "$host:$((9100 + i + off))" \
        --internal-listen "$host:$((7100 + i + off))" --seeds "$l1,$l2" \
        --drain-seconds "${EWS_DRAIN_SECONDS:-5}" "${auth[@]}"
done

echo "binaries: $bin_dir    logs: $dir/<node>.log"
printf '%-10s %-28s %-28s %s\n' NODE PUBLIC ADMIN INTERNAL
printf '%-10s %-28s %-28s %s\n' leader-1 - "http://$host:$((9091 + off))" "$l1"
printf '%-10s %-28s %-28s %s\n' leader-2 - "http://$host:$((9092 + off))" "$l2"
for i in $(seq 1 "$workers"); do
    printf '%-10s %-28s %-28s %s\n' "worker-$i" "ws://$host:$((8080 + i + off))/ws" \
        "http://$host:$((9100 + i + off))" "$host:$((7100 + i + off))"
done
echo "cluster view: curl -s http://$host:$((9091 + off))/members    (Ctrl-C stops everything)"

# Report nodes that exit on their own (bad flags, port in use, gave up joining).
declare -A reported=()
while sleep 1; do
    for k in "${!pids[@]}"; do
        if [[ -z ${reported[$k]:-} ]] && ! kill -0 "${pids[$k]}" 2>/dev/null; then
            reported[$k]=1
            echo "${names[$k]} exited; last lines of $dir/${names[$k]}.log:" >&2
            tail -n 5 "$dir/${names[$k]}.log" >&2 || true
        fi
    done
done
