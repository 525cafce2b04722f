"""``chatbridge bench webchat|pull|stream --quick`` end to end: real processes, a small load.

Smoke runs: each fails on a lost, duplicated or out-of-order message (or streamed chunk),
never on speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chatbridge.cli import app


def quick_run(tmp_path: Path, scenario: str, *options: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        ["bench", scenario, "--quick", "--no-baseline", "--duration", "4", "--json", str(out),
         *options],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = json.loads(out.read_text())["runs"]
    counts = run["counts"]
    assert counts["acknowledged"] > 0
    assert counts["replied"] == counts["acknowledged"]
    assert (counts["lost"], counts["duplicated"], counts["out_of_order"]) == (0, 0, 0)
    assert run["valid"] is True
    data: dict[str, Any] = run
    return data


@pytest.mark.timeout(60)
def test_webchat_widgets_get_every_reply_once_and_in_order(tmp_path: Path) -> None:
    run = quick_run(tmp_path, "webchat", "--conversations", "5")
    assert {p["name"] for p in run["processes"]} == {"bridge", "agent", "widgets", "loadgen"}
    widgets = run["measures"]["widgets"]
    assert widgets["connected"] == widgets["sessions"] == 5
    assert set(run["measures"]["reply_latency_at_widget"]) == {"p50", "p95", "p99"}


@pytest.mark.timeout(60)
def test_pull_agent_answers_every_turn_once_and_in_order(tmp_path: Path) -> None:
    run = quick_run(tmp_path, "pull", "--conversations", "5")
    assert {p["name"] for p in run["processes"]} == {"bridge", "agent", "channel", "loadgen"}
    assert "http-pull" in run["settings"]["INBOX_AGENT_MAPPINGS"]


@pytest.mark.timeout(60)
def test_streamed_replies_reach_the_widgets_whole(tmp_path: Path) -> None:
    run = quick_run(tmp_path, "stream")
    chunks = run["measures"]["chunks"]
    assert chunks["streams"] == run["counts"]["replied"]
    assert chunks["chunks"] == 20 * chunks["streams"]
    problems = ("missing", "duplicated", "out_of_order", "late", "mismatched")
    assert {k: chunks[k] for k in problems} == dict.fromkeys(problems, 0)
    assert set(run["measures"]["first_chunk_latency"]) == {"p50", "p95", "p99"}
