#!/usr/bin/env bash
# Autobahn TestSuite fuzzingclient against the worker's echo route. Passes when no case is
# FAILED and every close behaviour is OK or INFORMATIONAL (compression cases 12.* and 13.* are
# UNIMPLEMENTED: permessage-deflate is not offered).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$PWD"
TOOLS="${EWS_TOOLS_DIR:-$REPO/.tools}"
WSTEST="$TOOLS/autobahn/bin/wstest"
[ -x "$WSTEST" ] || bash scripts/tools/autobahn.sh
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
BIN="$TARGET/debug/ews-worker"
[ -x "$BIN" ] || cargo build -p ews-worker --bins --locked

WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
APORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
# 9.* sends messages up to 16 MiB: allow that on this test node.
"$BIN" --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$APORT" --no-auth --sink stdout \
  --routes /echo=echo --max-message-bytes 20000000 --drain-seconds 1 >"$WORK/worker.log" 2>&1 &
WPID=$!
cleanup() { kill "$WPID" 2>/dev/null || true; wait "$WPID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
python3 - "$PORT" <<'PY'
import sys, time, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen("http://127.0.0.1:%s/info" % sys.argv[1], timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit("worker did not start")
PY

sed -e "s#@URL@#ws://127.0.0.1:$PORT/echo#" -e "s#@OUT@#$WORK/reports#" \
  worker/tests/autobahn/fuzzingclient.json >"$WORK/spec.json"
# About two minutes here; the bound turns a wedged fuzzer (a full disk once) into a clear failure.
(cd "$WORK" && timeout --foreground -k 10 "${EWS_AUTOBAHN_BUDGET:-900}" "$WSTEST" -m fuzzingclient -s spec.json >"$WORK/wstest.log" 2>&1) || {
  echo "wstest failed or ran past ${EWS_AUTOBAHN_BUDGET:-900}s"; tail -20 "$WORK/wstest.log"; exit 1; }

python3 - "$WORK/reports/index.json" <<'PY'
import json, sys
idx = json.load(open(sys.argv[1]))
bad, counts = [], {}
for agent, cases in idx.items():
    for case, r in cases.items():
        b, c = r["behavior"], r["behaviorClose"]
        counts[b] = counts.get(b, 0) + 1
        if b not in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED") or c not in ("OK", "INFORMATIONAL", "UNIMPLEMENTED"):
            bad.append((case, b, c))
print("autobahn:", sum(counts.values()), "cases", counts)
for case, b, c in sorted(bad):
    print("  bad case", case, b, c)
sys.exit(1 if bad else 0)
PY
