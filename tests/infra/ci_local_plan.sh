#!/usr/bin/env bash
# The pipeline's plan jobs run for real, against moto: gitlab-ci-local (shell executor) runs
# `terraform-plan-staging` and `terraform-plan-production` from .gitlab-ci.yml, their own scripts,
# in a copy of this tree on a `main` branch, with what GitLab would give them:
# - AWS credentials by web identity: the job's before_script writes its ID token and names the
#   plan role, which terraform/ci-roles made in this moto (applied here first); moto's STS
#   exchanges the token, and IAM is enforced from then on, so the plan runs with exactly the plan
#   role's permissions;
# - the GitLab-managed Terraform state: an http backend on loopback (tests/infra/tf_http_state.py),
#   one state per TF_STATE_NAME, which shows the staging/production split;
# - the package stage's AMI ids and the build stage's Lambda zips (stand-ins), and each
#   environment's DEPLOY_TFVARS (the production example without region and AMI ids, a name each).
# Exit: 0 passed, 1 failed, 77 skipped (no terraform or no gitlab-ci-local here).
set -euo pipefail
HERE="$(cd "$(dirname "$0")/../.." && pwd)"
TOOLS="${EWS_TOOLS_DIR:-$HERE/.tools}"
PY="$TOOLS/moto/bin/python"
GCL="$TOOLS/gitlab-ci-local/node_modules/.bin/gitlab-ci-local"
say() { printf '[ci-plan] %s\n' "$*"; }
# shellcheck source=tests/infra/lib.sh
. "$HERE/tests/infra/lib.sh"
command -v terraform >/dev/null || { echo "SKIPPED: terraform is not on PATH"; exit 77; }
[ -x "$GCL" ] || EWS_TOOLS_DIR="$TOOLS" bash "$HERE/scripts/tools/gitlab-ci-local.sh" >/dev/null
[ -x "$GCL" ] || { echo "SKIPPED: gitlab-ci-local could not be installed"; exit 77; }
[ -x "$PY" ] || bash "$HERE/scripts/tools/moto.sh"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "${EWS_TF_KEEP:-}" ]; then echo "kept $work (EWS_TF_KEEP)"; else rm -rf "$work"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Terraform's provider from the machine's mirror when it has one.
tf_cli_config "$work/cli.tfrc"
export TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1

port="$(free_port)"
MOTO_IAM_LOAD_MANAGED_POLICIES=true "$PY" "$HERE/tests/infra/moto_server.py" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
pids+=($!)
python3 "$HERE/tests/infra/tf_http_state.py" "$work/state-port" 2>"$work/state.log" &
pids+=($!)
endpoint="http://127.0.0.1:$port"
for _ in $(seq 1 150); do
  curl -sf "$endpoint/moto-api/" >/dev/null 2>&1 && [ -s "$work/state-port" ] && break
  sleep 0.2
done
curl -sf "$endpoint/moto-api/" >/dev/null || { cat "$work/moto.log"; echo "FAIL: moto did not start"; exit 1; }
export AWS_ENDPOINT_URL="$endpoint" AWS_REGION=eu-central-1 AWS_DEFAULT_REGION=eu-central-1

# As an administrator: the CI roles (terraform/ci-roles, local state), the images the package
# stage would have built.
admin() { AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "$@"; }
cp -r "$HERE/terraform/ci-roles" "$work/ci-roles"
cat >"$work/ci-roles/override.tf" <<EOF
provider "aws" {
  skip_credentials_validation = true
  skip_metadata_api_check     = true
}
EOF
if ! admin terraform -chdir="$work/ci-roles" init -input=false -no-color >"$work/ci-roles.init.log" 2>&1; then
  if registry_unreachable "$work/ci-roles.init.log"; then
    echo "SKIPPED: no AWS provider mirror here and the Terraform registry is unreachable"
    exit 77
  fi
  cat "$work/ci-roles.init.log"
  echo "FAIL: terraform init of ci-roles"
  exit 1
fi
if ! admin terraform -chdir="$work/ci-roles" apply -auto-approve -input=false -no-color \
  -var project_path=example/elastic-ws -var 'deployment_names=["ews-staging","ews"]' >"$work/ci-roles.apply.log" 2>&1; then
  tail -n 30 "$work/ci-roles.apply.log"; echo "FAIL: terraform apply of ci-roles into moto"; exit 1
fi
plan_role="$(terraform -chdir="$work/ci-roles" output -raw plan_role_arn)"
say "ci-roles applied: plan role $plan_role"
mkdir -p "$work/zips"
admin "$PY" "$HERE/tests/infra/terraform_assert.py" prepare production "$work/zips" >"$work/amis.json"
amis() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/amis.json" "$1"; }

# The repository as a GitLab checkout of main, with the build stage's artifacts.
repo="$work/repo"
mkdir -p "$repo"
# (Files git lists but the tree has deleted are left out.)
# shellcheck disable=SC2016 # the inner shell expands $f
(cd "$HERE" && git ls-files -co --exclude-standard -z | xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' _ |
  tar --null -T - -cf -) | tar -C "$repo" -xf -
