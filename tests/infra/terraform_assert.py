#!/usr/bin/env python3
"""What the Terraform root module leaves in AWS, checked against a moto server.

Run with the moto venv's python (it has boto3); AWS_ENDPOINT_URL points at moto.

  terraform_assert.py prepare EXAMPLE ZIP_DIR      prints a tfvars JSON: AMIs (and a certificate)
                                                   registered in moto, moto-only settings
  terraform_assert.py check EXAMPLE OUTPUTS TFVARS asserts on what moto holds after an apply
  terraform_assert.py scale EXAMPLE OUTPUTS         does what a scale-up Lambda does to the group
  terraform_assert.py gone EXAMPLE                 asserts destroy removed what apply made
  terraform_assert.py secrets OUTPUTS NAME SIGN ACCEPT  after a step of a cluster-secret rotation:
                                                   the slot the nodes sign with and the one they
                                                   accept ("-": none), and the roles' grants
  terraform_assert.py refresh STATE_JSON           the workers' instance refresh preferences, from
                                                   `terraform show -json` (moto does not keep them)
  terraform_assert.py principals POLICY_JSON       makes the users the IAM-enforced run acts as
                                                   (admin, deployer, planner) and prints their keys
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import boto3

FAILURES: list[str] = []


def check(cond: bool, what: str) -> None:
    print(("ok:   " if cond else "FAIL: ") + what)
    if not cond:
        FAILURES.append(what)


def tfvars(path: str) -> dict:
    """The plain `key = value` scalars of a tfvars file (enough for the settings checked here)."""
    out: dict = {}
    for line in open(path):
        m = re.match(r'^([a-z_]+)\s*=\s*("([^"]*)"|true|false|-?\d+)\s*$', line.strip())
        if m:
            raw = m.group(2)
            out[m.group(1)] = m.group(3) if raw.startswith('"') else (
                raw == "true" if raw in ("true", "false") else int(raw))
    return out


def tfvars_nested(path: str) -> dict:
    """Every setting of a tfvars file, nested values included, read with python-hcl2 (the infra
    tools' venv; its strings keep their quotes, which are taken off here)."""
    import os
    import subprocess
    tools = os.environ.get("EWS_TOOLS_DIR") or str(Path(__file__).resolve().parents[2] / ".tools")
    out = subprocess.run([f"{tools}/hcl2/bin/python", "-c",
                          "import hcl2, json, sys; print(json.dumps(hcl2.load(open(sys.argv[1]))))", path],
                         capture_output=True, text=True, check=True).stdout

    def unquote(v):
        if isinstance(v, str):
            return v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v
        if isinstance(v, list):
            return [unquote(x) for x in v]
        if isinstance(v, dict):
            return {unquote(k): unquote(x) for k, x in v.items()}
        return v
    return unquote(json.loads(out))


def prepare(example: str, zip_dir: str) -> None:
    ec2 = boto3.client("ec2")
    # As Packer makes them: an image of an instance of a stock x86_64 image (moto's RegisterImage
    # would keep no architecture).
    base = next(i for i in ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}])["Images"]
        if "Windows" not in i.get("Name", ""))
    amis = {}
    for role in ("leader", "worker"):
        inst = ec2.run_instances(ImageId=base["ImageId"], MinCount=1, MaxCount=1,
                                 InstanceType="t3.micro")["Instances"][0]["InstanceId"]
        amis[role] = ec2.create_image(InstanceId=inst, Name=f"elastic-ws-{role}-test")["ImageId"]
        ec2.terminate_instances(InstanceIds=[inst])
    out = {
        "leader_ami_id": amis["leader"],
        "worker_ami_id": amis["worker"],
        "lambda_zip_dir": zip_dir,
        # moto has no MonitorInstances.
        "leader_detailed_monitoring": False,
        # Deletion protection would make the destroy at the end of the test fail by design.
        "alb_deletion_protection": False,
    }
    if example == "production":
        out["certificate_arn"] = boto3.client("acm").request_certificate(
            DomainName="ws.example.com", ValidationMethod="DNS")["CertificateArn"]
    json.dump(out, sys.stdout)


def by_group(rules: list[dict], group_id: str, egress: bool) -> list[dict]:
    return [r for r in rules if r["GroupId"] == group_id and r["IsEgress"] == egress]


def port_rules(rules: list[dict], port: int) -> list[dict]:
    return [r for r in rules if r.get("FromPort") == port and r.get("ToPort") == port]


def role_grants(iam, role_name: str, service: str) -> tuple[set, set]:
    """The actions of `service` (e.g. "sqs") a role's inline policies allow, and on what."""
    as_list = lambda v: v if isinstance(v, list) else [v]
    stmts = [st for p in iam.list_role_policies(RoleName=role_name)["PolicyNames"]
             for st in iam.get_role_policy(RoleName=role_name, PolicyName=p)["PolicyDocument"]["Statement"]]
    mine = [st for st in stmts if any(str(a).startswith(f"{service}:") for a in as_list(st["Action"]))]
    return ({a for st in mine for a in as_list(st["Action"])},
            {r for st in mine for r in as_list(st["Resource"])})


def queue_alarm(cw, alarm_name: str, queue: str, metric: str, threshold: float) -> None:
    """An alarm on one SQS queue's metric above `threshold`, missing data not breaching."""
    alarms = cw.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
    a = alarms[0] if alarms else {}
    dims = {d["Name"]: d["Value"] for d in a.get("Dimensions", [])}
    check(a.get("Namespace") == "AWS/SQS" and a.get("MetricName") == metric and dims == {"QueueName": queue}
          and a.get("Threshold") == threshold and a.get("ComparisonOperator") == "GreaterThanThreshold"
          and a.get("TreatMissingData") == "notBreaching",
          f"alarm {alarm_name}: {metric} of {queue} above {threshold} ({a.get('MetricName')}, {dims}, {a.get('Threshold')})")


def check_ops_alarms(outputs: dict, settings: dict, name: str) -> None:
    """The operator's alarms: the group at its maximum, the ALB's own 5xx and rejected
    connections, and (where the leaders publish the cluster metric) no active leader, which
    missing data must raise."""
    cw = boto3.client("cloudwatch")
    want = {"workers-at-max": ("AWS/AutoScaling", "GroupInServiceInstances", "notBreaching"),
            "alb-5xx": ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "notBreaching"),
            "alb-rejected": ("AWS/ApplicationELB", "RejectedConnectionCount", "notBreaching")}
    if settings.get("scaling_metric") == "cluster" or settings.get("publish_cluster_metric") is True:
        want["no-active-leader"] = ("ElasticWS", "ConnectedClients", "breaching")
    for key, (namespace, metric, missing) in want.items():
        alarms = cw.describe_alarms(AlarmNames=[f"{name}-{key}"])["MetricAlarms"]
        a = alarms[0] if alarms else {}
        check(a.get("Namespace") == namespace and a.get("MetricName") == metric
              and a.get("TreatMissingData") == missing,
              f"alarm {name}-{key}: {namespace} {metric}, missing data {missing} "
              f"({a.get('Namespace')}, {a.get('MetricName')}, {a.get('TreatMissingData')})")
    at_max = cw.describe_alarms(AlarmNames=[f"{name}-workers-at-max"])["MetricAlarms"]
    dims = {d["Name"]: d["Value"] for d in (at_max[0]["Dimensions"] if at_max else [])}
    check(dims == {"AutoScalingGroupName": outputs["asg_name"]}
          and at_max and at_max[0]["Threshold"] == settings.get("worker_max_size", 10),
          f"workers-at-max watches the group at its maximum ({dims})")


def check_launch_tags(outputs: dict, name: str) -> None:
    """The worker launch template tags the instance, its volume and its network interface with
    the deployment's default tags (cost allocation, tag-enforcing SCPs)."""
    ec2 = boto3.client("ec2")
    asg = boto3.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[outputs["asg_name"]])["AutoScalingGroups"][0]
    lt = asg.get("LaunchTemplate") or asg.get("MixedInstancesPolicy", {}).get(
        "LaunchTemplate", {}).get("LaunchTemplateSpecification", {})
    data = ec2.describe_launch_template_versions(
        LaunchTemplateId=lt["LaunchTemplateId"], Versions=["$Latest"])["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    specs = {s["ResourceType"]: {t["Key"]: t["Value"] for t in s.get("Tags", [])}
             for s in data.get("TagSpecifications", [])}
    for kind in ("instance", "volume", "network-interface"):
        tags = specs.get(kind, {})
        check(tags.get("Application") == "elastic-ws" and tags.get("Deployment") == name
              and tags.get("Role") == "worker",
              f"worker launch template tags its {kind} with the default tags ({tags})")


