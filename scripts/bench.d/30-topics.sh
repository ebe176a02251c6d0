#!/usr/bin/env bash
# Topic fan-out benchmark: $EWS_BENCH_SUBSCRIBERS (10,000) subscribers of one topic, published
# to $EWS_BENCH_MESSAGES (50) times, one message every $EWS_BENCH_INTERVAL_MS (100) ms, i.e.
# 100,000 pushes a second offered (ews-load's own 10,000 sockets share the 2 cores):
#   cluster - spread over 3 workers, published through a leader's front door (2 leaders, signed
#             node links, interest routing), what a backend in AWS does;
#   clients - the same cluster, the same messages published by $EWS_BENCH_PUBLISHERS (1,000)
#             clients of their own in turn (client `publish` frames, spread over the workers);
#   single  - the baseline: all on one worker, published on that worker's own admin port.
# Figures: publish-to-receipt latency p50/p99 and pushes received per second, with the
# cluster / single and clients / cluster ratios. Release builds; raw ews-load JSON under
# bench-results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
# shellcheck source=bench/lib.sh
source bench/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
SUBS="${EWS_BENCH_SUBSCRIBERS:-10000}"
MESSAGES="${EWS_BENCH_MESSAGES:-50}"
INTERVAL_MS="${EWS_BENCH_INTERVAL_MS:-100}"
PUBLISHERS="${EWS_BENCH_PUBLISHERS:-1000}"
SOURCE_IPS="${EWS_BENCH_SOURCE_IPS:-127.0.0.1-127.0.0.20}"
OUT="$ROOT/bench-results/topics-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((SUBS + PUBLISHERS + 500)) ]; then
  echo "open-file limit $(ulimit -n) is below $SUBS + $PUBLISHERS connections + headroom" >&2
  exit 1
fi

echo "building release binaries..."
cargo build --release --locked --features ews-worker/full -p ews-worker -p ews-leader -p ews-load --bins >"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }
REL="$CARGO_TARGET_DIR/release"

trap stop_all EXIT


SECRET="bench-$RANDOM$RANDOM"
TOKEN="bench-admin-$RANDOM$RANDOM"
COMMON=(--cluster-secret "$SECRET" --gossip-interval-ms 200)

start_leader() { # start_leader ID INTERNAL PEER ADMIN
  "$REL/ews-leader" --node-id "$1" --internal-listen "127.0.0.1:$2" --seeds "127.0.0.1:$3" \
    --admin-listen "127.0.0.1:$4" --admin-token "$TOKEN" "${COMMON[@]}" >"$OUT/$1.log" 2>&1 &
  pids+=($!)
}
start_worker() { # start_worker ID PUBLIC ADMIN [SEEDS]
  local seeds=()
  [ -n "${4:-}" ] && seeds=(--seeds "$4" "${COMMON[@]}" --internal-listen "127.0.0.1:$(free_udp_tcp_port)")
  "$REL/ews-worker" --node-id "$1" --listen "127.0.0.1:$2" --admin-listen "127.0.0.1:$3" \
    --admin-token "$TOKEN" --no-auth --topics-open --sink stdout --rebalance-rate 0 \
    "${seeds[@]}" >"$OUT/$1.log" 2>&1 &
  pids+=($!)
}
fanout() { # fanout NAME PUBLISH_ADDR URLS [ews-load flags]
  echo "[$1] $SUBS subscribers, $MESSAGES messages ${*:4}"
  "$REL/ews-load" fanout --urls "$3" --publish-addr "$2" --admin-token "$TOKEN" -n "$SUBS" \
    --messages "$MESSAGES" --interval-ms "$INTERVAL_MS" --source-ips "$SOURCE_IPS" --connect-concurrency 128 \
    "${@:4}" --json | tee "$OUT/$1.txt"
  tail -n 1 "$OUT/$1.txt" >"$OUT/$1.json"
}

# The cluster: 2 leaders, 3 workers.
i1="$(free_udp_tcp_port)"; i2="$(free_udp_tcp_port)"
a1="$(free_port)"; a2="$(free_port)"
start_leader leader-1 "$i1" "$i2" "$a1"
start_leader leader-2 "$i2" "$i1" "$a2"
urls=()
for w in 1 2 3; do
  p="$(free_port)"; a="$(free_port)"
  start_worker "worker-$w" "$p" "$a" "127.0.0.1:$i1,127.0.0.1:$i2"
  wait_port "$p" || { echo "worker-$w did not start"; cat "$OUT/worker-$w.log"; exit 1; }
  urls+=("ws://127.0.0.1:$p/ws")
done
wait_port "$a1" || { echo "leader-1 did not start"; cat "$OUT/leader-1.log"; exit 1; }
fanout cluster "127.0.0.1:$a1" "$(IFS=,; echo "${urls[*]}")"
# Beside it, in the same cluster: the same load published by clients.
fanout clients "127.0.0.1:$a1" "$(IFS=,; echo "${urls[*]}")" --publishers "$PUBLISHERS"
stop_all

# The baseline: one worker, no cluster.
p="$(free_port)"; a="$(free_port)"
start_worker single "$p" "$a"
wait_port "$p" || { echo "single did not start"; cat "$OUT/single.log"; exit 1; }
fanout single "127.0.0.1:$a" "ws://127.0.0.1:$p/ws"
stop_all

python3 - "$OUT" <<'PY' | tee "$OUT/table.md"
import json, sys
d = sys.argv[1]
r = {n: json.load(open(f"{d}/{n}.json")) for n in ("cluster", "clients", "single")}
rows = [
    ("subscribers", lambda x: x["subscribers"], "{}"),
    ("pushes received / expected", lambda x: f'{x["received"]}/{x["expected"]}', "{}"),
    ("publish to receipt p50 (ms)", lambda x: x["latency"]["p50_us"] / 1000, "{:.1f}"),
    ("publish to receipt p99 (ms)", lambda x: x["latency"]["p99_us"] / 1000, "{:.1f}"),
    ("pushes received per second", lambda x: x["pushes_per_sec"], "{:.0f}"),
]
print("| figure | 3 workers, admin publish via a leader | 3 workers, client publish | 1 worker, local publish | cluster / single | clients / cluster |")
print("|---|---|---|---|---|---|")
for title, f, fmt in rows:
    c, p, s = f(r["cluster"]), f(r["clients"]), f(r["single"])
    ratio = lambda a, b: f"{a / b:.2f}x" if isinstance(a, float) and b else ""
    print(f"| {title} | {fmt.format(c)} | {fmt.format(p)} | {fmt.format(s)} | {ratio(c, s)} | {ratio(p, c)} |")
PY
echo "raw results: $OUT"
