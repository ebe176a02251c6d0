#!/usr/bin/env bash
# Backend-hook overhead: the same loads against one worker with and without a hook in the way, in
# one run. The backend is the example a team copies (examples/backend-http/backend.py, Python's
# standard library, checking every call's signature).
#   connect rate: $EWS_BENCH_HOOK_CONNECTIONS (2000) connections opened (64 at a time) on /ws
#     (no hooks) and on /chat (its `connect` hook asks the backend before every 101);
#   rpc round trips: $EWS_BENCH_HOOK_RPC_CONNECTIONS (50) connections x $EWS_BENCH_HOOK_RPCS (200)
#     rpcs, one at a time each, on /local (the `backend` handler with no hooks: the worker answers
#     no_method itself) and on /bot (its `rpc` hook: the backend answers).
# Figures: handshakes per second, rpcs per second and round-trip p50/p99, each as hooked / local.
# Release builds; raw ews-load JSON under bench-results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
# shellcheck source=bench/lib.sh
source bench/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
CONNS="${EWS_BENCH_HOOK_CONNECTIONS:-2000}"
RPC_CONNS="${EWS_BENCH_HOOK_RPC_CONNECTIONS:-50}"
RPCS="${EWS_BENCH_HOOK_RPCS:-200}"
OUT="$ROOT/bench-results/hooks-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"

echo "building release binaries..."
cargo build --release --locked --features ews-worker/full -p ews-worker -p ews-load --bins >"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }
REL="$CARGO_TARGET_DIR/release"

trap stop_all EXIT

SECRET="bench-$RANDOM$RANDOM"
printf '%s\n' "hook-$RANDOM$RANDOM$RANDOM" >"$OUT/hook-secret"
bport="$(free_port)"
python3 examples/backend-http/backend.py --port "$bport" --secret-file "$OUT/hook-secret" >"$OUT/backend.log" 2>&1 &
pids+=($!)
wait_port "$bport" || { echo "the example backend did not start"; cat "$OUT/backend.log"; exit 1; }
cat >"$OUT/hooks.json" <<JSON
{"backends": {"app": {"url": "http://127.0.0.1:$bport/hooks", "secretFile": "$OUT/hook-secret"}},
 "routes": {"/chat": {"backend": "app", "hooks": ["connect"]},
            "/bot": {"backend": "app", "hooks": ["rpc"]}}}
JSON
port="$(free_port)"
"$REL/ews-worker" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$(free_port)" \
  --jwt-hs256-secret "$SECRET" --sink stdout --rebalance-rate 0 \
  --routes /ws=ingest,/chat=ingest,/local=backend,/bot=backend --hooks-file "$OUT/hooks.json" \
  >"$OUT/worker.log" 2>&1 &
pids+=($!)
wait_port "$port" || { echo "the worker did not start"; cat "$OUT/worker.log"; exit 1; }

connect_run() { # connect_run NAME PATH
  echo "[$1] $CONNS connections on $2"
  "$REL/ews-load" idle --url "ws://127.0.0.1:$port$2" -n "$CONNS" --hold-secs 0 \
    --jwt-hs256-secret "$SECRET" --json | tee "$OUT/$1.txt"
  tail -n 1 "$OUT/$1.txt" >"$OUT/$1.json"
}
rpc_run() { # rpc_run NAME PATH
  echo "[$1] $RPC_CONNS connections x $RPCS rpcs on $2"
  "$REL/ews-load" echo --url "ws://127.0.0.1:$port$2" --rpc echo -n "$RPC_CONNS" --messages "$RPCS" \
    --jwt-hs256-secret "$SECRET" --json | tee "$OUT/$1.txt"
  tail -n 1 "$OUT/$1.txt" >"$OUT/$1.json"
}
connect_run connect-local /ws
connect_run connect-hooked /chat
rpc_run rpc-local /local
rpc_run rpc-hooked /bot
stop_all

python3 - "$OUT" <<'PY' | tee "$OUT/table.md"
import json, sys
d = sys.argv[1]
r = {n: json.load(open(f"{d}/{n}.json")) for n in ("connect-local", "connect-hooked", "rpc-local", "rpc-hooked")}
for name in r:
    if r[name].get("error_ratio", 0) > 0:
        sys.exit(f"{name}: errors {r[name].get('errors')}")
rows = [
    ("connections established", "connect", lambda x: x["connect"]["established"], "{}"),
    ("handshakes per second", "connect", lambda x: x["connect"]["handshakes_per_sec"], "{:.0f}"),
    ("handshake p50 (ms)", "connect", lambda x: x["connect"]["handshake_latency"]["p50_us"] / 1000, "{:.2f}"),
    ("handshake p99 (ms)", "connect", lambda x: x["connect"]["handshake_latency"]["p99_us"] / 1000, "{:.2f}"),
    ("rpcs answered", "rpc", lambda x: x["echoed"], "{}"),
    ("rpcs per second", "rpc", lambda x: x["messages_per_sec"], "{:.0f}"),
    ("rpc round trip p50 (ms)", "rpc", lambda x: x["round_trip"]["p50_us"] / 1000, "{:.2f}"),
    ("rpc round trip p99 (ms)", "rpc", lambda x: x["round_trip"]["p99_us"] / 1000, "{:.2f}"),
]
print("| figure | no hook (the worker answers) | through the example HTTP backend | hooked / local |")
print("|---|---|---|---|")
for title, kind, f, fmt in rows:
    l, h = f(r[f"{kind}-local"]), f(r[f"{kind}-hooked"])
    ratio = f"{h / l:.2f}x" if isinstance(l, float) and l else ""
    print(f"| {title} | {fmt.format(l)} | {fmt.format(h)} | {ratio} |")
PY
echo "raw results: $OUT"
