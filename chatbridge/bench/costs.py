"""What one message costs: bridge CPU, store statements, transactions and server round trips.

Throughput alone hides where a change helps: the figures to judge it by are per message. Each
bridge's ``/metrics`` exports its store's running totals (``chatbridge_store_*_total``); the
runner reads them from every bridge of a run when the load starts (``scrape_store_totals``)
and again after the drain, and ``cost_of`` divides the difference, summed over the bridges,
by the replies (each one a full round trip: webhook in, agent turn, reply out). The bridges'
CPU seconds come from the same window (``ResourceMonitor``), and so do the PostgreSQL
backends' and the rest of the machine's, shown beside them.

On SQLite the store runs in-process: it counts no server round trips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from chatbridge.bench.processes import ProcessStats
from chatbridge.bench.replicas import Replica

if TYPE_CHECKING:
    from chatbridge.bench.runner import RunResult

POSTGRES = "postgres"
"""The PostgreSQL backends serving a run's database, as one entry of ``RunResult.processes``."""

STORE_COUNTERS = {
    "chatbridge_store_statements": "statements",
    "chatbridge_store_transactions": "transactions",
    "chatbridge_store_round_trips": "round_trips",
}
"""Counter families of ``/metrics`` (without ``_total``) → key."""

StoreTotals = dict[str, int]
"""``{"statements": n, "transactions": n, "round_trips": n}``: the counters a bridge exports."""


def store_totals(metrics_text: str) -> StoreTotals:
    """The store counters in a ``/metrics`` text; a bridge that does not export one lacks
    its key (an older build), which is not the same as counting 0."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: StoreTotals = {}
    for family in text_string_to_metric_families(metrics_text):
        key = STORE_COUNTERS.get(family.name)
        if key is None:
            continue
        totals[key] = sum(int(s.value) for s in family.samples if s.name.endswith("_total"))
    return totals


async def scrape_store_totals(
    http: aiohttp.ClientSession, bridges: Sequence[Replica], admin_key: str
) -> dict[str, StoreTotals]:
    """``store_totals`` of each bridge's ``/metrics``, by process name.

    Raises:
        aiohttp.ClientError: a bridge did not answer, or refused.
    """
    totals = {}
    for bridge in bridges:
        async with http.get(
            f"{bridge.url}/metrics", headers={"Authorization": f"Bearer {admin_key}"}
        ) as response:
            response.raise_for_status()
            totals[bridge.name] = store_totals(await response.text())
    return totals


def store_difference(
    start: Mapping[str, StoreTotals], end: Mapping[str, StoreTotals]
) -> dict[str, StoreTotals]:
    """Per bridge, what its store counted between ``start`` and ``end`` (keys both have)."""
    return {
        name: {key: end[name][key] - before[key] for key in before if key in end[name]}
        for name, before in start.items()
        if name in end
    }


def is_bridge(process: ProcessStats) -> bool:
    """A bridge process: ``bridge``, or a replica ``bridge-1`` … ``bridge-N``."""
    return process.name == "bridge" or process.name.startswith("bridge-")


def outside_processes(result: RunResult) -> float | None:
    """CPU seconds the machine was busy beyond the run's measured processes (PostgreSQL's
    shared processes — WAL writer, checkpointer —, and whatever else ran), over the same
    window; ``None`` if not measured."""
    if result.machine_cpu_seconds is None:
        return None
    return round(
        max(0.0, result.machine_cpu_seconds - sum(p.cpu_seconds for p in result.processes)), 3
    )


@dataclass(frozen=True)
class Cost:
    """What a run's messages cost, each figure per reply (``None``: not measured)."""

    replies: int
    bridges: int
    bridge_cpu_seconds: float
    store: StoreTotals | None
    """What the bridges' stores counted from the start of the load to after the drain,
    summed; ``None`` if it could not be read."""
    postgres_cpu_seconds: float | None
    """The PostgreSQL backends serving the run's database (``None`` on SQLite)."""
    rest_cpu_seconds: float | None
    """The rest of the machine: PostgreSQL's shared processes and anything else running."""

    def _per(self, value: float | None, scale: float = 1.0) -> float | None:
        if value is None or self.replies == 0:
            return None
        return value * scale / self.replies

    def per_message(self, key: str) -> float | None:
        """``statements``, ``transactions`` or ``round_trips`` per reply."""
        return self._per(None if self.store is None else self.store.get(key))

    @property
    def bridge_cpu_ms(self) -> float | None:
        """Bridge CPU milliseconds per round trip, all bridges together."""
        return self._per(self.bridge_cpu_seconds, 1000)

    @property
    def postgres_cpu_ms(self) -> float | None:
        return self._per(self.postgres_cpu_seconds, 1000)

    @property
    def rest_cpu_ms(self) -> float | None:
        return self._per(self.rest_cpu_seconds, 1000)

    def to_json(self) -> dict[str, Any]:
        return {
            "replies": self.replies,
            "bridges": self.bridges,
            "bridge_cpu_seconds": self.bridge_cpu_seconds,
            "bridge_cpu_ms_per_round_trip": self.bridge_cpu_ms,
            "store": self.store,
            "statements_per_message": self.per_message("statements"),
            "transactions_per_message": self.per_message("transactions"),
            "server_round_trips_per_message": self.per_message("round_trips"),
            "postgres_backends_cpu_seconds": self.postgres_cpu_seconds,
            "postgres_backends_cpu_ms_per_message": self.postgres_cpu_ms,
            "rest_of_machine_cpu_seconds": self.rest_cpu_seconds,
            "rest_of_machine_cpu_ms_per_message": self.rest_cpu_ms,
        }


def cost_of(result: RunResult) -> Cost | None:
    """The ``Cost`` of a run with a bridge; ``None`` for a reference run (no bridge)."""
    bridges = [p for p in result.processes if is_bridge(p)]
    if not bridges:
        return None
    store: StoreTotals | None = None
    if result.store_counts is not None:
        store = {}
        for counted in result.store_counts.values():
            for key, value in counted.items():
                store[key] = store.get(key, 0) + value
    postgres = next((p for p in result.processes if p.name == POSTGRES), None)
    return Cost(
        replies=result.tally.replied,
        bridges=len(bridges),
        bridge_cpu_seconds=round(sum(p.cpu_seconds for p in bridges), 3),
        store=store,
        postgres_cpu_seconds=None if postgres is None else postgres.cpu_seconds,
        rest_cpu_seconds=outside_processes(result),
    )
