"""moto's server, with what Terraform's AWS provider needs and moto (5.2.5) lacks or gets wrong.
ElastiCache: after creating a replication group the provider reads each member cache cluster
(`<group>-001`, `-002`), which moto lists but never creates, and it reads the group's at-rest
encryption from them; and after deleting a group it waits for it to be gone, which in moto it never
is. This creates the member clusters with the group, carrying its encryption settings, and
deletes them and the group for good. And moto does not implement DeleteCacheSubnetGroup, which
the provider retries until it times out: here it deletes the group. With IAM enforced, CloudWatch
actions are named as IAM names them, and a zone created with a VPC is private. It adds what moto
lacks and the configuration uses: AWS Backup selections, the group's instance refreshes (recorded
as asked, never run), a partial update of its mixed instances policy, and image deprecation; and with IAM enforced, the unsigned AssumeRoleWithWebIdentity is authorized
by the role's trust policy, as in AWS. Started by tests/infra/terraform_moto.sh instead of `-m moto.server`,
with the same arguments; nothing else changes."""

import copy
import datetime
import json
import sys
import uuid

from moto.autoscaling.responses import AutoScalingResponse
from moto.backup import urls as backup_urls
from moto.backup.responses import BackupResponse
from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.responses.amis import AmisResponse
from moto.elasticache.models import ElastiCacheBackend
from moto.elasticache.responses import ElastiCacheResponse
from moto.iam.access_control import IAMRequestBase
from moto.route53.responses import Route53
from moto.sts.responses import TokenResponse
from werkzeug.exceptions import Forbidden
from moto.server import main

_create = ElastiCacheBackend.create_replication_group
_delete = ElastiCacheBackend.delete_replication_group

# Every parameter of create_cache_cluster the member clusters do not take from their group.
_EMPTY = dict(
    az_mode=None, preferred_availability_zone=None, num_cache_nodes=1,
    cache_parameter_group_name=None, transit_encryption_enabled=None, network_type=None,
    ip_discovery=None, snapshot_name=None, preferred_maintenance_window=None,
    notification_topic_arn=None, auto_minor_version_upgrade=None, snapshot_retention_limit=None,
    snapshot_window=None, auth_token=None, outpost_mode=None, preferred_outpost_arn=None,
    preferred_availability_zones=None, cache_security_group_names=None, tags=None,
    snapshot_arns=None, preferred_outpost_arns=None, log_delivery_configurations=[],
    cache_node_ids_to_remove=None, cache_node_ids_to_reboot=None,
)


def create_replication_group(self, *args, **kwargs):
    group = _create(self, *args, **kwargs)
    for member in group.member_clusters:
        if member not in self.cache_clusters:
            cluster = self.create_cache_cluster(
                cache_cluster_id=member,
                replication_group_id=group.replication_group_id,
                cache_node_type=kwargs.get("cache_node_type") or "cache.t4g.micro",
                engine=kwargs.get("engine"),
                engine_version=kwargs.get("engine_version"),
                cache_subnet_group_name=kwargs.get("cache_subnet_group_name"),
                security_group_ids=kwargs.get("security_group_ids"),
                port=kwargs.get("port"),
                **_EMPTY,
            )
            cluster.at_rest_encryption_enabled = group.at_rest_encryption_enabled
            cluster.transit_encryption_enabled = group.transit_encryption_enabled
    return group


def delete_replication_group(self, replication_group_id, *args, **kwargs):
    group = self.replication_groups.get(replication_group_id)
    members = list(group.member_clusters) if group else []
    result = _delete(self, replication_group_id, *args, **kwargs)
    for member in members:
        self.cache_clusters.pop(member, None)
    # moto leaves the group "deleting" for ever; the provider waits until it is gone.
    self.replication_groups.pop(replication_group_id, None)
    return result


def delete_cache_subnet_group(self):
    self.elasticache_backend.cache_subnet_groups.pop(self._get_param("CacheSubnetGroupName"), None)
    return EmptyResult()


# With IAM enforced (POST /moto-api/reset-auth), moto names an action by the request's signing
# name, which for CloudWatch is `monitoring`: policies say `cloudwatch:`, as AWS evaluates them.
_SIGNING_TO_IAM = {"monitoring:": "cloudwatch:"}
# And S3 operations moto names by the API where IAM has another name for the permission
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html).
_S3_TO_IAM = {
    "s3:HeadBucket": "s3:ListBucket",
    "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
}
_iam_request_init = IAMRequestBase.__init__


def iam_request_init(self, *args, **kwargs):
    _iam_request_init(self, *args, **kwargs)
    for signing, prefix in _SIGNING_TO_IAM.items():
        if self._action.startswith(signing):
            self._action = prefix + self._action[len(signing):]
    self._action = _S3_TO_IAM.get(self._action, self._action)


IAMRequestBase.__init__ = iam_request_init
_check_action_permitted = IAMRequestBase.check_action_permitted


def check_action_permitted(self, resource):
    """As moto's, and a refusal is logged (`IAM DENIED <user> <action>`): what a policy lacks."""
    try:
        return _check_action_permitted(self, resource)
    except Exception:
        print(f"IAM DENIED {self._access_key.arn} {self._action}", file=sys.stderr, flush=True)
        raise


