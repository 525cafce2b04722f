"""``chatbridge bench --replicas 2``: two bridges on one PostgreSQL database and one Redis.

A small end-to-end run (real processes, a private ``redis-server``): every acknowledged
webhook gets exactly one reply, in order, whichever replica took it. Without PostgreSQL or
``redis-server`` the test is skipped, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatbridge.bench.databases import postgresql_available
from chatbridge.bench.redis_server import redis_server_program
from chatbridge.cli import app


def require(problem: str | None) -> None:
    """Skip on ``problem`` (fail in CI, which must prove the multi-replica path)."""
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {problem}")
    pytest.skip(problem)


@pytest.mark.timeout(120)
def test_two_replicas_answer_every_webhook_once_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    problem = asyncio.run(postgresql_available())
    require(None if problem is None else f"PostgreSQL is not reachable: {problem}")
    require(None if redis_server_program() else "redis-server is not on PATH")
    monkeypatch.delenv("CHATBRIDGE_REDIS_URL", raising=False)  # the private server, always

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench", "chatwoot", "--quick", "--no-baseline", "--replicas", "2",
            "--database", "postgresql", "--conversations", "5", "--duration", "4",
            "--json", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = json.loads(out.read_text())["runs"]
    counts = run["counts"]
    assert run["replicas"] == 2 and run["database"] == "postgresql"
    assert counts["acknowledged"] == counts["sent"] > 0
    assert counts["replied"] == counts["acknowledged"]
    assert (counts["lost"], counts["duplicated"], counts["out_of_order"]) == (0, 0, 0)
    assert counts["unexpected"] == 0
    assert run["valid"] is True
    assert {p["name"] for p in run["processes"]} == {
        "bridge-1", "bridge-2", "redis", "postgres", "agent", "channel", "loadgen",
    }  # fmt: skip
    # both replicas took webhooks (round-robin), each under its own instance id
    replicas = {r["name"]: r for r in run["measures"]["replicas"]}
    assert set(replicas) == {"bridge-1", "bridge-2"}
    assert all(r["webhooks"] > 0 for r in replicas.values())
    assert sum(r["webhooks"] for r in replicas.values()) >= counts["sent"]
    assert len({r["instance_id"] for r in replicas.values()}) == 2
    # what a message cost, all bridges together, with PostgreSQL's own CPU beside it
    assert set(run["store_counts"]) == {"bridge-1", "bridge-2"}
    cost = run["cost"]
    assert cost["bridges"] == 2 and cost["bridge_cpu_ms_per_round_trip"] > 0
    assert cost["server_round_trips_per_message"] >= 0
    assert cost["postgres_backends_cpu_ms_per_message"] > 0
    said = " ".join(result.output.split())
    assert "a private redis-server started for this run" in said


def test_several_replicas_on_sqlite_are_refused() -> None:
    result = CliRunner().invoke(app, ["bench", "chatwoot", "--quick", "--replicas", "2"])
    assert result.exit_code == 2
    assert "needs --database postgresql" in " ".join(result.output.split())
