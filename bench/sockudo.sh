#!/usr/bin/env bash
# Builds sockudo (a Rust Pusher-protocol server with channels, the product peer of
# scripts/bench.d/50-peers.sh) into the tools directory: $EWS_TOOLS_DIR/sockudo/bin/sockudo.
# Only the benchmark calls this, never the tests: it is a long build (about 20 minutes on two
# cores). Pinned version, the lock file it was published with, the in-memory adapter only (no
# Redis, NATS or OpenTelemetry). Idempotent. Prints the binary's path.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "$0")/../scripts/tools/lib.sh"
VERSION="5.2.0"
dir="$EWS_TOOLS_DIR/sockudo"
stamp="$dir/.ews-version"
if [ -x "$dir/bin/sockudo" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$VERSION" ]; then
  echo "$dir/bin/sockudo"
  exit 0
fi
# Its metrics exporter compiles protobuf definitions at build time.
if ! command -v protoc >/dev/null; then
  log "installing protobuf-compiler (sockudo's build needs protoc)"
  apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null
fi
log "building sockudo $VERSION into $dir (a long build)"
mkdir -p "$dir"
CARGO_TARGET_DIR="$dir/target" CARGO_PROFILE_RELEASE_DEBUG=0 \
  cargo install sockudo --version "$VERSION" --locked --no-default-features --features local \
  --root "$dir" >"$dir/build.log" 2>&1 || { tail -40 "$dir/build.log" >&2; exit 1; }
rm -rf "$dir/target" # gigabytes of intermediate files; the binary is all the benchmark needs
echo "$VERSION" >"$stamp"
echo "$dir/bin/sockudo"
