"""``chatbridge bench --quick`` end to end: real processes, real load, nothing lost.

This is the CI smoke run: it fails on any lost, duplicated or out-of-order message, never on
speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatbridge.cli import app


@pytest.mark.timeout(90)
def test_quick_chatwoot_bench_loses_doubles_and_reorders_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    result = CliRunner().invoke(
        app,
        [
            "bench", "chatwoot", "--quick", "--conversations", "5", "--duration", "5",
            "--json", str(out), "--plot", str(plot),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    baseline, chatwoot = data["runs"]
    assert baseline["scenario"] == "baseline" and baseline["counts"]["acknowledged"] > 0
    counts = chatwoot["counts"]
    assert counts["acknowledged"] > 0
    assert counts["replied"] == counts["acknowledged"]
    assert (counts["lost"], counts["duplicated"], counts["out_of_order"]) == (0, 0, 0)
    assert chatwoot["valid"] is True
    assert set(chatwoot["e2e_latency_seconds"]) == {"p50", "p95", "p99"}
    assert {p["name"] for p in chatwoot["processes"]} == {"bridge", "agent", "channel", "loadgen"}
    assert all(p["peak_rss_mb"] > 0 for p in chatwoot["processes"])
    assert len(chatwoot["messages"]["rows"]) == counts["sent"]
    assert plot.stat().st_size > 0
    # what a message cost: the bridge's CPU and what its store counted, read from /metrics
    assert baseline["cost"] is None
    cost = chatwoot["cost"]
    assert cost["replies"] == counts["replied"] and cost["bridges"] == 1
    assert cost["bridge_cpu_ms_per_round_trip"] > 0
    assert set(chatwoot["store_counts"]["bridge"]) == {"statements", "transactions", "round_trips"}
    for figure in ("statements", "transactions", "server_round_trips"):
        assert cost[f"{figure}_per_message"] >= 0
    said = " ".join(result.output.split())
    assert "x the no-op FastAPI endpoint" in said
    assert "Cost per message" in said and "in-process" in said


def test_an_unknown_scenario_is_refused_with_the_available_ones() -> None:
    result = CliRunner().invoke(app, ["bench", "telegram", "--quick"])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "unknown scenario 'telegram'" in said
    assert all(name in said for name in ("chatwoot", "webchat", "pull", "stream"))


def test_rate_and_max_together_are_refused() -> None:
    result = CliRunner().invoke(app, ["bench", "chatwoot", "--rate", "5", "--max", "5"])
    assert result.exit_code == 2
