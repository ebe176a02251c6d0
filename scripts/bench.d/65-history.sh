#!/usr/bin/env bash
# History's cost on topic fan-out: $EWS_BENCH_SUBSCRIBERS (10,000) subscribers of one topic on one
# worker, published to $EWS_BENCH_MESSAGES (50) times, one message every $EWS_BENCH_INTERVAL_MS
# (100) ms, in one run three ways:
#   off    - the topic keeps no history (the baseline);
#   memory - the topic keeps history in the worker's memory (a standalone worker);
#   redis  - the topic keeps history in redis-server on this machine (a cluster's engine).
# Every publish with history is appended first, then delivered stamped with its offset. Figures:
# publish-to-receipt p50/p99, pushes received per second, and each with-history run against off
# (target: p99 at most 1.3x).
# Then what a move costs: $EWS_BENCH_RECOVER_CLIENTS (10,000) clients on 100 topics lose their
# worker - drained with SIGTERM (1012), history in redis-server, they come back to a second
# worker; and with history in memory, they drop their connections and come back to the same
# one - while $EWS_BENCH_MISSED (100) messages are published to every topic; then all reconnect
# at once and recover: time to the last recovered client, recoveries (history reads) and
# messages per second, per-client p50/p99, missing/duplicate/out of order (must be 0).
# Last, what a stream costs in memory (the stream_memory example): 10,000 streams of 100
# messages of 200 bytes in each engine. Release builds; raw JSON under bench-results/.
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
RECOVER_CLIENTS="${EWS_BENCH_RECOVER_CLIENTS:-10000}"
MISSED="${EWS_BENCH_MISSED:-100}"
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
cargo build --release --locked -p ews-history --example stream_memory >>"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }
REL="$CARGO_TARGET_DIR/release"

trap 'stop_all; [ -z "${redis_pid:-}" ] || kill "$redis_pid" 2>/dev/null || true' EXIT

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

worker() { # worker NAME PORT ADMIN [flags]: starts it in the background; its pid in $worker_pid
  "$REL/ews-worker" --node-id "$1" --listen "127.0.0.1:$2" --admin-listen "127.0.0.1:$3" \
    --admin-token "$TOKEN" --no-auth --topics-open --sink stdout --drain-seconds 5 "${@:4}" \
    >"$OUT/$1.log" 2>&1 &
  worker_pid=$!
  pids+=("$worker_pid")
  wait_port "$2" || { echo "$1 did not start"; cat "$OUT/$1.log"; exit 1; }
}
recover() { # recover NAME [ews-load recover flags]
  "$REL/ews-load" recover -n "$RECOVER_CLIENTS" --topics 100 --missed "$MISSED" \
    --admin-token "$TOKEN" --source-ips "$SOURCE_IPS" --connect-concurrency 128 --json "${@:2}" \
    | tee "$OUT/$1.txt"
  tail -n 1 "$OUT/$1.txt" >"$OUT/$1.json"
  stop_all
}
keep=(--history-topics 'bench.*' --history-size 1000)
echo "[recover-redis] $RECOVER_CLIENTS clients drained (SIGTERM), $MISSED messages missed each"
pa="$(free_port)"; aa="$(free_port)"; pb="$(free_port)"; ab="$(free_port)"
worker drained "$pa" "$aa" "${keep[@]}" --history-redis-url "redis://127.0.0.1:$rport"
drained_pid=$worker_pid
worker back "$pb" "$ab" "${keep[@]}" --history-redis-url "redis://127.0.0.1:$rport"
recover recover-redis --url "ws://127.0.0.1:$pa/ws" --reconnect-urls "ws://127.0.0.1:$pb/ws" \
  --publish-addr "127.0.0.1:$ab" --drain-pid "$drained_pid"
echo "[recover-memory] $RECOVER_CLIENTS clients drop their connections, $MISSED messages missed each"
pa="$(free_port)"; aa="$(free_port)"
worker memory-only "$pa" "$aa" "${keep[@]}"
recover recover-memory --url "ws://127.0.0.1:$pa/ws" --publish-addr "127.0.0.1:$aa"

echo "[stream memory] 10,000 streams of 100 messages of 200 bytes"
"$CARGO_TARGET_DIR/release/examples/stream_memory" --redis-url "redis://127.0.0.1:$rport" \
  | tee "$OUT/stream-memory.jsonl"
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

r = {n: json.load(open(f"{d}/{n}.json")) for n in ("recover-redis", "recover-memory")}
rows = [
    ("clients / topics / missed each", lambda x: f'{x["subscribers"]} / {x["topics"]} / {x["missed_per_client"]}'),
    ("away by (close codes)", lambda x: f'{x["away_by"]} ({", ".join(f"{k}: {v}" for k, v in x["close_codes"].items()) or "-"})'),
    ("recovered clients", lambda x: f'{x["recovered"]}'),
    ("not recovered", lambda x: f'{sum(x["unrecovered"].values())}'),
    ("messages recovered", lambda x: f'{x["messages_recovered"]}'),
    ("missing / duplicate / out of order", lambda x: f'{x["missing"]} / {x["duplicate"]} / {x["out_of_order"]}'),
    ("time to the last recovered client (s)", lambda x: f'{x["time_to_last_recovered_secs"]:.2f}'),
    ("recoveries (history reads) per second", lambda x: f'{x["recoveries_per_sec"]:.0f}'),
    ("messages recovered per second", lambda x: f'{x["messages_recovered_per_sec"]:.0f}'),
    ("reconnect to recovered p50 / p99 (ms)", lambda x: f'{x["time_to_recovered"]["p50_us"] / 1000:.0f} / {x["time_to_recovered"]["p99_us"] / 1000:.0f}'),
]
print()
print("| recovery | redis-server, drained to another worker | memory, dropped and back |")
print("|---|---|---|")
for title, f in rows:
    print(f"| {title} | {f(r['recover-redis'])} | {f(r['recover-memory'])} |")

m = {j["engine"]: j for j in map(json.loads, open(f"{d}/stream-memory.jsonl"))}
print()
print("| memory per stream (100 messages of 200 bytes) | in memory | redis-server |")
print("|---|---|---|")
for title, key in (("bytes per stream", "bytes_per_stream"), ("bytes per message", "bytes_per_message"),
                   ("beyond the message itself", "overhead_per_message")):
    print(f"| {title} | {m['memory'][key]:.0f} | {m.get('redis', {}).get(key, 0):.0f} |")
PY
echo "raw results: $OUT"
