"""moto's server, with what Terraform's AWS provider needs of ElastiCache that moto (5.2.5)
lacks. After creating a replication group the provider reads each member cache cluster
(`<group>-001`, `-002`), which moto lists but never creates, and it reads the group's at-rest
encryption from them; and after deleting a group it waits for it to be gone, which in moto it never
is. This creates the member clusters with the group, carrying its encryption settings, and
deletes them and the group for good. And moto does not implement DeleteCacheSubnetGroup, which
the provider retries until it times out: here it deletes the group. Started by tests/infra/terraform_moto.sh instead of `-m moto.server`,
with the same arguments; nothing else changes."""

import sys

from moto.core.responses import EmptyResult
from moto.elasticache.models import ElastiCacheBackend
from moto.elasticache.responses import ElastiCacheResponse
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


ElastiCacheResponse.delete_cache_subnet_group = delete_cache_subnet_group
ElastiCacheBackend.create_replication_group = create_replication_group
ElastiCacheBackend.delete_replication_group = delete_replication_group

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
