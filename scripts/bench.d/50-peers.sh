#!/usr/bin/env bash
# Product-peer benchmark: ews-worker against sockudo (a Rust Pusher-protocol server with
# channels, what teams pick instead of us), same machine, same loads, one run:
#   idle    - $EWS_BENCH_CONNECTIONS (15,000) idle connections: server RSS per connection and
#             handshakes per second (ews-worker with a JWT per client, sockudo's public
#             connection needs none);
#   fan-out - $EWS_BENCH_SUBSCRIBERS (10,000) subscribers of one topic / public channel,
#             $EWS_BENCH_MESSAGES (50) publishes every $EWS_BENCH_INTERVAL_MS (100) ms through
#             each server's publish API (ours: the admin API; sockudo: the signed Pusher events
#             API): publish-to-receipt p50/p99 and pushes per second.
# Both single node, in-memory (sockudo's `local` adapter; ews-worker with the stdout sink), no
# metrics exporters. sockudo is built into the tools directory by bench/sockudo.sh on first use
# (long). Output: a table with ews / sockudo ratios; raw JSON under bench-results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
# shellcheck source=bench/lib.sh
source bench/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
CONNS="${EWS_BENCH_CONNECTIONS:-15000}"
SUBS="${EWS_BENCH_SUBSCRIBERS:-10000}"
MESSAGES="${EWS_BENCH_MESSAGES:-50}"
INTERVAL_MS="${EWS_BENCH_INTERVAL_MS:-100}"
SOURCE_IPS="${EWS_BENCH_SOURCE_IPS:-127.0.0.1-127.0.0.20}"
OUT="$ROOT/bench-results/peers-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((CONNS + 500)) ]; then
  echo "open-file limit $(ulimit -n) is below $CONNS connections + headroom" >&2
  exit 1
fi

echo "building release binaries and sockudo..."
cargo build --release --locked --features ews-worker/full -p ews-worker -p ews-load --bins >"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }
SOCKUDO="$(bash bench/sockudo.sh)"
REL="$CARGO_TARGET_DIR/release"
LOAD="$REL/ews-load"

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

SECRET="bench-$RANDOM$RANDOM"
TOKEN="bench-admin-$RANDOM$RANDOM"
APP_KEY="bench-key"
APP_SECRET="bench-secret-$RANDOM$RANDOM"

start_ews() { # start_ews PUBLIC ADMIN
  "$REL/ews-worker" --node-id ews --listen "127.0.0.1:$1" --admin-listen "127.0.0.1:$2" \
    --admin-token "$TOKEN" --jwt-hs256-secret "$SECRET" --topics-open --sink stdout \
    >"$OUT/ews.log" 2>&1 &
  server_pid=$!
  wait_port "$1" || { echo "ews-worker did not start"; cat "$OUT/ews.log"; exit 1; }
}
start_sockudo() { # start_sockudo PORT
  # Limits raised past the load (its defaults allow 100 connections and 100 events a second
  # per app); the in-memory adapter; no metrics port.
  HOST=127.0.0.1 PORT="$1" METRICS_ENABLED=false RATE_LIMITER_ENABLED=false \
    SOCKUDO_DEFAULT_APP_ID=bench SOCKUDO_DEFAULT_APP_KEY="$APP_KEY" \
    SOCKUDO_DEFAULT_APP_SECRET="$APP_SECRET" SOCKUDO_DEFAULT_APP_ENABLED=true \
    SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=1000000 SOCKUDO_MAX_CONNECTIONS=1000000 \
    SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=1000000 \
    SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND=1000000 \
    "$SOCKUDO" >"$OUT/sockudo.log" 2>&1 &
  server_pid=$!
  wait_port "$1" || { echo "sockudo did not start"; cat "$OUT/sockudo.log"; exit 1; }
}
idle() { # idle NAME URL [ews-load flags]
  local name="$1" url="$2"; shift 2
  echo "[$name] idle: $CONNS connections"
  "$LOAD" idle --url "$url" -n "$CONNS" --source-ips "$SOURCE_IPS" --connect-concurrency 128 \
    --hold-secs 6 --settle-ms 3000 --server-pid "$server_pid" --max-error-ratio 0.001 --json "$@" \
    | tee "$OUT/$name.idle.txt"
  tail -n 1 "$OUT/$name.idle.txt" >"$OUT/$name.idle.json"
}
fanout() { # fanout NAME URL PUBLISH_ADDR [ews-load flags]
  local name="$1" url="$2" addr="$3"; shift 3
  echo "[$name] fan-out: $SUBS subscribers, $MESSAGES messages"
  "$LOAD" fanout --urls "$url" --publish-addr "$addr" -n "$SUBS" --messages "$MESSAGES" \
    --interval-ms "$INTERVAL_MS" --source-ips "$SOURCE_IPS" --connect-concurrency 128 --json "$@" \
    | tee "$OUT/$name.fanout.txt"
  tail -n 1 "$OUT/$name.fanout.txt" >"$OUT/$name.fanout.json"
}

p="$(free_port)"; a="$(free_port)"
start_ews "$p" "$a"
idle ews "ws://127.0.0.1:$p/ws" --jwt-hs256-secret "$SECRET"
fanout ews "ws://127.0.0.1:$p/ws" "127.0.0.1:$a" --admin-token "$TOKEN" --jwt-hs256-secret "$SECRET"
stop_server

p="$(free_port)"
start_sockudo "$p"
url="ws://127.0.0.1:$p/app/$APP_KEY?protocol=7&client=ews-load&version=1.0"
idle sockudo "$url"
fanout sockudo "$url" "127.0.0.1:$p" --protocol pusher --pusher-app-id bench \
  --pusher-key "$APP_KEY" --pusher-secret "$APP_SECRET"
stop_server

python3 - "$OUT" "$CONNS" <<'PY' | tee "$OUT/table.md"
import json, sys
d, conns = sys.argv[1], sys.argv[2]
def load(name, kind):
    return json.load(open(f"{d}/{name}.{kind}.json"))
def figures(name):
    idle, fan = load(name, "idle"), load(name, "fanout")
    spc = idle.get("server_per_connection") or {}
    return [
        (f"RSS per idle connection at {conns} (KiB)", spc.get("rss_delta_per_unit_bytes", float("nan")) / 1024, "{:.2f}"),
        ("handshakes per second", idle["connect"]["handshakes_per_sec"], "{:.0f}"),
        ("fan-out pushes received / expected", f'{fan["received"]}/{fan["expected"]}', "{}"),
        ("fan-out publish to receipt p50 (ms)", fan["latency"]["p50_us"] / 1000, "{:.1f}"),
        ("fan-out publish to receipt p99 (ms)", fan["latency"]["p99_us"] / 1000, "{:.1f}"),
        ("fan-out pushes per second", fan["pushes_per_sec"], "{:.0f}"),
    ]
e, s = figures("ews"), figures("sockudo")
print("| figure | ews-worker | sockudo | ews / sockudo |")
print("|---|---|---|---|")
for (title, x, fmt), (_, y, _) in zip(e, s):
    ratio = f"{x / y:.2f}x" if isinstance(x, float) and isinstance(y, float) and y else ""
    print(f"| {title} | {fmt.format(x)} | {fmt.format(y)} | {ratio} |")
PY
echo "raw results: $OUT"
