# Shared helpers for scripts/tools/*.sh: idempotent installers into $EWS_TOOLS_DIR (default
# <repo>/.tools). Source this file; do not run it.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
EWS_TOOLS_DIR="${EWS_TOOLS_DIR:-$REPO_ROOT/.tools}"
mkdir -p "$EWS_TOOLS_DIR"
export EWS_TOOLS_DIR REPO_ROOT

log() { printf '[tools] %s\n' "$*" >&2; }

# python_for VERSION: a python interpreter of that minor version (pyenv's, else the system's).
python_for() {
  local v="$1" p
  for p in "$HOME/.pyenv/versions/$v"*/bin/python "$(command -v "python$v" || true)"; do
    [ -n "$p" ] && [ -x "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}

# ensure_venv NAME PYTHON_VERSION PIP_ARGS...: a virtualenv at $EWS_TOOLS_DIR/NAME holding the
# given packages. Re-installs only when the requirement line changes.
ensure_venv() {
  local name="$1" pyver="$2"; shift 2
  local dir="$EWS_TOOLS_DIR/$name" stamp want py
  want="$*"
  stamp="$dir/.ews-requirements"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  py="$(python_for "$pyver")" || { log "no python $pyver for $name"; return 1; }
  log "creating venv $name ($py): $want"
  rm -rf "$dir"
  if [ "$pyver" = "2.7" ]; then
    "$py" -m virtualenv "$dir" >/dev/null 2>&1 || {
      "$py" -m pip install --quiet 'virtualenv<20.22' && "$py" -m virtualenv "$dir" >/dev/null; }
  else
    "$py" -m venv "$dir"
  fi
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  echo "$want" > "$stamp"
}
