#!/usr/bin/env bash
# scripts/local-cluster.sh as a newcomer runs it, twice at once on this machine: each run must be
# its own cluster (its own ports and secrets; neither leader sees a node of the other run), and
# the token it prints must open a WebSocket on its worker. Uses the binaries `cargo test` built.
set -euo pipefail
cd "$(dirname "$0")/../.."
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

for run in a b; do
  EWS_LOCAL_DIR="$work/$run" EWS_GOSSIP_INTERVAL_MS=200 EWS_DRAIN_SECONDS=1 \
    EWS_BIN_DIR="${EWS_BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}" \
    bash scripts/local-cluster.sh 1 >"$work/$run.out" 2>&1 &
  pids+=("$!")
done

# members RUN: the node ids and gossip addresses leader-1 of RUN sees, one "id addr" per line
members() {
  local admin
  admin="$(awk '$1 == "leader-1" { print $3 }' "$work/$1.out")"
  [ -n "$admin" ] || return 0
  curl -sf -H "Authorization: Bearer $(cat "$work/$1/admin-token")" "$admin/members" 2>/dev/null |
    python3 -c 'import json, sys; [print(m["node_id"], m["gossip_addr"]) for m in json.load(sys.stdin)["members"]]' 2>/dev/null || true
}
internal_addrs() { awk '$1 ~ /^(leader|worker)-/ { print $NF }' "$work/$1.out" | sort; }

for run in a b; do
  for _ in $(seq 1 100); do
    [ "$(members "$run" | wc -l)" -ge 3 ] && break
    sleep 0.2
  done
  got="$(members "$run" | awk '{ print $2 }' | sort)"
  if [ "$(members "$run" | awk '{ print $1 }' | sort | tr '\n' ' ')" = "leader-1 leader-2 worker-1 " ] &&
    [ "$got" = "$(internal_addrs "$run")" ]; then
    ok "run $run: leader-1 sees exactly its own leader-1, leader-2 and worker-1"
  else
    fail "run $run: members $(members "$run" | tr '\n' ';') vs its nodes $(internal_addrs "$run" | tr '\n' ' ')"
    cat "$work/$run.out"
  fi
done
if [ -n "$(comm -12 <(internal_addrs a) <(internal_addrs b))" ]; then fail "the two runs share ports"; fi
cmp -s "$work/a/cluster-secret" "$work/b/cluster-secret" && fail "the two runs share a cluster secret" ||
  ok "each run has its own cluster secret"
[ "$(stat -c %a "$work/a/jwt-secret")" = 600 ] && ok "generated secrets are private (0600)" ||
  fail "jwt-secret mode $(stat -c %a "$work/a/jwt-secret")"

# The printed client URL carries a token the worker accepts; without it the worker refuses.
url="$(sed -n 's/^client alice (token valid 1 day): //p' "$work/a.out")"
upgrade() { # upgrade URL: the HTTP status of a WebSocket upgrade to URL
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 --http1.1 \
    -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
    -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "${1/ws:/http:}" || true
}
if [ -z "$url" ]; then
  fail "no client URL printed"
  cat "$work/a.out"
else
  [ "$(upgrade "$url")" = 101 ] && ok "the printed token opens a WebSocket" || fail "printed token refused: $(upgrade "$url")"
  [ "$(upgrade "${url%%\?*}")" = 401 ] && ok "without a token: 401" || fail "no token: $(upgrade "${url%%\?*}")"
fi
publish_cmd="$(grep -o 'curl -s -H .*/api/v1/publish.*' "$work/a.out" | head -1)"
if [ -n "$publish_cmd" ]; then
  ok "a ready publish command is printed"
  # It works as printed (the client is not connected: 404 is the answer that proves the token).
  fmt='%{http_code}'
  code="$(bash -c "${publish_cmd/curl -s/curl -s -o /dev/null -w $fmt}")"
  [ "$code" = 404 ] && ok "the printed publish command is let in" || fail "printed publish command: $code"
else
  fail "no publish command printed"
fi
# The leader's front door, as printed: let in, and it names the workers it asked.
door_cmd="$(grep -o 'curl -s -H .*/api/v1/publish.*' "$work/a.out" | sed -n 2p)"
if [ -n "$door_cmd" ]; then
  answer="$(bash -c "$door_cmd")"
  case "$answer" in
    *'"nodes":{"worker-1"'*) ok "the printed front-door publish reaches the workers through a leader" ;;
    *) fail "front-door publish answered: $answer" ;;
  esac
else
  fail "no front-door publish command printed"
fi
admin_b="$(awk '$1 == "leader-1" { print $3 }' "$work/b.out")"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$admin_b/members")" = 401 ] && ok "the admin API refuses a request without the token" ||
  fail "the admin API answered without the token"

echo "local cluster test: $fails failure(s)"
[ "$fails" = 0 ]
