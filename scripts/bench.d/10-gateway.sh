#!/usr/bin/env bash
# Gateway benchmark: ews-worker against two baselines on the same load, in one run:
#   bare  - the plainest tokio-tungstenite echo server with tungstenite's DEFAULT config
#           (load/examples/bare-echo.rs)
#   tuned - the same server with the worker's memory settings: a 512-byte read buffer and no
#           write buffer (bare-echo --read-buffer-bytes 512)
#   node  - node's `ws` echo server (bench/ws-echo.js, `ws` pinned in bench/package-lock.json)
# Figures: server RSS per idle connection at $EWS_BENCH_CONNECTIONS connections (authenticated
# for ews-worker), handshakes per second (authenticated for ews-worker), echo messages per second
# and server CPU-µs per echoed message. Release builds. Output: a table with ratios vs the
# baselines, plus the raw JSON summaries under bench-results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
CONNS="${EWS_BENCH_CONNECTIONS:-15000}"
ECHO_CONNS="${EWS_BENCH_ECHO_CONNECTIONS:-100}"
ECHO_MSGS="${EWS_BENCH_ECHO_MESSAGES:-1000}"
SOURCE_IPS="${EWS_BENCH_SOURCE_IPS:-127.0.0.1-127.0.0.20}"
OUT="$ROOT/bench-results/gateway-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
# Each connection is a file on both sides: the servers and ews-load need soft = hard.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((CONNS + 500)) ]; then
  echo "open-file limit $(ulimit -n) is below $CONNS connections + headroom" >&2
  exit 1
fi

echo "building release binaries and installing node ws..."
cargo build --release --locked --features ews-worker/full -p ews-worker --bins >"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }
cargo build --release --locked -p ews-load --bins --examples >>"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }
(cd bench && npm ci --no-audit --no-fund --loglevel=error) >"$OUT/npm.log" 2>&1 \
  || { cat "$OUT/npm.log"; exit 1; }
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s)
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# run_server NAME WS_PATH ECHO_PATH AUTH CMD...: starts the server, runs the idle and echo loads
# against it, stops it. AUTH=1 mints a JWT per client.
run_server() {
  local name="$1" ws_path="$2" echo_path="$3" auth="$4"; shift 4
  local port; port="$(free_port)"
  "$@" "$port" >"$OUT/$name.server.log" 2>&1 &
  server_pid=$!
  wait_port "$port" || { echo "$name did not start:"; cat "$OUT/$name.server.log"; exit 1; }
  local auth_args=()
  [ "$auth" = 1 ] && auth_args=(--jwt-hs256-secret "$SECRET")
  echo "[$name] idle: $CONNS connections"
  "$LOAD" idle --url "ws://127.0.0.1:$port$ws_path" -n "$CONNS" --source-ips "$SOURCE_IPS" \
    --connect-concurrency 128 --hold-secs 6 --settle-ms 3000 --server-pid "$server_pid" \
    --max-error-ratio 0.001 --json "${auth_args[@]}" | tee "$OUT/$name.idle.txt"
  echo "[$name] echo: $ECHO_CONNS connections x $ECHO_MSGS messages"
  "$LOAD" echo --url "ws://127.0.0.1:$port$echo_path" -n "$ECHO_CONNS" --messages "$ECHO_MSGS" \
    --server-pid "$server_pid" --json "${auth_args[@]}" | tee "$OUT/$name.echo.txt"
  tail -n 1 "$OUT/$name.idle.txt" >"$OUT/$name.idle.json"
  tail -n 1 "$OUT/$name.echo.txt" >"$OUT/$name.echo.json"
  stop_server
}

SECRET="bench-$RANDOM$RANDOM"
# The standalone worker keeps any built-in queue data with the results, not in the repo.
export EWS_QUEUE_DIR="$OUT/queue"
# Each starter execs, so $! is the server itself (its /proc is what ews-load reads).
worker() {
  exec "$REL/ews-worker" --standalone --listen "127.0.0.1:$1" --admin-listen "127.0.0.1:$(free_port)" \
    --jwt-hs256-secret "$SECRET" --sink file --sink-file "$OUT/events.jsonl"
}
bare() { exec "$REL/examples/bare-echo" --listen "127.0.0.1:$1"; }
tuned() { exec "$REL/examples/bare-echo" --listen "127.0.0.1:$1" --read-buffer-bytes 512; }
node_ws() { exec node bench/ws-echo.js "$1"; }

run_server ews-worker /ws /echo 1 worker
run_server bare / / 0 bare
run_server tuned / / 0 tuned
run_server node / / 0 node_ws

echo
python3 bench/gateway_table.py "$OUT" "$CONNS" | tee "$OUT/table.md"
echo "raw results: $OUT"
