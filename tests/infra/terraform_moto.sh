#!/usr/bin/env bash
# Terraform evaluated for real: `terraform init` (offline from the AWS provider's filesystem mirror
# when the machine has one, else from the registry), `terraform validate`, then for each example
# `terraform apply` of the root module into a fresh moto server, assertions on what moto then holds
# (tests/infra/terraform_assert.py), a second plan that may differ only where moto is known to omit
# fields (tests/infra/terraform_plan_check.py), and `terraform destroy`.
#
# Usage: terraform_moto.sh [--validate-only] [TREE]
#   TREE defaults to this repository; the negative tests pass a broken copy with --validate-only.
# EWS_TF_KEEP=1 keeps the work dir (logs, plans, state) for a look after a failure.
# Exit: 0 passed, 1 failed, 77 skipped (no terraform, or no way to install the AWS provider): the
# reason is printed as `SKIPPED: ...` and scripts/test.sh counts it as skipped, never as passed.
#
# moto's gaps, worked around here and nowhere in what users deploy:
# - no MonitorInstances: the leaders' detailed monitoring is off (leader_detailed_monitoring = false);
# - AWS-managed IAM policies exist only with MOTO_IAM_LOAD_MANAGED_POLICIES=true;
# - AMIs and the ACM certificate are registered in moto first (their ids go in as variables);
# - the scaler zips are stand-ins (a `bootstrap` shell script): moto stores, never runs them;
# - moto keeps a terminated instance's primary network interface attached, so the leaders'
#   interfaces leave the state before `terraform destroy`;
# - fields moto does not return show as changes in the second plan: terraform_plan_check.py lists
#   each with its reason and fails on any other.
set -euo pipefail

HERE="$(cd "$(dirname "$0")/../.." && pwd)"
validate_only=0
if [ "${1:-}" = "--validate-only" ]; then validate_only=1; shift; fi
TREE="$(cd "${1:-$HERE}" && pwd)"
TOOLS="${EWS_TOOLS_DIR:-$HERE/.tools}"
PY="$TOOLS/moto/bin/python"

skip() { echo "SKIPPED: $*"; exit 77; }
# shellcheck source=tests/infra/lib.sh
. "$HERE/tests/infra/lib.sh"
say() { printf '[terraform] %s\n' "$*"; }

