#!/usr/bin/env bash
# Pipeline benchmark (release builds, everything on loopback):
#   queue     - the built-in queue served by `ews-queue`, durability on (fsync before `sent`):
#               send + receive + delete messages per second with pipelined producers (group
#               commit), against the same broker with one send in flight per producer (one fsync
#               per message: the baseline measured in this run). Anchors from the seed: ElasticMQ
#               ~26k msg/s in memory, ~2.6k msg/s over REST.
#   e2e-queue - `ews-load verify` -> `ews-worker` (?ack=1) -> queue: acknowledged events per
#               second, then read back: missing must be 0.
#   e2e-kafka - the same into Kafka (Tansu, in-memory storage; needs scripts/tools/tansu.sh).
#   e2e-sqs   - the same into SQS, emulated by moto (needs scripts/tools/moto.sh). moto is a
#               single-threaded Python stand-in that slows down as its queue grows, so this run
#               is smaller (EWS_BENCH_SQS_EVENTS = 20 per client: 1 000 events; past a few
#               thousand stored messages moto takes seconds per call) and its figure is a floor,
#               reported as a ratio to the queue's; size real SQS from the AWS figures in
#               docs/pipeline.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
MESSAGES="${EWS_BENCH_QUEUE_MESSAGES:-200000}"
CONNS="${EWS_BENCH_E2E_CONNECTIONS:-50}"
EVENTS="${EWS_BENCH_E2E_EVENTS:-2000}"
SQS_EVENTS="${EWS_BENCH_SQS_EVENTS:-20}"
TOOLS="${EWS_TOOLS_DIR:-$ROOT/.tools}"
OUT="$ROOT/bench-results/pipeline-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
BIN="$CARGO_TARGET_DIR/release"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # wait_http HOST:PORT PATH
  for _ in $(seq 100); do
    curl -sf "http://$1$2" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "nothing serving http://$1$2" >&2
  return 1
}

echo "building release binaries..."
cargo build --release --locked --features ews-worker/full -p ews-queue --bins --examples -p ews-worker -p ews-load \
  >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }

# --- queue: durable send + receive + delete -------------------------------------------------
qport="$(port)"
"$BIN/ews-queue" --listen "127.0.0.1:$qport" --queue-dir "$OUT/queue" >"$OUT/queue.log" 2>&1 &
pids+=($!)
wait_http "127.0.0.1:$qport" /info
grouped="$("$BIN/examples/queue-bench" --url "ws://127.0.0.1:$qport/queue/bench" \
  --messages "$MESSAGES" --producers 4 --consumers 4 --window 1024)"
single="$("$BIN/examples/queue-bench" --url "ws://127.0.0.1:$qport/queue/single" \
  --messages 2000 --producers 1 --consumers 1 --window 1)"
echo "$grouped"
echo "$single"
rate() { sed -E 's/.* ([0-9]+) msg\/s$/\1/'; }
g="$(echo "$grouped" | rate)"
s="$(echo "$single" | rate)"
echo "queue durable msg/s: $g (group commit) vs $s (one fsync per message): x$(echo "scale=1; $g / $s" | bc)"
echo "  vs anchors: ElasticMQ in memory 26000 msg/s: x$(echo "scale=2; $g / 26000" | bc); ElasticMQ REST 2600 msg/s: x$(echo "scale=1; $g / 2600" | bc)"

# --- end to end: ews-load -> worker -> queue ----------------------------------------------------
worker() { # worker SINK_ARGS... ; sets wport
  wport="$(port)"
  "$BIN/ews-worker" --no-auth --listen "127.0.0.1:$wport" --admin-listen "127.0.0.1:$(port)" \
    --internal-listen "127.0.0.1:$(port)" "$@" >>"$OUT/worker.log" 2>&1 &
  pids+=($!)
  wait_http "127.0.0.1:$wport" /info
}
verify() { # verify READ_BACK_ARGS...
  "$BIN/ews-load" verify --url "ws://127.0.0.1:$wport/ws" --connections "$CONNS" \
    --messages "${PER_CLIENT:-$EVENTS}" --rate 0 --read-idle-ms 3000 "$@"
}
acked_rate() { sed -nE 's/.*acknowledged [0-9]+ \(([0-9]+)\/s.*/\1/p' "$1"; }
worker --sink queue --queue-url "ws://127.0.0.1:$qport/queue/events"
echo "e2e queue ($CONNS clients x $EVENTS events, acks on):"
verify --queue-url "ws://127.0.0.1:$qport/queue/events" | tee "$OUT/e2e-queue.txt"

# --- end to end: ews-load -> worker -> Kafka (Tansu) --------------------------------------------
if [ -x "$TOOLS/tansu/bin/tansu-broker" ]; then
  kport="$(port)"
  "$TOOLS/tansu/bin/tansu-broker" broker --listener-url "tcp://127.0.0.1:$kport" \
    --advertised-listener-url "tcp://127.0.0.1:$kport" --storage-engine memory://tansu/ \
    >"$OUT/tansu.log" 2>&1 &
  pids+=($!)
  sleep 1
  "$TOOLS/tansu/bin/tansu-broker" topic create events --broker "tcp://127.0.0.1:$kport" \
    --partitions 3 >/dev/null
  worker --sink kafka --kafka-brokers "127.0.0.1:$kport" --kafka-topic events
  echo "e2e kafka ($CONNS clients x $EVENTS events, acks on):"
  verify --kafka-brokers "127.0.0.1:$kport" --kafka-topic events | tee "$OUT/e2e-kafka.txt"
else
  echo "e2e kafka: skipped (run scripts/tools/tansu.sh)"
fi

# --- end to end: ews-load -> worker -> SQS (moto) -----------------------------------------------
if [ -x "$TOOLS/moto/bin/python" ]; then
  mport="$(port)"
  "$TOOLS/moto/bin/python" -m moto.server -H 127.0.0.1 -p "$mport" >"$OUT/moto.log" 2>&1 &
  pids+=($!)
  wait_http "127.0.0.1:$mport" /moto-api/
  export AWS_ENDPOINT_URL="http://127.0.0.1:$mport" AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
  sqs_url="$(curl -s -X POST "http://127.0.0.1:$mport/" \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/sqs/aws4_request' \
    -d 'Action=CreateQueue&QueueName=events&Version=2012-11-05' |
    sed -nE 's/.*<QueueUrl>([^<]+)<\/QueueUrl>.*/\1/p')"
  worker --sink sqs --sqs-queue-url "$sqs_url"
  echo "e2e sqs via moto ($CONNS clients x $SQS_EVENTS events, acks on):"
  PER_CLIENT="$SQS_EVENTS" verify --sqs-queue-url "$sqs_url" | tee "$OUT/e2e-sqs.txt"
  q="$(acked_rate "$OUT/e2e-queue.txt")"
  m="$(acked_rate "$OUT/e2e-sqs.txt")"
  [ -n "$q" ] && [ -n "$m" ] && [ "$q" -gt 0 ] &&
    echo "sqs (moto) acked events/s $m vs built-in queue $q: x$(echo "scale=3; $m / $q" | bc)"
  if [ -f "$OUT/e2e-kafka.txt" ]; then
    k="$(acked_rate "$OUT/e2e-kafka.txt")"
    [ -n "$k" ] && [ "$k" -gt 0 ] &&
      echo "sqs (moto) vs kafka (tansu) $k: x$(echo "scale=3; $m / $k" | bc)"
  fi
else
  echo "e2e sqs: skipped (run scripts/tools/moto.sh)"
fi