IAMRequestBase.check_action_permitted = check_action_permitted
# moto 5.2.5 recomputes the signature of REST requests (Route 53's GETs among them) over another
# canonical request than the SDKs sign, and refuses valid ones. What the enforced run tests is
# authorization: the access key still names the user whose policies decide.
IAMRequestBase.check_signature = lambda self: None

# A hosted zone created with a VPC is private (AWS infers it; the provider does not send
# HostedZoneConfig.PrivateZone): moto made it public, then returned no VPC and refused to
# associate one.
_get_bool_param = Route53._get_bool_param


def route53_get_bool_param(self, param_name, if_none=None):
    value = _get_bool_param(self, param_name, if_none)
    if param_name == "HostedZoneConfig.PrivateZone" and not value and self._get_param("VPC.VPCId"):
        return True
    return value


Route53._get_bool_param = route53_get_bool_param
ElastiCacheResponse.delete_cache_subnet_group = delete_cache_subnet_group
ElastiCacheBackend.create_replication_group = create_replication_group
ElastiCacheBackend.delete_replication_group = delete_replication_group

# AWS Backup selections, which moto (5.2.5) lacks: kept per plan, returned as AWS returns them,
# and refused for an unknown plan. Enough for the provider's aws_backup_selection (create, read,
# delete) and for the assertions on what it selected.
def _selections(backend):
    if not hasattr(backend, "ews_selections"):
        backend.ews_selections = {}
    return backend.ews_selections


def _plan_and_selection(path):
    rest = path.split("/backup/plans/", 1)[1].strip("/")
    plan_id, _, selection = rest.partition("/selections")
    return plan_id, selection.strip("/")


def create_backup_selection(self):
    plan_id, _ = _plan_and_selection(self.path)
    if plan_id not in self.backup_backend.plans:
        return 404, {}, json.dumps({"__type": "ResourceNotFoundException", "message": f"no plan {plan_id}"})
    params = json.loads(self.body)
    selection_id = str(uuid.uuid4())
    created = datetime.datetime.now(datetime.timezone.utc).timestamp()
    _selections(self.backup_backend)[(plan_id, selection_id)] = {
        "BackupSelection": params["BackupSelection"], "SelectionId": selection_id,
        "BackupPlanId": plan_id, "CreationDate": created,
        "CreatorRequestId": params.get("CreatorRequestId", ""),
    }
    return json.dumps({"SelectionId": selection_id, "BackupPlanId": plan_id, "CreationDate": created})


def get_backup_selection(self):
    key = _plan_and_selection(self.path)
    found = _selections(self.backup_backend).get(key)
    if found is None:
        return 404, {}, json.dumps({"__type": "ResourceNotFoundException", "message": f"no selection {key[1]}"})
    return json.dumps(found)


def delete_backup_selection(self):
    _selections(self.backup_backend).pop(_plan_and_selection(self.path), None)
    return "{}"


def list_backup_selections(self):
    plan_id, _ = _plan_and_selection(self.path)
    return json.dumps({"BackupSelectionsList": [
        {"SelectionId": s["SelectionId"], "SelectionName": s["BackupSelection"]["SelectionName"],
         "BackupPlanId": plan_id, "IamRoleArn": s["BackupSelection"]["IamRoleArn"],
         "CreationDate": s["CreationDate"]}
        for (p, _), s in _selections(self.backup_backend).items() if p == plan_id]})


def list_recovery_points_by_backup_vault(self):
    """moto runs no backup job, so a vault holds no recovery point (a destroy with
    force_destroy lists them before it deletes the vault)."""
    return json.dumps({"RecoveryPoints": []})


for _fn in (create_backup_selection, get_backup_selection, delete_backup_selection, list_backup_selections,
            list_recovery_points_by_backup_vault):
    setattr(BackupResponse, _fn.__name__, _fn)
backup_urls.url_paths["{0}/backup-vaults/(?P<name>[^/]+)/recovery-points/$"] = backup_urls.response.dispatch


# Instance refreshes, which moto (5.2.5) lacks: the provider starts one whenever the worker launch
# template changes. moto replaces no instance, so a refresh is recorded as it was asked for (its
# preferences and desired configuration, which the test reads back) and stays InProgress until
# the next one cancels it, as AWS would refuse a second refresh of the same group.
def _refreshes(backend):
    if not hasattr(backend, "ews_refreshes"):
        backend.ews_refreshes = []
    return backend.ews_refreshes


def start_instance_refresh(self):
    group = self._get_param("AutoScalingGroupName")
    refreshes = _refreshes(self.autoscaling_backend)
    for r in refreshes:
        if r["AutoScalingGroupName"] == group and r["Status"] == "InProgress":
            r["Status"] = "Cancelled"
    refresh = {
        "InstanceRefreshId": str(uuid.uuid4()),
        "AutoScalingGroupName": group,
        "Status": "InProgress",
        "StartTime": datetime.datetime.now(datetime.timezone.utc),
        "PercentageComplete": 0,
        "Preferences": self._get_param("Preferences", {}),
        "DesiredConfiguration": self._get_param("DesiredConfiguration", {}),
        "Strategy": self._get_param("Strategy", "Rolling"),
    }
    refreshes.append(refresh)
    return ActionResult({"InstanceRefreshId": refresh["InstanceRefreshId"]})