def user_data_env(outputs: dict) -> dict:
    """The EWS_* settings the worker launch template's user data writes to /etc/ews/ews.env."""
    import base64
    ec2 = boto3.client("ec2")
    asg = boto3.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[outputs["asg_name"]])["AutoScalingGroups"][0]
    lt = asg.get("LaunchTemplate") or asg.get("MixedInstancesPolicy", {}).get(
        "LaunchTemplate", {}).get("LaunchTemplateSpecification", {})
    versions = ec2.describe_launch_template_versions(
        LaunchTemplateId=lt["LaunchTemplateId"], Versions=["$Latest"])["LaunchTemplateVersions"]
    raw = base64.b64decode(versions[0]["LaunchTemplateData"].get("UserData", "")).decode()
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


def check_termination(outputs: dict, settings: dict, asg: dict, name: str, metric_source: str) -> None:
    """Scale-in removes the least-loaded worker: the termination-policy Lambda first (a published
    version, callable by EC2 Auto Scaling's service-linked role, reading the leaders' per-worker
    metric), NewestInstance after it; NewestInstance alone where the leaders publish no metric."""
    lam = boto3.client("lambda")
    publish = metric_source == "cluster" or settings.get("publish_cluster_metric") is True
    least = settings.get("least_loaded_termination", True) and publish
    fn_name = outputs.get("termination_function")
    if not least:
        check(asg.get("TerminationPolicies") == ["NewestInstance"] and fn_name is None,
              f"without the per-worker metric scale-in removes the newest ({asg.get('TerminationPolicies')})")
        return
    check(fn_name == f"{name}-terminate", f"termination function {fn_name}")
    if not fn_name:
        return
    fn = lam.get_function(FunctionName=fn_name)["Configuration"]
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=fn_name)["Versions"]
                if v["Version"] != "$LATEST"]
    want = [f"{fn['FunctionArn']}:{versions[-1]}" if versions else None, "NewestInstance"]
    check(asg.get("TerminationPolicies") == want,
          f"the least-loaded worker goes first, then the newest ({asg.get('TerminationPolicies')} == {want})")
    env = fn.get("Environment", {}).get("Variables", {})
    check(env == {"METRIC_NAMESPACE": settings.get("cloudwatch_namespace", "ElasticWS"), "DEPLOYMENT": name},
          f"ews-terminate reads the deployment's per-worker metric ({env})")
    check(fn["Runtime"] == "provided.al2023" and fn["Architectures"] == ["arm64"], "ews-terminate: provided.al2023 on arm64")
    policy = json.loads(lam.get_policy(FunctionName=fn_name, Qualifier=versions[-1])["Policy"]) if versions else {}
    principals = [s.get("Principal", {}).get("AWS") if isinstance(s.get("Principal"), dict) else s.get("Principal")
                  for s in policy.get("Statement", [])]
    check(any(str(p).endswith(":role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")
              for p in principals),
          f"EC2 Auto Scaling's service-linked role may call the version ({principals})")
    acts, _ = role_grants(boto3.client("iam"), fn["Role"].split("/")[-1], "cloudwatch")
    check(acts == {"cloudwatch:GetMetricData"}, f"ews-terminate may only read metrics ({sorted(acts)})")


def check_spot_and_schedule(settings: dict, asg: dict, name: str) -> None:
    """Spot above an On-Demand base over several types with Capacity Rebalancing, the workers
    told to watch for their notice; scheduled minimums raised and lowered."""
    import base64
    spot = (settings.get("spot") or None)
    mip = asg.get("MixedInstancesPolicy")
    if spot is None:
        check(mip is None and not asg.get("CapacityRebalance"), "On-Demand only: no mixed instances policy")
    else:
        dist = (mip or {}).get("InstancesDistribution", {})
        overrides = [o.get("InstanceType") for o in (mip or {}).get("LaunchTemplate", {}).get("Overrides", [])]
        check(dist.get("OnDemandBaseCapacity") == spot["on_demand_base"]
              and dist.get("OnDemandPercentageAboveBaseCapacity") == 0
              and dist.get("SpotAllocationStrategy") == "price-capacity-optimized",
              f"Spot above {spot['on_demand_base']} On-Demand workers ({dist})")
        check(overrides == spot["instance_types"], f"Spot over {spot['instance_types']} ({overrides})")
        check(asg.get("CapacityRebalance") is True, "Capacity Rebalancing on")
    env = user_data_env({"asg_name": asg["AutoScalingGroupName"]})
    check(("EWS_IMDS_URL" in env) == (spot is not None),
          f"workers watch for the Spot notice only on Spot ({env.get('EWS_IMDS_URL')})")
    check(env.get("EWS_MAX_CONNECTIONS") == str(settings.get("worker_max_clients", 100000))
          and env.get("EWS_BUSY_FRACTION") == str(settings.get("busy_fraction", 0.9)),
          f"workers take worker_max_clients and rebalance past busy_fraction ({env.get('EWS_MAX_CONNECTIONS')}, "
          f"{env.get('EWS_BUSY_FRACTION')})")
    actions = boto3.client("autoscaling").describe_scheduled_actions(
        AutoScalingGroupName=asg["AutoScalingGroupName"])["ScheduledUpdateGroupActions"]
    got = {a["ScheduledActionName"]: (a.get("Recurrence"), a.get("MinSize")) for a in actions}
    want = {}
    for s in settings.get("scheduled_capacity") or []:
        want[f"{name}-{s['name']}-start"] = (s["start"], s["min_size"])
        want[f"{name}-{s['name']}-end"] = (s["end"], settings.get("worker_min_size", 2))
    check(got == want, f"scheduled capacity ({got} == {want})")


