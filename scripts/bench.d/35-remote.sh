#!/usr/bin/env bash
# Remote-session benchmark: echo round trips through worker-1 with the handler on worker-1 itself
# (local, the baseline) and on worker-2 (remote: one HTTP/2 stream per session over the signed
# node link, every message tagged), in one run, on the same load:
#   $EWS_BENCH_ECHO_CONNECTIONS (100) connections x $EWS_BENCH_ECHO_MESSAGES (1000) round trips
#   of $EWS_BENCH_MESSAGE_SIZE (32) bytes, back to back.
# The remote route is `echo@least-loaded`; worker-1 carries $EWS_BENCH_IDLE (500) idle clients
# throughout, so least-loaded always picks worker-2 (checked: every echo session closed on
# worker-1 must have been a remote one). Figures: messages per second and round-trip p50/p99,
# with the remote / local ratio and the latency the hop adds. Release builds; raw ews-load JSON
# under bench-results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
# shellcheck source=bench/lib.sh
source bench/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
CONNS="${EWS_BENCH_ECHO_CONNECTIONS:-100}"
MSGS="${EWS_BENCH_ECHO_MESSAGES:-1000}"
SIZE="${EWS_BENCH_MESSAGE_SIZE:-32}"
IDLE="${EWS_BENCH_IDLE:-500}"
OUT="$ROOT/bench-results/remote-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"

echo "building release binaries..."
cargo build --release --locked --features ews-worker/full -p ews-worker -p ews-leader -p ews-load --bins >"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }
REL="$CARGO_TARGET_DIR/release"

trap stop_all EXIT

metric() { # metric ADMIN_PORT NAME: a sample's value from /metrics (0 if absent)
  curl -fsS "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { v = $2 } END { print v + 0 }'
}

SECRET="bench-$RANDOM$RANDOM"
TOKEN="bench-admin-$RANDOM$RANDOM"
COMMON=(--cluster-secret "$SECRET" --gossip-interval-ms 200)
i1="$(free_udp_tcp_port)"; i2="$(free_udp_tcp_port)"
for l in 1 2; do
  own="i$l"; peer="i$((3 - l))"
  "$REL/ews-leader" --node-id "leader-$l" --internal-listen "127.0.0.1:${!own}" --seeds "127.0.0.1:${!peer}" \
    --admin-listen "127.0.0.1:$(free_port)" --admin-token "$TOKEN" "${COMMON[@]}" >"$OUT/leader-$l.log" 2>&1 &
  pids+=($!)
done
ports=(); admins=()
for w in 1 2; do
  p="$(free_port)"; a="$(free_port)"
  "$REL/ews-worker" --node-id "worker-$w" --listen "127.0.0.1:$p" --admin-listen "127.0.0.1:$a" \
    --admin-token "$TOKEN" --no-auth --sink stdout --rebalance-rate 0 \
    --routes /ws=ingest,/echo=echo,/remote=echo@least-loaded \
    --seeds "127.0.0.1:$i1,127.0.0.1:$i2" --internal-listen "127.0.0.1:$(free_udp_tcp_port)" "${COMMON[@]}" \
    >"$OUT/worker-$w.log" 2>&1 &
  pids+=($!)
  wait_port "$p" || { echo "worker-$w did not start"; cat "$OUT/worker-$w.log"; exit 1; }
  ports+=("$p"); admins+=("$a")
done
# Until worker-1 sees worker-2 serving.
for _ in $(seq 100); do
  n="$(curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:${admins[0]}/members" \
    | python3 -c 'import json,sys; v=json.load(sys.stdin); print(sum(1 for m in v["members"] if m["role"]=="worker" and m["verified"] and m["reachable"] and m["status"]=="up"))')"
  [ "$n" = 2 ] && break
  sleep 0.2
done
[ "$n" = 2 ] || { echo "worker-1 never saw worker-2"; exit 1; }

"$REL/ews-load" idle --url "ws://127.0.0.1:${ports[0]}/ws" -n "$IDLE" --hold-secs 3600 \
  >"$OUT/idle.log" 2>&1 &
idle_pid=$!
pids+=("$idle_pid")
for _ in $(seq 100); do
  [ "$(metric "${admins[0]}" ews_connections_active)" -ge "$IDLE" ] && break
  sleep 0.1
done
sleep 2 # the load reaches worker-1's view of itself (sampled, then probed every gossip round)

echo_run() { # echo_run NAME PATH
  echo "[$1] $CONNS connections x $MSGS round trips of $SIZE bytes"
  "$REL/ews-load" echo --url "ws://127.0.0.1:${ports[0]}$2" -n "$CONNS" --messages "$MSGS" \
    --message-size "$SIZE" --json | tee "$OUT/$1.txt"
  tail -n 1 "$OUT/$1.txt" >"$OUT/$1.json"
}
echo_run local /echo
before="$(metric "${admins[0]}" 'ews_remote_sessions_closed_total{why="here"}')"
echo_run remote /remote
sleep 1
after="$(metric "${admins[0]}" 'ews_remote_sessions_closed_total{why="here"}')"
hosted=$((after - before))
echo "remote sessions run on worker-2: $hosted of $CONNS"
[ "$hosted" = "$CONNS" ] || { echo "least-loaded kept some sessions on worker-1"; exit 1; }
stop_all

python3 - "$OUT" <<'PY' | tee "$OUT/table.md"
import json, sys
d = sys.argv[1]
r = {n: json.load(open(f"{d}/{n}.json")) for n in ("local", "remote")}
rows = [
    ("round trips", lambda x: x["echoed"], "{}"),
    ("messages per second", lambda x: x["messages_per_sec"], "{:.0f}"),
    ("round trip p50 (ms)", lambda x: x["round_trip"]["p50_us"] / 1000, "{:.2f}"),
    ("round trip p99 (ms)", lambda x: x["round_trip"]["p99_us"] / 1000, "{:.2f}"),
]
print("| figure | handler on the socket's worker | handler on another worker | remote / local |")
print("|---|---|---|---|")
for title, f, fmt in rows:
    l, m = f(r["local"]), f(r["remote"])
    ratio = f"{m / l:.2f}x" if isinstance(l, float) and l else ""
    print(f"| {title} | {fmt.format(l)} | {fmt.format(m)} | {ratio} |")
added = (r["remote"]["round_trip"]["p50_us"] - r["local"]["round_trip"]["p50_us"]) / 1000
print(f"\nadded by the hop at the median: {added:.2f} ms")
PY
echo "raw results: $OUT"
