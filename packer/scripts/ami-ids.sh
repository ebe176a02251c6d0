#!/usr/bin/env bash
# Reads `packer build -machine-readable` output and prints the AMI ids as a dotenv file
# (LEADER_AMI_ID=..., WORKER_AMI_ID=...) for the deploy stage. Fails if either is missing.
set -euo pipefail
log="${1:?usage: ami-ids.sh PACKER_MACHINE_READABLE_LOG}"
for role in leader worker; do
  id="$(awk -F, -v t="amazon-ebs.$role" '$2 == t && $3 == "artifact" && $5 == "id" { n = split($6, a, ":"); print a[n] }' "$log" | tail -n 1)"
  case "$id" in
    ami-*) echo "$(echo "$role" | tr a-z A-Z)_AMI_ID=$id" ;;
    *) echo "ami-ids: no $role AMI in $log" >&2; exit 1 ;;
  esac
done
