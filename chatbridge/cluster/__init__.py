"""What several bridge replicas tell each other, behind one ``Cluster`` protocol.

``make_cluster(settings)`` picks the implementation once, at start-up: ``RedisCluster`` when
``CHATBRIDGE_REDIS_URL`` is set (the only module that imports ``redis``, imported only then),
else ``LocalCluster``, the single replica that holds everything. Callers hold a ``Cluster``
and never check which one it is, except through ``Cluster.distributed`` where their output
differs (see ``chatbridge.cluster.base``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatbridge.cluster.base import Cluster, ClusterUnavailable
from chatbridge.cluster.local import LocalCluster

if TYPE_CHECKING:
    from chatbridge.config import Settings

__all__ = ["Cluster", "ClusterUnavailable", "LocalCluster", "make_cluster"]


def make_cluster(settings: Settings) -> Cluster:
    """This replica's ``Cluster``: over Redis when ``redis_url`` is set, else local.

    Args:
        settings: ``redis_url``, ``redis_prefix``, ``instance_id`` (the replica's id) and
            ``cluster_presence_seconds`` (how long a dead replica's leases and links last;
            renewed five times as often).
    """
    if not settings.redis_url:
        return LocalCluster(settings.instance_id)
    from chatbridge.cluster.redis import RedisCluster

    return RedisCluster(
        settings.redis_url,
        settings.instance_id,
        prefix=settings.redis_prefix,
        presence_ttl=settings.cluster_presence_seconds,
        beat=max(0.2, settings.cluster_presence_seconds / 5),
    )