def check_lambda_scaling(outputs: dict, settings: dict, lb: dict, name: str, step: int,
                         hysteresis: int, metric_source: str) -> None:
    """The paper's design: two alarms, each invoking its scaler Lambda; the reconcile schedule;
    failed invocations recorded in a queue."""
    cw = boto3.client("cloudwatch")
    lam = boto3.client("lambda")
    functions = outputs["scaler_functions"]
    for direction in ("up", "down"):
        alarm_name = outputs[f"scale_{direction}_alarm_name"]
        alarms = cw.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
        check(len(alarms) == 1, f"alarm {alarm_name} exists")
        if not alarms:
            continue
        alarm = alarms[0]
        fn = lam.get_function(FunctionName=functions[direction])["Configuration"]
        check(alarm["AlarmActions"] == [fn["FunctionArn"]], f"{direction}: alarm invokes {fn['FunctionName']}")
        check(alarm["ComparisonOperator"] == ("GreaterThanThreshold" if direction == "up" else "LessThanThreshold"),
              f"{direction}: comparison {alarm['ComparisonOperator']}")
        per_worker = settings.get("threshold_formula", "per-worker") == "per-worker"
        up = settings.get("worker_min_size", 2) * step if per_worker else step
        want = up if direction == "up" else -hysteresis
        check(alarm["Threshold"] == want, f"{direction}: initial threshold {alarm['Threshold']} == {want}")
        queries = alarm.get("Metrics") or []
        stats = [q["MetricStat"] for q in queries if "MetricStat" in q]
        check(len(stats) == 1, f"{direction}: one metric behind the alarm")
        if stats:
            metric = stats[0]["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            if metric_source == "alb":
                check((metric["Namespace"], metric["MetricName"]) == ("AWS/ApplicationELB", "ActiveConnectionCount"),
                      f"{direction}: metric AWS/ApplicationELB ActiveConnectionCount")
                check(dims == {"LoadBalancer": lb["LoadBalancerArn"].split(":loadbalancer/")[1]},
                      f"{direction}: dimension LoadBalancer = this ALB ({dims})")
            else:
                check((metric["Namespace"], metric["MetricName"]) ==
                      (settings.get("cloudwatch_namespace", "ElasticWS"), settings.get("cloudwatch_metric", "ConnectedClients")),
                      f"{direction}: metric {metric['Namespace']} {metric['MetricName']}")
                check(dims == {"Deployment": name}, f"{direction}: dimension Deployment = {name} ({dims})")
        expr = [q for q in queries if q.get("ReturnData")]
        if metric_source == "alb":
            # The ALB publishes nothing in a minute without traffic: that minute is zero clients.
            # ActiveConnectionCount counts both sides of each WebSocket: halved, it is clients.
            check(len(expr) == 1 and expr[0].get("Expression") == "FILL(m1, 0) / 2",
                  f"{direction}: ALB connections halved to clients, a quiet minute as zero (FILL)")
        else:
            # No datapoint from the leaders means no active leader, not zero clients.
            check(len(expr) == 1 and expr[0].get("Expression") == "m1" and
                  alarm.get("TreatMissingData") == "notBreaching",
                  f"{direction}: a missing cluster datapoint is not read as zero clients")
        policy = json.loads(lam.get_policy(FunctionName=fn["FunctionName"])["Policy"])
        every = [s for s in policy["Statement"] if s.get("Action") == "lambda:InvokeFunction"]
        def principal_of(s):
            p = s.get("Principal", {})
            return p.get("Service") if isinstance(p, dict) else p
        stmts = [s for s in every if principal_of(s) != "events.amazonaws.com"]
        scheduled = [s for s in every if principal_of(s) == "events.amazonaws.com"]
        busy = metric_source == "cluster" and direction == "up"
        check(len(stmts) == (2 if busy else 1),
              f"{direction}: an invoke permission for its alarm{' and the busy-worker alarm' if busy else ''}")
        check(len(scheduled) == 1, f"{direction}: one invoke permission for the reconcile schedule")
        for s in stmts[:1]:
            principal = s.get("Principal", {})
            principal = principal.get("Service") if isinstance(principal, dict) else principal
            check(principal == "lambda.alarms.cloudwatch.amazonaws.com",
                  f"{direction}: permission for the CloudWatch alarms principal ({principal})")
            source = s.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn")
            sources = {st.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn") for st in stmts}
            mine = {outputs[f"scale_{direction}_alarm_arn"]}
            if busy:
                mine.add(outputs[f"scale_{direction}_alarm_arn"].replace(":alarm:" + outputs["scale_up_alarm_name"],
                                                                         ":alarm:" + f"{name}-busy-worker"))
            check(sources == mine, f"{direction}: only its own alarms may invoke ({sorted(sources)})")
        check(fn["Runtime"] == "provided.al2023" and fn["Architectures"] == ["arm64"], f"{direction}: provided.al2023 on arm64")
        env = fn.get("Environment", {}).get("Variables", {})
        check(env.get("WS_ASG_NAME") == outputs["asg_name"], f"{direction}: WS_ASG_NAME")
        check(env.get("SCALE_UP_ALARM") == outputs["scale_up_alarm_name"] and
              env.get("SCALE_DOWN_ALARM") == outputs["scale_down_alarm_name"], f"{direction}: alarm names in env")
        check(env.get("STEP") == str(step), f"{direction}: STEP {env.get('STEP')}")
        check(env.get("THRESHOLDS") == settings.get("threshold_formula", "per-worker")
              and env.get("SCALE_IN_COOLDOWN_SECS") == str(settings.get("scale_in_cooldown_secs", 300))
              and env.get("FILL_SECS") == str(settings.get("fill_secs", 300)),
              f"{direction}: THRESHOLDS, SCALE_IN_COOLDOWN_SECS, FILL_SECS ({env})")
        check(env.get("BUSY_ALARM") == (f"{name}-busy-worker" if metric_source == "cluster" else None),
              f"{direction}: BUSY_ALARM {env.get('BUSY_ALARM')}")
    if metric_source == "cluster":
        busy = cw.describe_alarms(AlarmNames=[f"{name}-busy-worker"])["MetricAlarms"]
        b = busy[0] if busy else {}
        up_fn = lam.get_function(FunctionName=functions["up"])["Configuration"]["FunctionArn"]
        returned = [q for q in b.get("Metrics", []) if q.get("ReturnData")]
        metrics = {q["Id"]: q["MetricStat"]["Metric"]["MetricName"] for q in b.get("Metrics", []) if "MetricStat" in q}
        want_line = settings.get("busy_fraction", 0.9) * settings.get("worker_max_clients", 100000)
        check(b.get("Threshold") == want_line and b.get("EvaluationPeriods") == 2
              and b.get("AlarmActions") == [up_fn]
              and returned and returned[0].get("Expression") == "IF(quietest * 2 >= busiest, busiest, 0)"
              and metrics == {"busiest": "BusiestWorkerClients", "quietest": "QuietestWorkerClients"},
              f"the busy-worker alarm: the busiest above {want_line} while the fleet is evenly busy, "
              f"2 minutes, invoking the scale-up function ({b.get('Threshold')}, {metrics})")
    events = boto3.client("events")
    rule = events.describe_rule(Name=f"{name}-scaling-reconcile")
    check(rule.get("ScheduleExpression") == "rate(2 minutes)", f"reconcile every 2 minutes ({rule.get('ScheduleExpression')})")
    targets = {t["Arn"] for t in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]}
    check(targets == {f["FunctionArn"] for f in [lam.get_function(FunctionName=fn)["Configuration"] for fn in functions.values()]},
          f"the reconcile schedule invokes both scalers ({sorted(targets)})")
    failures = outputs.get("scaler_failures_queue_url")
    check(bool(failures), f"lambda mode: a failures queue ({failures})")
    if failures:
        sqs = boto3.client("sqs")
        attrs = sqs.get_queue_attributes(QueueUrl=failures, AttributeNames=["All"])["Attributes"]
        check(attrs.get("SqsManagedSseEnabled") == "true", "scaler failures queue encrypted")
        queue_alarm(cw, f"{name}-scaler-failures", failures.rsplit("/", 1)[-1],
                    "ApproximateNumberOfMessagesVisible", 0)
        for direction, fn_name in functions.items():
            cfg = lam.get_function_event_invoke_config(FunctionName=fn_name)
            dest = cfg.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            check(dest == attrs.get("QueueArn"), f"{direction}: failed invocations go to the failures queue ({dest})")
            check(cfg.get("MaximumRetryAttempts") == 2 and cfg.get("MaximumEventAgeInSeconds") == 900,
                  f"{direction}: 2 retries, events dropped after 15 minutes ({cfg.get('MaximumRetryAttempts')}, "
                  f"{cfg.get('MaximumEventAgeInSeconds')})")
            role_name = lam.get_function(FunctionName=fn_name)["Configuration"]["Role"].split("/")[-1]
            acts, res = role_grants(boto3.client("iam"), role_name, "sqs")
            check(acts == {"sqs:SendMessage"} and res == {attrs.get("QueueArn")},
                  f"{direction}: its role may only send to the failures queue ({sorted(acts)} on {sorted(res)})")


def check_target_tracking(outputs: dict, settings: dict, name: str, metric_source: str) -> None:
    """AWS's own target tracking: one policy on clients per in-service worker, and none of ours."""
    check(outputs["scaler_functions"] == {}, f"target tracking: no scaler Lambdas ({outputs['scaler_functions']})")
    ours = [a["AlarmName"] for a in boto3.client("cloudwatch").describe_alarms(
        AlarmNamePrefix=f"{name}-scale-")["MetricAlarms"]]
    check(not ours, f"target tracking: no scaling alarms of ours ({ours})")
    check(not boto3.client("events").list_rules(NamePrefix=f"{name}-scaling-reconcile")["Rules"],
          "target tracking: no reconcile schedule")
    asg = boto3.client("autoscaling")
    policies = asg.describe_policies(AutoScalingGroupName=outputs["asg_name"])["ScalingPolicies"]
    check(len(policies) == 1 and policies[0]["PolicyType"] == "TargetTrackingScaling",
          f"one target-tracking policy ({[p['PolicyType'] for p in policies]})")
    if not policies:
        return
    tt = policies[0]["TargetTrackingConfiguration"]
    check(tt["TargetValue"] == settings.get("target_clients_per_worker", 80000),
          f"target {tt['TargetValue']} clients per worker")
    check(policies[0].get("EstimatedInstanceWarmup") == settings.get("worker_instance_warmup_secs", 120),
          f"warmup {policies[0].get('EstimatedInstanceWarmup')} s")
    metrics = {m["Id"]: m for m in tt["CustomizedMetricSpecification"]["Metrics"]}
    returned = [m for m in metrics.values() if m.get("ReturnData")]
    check(len(returned) == 1 and returned[0].get("Expression") == "clients / workers",
          f"the policy tracks clients / workers ({[m.get('Expression') for m in returned]})")
    workers = metrics.get("workers", {}).get("MetricStat", {}).get("Metric", {})
    check(workers.get("MetricName") == "GroupInServiceInstances" and
          workers.get("Dimensions") == [{"Name": "AutoScalingGroupName", "Value": outputs["asg_name"]}],
          f"workers = this group's in-service instances ({workers})")
    want = ("AWS/ApplicationELB", "ActiveConnectionCount") if metric_source == "alb" else (
        settings.get("cloudwatch_namespace", "ElasticWS"), settings.get("cloudwatch_metric", "ConnectedClients"))
    m1 = metrics.get("m1", {}).get("MetricStat", {}).get("Metric", {})
    check((m1.get("Namespace"), m1.get("MetricName")) == want, f"clients from {want} ({m1})")
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[outputs["asg_name"]])["AutoScalingGroups"][0]
    enabled = {m["Metric"] for m in group.get("EnabledMetrics", [])}
    check("GroupInServiceInstances" in enabled, f"the group publishes GroupInServiceInstances ({sorted(enabled)})")