command -v terraform >/dev/null || skip "terraform is not on PATH"
work="$(mktemp -d)"
moto_pid=""
cleanup() {
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; fi
  if [ -n "${EWS_TF_KEEP:-}" ]; then echo "kept $work (EWS_TF_KEEP)"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- provider installation: the machine's filesystem mirror, else the public registry ----------
tf_cli_config "$work/cli.tfrc"
if [ -n "$mirror" ]; then
  say "AWS provider from the filesystem mirror $mirror"
else
  say "no provider mirror on this machine: installing the AWS provider from the registry"
fi
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
export TF_PLUGIN_CACHE_DIR="$work/plugin-cache"
mkdir -p "$TF_PLUGIN_CACHE_DIR"

# A copy of the root module, with a local backend instead of GitLab's http backend (an override
# file, as a user testing locally would write).
tf="$work/tf"
mkdir -p "$tf"
tar -C "$TREE/terraform" --exclude=.terraform --exclude='*.tfstate*' --exclude=ews-outputs.json \
  -cf - . | tar -C "$tf" -xf -
cat >"$tf/backend_override.tf" <<'EOF'
terraform {
  backend "local" {}
}
EOF

init_log="$work/init.log"
if ! terraform -chdir="$tf" init -input=false -no-color >"$init_log" 2>&1; then
  if registry_unreachable "$init_log"; then
    skip "no AWS provider mirror here and the Terraform registry is unreachable: $(grep -m1 -iE 'error' "$init_log")"
  fi
  cat "$init_log"
  echo "FAIL: terraform init"
  exit 1
fi
say "init ok ($(sed -n 's/.*Installed hashicorp\/aws v\([0-9.]*\).*/aws \1/p; s/.*Using previously-installed hashicorp\/aws v\([0-9.]*\).*/aws \1/p' "$init_log" | head -n 1))"

if ! terraform -chdir="$tf" validate -no-color; then
  echo "FAIL: terraform validate"
  exit 1
fi
[ "$validate_only" = 1 ] && exit 0

# --- moto: every AWS endpoint of the provider --------------------------------------------------
[ -x "$PY" ] || bash "$HERE/scripts/tools/moto.sh"
port="$("$PY" - <<'EOF'
import random, socket
# Below the ephemeral range, so no outgoing connection of this machine holds it.
for _ in range(200):
    p = random.randint(20000, 30000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    s.close()
    print(p)
    break
EOF
)"
# moto's server, with the ElastiCache member clusters the provider reads (tests/infra/moto_server.py).
MOTO_IAM_LOAD_MANAGED_POLICIES=true "$PY" "$HERE/tests/infra/moto_server.py" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
endpoint="http://127.0.0.1:$port"
for _ in $(seq 1 150); do
  curl -sf "$endpoint/moto-api/" >/dev/null 2>&1 && break
  kill -0 "$moto_pid" 2>/dev/null || { cat "$work/moto.log"; echo "FAIL: moto exited"; exit 1; }
  sleep 0.2
done
curl -sf "$endpoint/moto-api/" >/dev/null || { echo "FAIL: moto did not answer on $endpoint"; exit 1; }
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_ENDPOINT_URL="$endpoint"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE

cat >"$tf/providers_override.tf" <<EOF
provider "aws" {
  # Credentials from the environment: the IAM-enforced run acts as different users.
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = false
  # moto serves every bucket under its one address.
  s3_use_path_style = true
  endpoints {
    acm            = "$endpoint"
    autoscaling    = "$endpoint"
    backup         = "$endpoint"
    cloudwatch     = "$endpoint"
    cloudwatchlogs = "$endpoint"
    ec2            = "$endpoint"
    elbv2          = "$endpoint"
    events         = "$endpoint"
    iam            = "$endpoint"
    lambda         = "$endpoint"
    route53        = "$endpoint"
    s3             = "$endpoint"
    secretsmanager = "$endpoint"
    sns            = "$endpoint"
    sqs            = "$endpoint"
    ssm            = "$endpoint"
    sts            = "$endpoint"
    wafv2          = "$endpoint"
  }
}
EOF

# Stand-in scaler zips: moto keeps the code, it never runs it.
zips="$work/lambda"
stand_in_zips "$PY" "$zips"

# IAM enforced: each example is applied and destroyed as a user holding exactly
# terraform/ci-roles/deploy-policy.json, and re-planned as one holding what the plan role holds;
# moto then refuses any action a policy does not grant (it authorizes actions, not resources:
# terraform/ci-roles narrows the IAM statements by name on top). EWS_TF_IAM_ENFORCED=0 turns
# this off for a look at a failure that is not about permissions.
principals="$work/principals.json"
with_creds() { # with_creds USER CMD...: CMD with USER's keys while IAM is enforced
  local key="key_$1" secret="secret_$1"
  shift
  if [ -s "$principals" ]; then
    AWS_ACCESS_KEY_ID="${!key}" AWS_SECRET_ACCESS_KEY="${!secret}" "$@"
  else
    "$@"
  fi
}
enforce_iam() { # enforce_iam on|off
  if [ "$1" = on ] && [ "${EWS_TF_IAM_ENFORCED:-1}" = 1 ]; then
    AWS_DEFAULT_REGION=us-east-1 "$PY" "$HERE/tests/infra/terraform_assert.py" principals "$tf/ci-roles/deploy-policy.json" >"$principals"
    # key_<user>=... secret_<user>=..., read once for with_creds.
    eval "$("$PY" -c 'import json, shlex, sys
for user, k in json.load(open(sys.argv[1])).items():
    key, secret = shlex.quote(k["key"]), shlex.quote(k["secret"])
    print(f"key_{user}={key} secret_{user}={secret}")' "$principals")"
    curl -sf -X POST -H "Content-Type: text/plain" "$endpoint/moto-api/reset-auth" --data 0 >/dev/null
    say "IAM enforced: apply and destroy as the deploy policy, plan as the plan role"
  else
    curl -sf -X POST -H "Content-Type: text/plain" "$endpoint/moto-api/reset-auth" --data inf >/dev/null
    rm -f "$principals"
  fi
}

fails=0
# expect_plan_error NAME MESSAGE ARGS...: `terraform plan ARGS` must fail, with MESSAGE.
expect_plan_error() {
  local name="$1" message="$2" log="$work/$1.expect-error.log"
  shift 2
  if with_creds planner terraform -chdir="$tf" plan -refresh=false "$@" >"$log" 2>&1; then
    echo "FAIL: $name: a plan with a wrong setting passed (want: $message)"
    fails=$((fails + 1))
  elif tr -s ' \n' ' ' <"$log" | grep -qF "$message"; then
    say "$name: a wrong setting is refused: $message"
  else
    tail -n 20 "$log"
    echo "FAIL: $name: the plan failed, but not with: $message"
    fails=$((fails + 1))
  fi
}

# apply_example NAME: a fresh moto, apply examples/NAME.tfvars, assert, re-plan, destroy.
apply_example() {
  local name="$1" region vars="$work/$1.vars.json" state="$work/$1.tfstate" t0
  t0=$(date +%s)
  curl -sf -X POST "$endpoint/moto-api/reset" >/dev/null
  region="$(sed -n 's/^region *= *"\(.*\)"/\1/p' "$tf/examples/$name.tfvars")"
  region="${region:-eu-central-1}"
  # What the package stage and the operator would provide: AMIs in the region (and, for the
  # production example, an ACM certificate), plus the moto-only settings.
  AWS_DEFAULT_REGION="$region" "$PY" "$HERE/tests/infra/terraform_assert.py" prepare "$name" "$zips" >"$vars"
  enforce_iam on
  # The same state and settings for apply, the second plan and destroy.
  local args=(-input=false -no-color -state="$state" -var-file="examples/$name.tfvars" -var-file="$vars"
    -var "region=$region")
  say "$name: apply into moto ($region)"
  if ! with_creds deployer terraform -chdir="$tf" apply -auto-approve "${args[@]}" >"$work/$name.apply.log" 2>&1; then
    tail -n 60 "$work/$name.apply.log"
    echo "FAIL: $name: terraform apply"
    fails=$((fails + 1))
    enforce_iam off
    return
  fi
  grep -E '^Apply complete' "$work/$name.apply.log" | sed "s/^/[terraform] $name: /"
  terraform -chdir="$tf" output -state="$state" -json >"$work/$name.outputs.json"
  if ! AWS_DEFAULT_REGION="$region" with_creds admin "$PY" "$HERE/tests/infra/terraform_assert.py" check "$name" \
    "$work/$name.outputs.json" "$tf/examples/$name.tfvars"; then
    echo "FAIL: $name: what moto holds after apply"
    fails=$((fails + 1))
  fi
  terraform -chdir="$tf" show -json "$state" >"$work/$name.state.json"
  if ! AWS_DEFAULT_REGION="$region" with_creds admin "$PY" "$HERE/tests/infra/terraform_assert.py" refresh "$work/$name.state.json"; then
    echo "FAIL: $name: the workers' instance refresh"
    fails=$((fails + 1))
  fi
  # The scalers own the group's size and their idempotency tag: scale up as they would, and
  # the second plan must leave both alone (it is empty but for what moto does not store).
  AWS_DEFAULT_REGION="$region" with_creds admin "$PY" "$HERE/tests/infra/terraform_assert.py" scale "$name" "$work/$name.outputs.json"
  # The second plan is the pipeline's plan job: as the plan role.
  with_creds planner terraform -chdir="$tf" plan -out="$work/$name.replan" "${args[@]}" >"$work/$name.replan.log" 2>&1 || {
    tail -n 40 "$work/$name.replan.log"; echo "FAIL: $name: second plan"; fails=$((fails + 1)); }
  terraform -chdir="$tf" show -json "$work/$name.replan" >"$work/$name.replan.json"
  if ! "$PY" "$HERE/tests/infra/terraform_plan_check.py" "$work/$name.replan.json"; then
    echo "FAIL: $name: the second plan changes more than moto's known omissions"
    fails=$((fails + 1))
  fi
  if [ "$name" = trial ]; then
    # The cluster-secret rotation of docs/deploy.md, its three applies as the deployer: each
    # step's signing and accepted slots, and the roles' grants to exactly those.
    local step=0 n
    n="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$tf/examples/$name.tfvars")"
    for rotation in "-var cluster_secret_2_version=1 -var cluster_secret_accept_both=true|/$n/cluster-secret|/$n/cluster-secret-2" \
      "-var cluster_secret_2_version=1 -var cluster_secret_accept_both=true -var cluster_secret_signing=2|/$n/cluster-secret-2|/$n/cluster-secret" \
      "-var cluster_secret_2_version=1 -var cluster_secret_signing=2|/$n/cluster-secret-2|-"; do
      step=$((step + 1))
      IFS='|' read -r rvars sign accept <<<"$rotation"
      # shellcheck disable=SC2086 # rvars is a list of arguments
      # Targeted: what a rotation changes (a full apply would also rewrite what moto does not
      # return, terraform_plan_check.py's list, and test that instead).
      if ! with_creds deployer terraform -chdir="$tf" apply -auto-approve "${args[@]}" $rvars \
        -target=aws_ssm_parameter.cluster_secret_2 -target=module.workers \
        -target=module.leaders.aws_iam_role_policy.leader >"$work/$name.rotate$step.log" 2>&1; then
        tail -n 30 "$work/$name.rotate$step.log"; echo "FAIL: $name: rotation step $step"; fails=$((fails + 1)); break
      fi
      terraform -chdir="$tf" output -state="$state" -json >"$work/$name.outputs.json"
      AWS_DEFAULT_REGION="$region" with_creds admin "$PY" "$HERE/tests/infra/terraform_assert.py" secrets \
        "$work/$name.outputs.json" "$n" "$sign" "$accept" || { echo "FAIL: $name: rotation step $step"; fails=$((fails + 1)); }
    done
    expect_plan_error "$name" "cluster_secret_signing = 2 needs the second slot" "${args[@]}" -var cluster_secret_signing=2
    # What a var file for another region does: stopped in the plan, saying why.
    expect_plan_error "$name" "leader_ami_id = ami-0000000000000000f does not exist in $region" \
      "${args[@]}" -var leader_ami_id=ami-0000000000000000f
    expect_plan_error "$name" "are not in the region $region" \
      "${args[@]}" -var 'availability_zones=["us-east-1a","us-east-1b"]'
    # Hooks that would send clients' claims in clear, or name a route the workers do not serve.
    expect_plan_error "$name" "a hooks backend url must be https://" "${args[@]}" -var routes=/ws=ingest \
      -var 'hooks={backends={app={url="http://app.example.com/h"}},routes={"/ws"={backend="app",hooks=["connect"]}}}'
    expect_plan_error "$name" "every hooks route must be one of var.routes" "${args[@]}" -var routes=/ws=ingest \
      -var 'hooks={backends={app={url="https://app.example.com/h"}},routes={"/chat"={backend="app",hooks=["connect"]}}}'
    # Unauthenticated clients from anywhere: an open write endpoint, refused in the plan.
    expect_plan_error "$name" "no_auth with client_cidrs open to the internet" "${args[@]}" \
      -var 'client_cidrs=["0.0.0.0/0"]'
    # A history entry the workers would refuse at start is refused in the plan.
    expect_plan_error "$name" "history_topics entries are topic names or patterns" "${args[@]}" \
      -var 'history_topics=["room.*=lots"]'
  fi
  say "$name: destroy"
  # moto keeps a terminated instance's primary network interface attached (AWS detaches it and
  # keeps it available), so Terraform could not delete the leaders' interfaces: they leave the
  # state here and go with moto's reset.
  terraform -chdir="$tf" state rm -state="$state" 'module.leaders.aws_network_interface.leader' >/dev/null
  if ! with_creds deployer terraform -chdir="$tf" destroy -auto-approve "${args[@]}" >"$work/$name.destroy.log" 2>&1; then
    tail -n 40 "$work/$name.destroy.log"
    echo "FAIL: $name: terraform destroy"
    fails=$((fails + 1))
    enforce_iam off
    return
  fi
  enforce_iam off
  if ! AWS_DEFAULT_REGION="$region" "$PY" "$HERE/tests/infra/terraform_assert.py" gone "$name"; then
    echo "FAIL: $name: resources left in moto after destroy"
    fails=$((fails + 1))
  fi
  grep -E '^Destroy complete' "$work/$name.destroy.log" | sed "s/^/[terraform] $name: /"
  say "$name: done in $(($(date +%s) - t0)) s"
}

for example in ${EWS_TF_EXAMPLES:-trial production}; do
  apply_example "$example"
done
echo "terraform: $fails failure(s)"
[ "$fails" = 0 ]
