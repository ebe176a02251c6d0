#!/usr/bin/env bash
# packer/scripts/amis.sh against moto through the real AWS CLI: `find` reuses the images of an
# unchanged build and says when there are none; `deprecate` dates them; `cleanup` keeps the newest, the ones an instance
# or a recent launch template version uses and every image that is not elastic-ws's, and
# deletes the snapshots of those it deregisters.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/../.." && pwd)"
TOOLS="${EWS_TOOLS_DIR:-$HERE/.tools}"
PY="$TOOLS/moto/bin/python"
work="$(mktemp -d)"
moto_pid=""
cleanup() {
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
[ -x "$PY" ] && [ -x "$TOOLS/awscli/bin/aws" ] || { echo "SKIPPED: moto or the AWS CLI is not installed in $TOOLS"; exit 77; }

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

# build-hash: stable for the same inputs, another for another binary.
mkdir -p "$work/bin"
printf 'leader' >"$work/bin/ews-leader"
printf 'worker' >"$work/bin/ews-worker"
h1="$(bash "$HERE/packer/scripts/amis.sh" build-hash "$work/bin")"
h2="$(bash "$HERE/packer/scripts/amis.sh" build-hash "$work/bin")"
printf 'worker 2' >"$work/bin/ews-worker"
h3="$(bash "$HERE/packer/scripts/amis.sh" build-hash "$work/bin")"
if [[ "$h1" =~ ^[0-9a-f]{64}$ ]] && [ "$h1" = "$h2" ] && [ "$h1" != "$h3" ]; then
  ok "build-hash: the same for the same build, another for another binary"
else
  fail "build-hash: $h1 / $h2 / $h3"
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# The test server: moto with image deprecation (tests/infra/moto_server.py).
"$PY" "$HERE/tests/infra/moto_server.py" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/moto-api/" >/dev/null && break
  sleep 0.1
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=eu-central-1 AWS_DEFAULT_REGION=eu-central-1
export PATH="$TOOLS/awscli/bin:$PATH"

# Five builds of each role (b1 oldest), one image of something else, an instance on the worker
# image of b1 and a launch template naming the leader image of b2, as Packer and Terraform leave them.
"$PY" - "$work/images.json" <<'EOF'
import json, sys, boto3
ec2 = boto3.client("ec2")
base = next(i for i in ec2.describe_images(Owners=["amazon"], Filters=[
    {"Name": "architecture", "Values": ["x86_64"]}])["Images"] if "Windows" not in i.get("Name", ""))
out = {}
def image(name, tags):
    inst = ec2.run_instances(ImageId=base["ImageId"], MinCount=1, MaxCount=1,
                             InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=inst, Name=name)["ImageId"]
    ec2.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    ec2.terminate_instances(InstanceIds=[inst])
    return ami
for b in range(1, 6):
    for role in ("leader", "worker"):
        out[f"{role}-b{b}"] = image(f"ews-{role}-b{b}-2026010{b}000000",
                                    {"Application": "elastic-ws", "Role": role, "BuildHash": f"hash{b}"})
out["other"] = image("someone-elses-image", {"Role": "worker"})
ec2.run_instances(ImageId=out["worker-b1"], MinCount=1, MaxCount=1, InstanceType="t3.micro")
ec2.create_launch_template(LaunchTemplateName="ews-worker-x",
                           LaunchTemplateData={"ImageId": out["leader-b2"]})
json.dump(out, open(sys.argv[1], "w"))
EOF
img() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/images.json" "$1"; }
exists() { aws ec2 describe-images --image-ids "$1" --query 'length(Images)' --output text 2>/dev/null | grep -qx 1; }

got="$(bash "$HERE/packer/scripts/amis.sh" find hash4)"
want="LEADER_AMI_ID=$(img leader-b4)
WORKER_AMI_ID=$(img worker-b4)"
if [ "$got" = "$want" ]; then ok "find: the images of an unchanged build"; else fail "find hash4: '$got', want '$want'"; fi
rc=0
bash "$HERE/packer/scripts/amis.sh" find hash-never-built >/dev/null 2>&1 || rc=$?
if [ "$rc" = 3 ]; then ok "find: exit 3 for a build without images"; else fail "find of an unknown build: exit $rc, want 3"; fi
rc=0
bash "$HERE/packer/scripts/amis.sh" cleanup 0 >/dev/null 2>&1 || rc=$?
if [ "$rc" = 2 ]; then ok "cleanup refuses KEEP 0"; else fail "cleanup 0: exit $rc, want 2"; fi

bash "$HERE/packer/scripts/amis.sh" deprecate 180 "$(img leader-b5)" "$(img worker-b5)" >/dev/null
dep="$(aws ec2 describe-images --image-ids "$(img worker-b5)" --query 'Images[0].DeprecationTime' --output text)"
want_year="$(date -u -d "@$(($(date +%s) + 180 * 86400))" +%Y-%m-%d)"
if [[ "$dep" == "$want_year"* ]]; then ok "deprecate: the image is deprecated 180 days out ($dep)"; else fail "deprecate: DeprecationTime $dep, want $want_year"; fi
rc=0
bash "$HERE/packer/scripts/amis.sh" deprecate 0 "$(img worker-b5)" >/dev/null 2>&1 || rc=$?
if [ "$rc" = 2 ]; then ok "deprecate refuses 0 days"; else fail "deprecate 0: exit $rc, want 2"; fi

snap_b3="$(aws ec2 describe-images --image-ids "$(img worker-b3)" \
  --query 'Images[].BlockDeviceMappings[].Ebs.SnapshotId' --output text)"
bash "$HERE/packer/scripts/amis.sh" cleanup 2 >"$work/cleanup.log"
cat "$work/cleanup.log"
for keep in leader-b5 leader-b4 worker-b5 worker-b4 worker-b1 leader-b2 other; do
  if exists "$(img "$keep")"; then ok "kept $keep"; else fail "$keep was deregistered"; fi
done
for gone in leader-b3 leader-b1 worker-b3 worker-b2; do
  if exists "$(img "$gone")"; then fail "$gone was kept"; else ok "deregistered $gone"; fi
done
if [ -n "$snap_b3" ] && ! aws ec2 describe-snapshots --snapshot-ids "$snap_b3" >/dev/null 2>&1; then
  ok "the snapshot of worker-b3 went with it"
else
  fail "worker-b3's snapshot ($snap_b3) is left"
fi
echo "amis: $fails failure(s)"
[ "$fails" = 0 ]