def check_network(settings: dict, name: str) -> None:
    """The gateway endpoints on every private route table, the interface endpoints the settings
    name (private DNS, HTTPS from the VPC only), each with the account-only policy, and flow logs
    of the traffic type asked for."""
    ec2 = boto3.client("ec2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [name]}])["Vpcs"]
    check(len(vpcs) == 1, f"the VPC {name}")
    if not vpcs:
        return
    vpc = vpcs[0]["VpcId"]
    private_rts = {rt["RouteTableId"] for rt in ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}, {"Name": "tag:Name", "Values": [f"{name}-private-*"]}])["RouteTables"]}
    eps = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["VpcEndpoints"]
    by_service = {e["ServiceName"].rsplit(".", 1)[-1]: e for e in eps}
    for svc in ("dynamodb", "s3"):
        e = by_service.get(svc)
        check(e is not None and e["VpcEndpointType"] == "Gateway" and set(e.get("RouteTableIds", [])) == private_rts,
              f"{svc} gateway endpoint on the private route tables")
    want = set(settings.get("interface_endpoints", []))
    got = {s for s, e in by_service.items() if e["VpcEndpointType"] == "Interface"}
    check(got == want, f"interface endpoints {sorted(got)} == {sorted(want)}")
    for svc in want & got:
        e = by_service[svc]
        check(e.get("PrivateDnsEnabled") is True and len(e.get("SubnetIds", [])) == 2,
              f"{svc} endpoint: private DNS, both private subnets")
    for svc, e in by_service.items():
        doc = json.loads(e.get("PolicyDocument") or "{}")
        conds = [st.get("Condition", {}) for st in doc.get("Statement", [])]
        check(conds and all("aws:PrincipalAccount" in json.dumps(c) for c in conds),
              f"{svc} endpoint admits this account's principals only")
    logs = ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vpc]}])["FlowLogs"]
    traffic = settings.get("flow_logs_traffic_type", "REJECT")
    check([f["TrafficType"] for f in logs] == [traffic], f"flow logs of {traffic} traffic ({[f['TrafficType'] for f in logs]})")


