#!/usr/bin/env bash
# Runs a whole cluster on this machine: 2 leaders (each seeding the other) and N workers (seeding
# both), on loopback, from already built binaries. Prints where everything is, a ready client
# token and a ready publish command; Ctrl-C stops all of it (SIGTERM, so workers drain and leave
# the cluster as in production).
#
#   cargo build --release -p ews-leader -p ews-worker -p ews-load
#   scripts/local-cluster.sh [N]            # N workers, default 3
#
# Secure by default, like a deployment: every run has its own JWT secret (clients need a token;
# the script prints one), its own admin token (the admin API refuses anyone without it) and its
# own cluster secret (node links refuse anyone who cannot prove it), all
# generated into the run's directory unless the environment names them, and its own free ports,
# so two runs on one machine never find, let alone join, each other.
#
# Environment:
#   EWS_BIN_DIR        directory holding ews-leader and ews-worker (default: target/release, else
#                      target/debug, under $CARGO_TARGET_DIR if set); ews-load there mints the token
#   EWS_LOCAL_DIR      logs, secrets and queue data (default: target/local-cluster/<pid>)
#   EWS_PORT_OFFSET    use the fixed port layout below, shifted by this much, instead of free ports
#   EWS_JWT_HS256_SECRET_FILE / EWS_CLUSTER_SECRET_FILE (or the inline variables): use these
#                      secrets instead of generated ones; EWS_NO_AUTH=true turns client auth off
#   Any other EWS_* flag variable (EWS_SINK, EWS_GOSSIP_INTERVAL_MS, ...) is passed through.
#
# Fixed layout (EWS_PORT_OFFSET): leader-K internal 707K (UDP gossip + TCP node link), admin
# 909K; worker-I public 8080+I, admin 9100+I, internal 7100+I.
set -euo pipefail

workers=${1:-3}
if ! [[ $workers =~ ^[0-9]+$ ]] || [ "$workers" -lt 1 ]; then
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
    echo "ews-leader/ews-worker not found; build them: cargo build --release -p ews-leader -p ews-worker -p ews-load" >&2
    exit 1
fi

dir=${EWS_LOCAL_DIR:-$root/target/local-cluster/$$}
host=127.0.0.1
mkdir -p "$dir"
chmod 0700 "$dir"

# --- secrets: the environment's, or new ones for this run --------------------------------------
new_secret() { # new_secret FILE: 32 random bytes, hex, readable by this user only
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$1")
}
if [[ -z ${EWS_CLUSTER_SECRET:-}${EWS_CLUSTER_SECRET_FILE:-} ]]; then
    new_secret "$dir/cluster-secret"
    export EWS_CLUSTER_SECRET_FILE="$dir/cluster-secret"
fi
jwt_file=""
if [[ -z ${EWS_ADMIN_TOKEN:-}${EWS_ADMIN_TOKEN_FILE:-} ]]; then
    new_secret "$dir/admin-token"
    export EWS_ADMIN_TOKEN_FILE="$dir/admin-token"
fi
admin_auth="Authorization: Bearer \$(cat ${EWS_ADMIN_TOKEN_FILE:-<your token file>})"
if [[ ${EWS_NO_AUTH:-} != true && -z ${EWS_JWT_HS256_SECRET:-}${EWS_JWT_HS256_SECRET_FILE:-}${EWS_JWT_PUBLIC_KEY_FILE:-}${EWS_JWKS_URL:-} ]]; then
    new_secret "$dir/jwt-secret"
    export EWS_JWT_HS256_SECRET_FILE="$dir/jwt-secret"
fi
if [[ -n ${EWS_JWT_HS256_SECRET_FILE:-} ]]; then jwt_file=$EWS_JWT_HS256_SECRET_FILE; fi

# --- ports: free ones (below the ephemeral range, so no outgoing connection holds them) -----------
# Four per worker-or-leader slot; UDP and TCP of an internal port are checked together.
nports=$((2 * 2 + 3 * workers))
if [[ -n ${EWS_PORT_OFFSET:-} ]]; then
    off=$EWS_PORT_OFFSET
    ports=($((7071 + off)) $((9091 + off)) $((7072 + off)) $((9092 + off)))
    for i in $(seq 1 "$workers"); do
        ports+=($((8080 + i + off)) $((9100 + i + off)) $((7100 + i + off)))
    done
