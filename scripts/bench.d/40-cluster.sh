#!/usr/bin/env bash
# Cluster membership timings: the multi-process lifecycle test (2 leaders + 3 workers on
# loopback, real UDP gossip) run at a 200 ms gossip interval (the baseline) and at the default
# 500 ms, printing for each: convergence from process start, kill -9 detection by every peer,
# SIGTERM `leaving` seen by every peer, active-leader failover, and a new worker's join through
# the surviving leader; plus the ratio 500 ms / 200 ms.
#   EWS_BENCH_PROFILE=debug scripts/bench.sh cluster   # skip the release build
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
PROFILE="${EWS_BENCH_PROFILE:-release}"
OUT="$ROOT/bench-results/cluster-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"

flags=()
[ "$PROFILE" = release ] && flags=(--release)
echo "building $PROFILE binaries..."
cargo build "${flags[@]}" --locked --features ews-worker/full -p ews-worker -p ews-leader --bins >"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }

run() { # run GOSSIP_MS: the [timing] lines of one lifecycle run
  EWS_TEST_GOSSIP_MS="$1" cargo test "${flags[@]}" --locked -p ews-leader --test cluster \
    cluster_forms -- --nocapture >"$OUT/gossip-$1.log" 2>&1 \
    || { tail -40 "$OUT/gossip-$1.log"; return 1; }
  grep '^\[timing\]' "$OUT/gossip-$1.log"
}

# "[timing] <what> after|in <duration>" -> seconds, per line, in a fixed order.
seconds() {
  sed -E 's/.* (after|in) ([0-9.]+)(ms|s|µs).*/\2 \3/' |
    awk '{ v = $1; if ($2 == "ms") v /= 1000; if ($2 == "µs") v /= 1000000; printf "%.2f\n", v }'
}

base="$(run 200)"
dflt="$(run 500)"
labels=("convergence (5 nodes)" "kill -9 detected by all" "SIGTERM seen leaving by all" \
  "active leader failover" "new worker joins")
mapfile -t b < <(printf '%s\n' "$base" | seconds)
mapfile -t d < <(printf '%s\n' "$dflt" | seconds)
printf '%-30s %12s %12s %8s\n' "figure (seconds)" "200 ms" "500 ms" "ratio"
for i in "${!labels[@]}"; do
  awk -v l="${labels[$i]}" -v x="${b[$i]:-nan}" -v y="${d[$i]:-nan}" \
    'BEGIN { r = (x > 0) ? sprintf("%.1fx", y / x) : "-"; printf "%-30s %12s %12s %8s\n", l, x, y, r }'
done
echo "raw logs: $OUT"