def check_edge(settings: dict, name: str, lb: dict) -> None:
    """The ALB's access logs go to the bucket made for them (locked down, expiring, writable by
    the load balancer only), the WAF guards the ALB where the settings ask for it, and the
    dashboard shows the deployment."""
    elb = boto3.client("elbv2")
    attrs = {a["Key"]: a["Value"] for a in elb.describe_load_balancer_attributes(
        LoadBalancerArn=lb["LoadBalancerArn"])["Attributes"]}
    retention = settings.get("alb_access_logs_retention_days", 90)
    bucket = f"{name}-alb-logs-{boto3.client('sts').get_caller_identity()['Account']}-{boto3.session.Session().region_name}"
    check((attrs.get("access_logs.s3.enabled") == "true") == (retention > 0)
          and (retention == 0 or attrs.get("access_logs.s3.bucket") == bucket),
          f"ALB access logs to {bucket} ({attrs.get('access_logs.s3.bucket')})")
    if retention > 0:
        s3 = boto3.client("s3")
        pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        check(all(pab.values()), f"the logs bucket blocks public access ({pab})")
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        check(any(r.get("Expiration", {}).get("Days") == retention for r in rules),
              f"access logs expire after {retention} days")
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        writers = [st for st in policy["Statement"] if st["Effect"] == "Allow"]
        check(len(writers) == 1 and writers[0]["Action"] == "s3:PutObject"
              and f"/{name}/AWSLogs/" in writers[0]["Resource"],
              "only the load balancer may write, and only its logs")
        check(any(st["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(st) for st in policy["Statement"]),
              "the logs bucket refuses plain HTTP")
    waf = boto3.client("wafv2")
    acl = waf.get_web_acl_for_resource(ResourceArn=lb["LoadBalancerArn"]).get("WebACL")
    want_waf = settings.get("waf_rate_limit", 0) > 0
    check((acl is not None) == want_waf, f"WAF on the ALB: {acl is not None} (waf_rate_limit = {settings.get('waf_rate_limit', 0)})")
    if acl:
        rules = {r["Name"]: r for r in acl["Rules"]}
        rate = rules.get("connections-per-address", {}).get("Statement", {}).get("RateBasedStatement", {})
        check(rate.get("Limit") == settings["waf_rate_limit"] and rate.get("AggregateKeyType") == "IP",
              f"WAF rate rule: {rate.get('Limit')} per address")
        check({"AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesKnownBadInputsRuleSet"} <= set(rules),
              f"WAF managed rule groups ({sorted(rules)})")
    body = json.loads(boto3.client("cloudwatch").get_dashboard(DashboardName=name)["DashboardBody"])
    titles = [w["properties"].get("title", "") for w in body["widgets"]]
    want = ["Clients, and per in-service worker", "Workers (each step is a scale event)", "Load balancer", "Alarms"]
    if settings.get("sink", "sqs") == "sqs":
        want.insert(3, "Events: sent per second, waiting, age of the oldest (sink latency)")
    check(titles == want, f"dashboard {name}: {titles}")
    alarm_widget = next((w for w in body["widgets"] if w["type"] == "alarm"), {"properties": {"alarms": []}})
    ours = [a["AlarmArn"] for a in boto3.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{name}-")["MetricAlarms"]]
    check(set(alarm_widget["properties"]["alarms"]) <= set(ours) and len(alarm_widget["properties"]["alarms"]) >= 4,
          f"the dashboard shows the deployment's alarms ({len(alarm_widget['properties']['alarms'])})")


def check_backups(settings: dict, name: str) -> None:
    """With the built-in queue, a daily plan backs up exactly both leaders' data volumes into the
    deployment's vault and keeps each recovery point queue_backup_retention_days."""
    backup = boto3.client("backup")
    retention = settings.get("queue_backup_retention_days", 14)
    on = settings.get("sink", "sqs") == "queue" and retention > 0
    plans = [p for p in backup.list_backup_plans()["BackupPlansList"] if p["BackupPlanName"] == f"{name}-queue"]
    check(len(plans) == (1 if on else 0), f"queue backup plan: {len(plans)} (sink {settings.get('sink', 'sqs')}, {retention} days)")
    if not on or not plans:
        return
    plan = backup.get_backup_plan(BackupPlanId=plans[0]["BackupPlanId"])["BackupPlan"]
    rule = plan["Rules"][0]
    check(rule["TargetBackupVaultName"] == f"{name}-queue" and rule["Lifecycle"]["DeleteAfterDays"] == retention
          and rule["ScheduleExpression"].startswith("cron("),
          f"daily into {name}-queue, kept {rule['Lifecycle'].get('DeleteAfterDays')} days")
    sels = backup.list_backup_selections(BackupPlanId=plans[0]["BackupPlanId"])["BackupSelectionsList"]
    check(len(sels) == 1, f"one backup selection ({len(sels)})")
    if sels:
        sel = backup.get_backup_selection(BackupPlanId=plans[0]["BackupPlanId"],
                                          SelectionId=sels[0]["SelectionId"])["BackupSelection"]
        vols = boto3.client("ec2").describe_volumes(Filters=[{"Name": "tag:Name", "Values": [f"{name}-leader-*-data"]}])["Volumes"]
        region = boto3.session.Session().region_name
        want = {f"arn:aws:ec2:{region}:{boto3.client('sts').get_caller_identity()['Account']}:volume/{v['VolumeId']}" for v in vols}
        check(len(want) == 2 and set(sel["Resources"]) == want, f"it selects both data volumes ({sel['Resources']})")
        attached = {p["PolicyArn"] for p in boto3.client("iam").list_attached_role_policies(
            RoleName=sel["IamRoleArn"].rsplit("/", 1)[-1])["AttachedPolicies"]}
        check("arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup" in attached,
              f"the backup role holds AWS's backup policy ({sorted(attached)})")


def check_applied(example: str, outputs_path: str, tfvars_path: str) -> None:
    outputs = {k: v["value"] for k, v in json.load(open(outputs_path)).items()}
    settings = tfvars(tfvars_path)
    name = settings.get("name", "ews")
    min_size = settings.get("worker_min_size", 2)
    max_size = settings.get("worker_max_size", 10)
    step = settings.get("step", 80000)
    hysteresis = settings.get("hysteresis", 8000)
    metric_source = settings.get("scaling_metric", "cluster")
    public_port, admin_port, internal_port = 8080, 9090, 7070

    scaling_mode = settings.get("scaling_mode", "lambda")
    # Terraform leaves null outputs out of `terraform output -json`: which are there depends on
    # the scaling mode.
    per_mode = ("scale_up_alarm_name", "scale_up_alarm_arn", "scale_down_alarm_name",
                "scale_down_alarm_arn", "scaler_failures_queue_url")
    for key in ("asg_name", "alb_dns_name", "websocket_url", "leader_hostnames", "scaler_functions"):
        check(key in outputs, f"output {key} present")
    for key in per_mode:
        check((key in outputs) == (scaling_mode == "lambda"), f"output {key} present only in lambda mode")
    check(("target_tracking_policy_arn" in outputs) == (scaling_mode != "lambda"),
          "output target_tracking_policy_arn present only in target-tracking mode")

    check_network({**settings, "interface_endpoints": tfvars_nested(tfvars_path).get("interface_endpoints", [])}, name)

    # --- the worker group -------------------------------------------------------------------
    asg_client = boto3.client("autoscaling")
    groups = asg_client.describe_auto_scaling_groups(
        AutoScalingGroupNames=[outputs["asg_name"]])["AutoScalingGroups"]
    check(len(groups) == 1, f"ASG {outputs['asg_name']} exists")
    if not groups:
        return
    asg = groups[0]
    check((asg["MinSize"], asg["MaxSize"]) == (min_size, max_size),
          f"ASG bounds {asg['MinSize']}..{asg['MaxSize']} == {min_size}..{max_size}")
    check(asg["DesiredCapacity"] == min_size, f"ASG starts at min ({asg['DesiredCapacity']})")
    check(asg["HealthCheckType"] == "ELB", "ASG uses the ALB health check")
    check_termination(outputs, settings, asg, name, metric_source)
    nested = tfvars_nested(tfvars_path)
    check_spot_and_schedule({**settings, "spot": nested.get("spot"),
                             "scheduled_capacity": nested.get("scheduled_capacity") or []}, asg, name)
    check(len(asg.get("VPCZoneIdentifier", "").split(",")) == 2, "ASG spans two subnets")
    tags = {tg["Key"]: tg["Value"] for tg in asg.get("Tags", [])}
    check(tags.get("Name") == f"{name}-worker", f"the group's own tags are set ({tags})")
    suspended = {p["ProcessName"] for p in asg.get("SuspendedProcesses", [])}
    check("AZRebalance" in suspended, f"AZRebalance suspended ({sorted(suspended)})")
    hooks = asg_client.describe_lifecycle_hooks(AutoScalingGroupName=asg["AutoScalingGroupName"])["LifecycleHooks"]
    check(any(h["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING" and
              h["DefaultResult"] == "CONTINUE" for h in hooks), "termination lifecycle hook (drain)")

    # --- the load balancer ------------------------------------------------------------------
    elb = boto3.client("elbv2")
    lbs = [lb for lb in elb.describe_load_balancers()["LoadBalancers"]
           if lb["DNSName"] == outputs["alb_dns_name"]]
    check(len(lbs) == 1, "ALB of alb_dns_name exists")
    if not lbs:
        return
    lb = lbs[0]
    check(lb.get("Type") == "application", "an application load balancer")
    check_edge(settings, name, lb)
    check_backups(settings, name)
    tgs = elb.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]
    check(len(tgs) == 1, "one target group")
    tg = tgs[0]
    check(tg["Port"] == public_port and tg["Protocol"] == "HTTP", f"targets on {public_port}/HTTP")
    check(tg.get("HealthCheckPath") == "/info", f"health check path {tg.get('HealthCheckPath')}")
    check(tg.get("Matcher", {}).get("HttpCode") == "200", "health check expects 200")
    check(str(tg.get("HealthCheckPort")) == "traffic-port", "health check on the traffic port")
    check(tg["TargetGroupArn"] in asg.get("TargetGroupARNs", []), "ASG registers into the target group")
    attrs = {a["Key"]: a["Value"] for a in
             elb.describe_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"])["Attributes"]}
    drain = settings.get("drain_seconds", 30)
    check(int(attrs.get("deregistration_delay.timeout_seconds", -1)) > drain,
          f"deregistration delay {attrs.get('deregistration_delay.timeout_seconds')} s outlasts the worker's {drain} s drain")
    lb_attrs = {a["Key"]: a["Value"] for a in
                elb.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])["Attributes"]}
    idle = settings.get("alb_idle_timeout_secs", 120)
    check(lb_attrs.get("idle_timeout.timeout_seconds") == str(idle), f"ALB idle timeout {idle} s")
    listeners = {l["Port"]: l for l in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]}
    if example == "production":
        https = listeners.get(443)
        check(https is not None and https["Protocol"] == "HTTPS", "HTTPS listener on 443")
        if https:
            check(bool(https.get("Certificates")) and https["Certificates"][0]["CertificateArn"].startswith("arn:aws:acm:"),
                  "HTTPS listener carries the ACM certificate")
            check(https["DefaultActions"][0]["Type"] == "forward", "443 forwards to the workers")
        http = listeners.get(80)
        check(http is not None and http["DefaultActions"][0]["Type"] == "redirect", "80 redirects to HTTPS")
        check(outputs["websocket_url"].startswith("wss://"), f"websocket_url is wss:// ({outputs['websocket_url']})")
    else:
        check(set(listeners) == {80}, f"trial: only port 80 ({sorted(listeners)})")
        check(listeners[80]["DefaultActions"][0]["Type"] == "forward", "80 forwards to the workers")

    # --- scaling: the paper's alarms and Lambdas, or AWS's target tracking --------------------
    cw = boto3.client("cloudwatch")
    if scaling_mode == "lambda":
        check_lambda_scaling(outputs, settings, lb, name, step, hysteresis, metric_source)
    else:
        check_target_tracking(outputs, settings, name, metric_source)
    alarm_names = {a["AlarmName"] for a in cw.describe_alarms()["MetricAlarms"]}
    extras = [f"{name}-unhealthy-workers"]
    if scaling_mode == "lambda":
        extras += [f"{name}-scale-up-errors", f"{name}-scale-down-errors"]
    for extra in extras:
        check(extra in alarm_names, f"operational alarm {extra}")

    # --- security groups ----------------------------------------------------------------------
    ec2 = boto3.client("ec2")
    sgs = {g["GroupName"]: g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    alb_sg, workers_sg, leaders_sg = (sgs.get(f"{name}-{r}") for r in ("alb", "workers", "leaders"))
    check(None not in (alb_sg, workers_sg, leaders_sg), "security groups alb, workers, leaders")
    rules = ec2.describe_security_group_rules()["SecurityGroupRules"]
    w_in = by_group(rules, workers_sg, False)
    public = port_rules(w_in, public_port)
    check(len(public) == 1 and public[0].get("ReferencedGroupInfo", {}).get("GroupId") == alb_sg
          and "CidrIpv4" not in public[0], f"workers: {public_port} only from the ALB's group")
    check(all(r.get("ReferencedGroupInfo", {}).get("GroupId") != alb_sg for r in port_rules(w_in, admin_port)),
          f"workers: admin port {admin_port} not from the ALB")
    for sg, role in ((workers_sg, "workers"), (leaders_sg, "leaders")):
        ing = by_group(rules, sg, False)
        internal = port_rules(ing, internal_port)
        got = {(r["IpProtocol"], r.get("ReferencedGroupInfo", {}).get("GroupId")) for r in internal}
        want = {(p, g) for p in ("tcp", "udp") for g in (workers_sg, leaders_sg)}
        check(got == want, f"{role}: internal {internal_port} tcp+udp from the node groups only")
        check(not any("CidrIpv4" in r for r in internal), f"{role}: internal port open to no CIDR")
        check(all(r.get("CidrIpv4") != "0.0.0.0/0" for r in ing), f"{role}: nothing open to the internet")
    check(not port_rules(by_group(rules, leaders_sg, False), public_port), "leaders: no client port")
    alb_in = {r["FromPort"] for r in by_group(rules, alb_sg, False)}
    check(alb_in == ({80, 443} if example == "production" else {80}), f"ALB accepts {sorted(alb_in)}")
    alb_out = by_group(rules, alb_sg, True)
    check(len(alb_out) == 1 and alb_out[0].get("FromPort") == public_port and
          alb_out[0].get("ReferencedGroupInfo", {}).get("GroupId") == workers_sg, "ALB egress: workers' port only")

    # --- leaders, their names and the cluster secret -----------------------------------------
    res = ec2.describe_instances(Filters=[{"Name": "tag:Role", "Values": ["leader"]},
                                          {"Name": "instance-state-name", "Values": ["running", "pending"]}])
    leaders = [i for r in res["Reservations"] for i in r["Instances"]]
    check(len(leaders) == 2, f"two leader instances ({len(leaders)})")
    check(all("PublicIpAddress" not in i for i in leaders), "leaders have no public IP")
    subnet_ids = list({n["SubnetId"] for i in leaders for n in i.get("NetworkInterfaces", [])})
    subnets = ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"] if subnet_ids else []
    check(len({s["AvailabilityZone"] for s in subnets}) == 2, "leaders in two zones")
    check(all(not s.get("MapPublicIpOnLaunch") for s in subnets), "leader subnets map no public IPs")
    check(all(i.get("MetadataOptions", {}).get("HttpTokens") == "required" for i in leaders), "leaders require IMDSv2")
    if settings.get("sink", "sqs") == "queue":
        # The built-in queue's volume outlives its leader: one per leader, in its zone, attached.
        vols = ec2.describe_volumes(Filters=[{"Name": "tag:Name", "Values": [f"{name}-leader-*-data"]}])["Volumes"]
        attached = {a["InstanceId"] for v in vols for a in v.get("Attachments", [])}
        check(len(vols) == 2 and all(v["Encrypted"] for v in vols), f"two encrypted leader data volumes ({len(vols)})")
        check(attached == {i["InstanceId"] for i in leaders}, "each leader has its data volume attached")
    r53 = boto3.client("route53")
    zone_name = settings.get("private_zone_name", "ews.internal")
    zones = [z for z in r53.list_hosted_zones()["HostedZones"] if z["Name"].rstrip(".") == zone_name]
    check(len(zones) == 1, f"the private zone {zone_name}")
    if zones:
        records = r53.list_resource_record_sets(HostedZoneId=zones[0]["Id"])["ResourceRecordSets"]
        a = {r["Name"].rstrip("."): [x["Value"] for x in r["ResourceRecords"]] for r in records if r["Type"] == "A"}
        ips = sorted(i["PrivateIpAddress"] for i in leaders)
        named = sorted(v for h in outputs["leader_hostnames"] for v in a.get(h, []))
        check(named == ips, f"leader names resolve to the leaders ({named} vs {ips})")
    ssm = boto3.client("ssm")
    secret = ssm.get_parameter(Name=f"/{name}/cluster-secret", WithDecryption=True)["Parameter"]
    check(secret["Type"] == "SecureString" and len(secret["Value"]) == 48 and secret["Value"].isalnum(),
          "cluster secret: 48 random alphanumerics in an SSM SecureString")
    token = ssm.get_parameter(Name=outputs.get("admin_token_parameter", f"/{name}/admin-token"),
                              WithDecryption=True)["Parameter"]
    check(token["Type"] == "SecureString" and len(token["Value"]) == 48 and token["Value"] != secret["Value"],
          "admin token: its own 48 random characters in an SSM SecureString")

    # --- names are per region (IAM is global) -------------------------------------------------
    region = boto3.session.Session().region_name
    iam = boto3.client("iam")
    roles = [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(f"{name}-")]
    check(roles and all(region in r for r in roles), f"IAM role names carry the region ({roles})")
    profiles = [p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]]
    check(profiles and all(region in p for p in profiles), f"instance profile names carry the region ({profiles})")


    # --- node logs ------------------------------------------------------------------------------
    logs = boto3.client("logs")
    retention = settings.get("log_retention_days", 30)
    for role in ("leaders", "workers"):
        groups = logs.describe_log_groups(logGroupNamePrefix=f"/{name}/{role}")["logGroups"]
        check(len(groups) == 1 and groups[0].get("retentionInDays") == retention,
              f"log group /{name}/{role} with {retention} days retention")
    for role_name in (r for r in roles if "-leader-" in r or "-worker-" in r):
        docs = [iam.get_role_policy(RoleName=role_name, PolicyName=p)["PolicyDocument"]
                for p in iam.list_role_policies(RoleName=role_name)["PolicyNames"]]
        actions = {a for d in docs for s in d["Statement"] for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
        check("logs:PutLogEvents" in actions, f"{role_name} may ship its logs")

    check_launch_tags(outputs, name)
    check_ops_alarms(outputs, settings, name)

    # --- backend hooks ----------------------------------------------------------------------------
    check_hooks(outputs, tfvars_nested(tfvars_path), name, iam, ssm, [r for r in roles if "-worker-" in r])
    check_lifecycle(outputs, settings, name, iam, [r for r in roles if "-leader-" in r])
    check_history(outputs, tfvars_nested(tfvars_path), name, iam, roles)

    # --- the active-leader lease -----------------------------------------------------------------
    ddb = boto3.client("dynamodb")
    table = outputs.get("leader_lease_table")
    desc = ddb.describe_table(TableName=table)["Table"] if table else {}
    check(desc.get("KeySchema") == [{"AttributeName": "lease", "KeyType": "HASH"}] and
          desc.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST",
          f"the lease table {table}: hash key lease, on demand")
    for role_name in (r for r in roles if "-leader-" in r):
        acts, res = role_grants(iam, role_name, "dynamodb")
        check(acts == {"dynamodb:UpdateItem"} and res == {desc.get("TableArn")},
              f"{role_name} may only update the lease table ({sorted(acts)} on {sorted(res)})")

    # --- the events queue (sink = "sqs") --------------------------------------------------------
    sqs = boto3.client("sqs")
    queues = sqs.list_queues(QueueNamePrefix=f"{name}-events").get("QueueUrls", [])
    if settings.get("sink", "sqs") != "sqs":
        check(not queues and outputs.get("events_queue_url") is None, "no SQS queue when another sink is chosen")
        return
    events = next((q for q in queues if q.endswith(f"/{name}-events")), None)
    dlq = next((q for q in queues if q.endswith(f"/{name}-events-dlq")), None)
    check(events is not None and dlq is not None, f"the events queue and its dead-letter queue ({queues})")
    if not (events and dlq):
        return
    check(outputs.get("events_queue_url") == events and outputs.get("events_dead_letter_queue_url") == dlq,
          "outputs name both queues")
    attrs = sqs.get_queue_attributes(QueueUrl=events, AttributeNames=["All"])["Attributes"]
    dlq_attrs = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs.get("RedrivePolicy", "{}"))
    check(redrive.get("deadLetterTargetArn") == dlq_attrs.get("QueueArn") and int(redrive.get("maxReceiveCount", 0)) >= 1,
          f"the events queue redrives to its dead-letter queue ({redrive})")
    check(attrs.get("SqsManagedSseEnabled") == "true" and dlq_attrs.get("SqsManagedSseEnabled") == "true",
          "both queues encrypted at rest")
    cw = boto3.client("cloudwatch")
    dlq_name, events_name = dlq.rsplit("/", 1)[-1], events.rsplit("/", 1)[-1]
    queue_alarm(cw, f"{name}-events-dead-letters", dlq_name, "ApproximateNumberOfMessagesVisible", 0)
    queue_alarm(cw, f"{name}-events-dead-letters-expiring", dlq_name, "ApproximateAgeOfOldestMessage", 864000)
    queue_alarm(cw, f"{name}-events-oldest-event", events_name, "ApproximateAgeOfOldestMessage",
                (tfvars_nested(tfvars_path).get("sqs") or {}).get("max_age_alarm_seconds", 900))
    worker_env = user_data_env(outputs)
    check(worker_env.get("EWS_SINK") == "sqs" and worker_env.get("EWS_SQS_QUEUE_URL") == events,
          f"workers send to the events queue ({worker_env.get('EWS_SINK')}, {worker_env.get('EWS_SQS_QUEUE_URL')})")
    for role_name in (r for r in roles if "-worker-" in r):
        acts, res = role_grants(iam, role_name, "sqs")
        check(acts == {"sqs:SendMessage"} and res == {attrs.get("QueueArn")},
              f"{role_name} may only send to the events queue ({sorted(acts)} on {sorted(res)})")


def check_hooks(outputs: dict, settings: dict, name: str, iam, ssm, worker_roles: list) -> None:
    """The workers' routes and hooks file arrive in their user data; https backends are signed
    with a secret in SSM the workers may read; Lambda backends are the only functions they may
    invoke. Without hooks: none of it."""
    import base64
    env = user_data_env(outputs)
    hooks = settings.get("hooks") or {}
    routes = hooks.get("routes", {})
    check(env.get("EWS_ROUTES") == (settings.get("routes") or None),
          f"the workers' routes are var.routes ({env.get('EWS_ROUTES')})")
    lambdas = sorted(b["lambda_function_arn"] for b in hooks.get("backends", {}).values()
                     if b.get("lambda_function_arn")) if routes else []
    for role_name in worker_roles:
        acts, res = role_grants(iam, role_name, "lambda")
        want = ({"lambda:InvokeFunction"}, set(lambdas)) if lambdas else (set(), set())
        check((acts, res) == want, f"{role_name} may invoke only the hooks' functions ({sorted(acts)} on {sorted(res)})")
    if not routes:
        check("EWS_HOOKS_B64" not in env and outputs.get("hook_secret_parameter") is None,
              "no hooks file and no hook secret without hooks")
        return
    file = json.loads(base64.b64decode(env.get("EWS_HOOKS_B64", "")).decode() or "{}")
    check(file.get("routes") == routes, f"the hooks file carries every route's hooks ({file.get('routes')})")
    for bname, b in hooks.get("backends", {}).items():
        got = file.get("backends", {}).get(bname, {})
        check(got.get("url") == b.get("url") and got.get("lambda") == b.get("lambda_function_arn"),
              f"hooks backend {bname} as configured ({got})")
    param = outputs.get("hook_secret_parameter")
    check(param == f"/{name}/hook-secret" and env.get("EWS_HOOK_SECRET_SSM_PARAMETER") == param,
          f"the hook secret's parameter is in the workers' user data ({param})")
    if param:
        secret = ssm.get_parameter(Name=param, WithDecryption=True)["Parameter"]
        check(secret["Type"] == "SecureString" and len(secret["Value"]) == 48,
              "hook secret: 48 random characters in an SSM SecureString")
        for role_name in worker_roles:
            _, res = role_grants(iam, role_name, "ssm")
            check(secret["ARN"] in res, f"{role_name} may read the hook secret")


def leader_env(name: str) -> list:
    """The EWS_* settings each leader instance's user data writes to /etc/ews/ews.env."""
    import base64
    ec2 = boto3.client("ec2")
    out = []
    for r in ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [f"{name}-leader-*"]}])["Reservations"]:
        for i in r["Instances"]:
            if i["State"]["Name"] == "terminated":
                continue
            raw = ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="userData")
            text = base64.b64decode(raw.get("UserData", {}).get("Value", "")).decode()
            out.append(dict(line.split("=", 1) for line in text.splitlines() if "=" in line))
    return out


