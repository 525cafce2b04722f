"""Several bridge processes on one database and one Redis (``chatbridge bench --replicas N``).

Each replica is ``chatbridge serve`` on a port of its own with its own
``CHATBRIDGE_INSTANCE_ID`` and the same ``CHATBRIDGE_DATABASE_URL`` and
``CHATBRIDGE_REDIS_URL``. The load generator sends message *i* to replica *i mod N*, as a
round-robin load balancer would, so consecutive messages of one conversation land on
different replicas. The mock channel takes replies from any of them.

With one replica the process is called ``bridge`` and gets neither an instance id nor
(unless ``--redis-url`` was given) Redis, exactly as before replicas existed.

After the run each bridge's ``/metrics`` says what it did (``replica_counts``): webhooks
taken, turns finished (each replica with a link to the agent runs its share of them),
deliveries made, agent replies dropped — whether the work was spread, and which replicas had
a link to the agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Replica:
    """One bridge process of a run."""

    name: str
    """Its process name: ``bridge`` when it is the only one, else ``bridge-1`` … ``bridge-N``."""
    port: int
    instance_id: str | None = None
    """``CHATBRIDGE_INSTANCE_ID`` (``None``: the bridge's own default, one replica only)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def plan_replicas(ports: list[int], run_tag: str) -> list[Replica]:
    """One ``Replica`` per port; instance ids ``bench-<run_tag>-<i>`` when there are several."""
    if len(ports) == 1:
        return [Replica("bridge", ports[0])]
    return [
        Replica(f"bridge-{i}", port, f"bench-{run_tag}-{i}")
        for i, port in enumerate(ports, start=1)
    ]


def replica_env(
    common: Mapping[str, str], replica: Replica, redis_url: str | None
) -> dict[str, str]:
    """The environment of ``replica``: ``common`` plus its instance id and the shared Redis."""
    env = dict(common)
    if redis_url is not None:
        env["CHATBRIDGE_REDIS_URL"] = redis_url
    if replica.instance_id is not None:
        env["CHATBRIDGE_INSTANCE_ID"] = replica.instance_id
    return env


_COUNTED = {
    "chatbridge_webhooks": "webhooks",
    "chatbridge_turns": "turns",
    "chatbridge_deliveries": "deliveries",
    "chatbridge_agent_replies_dropped": "agent_replies_dropped",
    "chatbridge_agent_errors": "agent_errors",
    "chatbridge_dead_letters": "dead_letters",
}
"""Counter families (as ``prometheus_client`` names them, without ``_total``) → key."""

_BY_LABEL = {"turns": ("outcome",), "deliveries": ("result", "kind"), "webhooks": ("result",)}
"""Counters also broken down by a label (each on its own)."""


def replica_counts(metrics_text: str) -> dict[str, Any]:
    """What one replica did, from its ``/metrics`` text (Prometheus exposition format).

    Returns:
        ``{"webhooks": n, "turns": n, "deliveries": n, …}`` (totals over every label), plus
        ``"turns_by_outcome"``, ``"deliveries_by_result"``, ``"deliveries_by_kind"``,
        ``"webhooks_by_result"``, and
        ``"agent_connected"`` (agents whose link gauge is 1 on this replica).
    """
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, Any] = {key: 0 for key in _COUNTED.values()}
    connected: list[str] = []
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "chatbridge_agent_connected":
            connected += [s.labels.get("agent_id", "") for s in family.samples if s.value == 1]
            continue
        key = _COUNTED.get(family.name)
        if key is None:
            continue
        labels = _BY_LABEL.get(key, ())
        breakdowns: dict[str, dict[str, int]] = {label: {} for label in labels}
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue  # the ``_created`` timestamps
            counts[key] += int(sample.value)
            for label, breakdown in breakdowns.items():
                value = sample.labels.get(label, "")
                breakdown[value] = breakdown.get(value, 0) + int(sample.value)
        for label, breakdown in breakdowns.items():
            counts[f"{key}_by_{label}"] = breakdown
    counts["agent_connected"] = connected
    return counts


async def scrape_replica(
    http: aiohttp.ClientSession, replica: Replica, admin_key: str
) -> dict[str, Any]:
    """``replica_counts`` of ``replica``'s ``/metrics``, with its name, port and instance id."""
    async with http.get(
        f"{replica.url}/metrics", headers={"Authorization": f"Bearer {admin_key}"}
    ) as response:
        response.raise_for_status()
        text = await response.text()
    return {
        "name": replica.name,
        "port": replica.port,
        "instance_id": replica.instance_id,
        **replica_counts(text),
    }
