#!/usr/bin/env python3
"""The second plan after an apply into moto must change nothing, except where moto is known not to
store or return what Terraform sent. Each such field is listed below with the reason; anything else
in the plan (a real drift, a perpetual diff in our configuration, a replacement) fails.

Usage: terraform_plan_check.py PLAN.json   (from `terraform show -json PLANFILE`)
"""

from __future__ import annotations

import json
import re
import sys

# (resource type, attribute path prefix) -> why moto makes it differ. An update whose every changed
# attribute is covered here is accepted; nothing else is.
MOTO_OMITS: dict[tuple[str, str], str] = {
    ("aws_vpc_security_group_ingress_rule", "description"):
        "moto does not return a security group rule's description",
    ("aws_vpc_security_group_egress_rule", "description"):
        "moto does not return a security group rule's description",
    ("aws_backup_plan", "tags_all"):
        "moto does not return the provider's default tags on a backup plan",
    ("aws_backup_vault", "tags_all"):
        "moto does not return the provider's default tags on a backup vault",
    ("aws_launch_template", "tags"):
        "moto does not return a launch template's own tags",
    ("aws_launch_template", "tags_all"):
        "moto does not return a launch template's own tags",
    ("aws_autoscaling_group", "default_instance_warmup"):
        "moto does not store the group's default instance warmup",
    ("aws_autoscaling_group", "capacity_reservation_specification"):
        "moto does not return the group's capacity reservation preference",
    ("aws_launch_template", "tag_specifications"):
        "moto returns the provider's default tags as an extra launch-template tag specification",
    # Consequences of the line above: every launch template update makes a new version, which the
    # group then follows.
    ("aws_launch_template", "default_version"): "follows the launch template update above",
    ("aws_launch_template", "latest_version"): "follows the launch template update above",
    ("aws_autoscaling_group", "launch_template"): "the group follows the new launch template version",
    ("aws_autoscaling_group", "mixed_instances_policy"):
        "the group follows the new launch template version (Spot: in its mixed instances policy)",
    ("aws_autoscaling_policy", "enabled"):
        "moto does not return whether a scaling policy is enabled",
    ("aws_autoscaling_policy", "predictive_scaling_configuration"):
        "moto returns an empty predictive scaling block for a target-tracking policy",
    ("aws_sqs_queue", "redrive_policy"):
        "moto returns the redrive policy re-serialised with spaces (a whitespace-only change)",
    # The history engine (terraform/history.tf): moto models a replication group thinly.
    ("aws_elasticache_replication_group", "num_cache_clusters"):
        "moto makes one member cluster whatever the count asked",
    ("aws_elasticache_replication_group", "member_clusters"):
        "moto makes one member cluster whatever the count asked",
    ("aws_elasticache_replication_group", "auto_minor_version_upgrade"):
        "moto does not return a replication group's minor-version upgrade setting",
    ("aws_elasticache_replication_group", "security_group_ids"):
        "moto does not return a replication group's security groups (the provider reads them from its member clusters)",
}


def changed_paths(before, after, prefix=""):
    """Attribute paths whose value differs between before and after (lists and maps walked)."""
    if isinstance(before, dict) and isinstance(after, dict):
        for k in sorted(set(before) | set(after)):
            yield from changed_paths(before.get(k), after.get(k), f"{prefix}.{k}" if prefix else k)
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after)):
            yield from changed_paths(b, a, f"{prefix}[{i}]")
    elif before != after:
        yield prefix


def main() -> int:
    plan = json.load(open(sys.argv[1]))
    unexpected, explained = [], []
    for rc in plan.get("resource_changes", []):
        actions = rc["change"]["actions"]
        if actions in (["no-op"], ["read"]):
            continue
        addr, rtype = rc["address"], rc["type"]
        if actions != ["update"]:
            forced = rc["change"].get("replace_paths") or []
            why = f" (forced by {forced})" if forced else ""
            unexpected.append(f"{addr}: {'/'.join(actions)}{why}")
            continue
        change = rc["change"]
        # A value known only after apply shows as null in `after`: it counts as a change too.
        for path in changed_paths(change.get("before"), change.get("after")):
            top = re.sub(r"\[\d+\].*$", "", path).split(".")[0]
            why = MOTO_OMITS.get((rtype, top))
            (explained if why else unexpected).append(f"{addr}: {path}" + (f" ({why})" if why else ""))
    for line in explained:
        print(f"moto omits: {line}")
    for line in unexpected:
        print(f"FAIL: unexpected change in the second plan: {line}")
    print(f"second plan: {len(explained)} change(s) explained by moto, {len(unexpected)} unexpected")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