def check_lifecycle(outputs: dict, settings: dict, name: str, iam, leader_roles: list) -> None:
    """With lifecycle_events, workers and both leaders write lifecycle records to one sink (the
    leaders node_lost, after node_lost_after_secs), and the leaders may send to the events queue
    only; without, neither role hears of it and the leaders may not send."""
    on = settings.get("lifecycle_events") is True
    workers = user_data_env(outputs)
    leaders = leader_env(name)
    check(len(leaders) == 2, f"both leaders' user data ({len(leaders)})")
    check((workers.get("EWS_LIFECYCLE_EVENTS") == "true") == on,
          f"workers write lifecycle records: {workers.get('EWS_LIFECYCLE_EVENTS')} (lifecycle_events = {on})")
    after = str(settings.get("node_lost_after_secs", 30))
    for env in leaders:
        if on:
            check(env.get("EWS_LIFECYCLE_EVENTS") == "true" and env.get("EWS_NODE_LOST_AFTER_SECS") == after
                  and env.get("EWS_SINK") == workers.get("EWS_SINK")
                  and env.get("EWS_SQS_QUEUE_URL") == workers.get("EWS_SQS_QUEUE_URL"),
                  f"{env.get('EWS_NODE_ID')} writes node_lost to the workers' sink after {after} s ({env.get('EWS_SINK')})")
        else:
            check("EWS_LIFECYCLE_EVENTS" not in env and "EWS_SINK" not in env,
                  f"{env.get('EWS_NODE_ID')} writes no lifecycle records")
    queue_arn = None
    if settings.get("sink", "sqs") == "sqs" and outputs.get("events_queue_url"):
        queue_arn = boto3.client("sqs").get_queue_attributes(
            QueueUrl=outputs["events_queue_url"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for role_name in leader_roles:
        acts, res = role_grants(iam, role_name, "sqs")
        want = ({"sqs:SendMessage"}, {queue_arn}) if on and queue_arn else (set(), set())
        check((acts, res) == want, f"{role_name} may send only node_lost to the events queue ({sorted(acts)} on {sorted(res)})")


def check_history(outputs: dict, settings: dict, name: str, iam, roles: list) -> None:
    """With topics (or clients) keeping history, an ElastiCache Valkey replication group: two nodes
    with automatic failover across zones, encrypted in transit and at rest, behind an auth token,
    reachable from the workers and leaders only; its URL in an SSM SecureString both roles may
    read and their user data names. Without: none of it. (moto does not model the ports' reach or
    the failover itself.)"""
    on = bool(settings.get("history_topics")) or settings.get("history_clients") is True
    ec = boto3.client("elasticache")
    groups = [g for g in ec.describe_replication_groups()["ReplicationGroups"]
              if g["ReplicationGroupId"] == f"{name}-history"]
    workers = user_data_env(outputs)
    leaders = leader_env(name)
    if not on:
        check(not groups, f"no history engine without history ({len(groups)})")
        check(all("EWS_HISTORY_REDIS_URL_SSM_PARAMETER" not in e for e in [workers, *leaders]),
              "no history settings without history")
        return
    check(len(groups) == 1, f"the history replication group ({len(groups)})")
    if not groups:
        return
    g = groups[0]
    check(g.get("AtRestEncryptionEnabled") is True and g.get("TransitEncryptionEnabled") is True
          and g.get("AuthTokenEnabled") is True,
          f"history encrypted in transit and at rest, behind an auth token ({g.get('AtRestEncryptionEnabled')}, "
          f"{g.get('TransitEncryptionEnabled')}, {g.get('AuthTokenEnabled')})")
    # (moto lists one member cluster whatever the count asked; Terraform asks for two.)
    check(g.get("AutomaticFailover") in ("enabled", "enabling") and g.get("MultiAZ") == "enabled",
          f"history: automatic failover across zones ({g.get('AutomaticFailover')}, {g.get('MultiAZ')})")
    param = f"/{name}/history-redis-url"
    p = boto3.client("ssm").get_parameter(Name=param, WithDecryption=True)["Parameter"]
    check(p["Type"] == "SecureString" and p["Value"].startswith("rediss://:"),
          "the history URL (rediss://, with its token) in an SSM SecureString")
    topics = ",".join(settings.get("history_topics") or [])
    for env in [workers, *leaders]:
        who = env.get("EWS_NODE_ID", "workers")
        check(env.get("EWS_HISTORY_REDIS_URL_SSM_PARAMETER") == param
              and env.get("EWS_HISTORY_TOPICS", "") == topics
              and env.get("EWS_HISTORY_SIZE") == str(settings.get("history_size", 100)),
              f"{who} keeps the history of {topics or 'no topic'} in the engine")
    for role_name in (r for r in roles if "-leader-" in r or "-worker-" in r):
        _, res = role_grants(iam, role_name, "ssm")
        check(p["ARN"] in res, f"{role_name} may read the history URL")


def scale(outputs_path: str) -> None:
    """A scale-up as the Lambda makes it: the idempotency tag first, then the desired capacity.
    The second plan must not undo either."""
    outputs = {k: v["value"] for k, v in json.load(open(outputs_path)).items()}
    asg = boto3.client("autoscaling")
    name = outputs["asg_name"]
    asg.create_or_update_tags(Tags=[{
        "ResourceId": name, "ResourceType": "auto-scaling-group", "Key": "ews:last-scaling-event",
        "Value": "ews-scale-up@2026-01-05T10:15:00.123Z", "PropagateAtLaunch": False}])
    desired = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["DesiredCapacity"]
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=desired + 1)


def check_gone(example: str) -> None:
    asg = boto3.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    check(not asg, f"no Auto Scaling group left ({len(asg)})")
    alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    check(not alarms, f"no alarm left ({len(alarms)})")
    fns = boto3.client("lambda").list_functions()["Functions"]
    check(not fns, f"no function left ({len(fns)})")
    lbs = boto3.client("elbv2").describe_load_balancers()["LoadBalancers"]
    check(not lbs, f"no load balancer left ({len(lbs)})")
    res = boto3.client("ec2").describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["running", "pending"]}])["Reservations"]
    check(not res, "no running instance left")
    params = boto3.client("ssm").describe_parameters()["Parameters"]
    check(not params, f"no SSM parameter left ({len(params)})")
    plans = boto3.client("backup").list_backup_plans()["BackupPlansList"]
    check(not plans, f"no backup plan left ({len(plans)})")
    boards = boto3.client("cloudwatch").list_dashboards()["DashboardEntries"]
    check(not boards, f"no dashboard left ({len(boards)})")
    acls = boto3.client("wafv2").list_web_acls(Scope="REGIONAL")["WebACLs"]
    check(not acls, f"no web ACL left ({len(acls)})")
    buckets = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"] if "-alb-logs-" in b["Name"]]
    check(not buckets, f"no access-log bucket left ({buckets})")


