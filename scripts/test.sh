#!/usr/bin/env bash
# The one test entry: installs what the tests need on a fresh machine, then runs every check and
# test. `.ci/run` calls exactly this. Prints `summary: N passed, M failed, K skipped` last.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Two cores here: bounded parallelism for the build and for the tests that start processes.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
TEST_THREADS="${EWS_TEST_THREADS:-2}"
# A wedged step must fail the run, not hold CI until its own limit: each stage has a budget
# (seconds; a cold run takes about 10 minutes in all).
CARGO_TEST_BUDGET="${EWS_CARGO_TEST_BUDGET:-2400}"
STEP_BUDGET="${EWS_STEP_BUDGET:-1200}"

log() { printf '\n==> %s\n' "$*"; }
passed=0
failed=0
skipped=0
count_cargo() { # sums the `test result:` lines of a cargo test log (awk: bc is not on every machine)
  local p f
  p=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^passed/) s += $i } END { print s + 0 }' "$1")
  f=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed/) s += $i } END { print s + 0 }' "$1")
  passed=$((passed + p)); failed=$((failed + f))
}
step() { # step NAME CMD...: a pass/fail check that is not a cargo test run, within its budget.
  # Exit 77 means skipped (the step says why): it counts as neither passed nor failed.
  log "$1"; shift
  local rc=0 t0=$SECONDS
  timeout -k 30 "$STEP_BUDGET" "$@" || rc=$?
  echo "step took $((SECONDS - t0)) s"
  if [ "$rc" = 0 ]; then passed=$((passed + 1)); elif [ "$rc" = 77 ]; then
    echo "SKIPPED: $*"; skipped=$((skipped + 1))
  else
    [ "$rc" = 124 ] && { echo "TIMED OUT after ${STEP_BUDGET}s: $*"; reap_strays; }
    echo "FAILED: $*"; failed=$((failed + 1))
  fi
}
reap_strays() { # after a timeout: killed tests cannot stop the nodes and brokers they started
  # (each leads its own process group), so stop whatever still runs from this checkout's target
  # and tools dirs.
  pkill -KILL -f "$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/" || true
  pkill -KILL -f "${EWS_TOOLS_DIR:-$PWD/.tools}/" || true
}
disk() { # free space where the build goes: a full disk shows up as odd linker errors otherwise
  df -h "${CARGO_TARGET_DIR:-target}" 2>/dev/null | tail -1 | awk '{print "disk: " $4 " free of " $2 " (" $6 ")"}'
}

mkdir -p "${CARGO_TARGET_DIR:-target}"
disk
log "installing test tools"
bash scripts/setup-tools.sh

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The quick start's build (`cargo run --release -p ews-worker`): the worker without its optional
# sinks, which the workspace build above always has.
cargo clippy -p ews-worker --bins --locked -- -D warnings

# One build of the test feature set; it also links every binary the integration tests start
# (a separate `cargo build --bins` would compile the AWS stack a second time with other features).
log "cargo test --no-run (tests and all binaries)"
cargo test --workspace --locked --no-run
# Cargo links a package's binaries only for its own integration tests: a binary another
# package's tests start (as e2e starts ews-chat) is missing on a clean clone otherwise.
missing=$(cargo metadata --no-deps --format-version 1 --locked |
  python3 -c 'import json, sys; [print(t["name"]) for p in json.load(sys.stdin)["packages"] for t in p["targets"] if t["kind"] == ["bin"]]' |
  while read -r bin; do [ -x "${CARGO_TARGET_DIR:-target}/debug/$bin" ] || echo "$bin"; done)
[ -z "$missing" ] || { echo "binaries not linked by cargo test --no-run (give their package an integration test): $missing"; exit 1; }
disk

log "cargo test"
testlog="$(mktemp)"
set +e
timeout -k 30 "$CARGO_TEST_BUDGET" cargo test --workspace --locked --no-fail-fast -- --test-threads="$TEST_THREADS" 2>&1 | tee "$testlog"
cargo_rc=${PIPESTATUS[0]}
set -e
count_cargo "$testlog"
[ "$cargo_rc" = 124 ] && { echo "cargo test TIMED OUT after ${CARGO_TEST_BUDGET}s"; reap_strays; }
[ "$cargo_rc" = 0 ] || { echo "cargo test failed (exit $cargo_rc)"; failed=$((failed + (failed == 0 ? 1 : 0))); }

for extra in scripts/test.d/*.sh; do
  [ -e "$extra" ] || continue
  step "$(basename "$extra" .sh)" bash "$extra"
done

disk
echo
echo "summary: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
