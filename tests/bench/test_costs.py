"""What a message costs: the store counters read from /metrics, and the figures per reply."""

from __future__ import annotations

import io
import json

from rich.console import Console

from chatbridge.bench.accounting import Tally
from chatbridge.bench.costs import cost_of, store_difference, store_totals
from chatbridge.bench.loadgen import Load
from chatbridge.bench.processes import ProcessStats
from chatbridge.bench.report import cost_table, summary_lines
from chatbridge.bench.runner import RunResult, RunSpec
from chatbridge.metrics import Metrics
from chatbridge.store.stats import StoreStats


def run(
    label: str,
    *,
    database: str = "sqlite",
    scenario: str = "chatwoot",
    replied: int = 1000,
    processes: dict[str, float],
    store_counts: dict[str, dict[str, int]] | None = None,
    machine_cpu_seconds: float | None = None,
) -> RunResult:
    load = Load(conversations=10, duration=10.0, max_in_flight=10)
    return RunResult(
        spec=RunSpec(label, scenario, load, database=database),
        tally=Tally(sent=replied, acknowledged=replied, replied=replied),
        load_seconds=10.0,
        acked_per_second=replied / 10,
        replied_per_second=replied / 10,
        ack_latency={},
        e2e_latency={},
        processes=[ProcessStats(name, 1, cpu, 100.0) for name, cpu in processes.items()],
        series=[],
        machine_cpu_seconds=machine_cpu_seconds,
        store_counts=store_counts,
    )


def rendered(results: list[RunResult]) -> str:
    table = cost_table(results)
    assert table is not None
    out = io.StringIO()
    Console(file=out, width=250).print(table)
    return out.getvalue()


def test_store_totals_are_read_from_a_bridges_metrics() -> None:
    metrics = Metrics()
    stats = StoreStats()
    metrics.watch_store(stats)
    stats.statements, stats.transactions, stats.round_trips = 120, 30, 45

    assert store_totals(metrics.render().decode()) == {
        "statements": 120,
        "transactions": 30,
        "round_trips": 45,
    }


def test_a_bridge_that_exports_no_store_counters_is_not_read_as_zero() -> None:
    assert store_totals(Metrics().render().decode()) == {}
    start = {"bridge": {}}
    end = {"bridge": {}}
    assert store_difference(start, end) == {"bridge": {}}
    result = run("old build", processes={"bridge": 5.0}, store_counts=store_difference(start, end))
    cost = cost_of(result)
    assert cost is not None and cost.per_message("statements") is None
    assert cost.bridge_cpu_ms == 5.0


def test_replicas_on_postgresql_cost_what_all_bridges_did_per_reply() -> None:
    start = {
        "bridge-1": {"statements": 100, "transactions": 10, "round_trips": 100},
        "bridge-2": {"statements": 50, "transactions": 5, "round_trips": 50},
    }
    end = {
        "bridge-1": {"statements": 7100, "transactions": 1010, "round_trips": 5100},
        "bridge-2": {"statements": 5050, "transactions": 1005, "round_trips": 3050},
    }
    result = run(
        "chatwoot (2 replicas)",
        database="postgresql",
        processes={"bridge-1": 2.0, "bridge-2": 1.0, "postgres": 1.5, "agent": 0.5},
        store_counts=store_difference(start, end),
        machine_cpu_seconds=6.0,
    )

    cost = json.loads(json.dumps(result.to_json(raw=False)))["cost"]

    assert cost["bridges"] == 2 and cost["replies"] == 1000
    assert cost["store"] == {"statements": 12000, "transactions": 2000, "round_trips": 8000}
    assert cost["bridge_cpu_ms_per_round_trip"] == 3.0
    assert cost["statements_per_message"] == 12.0
    assert cost["transactions_per_message"] == 2.0
    assert cost["server_round_trips_per_message"] == 8.0
    assert cost["postgres_backends_cpu_ms_per_message"] == 1.5
    assert cost["rest_of_machine_cpu_ms_per_message"] == 1.0  # 6.0 - 2.0 - 1.0 - 1.5 - 0.5
    row = " ".join(rendered([result]).split())
    assert "│ chatwoot (2 replicas) │ 1,000 │ 3.00 │ 12.0 │ 2.0 │ 8.0 │ 1.50 │ 1.00 │" in row


def test_sqlite_has_no_server_round_trips_and_uncounted_statements_are_said() -> None:
    baseline = run("baseline", scenario="baseline", processes={"baseline": 1.0})
    counted = {"bridge": {"statements": 0, "transactions": 0, "round_trips": 0}}
    result = run("chatwoot", processes={"bridge": 6.5}, store_counts=counted)

    assert cost_of(baseline) is None
    assert baseline.to_json(raw=False)["cost"] is None
    table = rendered([baseline, result])
    assert "baseline" not in table
    assert "in-process" in table and "6.50" in table
    said = " ".join(summary_lines([baseline, result]))
    assert "chatwoot: the bridges' stores counted 0 statements" in said


def test_counters_that_could_not_be_read_show_as_not_measured() -> None:
    result = run("chatwoot", database="postgresql", processes={"bridge": 2.0})
    cost = result.to_json(raw=False)["cost"]
    assert cost["store"] is None and cost["statements_per_message"] is None
    assert cost["postgres_backends_cpu_ms_per_message"] is None  # no backends measured
    row = " ".join(rendered([result]).split())
    assert "│ chatwoot │ 1,000 │ 2.00 │ - │ - │ - │ - │ - │" in row