def check_secret_slots(outputs_path: str, name: str, sign: str, accept: str) -> None:
    """A rotation step as the workers' user data and both instance roles see it: the parameter
    they sign with, the one they also accept, and read access to exactly those cluster-secret
    slots."""
    outputs = {k: v["value"] for k, v in json.load(open(outputs_path)).items()}
    env = user_data_env(outputs)
    want_accept = None if accept == "-" else accept
    check(env.get("EWS_CLUSTER_SECRET_SSM_PARAMETER") == sign,
          f"workers sign with {sign} ({env.get('EWS_CLUSTER_SECRET_SSM_PARAMETER')})")
    check(env.get("EWS_CLUSTER_SECRET_ACCEPT_SSM_PARAMETER") == want_accept,
          f"workers accept {want_accept} ({env.get('EWS_CLUSTER_SECRET_ACCEPT_SSM_PARAMETER')})")
    ssm = boto3.client("ssm")
    arn = lambda n: ssm.get_parameter(Name=n)["Parameter"]["ARN"]
    want = {arn(sign)} | ({arn(want_accept)} if want_accept else set())
    iam = boto3.client("iam")
    region = boto3.session.Session().region_name
    for role in (f"{name}-worker-{region}", f"{name}-leader-{region}"):
        _, res = role_grants(iam, role, "ssm")
        slots = {r for r in res if re.search(r":parameter/[^/]+/cluster-secret(-2)?$", r)}
        check(slots == want, f"{role} reads the cluster-secret slots {sorted(want)} ({sorted(slots)})")
    # Each step changes the workers' launch template: the group rolls them as docs/deploy.md says.
    refreshes = boto3.client("autoscaling").describe_instance_refreshes(
        AutoScalingGroupName=outputs["asg_name"])["InstanceRefreshes"]
    prefs = refreshes[0].get("Preferences", {}) if refreshes else {}
    check(bool(refreshes) and refreshes[0]["Status"] == "InProgress"
          and prefs.get("MinHealthyPercentage") == 100 and prefs.get("MaxHealthyPercentage") == 110
          and prefs.get("AutoRollback") is True and prefs.get("CheckpointPercentages") == [20, 50, 100]
          and set(prefs.get("AlarmSpecification", {}).get("Alarms", [])) == {f"{name}-unhealthy-workers", f"{name}-alb-5xx"},
          f"the new launch template started a rolling refresh with rollback ({prefs})")
    print(f"secrets: sign {sign}, accept {want_accept}: {len(FAILURES)} failed check(s)")


