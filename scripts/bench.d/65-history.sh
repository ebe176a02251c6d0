#!/usr/bin/env bash
# History's cost on topic fan-out: $EWS_BENCH_SUBSCRIBERS (10,000) subscribers of one topic on one
# worker, published to $EWS_BENCH_MESSAGES (50) times, one message every $EWS_BENCH_INTERVAL_MS
# (100) ms, in one run three ways:
#   off    - the topic keeps no history (the baseline);
#   memory - the topic keeps history in the worker's memory (a standalone worker);
#   redis  - the topic keeps history in redis-server on this machine (a cluster's engine).
# Every publish with history is appended first, then delivered stamped with its offset. Figures:
# publish-to-receipt p50/p99, pushes received per second, and each with-history run against off
# (target: p99 at most 1.3x). Release builds; raw ews-load JSON under bench-results/.
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
SOURCE_IPS="${EWS_BENCH_SOURCE_IPS:-127.0.0.1-127.0.0.20}"
OUT="$ROOT/bench-results/history-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((SUBS + 500)) ]; then
  echo "open-file limit $(ulimit -n) is below $SUBS connections + headroom" >&2
  exit 1
fi
bash scripts/tools/redis.sh

echo "building release binaries..."
cargo build --release --locked -p ews-worker -p ews-load --bins >"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }
REL="$CARGO_TARGET_DIR/release"

trap stop_all EXIT

TOKEN="bench-admin-$RANDOM$RANDOM"
run() { # run NAME [worker flags]
  local p a
  p="$(free_port)"; a="$(free_port)"
  "$REL/ews-worker" --node-id "$1" --listen "127.0.0.1:$p" --admin-listen "127.0.0.1:$a" \
    --admin-token "$TOKEN" --no-auth --topics-open --sink stdout "${@:2}" >"$OUT/$1.log" 2>&1 &
  pids+=($!)
  wait_port "$p" || { echo "$1 did not start"; cat "$OUT/$1.log"; exit 1; }
  echo "[$1] $SUBS subscribers, $MESSAGES messages"
  "$REL/ews-load" fanout --urls "ws://127.0.0.1:$p/ws" --publish-addr "127.0.0.1:$a" \
    --admin-token "$TOKEN" -n "$SUBS" --messages "$MESSAGES" --interval-ms "$INTERVAL_MS" \
    --source-ips "$SOURCE_IPS" --connect-concurrency 128 --json | tee "$OUT/$1.txt"
  tail -n 1 "$OUT/$1.txt" >"$OUT/$1.json"
  stop_all
}

run off
run memory --history-topics 'bench.*' --history-size 1000
rport="$(free_port)"
redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
redis_pid=$!
wait_port "$rport" || { echo "redis-server did not start"; cat "$OUT/redis.log"; exit 1; }
run redis --history-topics 'bench.*' --history-size 1000 --history-redis-url "redis://127.0.0.1:$rport"
kill "$redis_pid" 2>/dev/null || true

python3 - "$OUT" <<'PY' | tee "$OUT/table.md"
import json, sys
d = sys.argv[1]
r = {n: json.load(open(f"{d}/{n}.json")) for n in ("off", "memory", "redis")}
rows = [
    ("pushes received / expected", lambda x: f'{x["received"]}/{x["expected"]}', "{}"),
    ("publish to receipt p50 (ms)", lambda x: x["latency"]["p50_us"] / 1000, "{:.1f}"),
    ("publish to receipt p99 (ms)", lambda x: x["latency"]["p99_us"] / 1000, "{:.1f}"),
    ("pushes received per second", lambda x: x["pushes_per_sec"], "{:.0f}"),
]
print("| figure | no history | history in memory | history in redis-server | memory / off | redis / off |")
print("|---|---|---|---|---|---|")
for title, f, fmt in rows:
    o, m, s = f(r["off"]), f(r["memory"]), f(r["redis"])
    ratio = lambda a, b: f"{a / b:.2f}x" if isinstance(a, float) and b else ""
    print(f"| {title} | {fmt.format(o)} | {fmt.format(m)} | {fmt.format(s)} | {ratio(m, o)} | {ratio(s, o)} |")
PY
echo "raw results: $OUT"