else
    mapfile -t ports < <(python3 - "$nports" <<'PY'
import random, socket, sys
want, got = int(sys.argv[1]), []
while len(got) < want:
    p = random.randint(20000, 30000)
    if p in got:
        continue
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            s.bind(("127.0.0.1", p))
            s.close()
    except OSError:
        continue
    got.append(p)
print("\n".join(map(str, got)))
PY
    )
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

l1=$host:${ports[0]}
l2=$host:${ports[2]}
start leader-1 "$bin_dir/ews-leader" --node-id leader-1 --internal-listen "$l1" \
    --admin-listen "$host:${ports[1]}" --seeds "$l2" --queue-dir "$dir/leader-1/queue"
start leader-2 "$bin_dir/ews-leader" --node-id leader-2 --internal-listen "$l2" \
    --admin-listen "$host:${ports[3]}" --seeds "$l1" --queue-dir "$dir/leader-2/queue"

public=()
admin=()
for i in $(seq 1 "$workers"); do
    k=$((4 + 3 * (i - 1)))
    public+=("${ports[$k]}")
    admin+=("${ports[$((k + 1))]}")
    start "worker-$i" "$bin_dir/ews-worker" --node-id "worker-$i" \
        --listen "$host:${ports[$k]}" --admin-listen "$host:${ports[$((k + 1))]}" \
        --internal-listen "$host:${ports[$((k + 2))]}" --seeds "$l1,$l2" \
        --drain-seconds "${EWS_DRAIN_SECONDS:-5}"
done

echo "binaries: $bin_dir    run directory (logs, secrets): $dir"
printf '%-10s %-28s %-28s %s\n' NODE PUBLIC ADMIN INTERNAL
printf '%-10s %-28s %-28s %s\n' leader-1 - "http://$host:${ports[1]}" "$l1"
printf '%-10s %-28s %-28s %s\n' leader-2 - "http://$host:${ports[3]}" "$l2"
for i in $(seq 1 "$workers"); do
    k=$((4 + 3 * (i - 1)))
    printf '%-10s %-28s %-28s %s\n' "worker-$i" "ws://$host:${ports[$k]}/ws" \
        "http://$host:${ports[$((k + 1))]}" "$host:${ports[$((k + 2))]}"
done
echo "cluster view: curl -s -H \"$admin_auth\" http://$host:${ports[1]}/members"
echo "admin token (every admin route but /info and /metrics): ${EWS_ADMIN_TOKEN_FILE:-(from EWS_ADMIN_TOKEN)}"
echo "cluster secret: ${EWS_CLUSTER_SECRET_FILE:-(from EWS_CLUSTER_SECRET)}"
if [[ -n $jwt_file && -x $bin_dir/ews-load ]]; then
    token=$("$bin_dir/ews-load" token --sub alice --ttl 1d --jwt-hs256-secret-file "$jwt_file")
    echo "client alice (token valid 1 day): ws://$host:${public[0]}/ws?access_token=$token"
    echo "publish to alice (any worker reaches her, wherever she is connected):"
    echo "  curl -s -H \"$admin_auth\" -X POST http://$host:${admin[$((workers - 1))]}/api/v1/publish -d '{\"clientId\":\"alice\",\"msg\":\"hello\"}'"
    echo "or through a leader, the front door a backend uses in AWS (the answer names every worker's outcome):"
    echo "  curl -s -H \"$admin_auth\" -X POST http://$host:${ports[1]}/api/v1/publish -d '{\"clientId\":\"alice\",\"msg\":\"hello\"}'"
    echo "more tokens: $bin_dir/ews-load token --sub NAME --jwt-hs256-secret-file $jwt_file"
elif [[ -n $jwt_file ]]; then
    echo "client tokens: build ews-load (cargo build -p ews-load), then ews-load token --sub NAME --jwt-hs256-secret-file $jwt_file"
fi
echo "(Ctrl-C stops everything)"

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
