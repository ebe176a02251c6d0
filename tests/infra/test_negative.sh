#!/usr/bin/env bash
# Feeds scripts/check-infra.sh a broken copy of the tree for each purpose-made mistake and requires
# that it fails, and fails in the check meant to catch that mistake.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A copy of what the checks read (sources included: the cross-check reads the Rust code).
pristine="$work/pristine"
mkdir -p "$pristine"
tar -C "$HERE" --exclude=./target --exclude=./.tools --exclude=./.git --exclude=./.cargo \
  --exclude='*/node_modules' --exclude=./bench-results -cf - . | tar -C "$pristine" -xf -

# mutate NAME FILE OLD NEW: a copy of the tree with the first OLD in FILE replaced by NEW.
mutate() {
  local dir="$work/$1"
  rm -rf "$dir"
  cp -a "$pristine" "$dir"
  python3 - "$dir/$2" "$3" "$4" <<'PY'
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
if old not in text:
    sys.exit(f"mutation anchor not found in {path}: {old!r}")
open(path, "w").write(text.replace(old, new, 1))
PY
  echo "$dir"
}

fails=0
# expect_failure NAME DIR CHECK...: check-infra must fail on DIR, with one of CHECKs among the failed.
expect_failure() {
  local name="$1" dir="$2" out summary c hit=""
  shift 2
  out="$work/$name.log"
  if bash "$HERE/scripts/check-infra.sh" "$dir" >"$out" 2>&1; then
    echo "FAIL: $name: check-infra passed on a broken tree"
    fails=$((fails + 1))
    return
  fi
  summary="$(tail -n 1 "$out")"
  for c in "$@"; do
    if grep -q "^infra: FAIL $c\$" "$out"; then hit="${hit:+$hit, }$c"; fi
  done
  if [ -n "$hit" ]; then
    echo "ok: $name: caught by $hit ($summary)"
  else
    echo "FAIL: $name: failed, but not in $* ($summary)"
    cat "$out"
    fails=$((fails + 1))
  fi
}

expect_failure ci-key-typo \
  "$(mutate ci-key-typo .gitlab-ci.yml $'\n  script:\n' $'\n  scirpt:\n')" gitlab-ci-schema
expect_failure deploy-from-any-branch \
  "$(mutate deploy-from-any-branch .gitlab-ci.yml \
    "    - if: '\$CI_COMMIT_BRANCH == \$CI_DEFAULT_BRANCH'" "    - if: '\$CI_COMMIT_BRANCH'")" pipeline-rules
expect_failure packer-unknown-argument \
  "$(mutate packer-unknown-argument packer/worker.pkr.hcl $'  ssh_username  = "ec2-user"\n' \
    $'  ssh_username  = "ec2-user"\n  ssh_usrname   = "ec2-user"\n')" packer
expect_failure iam-star-action \
  "$(mutate iam-star-action terraform/modules/scaling/main.tf \
    $'data "aws_iam_policy_document" "scaler" {\n  for_each = local.scalers\n' \
    $'data "aws_iam_policy_document" "scaler" {\n  for_each = local.scalers\n  statement {\n    actions   = ["*"]\n    resources = [var.asg_arn]\n  }\n')" \
  crosscheck checkov
expect_failure lambda-env-not-read \
  "$(mutate lambda-env-not-read terraform/modules/scaling/main.tf \
    $'lambda_env = merge({\n' $'lambda_env = merge({\n    FIRST_INVOCATION = "false"\n')" crosscheck

# expect_tf_failure NAME DIR SUMMARY WORD: `terraform validate` (tests/infra/terraform_moto.sh) must
# fail on DIR with the error SUMMARY naming WORD; where that step is skipped here, so is this test.
expect_tf_failure() {
  local name="$1" dir="$2" message="$3" word="$4" out="$work/$1.log" rc=0
  bash "$HERE/tests/infra/terraform_moto.sh" --validate-only "$dir" >"$out" 2>&1 || rc=$?
  if [ "$rc" = 77 ]; then
    echo "skipped: $name: $(grep -m1 SKIPPED "$out")"
  elif [ "$rc" = 0 ]; then
    echo "FAIL: $name: terraform validate passed on a broken tree"
    fails=$((fails + 1))
  elif grep -q "Error: $message" "$out" && grep -q "\"$word\"" "$out"; then
    echo "ok: $name: caught by terraform validate ($message \"$word\")"
  else
    echo "FAIL: $name: failed, but not with \"$message\""
    cat "$out"
    fails=$((fails + 1))
  fi
}

expect_tf_failure tf-unknown-argument \
  "$(mutate tf-unknown-argument terraform/modules/alb/main.tf \
    '  deregistration_delay = var.deregistration_delay_secs' '  deregistration_dalay = var.deregistration_delay_secs')" \
  'Unsupported argument' deregistration_dalay
expect_tf_failure tf-misspelt-attribute \
  "$(mutate tf-misspelt-attribute terraform/modules/alb/outputs.tf 'aws_lb.this.arn_suffix' 'aws_lb.this.arn_sufix')" \
  'Unsupported attribute' arn_sufix

echo "negative tests: $fails failure(s)"
[ "$fails" = 0 ]
