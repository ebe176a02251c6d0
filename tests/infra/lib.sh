# shellcheck shell=bash
# What the Terraform-in-moto tests share (terraform_moto.sh, ci_local_plan.sh): sourced, not run.

# tf_cli_config FILE: a Terraform CLI configuration that installs the AWS provider from this
# machine's filesystem mirror when it has one (EWS_TF_PROVIDER_MIRROR, else found under /), else
# from the public registry. Sets `mirror` (empty without one) and exports TF_CLI_CONFIG_FILE.
tf_cli_config() {
  mirror="${EWS_TF_PROVIDER_MIRROR:-}"
  if [ -z "$mirror" ]; then
    local provider_dir
    provider_dir="$(find / -maxdepth 5 -type d -path '*registry.terraform.io/hashicorp/aws' \
      -not -path '*/.terraform/*' 2>/dev/null | head -n 1 || true)"
    # <mirror>/registry.terraform.io/hashicorp/aws
    if [ -n "$provider_dir" ]; then mirror="$(cd "$provider_dir/../../.." && pwd)"; fi
  fi
  export TF_CLI_CONFIG_FILE="$1"
  if [ -n "$mirror" ]; then
    printf 'provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n' "$mirror" >"$TF_CLI_CONFIG_FILE"
  else
    : >"$TF_CLI_CONFIG_FILE"
  fi
}

# registry_unreachable LOG: whether a failed `terraform init` failed for want of the registry
# (no mirror here either): the caller then skips (exit 77) rather than fails.
registry_unreachable() {
  [ -z "$mirror" ] && grep -qiE 'could not connect|failed to (query|retrieve)|dial tcp|no such host' "$1"
}

# stand_in_zips PYTHON DIR: DIR/<function>/bootstrap.zip for the scalers and the termination
# policy, as `cargo lambda build` lays them out, holding a shell script: moto keeps a function's
# code, it never runs it.
stand_in_zips() {
  "$1" - "$2" <<'PY'
import os, sys, zipfile
for fn in ("ews-scale-up", "ews-scale-down", "ews-terminate"):
    d = os.path.join(sys.argv[1], fn)
    os.makedirs(d, exist_ok=True)
    with zipfile.ZipFile(os.path.join(d, "bootstrap.zip"), "w") as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, "#!/bin/sh\necho stand-in for %s\n" % fn)
PY
}
