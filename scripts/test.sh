#!/usr/bin/env bash
# The one test entry: installs what the tests need on a fresh machine, then runs every check and
# test. `.ci/run` calls exactly this. Prints `summary: N passed, M failed` last.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Two cores here: bounded parallelism for the build and for the tests that start processes.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
TEST_THREADS="${EWS_TEST_THREADS:-2}"

log() { printf '\n==> %s\n' "$*"; }
passed=0
failed=0
count_cargo() { # sums the `test result:` lines of a cargo test log
  local p f
  p=$(grep -E '^test result:' "$1" | sed -E 's/.* ([0-9]+) passed.*/\1/' | paste -sd+ - | bc 2>/dev/null || echo 0)
  f=$(grep -E '^test result:' "$1" | sed -E 's/.* ([0-9]+) failed.*/\1/' | paste -sd+ - | bc 2>/dev/null || echo 0)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
}
step() { # step NAME CMD...: a pass/fail check that is not a cargo test run
  log "$1"; shift
  if "$@"; then passed=$((passed + 1)); else echo "FAILED: $*"; failed=$((failed + 1)); fi
}

log "installing test tools"
bash scripts/setup-tools.sh

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo build (all binaries, used by integration tests)"
cargo build --workspace --bins --locked

log "cargo test"
testlog="$(mktemp)"
set +e
cargo test --workspace --locked -- --test-threads="$TEST_THREADS" 2>&1 | tee "$testlog"
cargo_rc=${PIPESTATUS[0]}
set -e
count_cargo "$testlog"
[ "$cargo_rc" = 0 ] || { echo "cargo test failed (exit $cargo_rc)"; failed=$((failed + (failed == 0 ? 1 : 0))); }

for extra in scripts/test.d/*.sh; do
  [ -e "$extra" ] || continue
  step "$(basename "$extra" .sh)" bash "$extra"
done

echo
echo "summary: $passed passed, $failed failed"
[ "$failed" = 0 ]
