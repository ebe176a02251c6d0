#!/usr/bin/env bash
# The AMIs' life outside Packer, for the pipeline (aws CLI, region from AWS_REGION):
#
#   amis.sh build-hash BIN_DIR   the SHA-256 of what goes into the images: the two binaries and
#                                everything under packer/ (the AMIs are tagged with it, BuildHash)
#   amis.sh find HASH            LEADER_AMI_ID=/WORKER_AMI_ID= of images already built from HASH,
#                                as the package stage's dotenv; exit 3 when there are none, so a
#                                pipeline whose binaries did not change skips the image build
#   amis.sh deprecate DAYS AMI...
#                                mark the images deprecated DAYS from now: they leave the console's
#                                and the API's default listings then, and still launch by id
#                                (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ami-deprecate.html);
#                                each build, and each reuse of one, pushes its date out again
#   amis.sh cleanup KEEP         per role, deregister every image of elastic-ws but the newest KEEP
#                                and those any instance (leader, worker, stopped or running) or a
#                                launch template's newest versions still use, and delete their
#                                snapshots (a deregistered AMI's snapshots are otherwise billed for
#                                ever: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/deregister-ami.html)
#
# Images are found by the tags the Packer templates set (Application = elastic-ws, Role, BuildHash);
# only images this account owns are touched.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
aws_() { aws --region "${AWS_REGION:?AWS_REGION is not set}" --output text "$@"; }

build_hash() {
  local bins="${1:?usage: amis.sh build-hash BIN_DIR}"
  {
    sha256sum "$bins/ews-leader" "$bins/ews-worker" | awk '{ print $1 }'
    (cd "$HERE" && find . -type f -not -path './.packer*' | LC_ALL=C sort | xargs sha256sum)
  } | sha256sum | awk '{ print $1 }'
}

find_built() {
  local hash="${1:?usage: amis.sh find HASH}" role id out=""
  for role in leader worker; do
    id="$(aws_ ec2 describe-images --owners self \
      --filters "Name=tag:Application,Values=elastic-ws" "Name=tag:Role,Values=$role" \
      "Name=tag:BuildHash,Values=$hash" "Name=state,Values=available" \
      --query 'sort_by(Images, &CreationDate)[-1].ImageId')"
    case "$id" in
      ami-*) out+="$(echo "$role" | tr '[:lower:]' '[:upper:]')_AMI_ID=$id"$'\n' ;;
      *) echo "amis: no $role image built from $hash yet" >&2; return 3 ;;
    esac
  done
  printf '%s' "$out"
}

deprecate() {
  local days="${1:-}" at id
  shift || true
  case "$days" in '' | *[!0-9]* | 0) echo "amis: DAYS must be a whole number, 1 or more" >&2; return 2 ;; esac
  [ "$#" -gt 0 ] || { echo "usage: amis.sh deprecate DAYS AMI..." >&2; return 2; }
  # Busybox's date (the Packer image) and GNU date both take @SECONDS.
  at="$(date -u -d "@$(($(date +%s) + days * 86400))" +%Y-%m-%dT%H:%M:%SZ)"
  for id in "$@"; do
    aws_ ec2 enable-image-deprecation --image-id "$id" --deprecate-at "$at" >/dev/null
    echo "amis: $id deprecated from $at"
  done
}

cleanup() {
  local keep="${1:?usage: amis.sh cleanup KEEP}" role used id snaps
  case "$keep" in '' | *[!0-9]* | 0) echo "amis: KEEP must be a whole number, 1 or more" >&2; return 2 ;; esac
  # Every image an instance runs (terminated ones excepted) or a launch template's five newest
  # versions name: a rollback of an instance refresh returns to the previous version's image.
  used="$( {
    aws_ ec2 describe-instances \
      --filters "Name=instance-state-name,Values=pending,running,stopping,stopped,shutting-down" \
      --query 'Reservations[].Instances[].ImageId'
    for lt in $(aws_ ec2 describe-launch-templates --query 'LaunchTemplates[].LaunchTemplateId'); do
      aws_ ec2 describe-launch-template-versions --launch-template-id "$lt" \
        --query 'sort_by(LaunchTemplateVersions, &VersionNumber)[-5:].LaunchTemplateData.ImageId'
    done
  } | tr -s '[:space:]' '\n' | grep '^ami-' | sort -u || true)"
  for role in leader worker; do
    # Newest first: creation time, then the name (Packer's names end in a timestamp).
    aws_ ec2 describe-images --owners self \
      --filters "Name=tag:Application,Values=elastic-ws" "Name=tag:Role,Values=$role" \
      --query 'Images[].[CreationDate, Name, ImageId]' | LC_ALL=C sort -r |
      tail -n +"$((keep + 1))" | while read -r _ _ id; do
        if grep -qx "$id" <<<"$used"; then echo "amis: keeping $role $id (in use)"; continue; fi
        snaps="$(aws_ ec2 describe-images --image-ids "$id" \
          --query 'Images[].BlockDeviceMappings[].Ebs.SnapshotId')"
        aws_ ec2 deregister-image --image-id "$id" >/dev/null
        for snap in $snaps; do
          [ "$snap" = None ] || aws_ ec2 delete-snapshot --snapshot-id "$snap" >/dev/null
        done
        echo "amis: deregistered $role $id and its snapshots ($snaps)"
      done
  done
}

case "${1:-}" in
  build-hash) build_hash "${2:-}" ;;
  find) find_built "${2:-}" ;;
  deprecate) shift; deprecate "$@" ;;
  cleanup) cleanup "${2:-}" ;;
  *) echo "usage: amis.sh build-hash BIN_DIR | find HASH | deprecate DAYS AMI... | cleanup KEEP" >&2; exit 2 ;;
esac