def check_refresh(state_json: str) -> None:
    """A deploy replaces workers in batches that never double the fleet, pauses at checkpoints,
    and rolls back on the health alarms (docs/deploy.md, "Upgrading")."""
    def resources(module):
        yield from module.get("resources", [])
        for child in module.get("child_modules", []):
            yield from resources(child)
    root = json.load(open(state_json))["values"]["root_module"]
    groups = [r for r in resources(root) if r["address"] == "module.workers.aws_autoscaling_group.workers"]
    check(len(groups) == 1, "the worker group is in the state")
    if not groups:
        return
    refresh = groups[0]["values"]["instance_refresh"][0]
    prefs = refresh["preferences"][0]
    name = groups[0]["values"]["name"].removesuffix("-workers")
    check(refresh["strategy"] == "Rolling", "rolling refresh")
    check(prefs["min_healthy_percentage"] == 100, f"launch before terminate ({prefs['min_healthy_percentage']})")
    check(100 < prefs["max_healthy_percentage"] <= 150,
          f"batches of at most half the fleet, never doubling it ({prefs['max_healthy_percentage']} %)")
    check(prefs["checkpoint_percentages"] and prefs["checkpoint_percentages"][-1] == 100
          and prefs["checkpoint_delay"], f"checkpoints {prefs['checkpoint_percentages']} with a pause")
    check(prefs["auto_rollback"] is True, "rolls back on failure")
    alarms = prefs["alarm_specification"][0]["alarms"] if prefs.get("alarm_specification") else []
    check(set(alarms) == {f"{name}-unhealthy-workers", f"{name}-alb-5xx"}, f"rollback alarms {alarms}")
    if alarms:
        existing = {a["AlarmName"] for a in boto3.client("cloudwatch").describe_alarms(AlarmNames=alarms)["MetricAlarms"]}
        check(existing == set(alarms), f"the rollback alarms exist ({sorted(existing)})")
    print(f"refresh: {len(FAILURES)} failed check(s)")


def principals(deploy_policy: str) -> None:
    """IAM users standing in for the pipeline's roles (moto authorizes users' keys; the policies
    are the roles' own). The deployer holds terraform/ci-roles/deploy-policy.json as shipped; the
    planner what terraform/ci-roles gives the plan role: ReadOnlyAccess plus GetRandomPassword (its
    other statements, SSM reads and KMS decrypt through SSM, ReadOnlyAccess already covers in
    moto, which has no KMS check). The harness itself (prepare, check, scale) acts as admin."""
    iam = boto3.client("iam")
    inline = {
        "admin": json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        "deployer": Path(deploy_policy).read_text(),
        "planner": json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "secretsmanager:GetRandomPassword", "Resource": "*"}]}),
    }
    out = {}
    for user, doc in inline.items():
        iam.create_user(UserName=f"ews-test-{user}")
        iam.put_user_policy(UserName=f"ews-test-{user}", PolicyName=user, PolicyDocument=doc)
        if user == "planner":
            iam.attach_user_policy(UserName=f"ews-test-{user}",
                                   PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
        key = iam.create_access_key(UserName=f"ews-test-{user}")["AccessKey"]
        out[user] = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    json.dump(out, sys.stdout)


def main() -> int:
    mode = sys.argv[1]
    if mode == "secrets":
        check_secret_slots(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
        return 1 if FAILURES else 0
    if mode == "refresh":
        check_refresh(sys.argv[2])
        return 1 if FAILURES else 0
    if mode == "principals":
        principals(sys.argv[2])
        return 0
    if mode == "prepare":
        prepare(sys.argv[2], sys.argv[3])
        return 0
    if mode == "scale":
        scale(sys.argv[3])
        return 0
    if mode == "check":
        check_applied(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "gone":
        check_gone(sys.argv[2])
    else:
        print(__doc__)
        return 2
    print(f"{sys.argv[2]}: {len(FAILURES)} failed check(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
