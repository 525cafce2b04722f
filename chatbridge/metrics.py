"""Prometheus metrics, one registry per app so tests and several apps in a process don't clash."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from chatbridge.store.stats import StoreStats

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """Every metric the bridge exports at ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.webhooks = Counter(
            "chatbridge_webhooks_total", "Webhooks received", ["channel", "result"], registry=r
        )
        self.webhook_seconds = Histogram(
            "chatbridge_webhook_seconds",
            "Webhook handling time",
            ["channel"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.turns = Counter(
            "chatbridge_turns_total", "Turns finished", ["agent_id", "outcome"], registry=r
        )
        self.turn_seconds = Histogram(
            "chatbridge_turn_seconds",
            "Agent turn time (sent → answered)",
            ["agent_id"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.agent_errors = Counter(
            "chatbridge_agent_errors_total",
            "Agent failures by kind",
            ["agent_id", "kind"],
            registry=r,
        )
        self.agent_replies_dropped = Counter(
            "chatbridge_agent_replies_dropped_total",
            "Agent replies for unknown or already answered turns",
            ["agent_id"],
            registry=r,
        )
        self.agent_frames_withheld = Counter(
            "chatbridge_agent_frames_withheld_total",
            "Frames not sent to an agent because it did not announce their feature",
            ["agent_id", "type"],
            registry=r,
        )
        self.agent_connected = Gauge(
            "chatbridge_agent_connected",
            "1 while the agent is connected",
            ["agent_id"],
            registry=r,
        )
        self.deliveries = Counter(
            "chatbridge_deliveries_total",
            "Delivery attempts by result",
            ["channel", "kind", "result"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "chatbridge_delivery_seconds",
            "Channel API call time",
            ["channel"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.delivery_uncertain = Counter(
            "chatbridge_delivery_uncertain_total",
            "Messages sent again after a send that was cut off (crash, lost lease) left no"
            " receipt: neither the channel's echo nor its own records showed it",
            ["channel"],
            registry=r,
        )
        self.receipts = Counter(
            "chatbridge_delivery_receipts_total",
            "Echoes of our own messages recorded as delivery receipts",
            ["channel"],
            registry=r,
        )
        self.backlog_due = Gauge(
            "chatbridge_backlog_oldest_due_seconds",
            "How long the oldest pending turn / delivery has been due",
            ["queue"],
            registry=r,
        )
        self.backlog_expired = Gauge(
            "chatbridge_backlog_oldest_expired_lease_seconds",
            "How long ago the oldest unclaimed lease of a turn / delivery ran out",
            ["queue"],
            registry=r,
        )
        self.dead_letters = Counter(
            "chatbridge_dead_letters_total", "Deliveries dead-lettered", ["channel"], registry=r
        )
        self.errors = Counter("chatbridge_errors_total", "Errors by kind", ["kind"], registry=r)
        self._store_collector: StoreStatsCollector | None = None

    def observe_backlog(self, backlog: dict[str, dict[str, float]]) -> None:
        for queue, figures in backlog.items():
            self.backlog_due.labels(queue).set(figures.get("oldest_due", 0.0))
            self.backlog_expired.labels(queue).set(figures.get("oldest_expired", 0.0))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def watch_store(self, stats: StoreStats) -> None:
        """Export the store's running totals (``StoreStats``) as counters.

        The store bumps plain integers; they are read only when ``/metrics`` is scraped, so
        counting a statement costs the hot path an attribute increment, not a
        ``Counter.inc()`` with its lock. Watching another store (a ``Metrics`` handed to a
        second bridge) exports that one's totals instead.
        """
        if self._store_collector is None:
            self._store_collector = StoreStatsCollector(stats)
            self.registry.register(self._store_collector)
        else:
            self._store_collector.stats = stats


class StoreStatsCollector(Collector):
    """``chatbridge_store_{statements,transactions,round_trips}_total``, read at scrape time."""

    _FAMILIES = (
        ("statements", "SQL statements the store executed (a multi-row statement counts once)"),
        ("transactions", "Transactions the store committed or rolled back"),
        ("round_trips", "Waits on the database server (0 on SQLite: it runs in-process)"),
    )

    def __init__(self, stats: StoreStats) -> None:
        self.stats = stats

    def describe(self) -> Iterator[CounterMetricFamily]:
        # names only, so registering does not read the stats (``auto_describe`` would collect)
        for attr, doc in self._FAMILIES:
            yield CounterMetricFamily(f"chatbridge_store_{attr}", doc)

    def collect(self) -> Iterator[CounterMetricFamily]:
        for attr, doc in self._FAMILIES:
            yield CounterMetricFamily(
                f"chatbridge_store_{attr}", doc, value=getattr(self.stats, attr)
            )