def describe_instance_refreshes(self):
    group = self._get_param("AutoScalingGroupName")
    ids = self._get_param("InstanceRefreshIds", [])
    found = [r for r in reversed(_refreshes(self.autoscaling_backend))
             if r["AutoScalingGroupName"] == group and (not ids or r["InstanceRefreshId"] in ids)]
    return ActionResult({"InstanceRefreshes": found})


def cancel_instance_refresh(self):
    group = self._get_param("AutoScalingGroupName")
    for r in _refreshes(self.autoscaling_backend):
        if r["AutoScalingGroupName"] == group and r["Status"] == "InProgress":
            r["Status"] = "Cancelled"
            return ActionResult({"InstanceRefreshId": r["InstanceRefreshId"]})
    return ActionResult({})


for _fn in (start_instance_refresh, describe_instance_refreshes, cancel_instance_refresh):
    setattr(AutoScalingResponse, _fn.__name__, _fn)


# An update's MixedInstancesPolicy changes what it names and keeps the rest, and an update without
# one keeps it whole, as in AWS: the provider sends only the new launch template version when the
# template changes, and moto (5.2.5) would replace the whole policy with that, or drop it, losing
# the instance types and the Spot distribution.
_update_group = AutoScalingResponse.update_auto_scaling_group


def _merged(old, new):
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for k, v in new.items():
            out[k] = _merged(old.get(k), v)
        return out
    return new


def update_auto_scaling_group(self):
    name = self._get_param("AutoScalingGroupName")
    # moto fills in what it is given in place: keep the request as it came.
    new = copy.deepcopy(self._get_param("MixedInstancesPolicy"))
    groups = self.autoscaling_backend.autoscaling_groups
    old = copy.deepcopy(groups[name].mixed_instances_policy) if name in groups else None
    result = _update_group(self)
    if old:
        # What was asked for over what was there (nothing asked: all of it stays); the template
        # as moto resolved it (its name added).
        merged = _merged(old, new) if new else old
        spec = ((groups[name].mixed_instances_policy or {}).get("LaunchTemplate") or {}).get(
            "LaunchTemplateSpecification")
        if spec:
            merged.setdefault("LaunchTemplate", {})["LaunchTemplateSpecification"] = spec
        groups[name].mixed_instances_policy = merged
    return result


AutoScalingResponse.update_auto_scaling_group = update_auto_scaling_group


# AssumeRoleWithWebIdentity is unsigned (the token is the credential), which moto's enforcement
# does not expect. Here it is authorized as AWS does: the role's trust policy must name the token's
# issuer as a federated principal and its StringEquals conditions on `<issuer>:aud` and
# `<issuer>:sub` must hold for the token's claims (signature and expiry unchecked: a test token).
def _web_identity_trusted(account_id, role_arn, token):
    import base64
    from moto.iam.models import iam_backends
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    issuer = claims.get("iss", "").removeprefix("https://")
    role = iam_backends[account_id]["global"].get_role_by_arn(role_arn)
    doc = json.loads(role.assume_role_policy_document)
    for st in doc.get("Statement", []):
        actions = st.get("Action") if isinstance(st.get("Action"), list) else [st.get("Action")]
        federated = st.get("Principal", {}).get("Federated", "")
        if st.get("Effect") != "Allow" or "sts:AssumeRoleWithWebIdentity" not in actions or not str(federated).endswith(f"oidc-provider/{issuer}"):
            continue
        wanted = st.get("Condition", {}).get("StringEquals", {})
        if all(claims.get(key.split(":", 1)[1]) in (v if isinstance(v, list) else [v])
               for key, v in wanted.items()):
            return True
    return False


_authorize = TokenResponse._authenticate_and_authorize_normal_action


def sts_authorize(self, resource="*"):
    if self._get_action() == "AssumeRoleWithWebIdentity" and "Authorization" not in self.headers:
        if not _web_identity_trusted(self.current_account, self._get_param("RoleArn"), self._get_param("WebIdentityToken")):
            print(f"TRUST DENIED {self._get_param('RoleArn')}", file=sys.stderr, flush=True)
            raise Forbidden("the role's trust policy does not admit this web identity")
        return
    return _authorize(self, resource)


TokenResponse._authenticate_and_authorize_normal_action = sts_authorize


# EC2 image deprecation, which moto lacks: the time is kept on the image and described with it.
def enable_image_deprecation(self):
    image = self.ec2_backend.describe_images(ami_ids=[self._get_param("ImageId")])[0]
    at = self._get_param("DeprecateAt")
    image.deprecation_time = at.strftime("%Y-%m-%dT%H:%M:%S.000Z") if hasattr(at, "strftime") else str(at)
    return ActionResult({"Return": True})


AmisResponse.enable_image_deprecation = enable_image_deprecation


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
