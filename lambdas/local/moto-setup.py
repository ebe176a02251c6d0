"""Local playground for the scalers: creates the worker group and both alarms in moto, puts one
alarm into ALARM and writes the event its alarm action would deliver.

    .tools/moto/bin/python lambdas/local/moto-setup.py [up|down] > /tmp/event.json

Uses AWS_ENDPOINT_URL (default http://127.0.0.1:5000); boto3 comes with moto. Re-running it
re-creates nothing that exists and only fires the alarm again.
"""

import json
import os
import pathlib
import sys

import boto3

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
KW = dict(
    endpoint_url=ENDPOINT,
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
    aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
    aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
)
GROUP = os.environ.get("WS_ASG_NAME", "ews-workers")
UP = os.environ.get("SCALE_UP_ALARM", "ews-scale-up-alarm")
DOWN = os.environ.get("SCALE_DOWN_ALARM", "ews-scale-down-alarm")
EVENTS = pathlib.Path(__file__).resolve().parent.parent / "events"


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "up"
    if which not in ("up", "down"):
        sys.exit("usage: moto-setup.py [up|down]")
    asg = boto3.client("autoscaling", **KW)
    cw = boto3.client("cloudwatch", **KW)
    if not asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"]:
        asg.create_launch_configuration(
            LaunchConfigurationName="ews-worker", ImageId="ami-12c6146b", InstanceType="t2.medium"
        )
        asg.create_auto_scaling_group(
            AutoScalingGroupName=GROUP,
            LaunchConfigurationName="ews-worker",
            MinSize=2,
            MaxSize=10,
            DesiredCapacity=2,
            AvailabilityZones=["us-east-1a"],
        )
    existing = {a["AlarmName"] for a in cw.describe_alarms(AlarmNames=[UP, DOWN])["MetricAlarms"]}
    # The policy's thresholds at the minimum of 2 workers with the defaults (STEP 80,000 per
    # worker, HYSTERESIS 8,000): scale up above 160,000, scale-down off.
    for name, op, threshold in [(UP, "GreaterThanThreshold", 160000), (DOWN, "LessThanThreshold", -8000)]:
        if name not in existing:
            cw.put_metric_alarm(
                AlarmName=name,
                Namespace="ElasticWS",
                MetricName="ConnectedClients",
                Statistic="Maximum",
                Period=60,
                EvaluationPeriods=1,
                Threshold=threshold,
                ComparisonOperator=op,
            )
    name = UP if which == "up" else DOWN
    cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="moto-setup.py")
    alarm = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    event = json.loads((EVENTS / f"scale-{which}-alarm.json").read_text())
    event["alarmData"]["alarmName"] = name
    event["alarmData"]["state"]["timestamp"] = alarm["StateUpdatedTimestamp"].isoformat()
    json.dump(event, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
