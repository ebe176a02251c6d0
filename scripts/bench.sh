#!/usr/bin/env bash
# Runs every benchmark in scripts/bench.d/ in order and prints each one's figures. A benchmark
# that fails is reported by name and makes this script exit non-zero (after the others ran), so
# no failure goes unnoticed. Benchmarks are not tests: they are never run by scripts/test.sh.
#   scripts/bench.sh            # all of them
#   scripts/bench.sh gateway    # only those whose file name contains "gateway"
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
filter="${1:-}"
failed=()
ran=0
for b in scripts/bench.d/*.sh; do
  [ -e "$b" ] || continue
  name="$(basename "$b" .sh)"
  [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && continue
  printf '\n==> bench %s\n' "$name"
  ran=$((ran + 1))
  if ! bash "$b"; then
    echo "FAILED: bench $name"
    failed+=("$name")
  fi
done
echo
if [ "$ran" = 0 ]; then
  echo "bench: nothing matched ${filter:-scripts/bench.d/*.sh}"
  exit 1
fi
if [ "${#failed[@]}" -gt 0 ]; then
  echo "bench: $ran run, ${#failed[@]} failed: ${failed[*]}"
  exit 1
fi
echo "bench: $ran run, all succeeded"