(cd "$repo" && git init -q -b main && git -c user.email=ci@example.com -c user.name=ci add -A >/dev/null &&
  git -c user.email=ci@example.com -c user.name=ci commit -qm "ci-local plan" &&
  git remote add origin https://gitlab.example.com/example/elastic-ws.git)
stand_in_zips "$PY" "$repo/target/lambda"
# Each environment's var file: the production example without region and AMI ids, its own name,
# and what moto lacks (no MonitorInstances; a certificate moto issued).
for env in staging production; do
  name=ews
  [ "$env" = staging ] && name=ews-staging
  grep -vE '^(region|leader_ami_id|worker_ami_id|certificate_arn|name|alb_deletion_protection)[[:space:]]*=' \
    "$HERE/terraform/examples/production.tfvars" >"$work/$env.tfvars"
  printf 'name = "%s"\nleader_detailed_monitoring = false\nalb_deletion_protection = false\ncertificate_arn = "%s"\n' \
    "$name" "$(amis certificate_arn)" >>"$work/$env.tfvars"
done

# From here on moto authorizes every call: the jobs hold only what the plan role grants.
curl -sf -X POST -H "Content-Type: text/plain" "$endpoint/moto-api/reset-auth" --data 0 >/dev/null
state="http://127.0.0.1:$(cat "$work/state-port")"
# The job's ID token as GitLab would mint it for a pipeline of main (unsigned: moto checks the
# role's trust policy against its claims, not a signature).
token="eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2dpdGxhYi5jb20iLCJhdWQiOiJzdHMuYW1hem9uYXdzLmNvbSIsInN1YiI6InByb2plY3RfcGF0aDpleGFtcGxlL2VsYXN0aWMtd3M6cmVmX3R5cGU6YnJhbmNoOnJlZjptYWluIn0."
fails=0
run_plan() { # run_plan JOB ENV TOKEN: the job under gitlab-ci-local, its output in $work/JOB.log
  local job="$1" env="$2" tok="$3"
  # The job's own variables (TF_STATE_NAME, JOB_ROLE_ARN, TF_HTTP_*) stay as the file sets them;
  # CI_API_V4_URL points the state at the loopback backend, CI_PROJECT_DIR at the checkout the
  # shell executor runs in (gitlab-ci-local would name GitLab's /builds/...). No AWS keys in the
  # environment: the job finds its credentials by web identity, as in GitLab.
  (cd "$repo" && env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
    "$GCL" "$job" --force-shell-executor --no-artifacts-to-source \
    --ignore-predefined-vars CI_API_V4_URL,CI_PROJECT_ID,CI_PROJECT_DIR,CI_JOB_TOKEN \
    --variable "CI_API_V4_URL=$state/api/v4" --variable "CI_PROJECT_ID=1" --variable "CI_JOB_TOKEN=job-token" \
    --variable "CI_PROJECT_DIR=$repo" --variable "GITLAB_OIDC_TOKEN=$tok" \
    --variable "AWS_PLAN_ROLE_ARN=$plan_role" --variable "AWS_REGION=eu-central-1" \
    --variable "AWS_ENDPOINT_URL=$endpoint" --variable "AWS_ENDPOINT_URL_STS=$endpoint" \
    --variable "TF_CLI_CONFIG_FILE=$TF_CLI_CONFIG_FILE" --variable "DEPLOY_TFVARS=$work/$env.tfvars" \
    --variable "LEADER_AMI_ID=$(amis leader_ami_id)" --variable "WORKER_AMI_ID=$(amis worker_ami_id)" \
    >"$work/$job.log" 2>&1)
}
# A token of another branch is refused by the role's trust policy: the job fails before any plan.
if run_plan terraform-plan-staging staging "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2dpdGxhYi5jb20iLCJhdWQiOiJzdHMuYW1hem9uYXdzLmNvbSIsInN1YiI6InByb2plY3RfcGF0aDpleGFtcGxlL2VsYXN0aWMtd3M6cmVmX3R5cGU6YnJhbmNoOnJlZjpmZWF0dXJlIn0."; then
  echo "FAIL: a job on the branch feature got the plan role"
  fails=$((fails + 1))
elif grep -q "TRUST DENIED" "$work/moto.log"; then
  say "a job of another branch than main: the plan role's trust policy refuses its token"
else
  tail -n 20 "$work/terraform-plan-staging.log"
  echo "FAIL: the job of another branch failed, but not at the role's trust policy"
  fails=$((fails + 1))
fi
for env in staging production; do
  job="terraform-plan-$env"
  say "$job: gitlab-ci-local, shell executor"
  if ! run_plan "$job" "$env" "$token"; then
    tail -n 40 "$work/$job.log"
    echo "FAIL: $job"
    fails=$((fails + 1))
    continue
  fi
  summary="$(sed 's/\x1b\[[0-9;]*m//g' "$work/$job.log" |
    grep -oE 'Plan: [0-9]+ to add, [0-9]+ to change, [0-9]+ to destroy' | tail -n 1 || true)"
  if [ -n "$summary" ] && grep -q "terraform/state/$env" "$work/state.log"; then
    say "$job: $summary (state terraform/state/$env, as $plan_role)"
  else
    tail -n 20 "$work/$job.log"
    echo "FAIL: $job: no plan of the $env state"
    fails=$((fails + 1))
  fi
done
if grep -q "IAM DENIED" "$work/moto.log"; then
  grep "IAM DENIED" "$work/moto.log" | sort | uniq -c
  echo "FAIL: the plan role lacks what a plan calls"
  fails=$((fails + 1))
fi
echo "ci-plan: $fails failure(s)"
[ "$fails" = 0 ]
