"""The store's statement, transaction and round-trip totals at ``GET /metrics``."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from chatbridge.metrics import Metrics
from chatbridge.store.stats import StoreStats

STORE_FAMILIES = (
    "chatbridge_store_statements",
    "chatbridge_store_transactions",
    "chatbridge_store_round_trips",
)


def store_totals(text: str) -> dict[str, float]:
    """``{family: value}`` of the store counters in a ``/metrics`` text."""
    return {
        family.name: sample.value
        for family in text_string_to_metric_families(text)
        if family.name in STORE_FAMILIES
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def test_store_totals_are_read_when_scraped_not_when_counted() -> None:
    metrics = Metrics()
    stats = StoreStats()
    metrics.watch_store(stats)
    assert store_totals(metrics.render().decode()) == dict.fromkeys(STORE_FAMILIES, 0.0)

    stats.statements += 12
    stats.transactions += 3
    stats.round_trips += 5

    text = metrics.render().decode()
    assert store_totals(text) == {
        "chatbridge_store_statements": 12.0,
        "chatbridge_store_transactions": 3.0,
        "chatbridge_store_round_trips": 5.0,
    }
    assert "# TYPE chatbridge_store_statements_total counter" in text


def test_watching_another_store_exports_its_totals() -> None:
    metrics = Metrics()
    first, second = StoreStats(), StoreStats()
    first.statements = 7
    second.statements = 2
    metrics.watch_store(first)
    metrics.watch_store(second)
    assert store_totals(metrics.render().decode())["chatbridge_store_statements"] == 2.0


def test_the_running_bridge_exports_its_store_totals(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert set(store_totals(response.text)) == set(STORE_FAMILIES)
