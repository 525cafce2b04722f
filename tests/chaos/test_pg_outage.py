"""PostgreSQL cut off under load, the bridge not restarted: nothing stranded, nothing doubled.

One bridge process on a PostgreSQL database of its own; customers write ~20 messages/s in 24
conversations. A few seconds in, the database goes away for ``OUTAGE`` seconds, the way a
server restart or failover looks to a client (``DatabaseCut``): first every backend the bridge
holds is terminated again and again while it can still reconnect, so statements fail in the
middle of work (a claimed turn, a sent reply not yet marked done); then no connection is
accepted at all. The bridge is *not* restarted.

Once the database refuses connections, ``GET /ready`` must answer 503 within
``NOT_READY_WITHIN`` seconds (a load balancer stops sending traffic; an operator sees it), and
be ready again once the database is back. Webhooks refused meanwhile are not acknowledged and
do not count. After the database is back, every acknowledged message must be answered exactly
once and in order within ``ANSWERED_WITHIN`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from chatbridge.testing.cluster import ReplicaSet
from tests.chaos.harness import (
    Customers,
    DatabaseCut,
    ReadyWatch,
    bridge_env,
    echo_agent,
    fresh_pg_database,
    outcome,
    report,
    strict_chatwoot,
    wait_answered,
    wait_settled,
    wait_until,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

OUTAGE = 5.0
"""Seconds the database is away: its connections terminated every 0.2 s for the first
``FLAPPING`` seconds (the bridge reconnects and loses them mid-transaction), then no
connection accepted at all. Shorter than Chatwoot's three tries of a webhook, 3 s apart: the
echo of a reply sent just before the cut is what proves that reply went out, and the promise
of exactly once holds when one of its tries can be stored (``docs/reliability.md``; a cut of
6 s could refuse all three and, rarely, double a reply)."""
FLAPPING = 2.0
NOT_READY_WITHIN = 2.5
"""Seconds from the database refusing connections to ``/ready`` answering 503."""
READY_AGAIN_WITHIN = 30.0
ANSWERED_WITHIN = 60.0
LOAD_BEFORE = 60
"""Acknowledged messages before the cut (~3 s of load)."""
SETTLE_WITHIN = 20.0
"""Seconds to wait, once all is answered, for nothing to be left in flight."""
LOAD_AFTER = 8.0
"""Seconds the customers keep writing after the database is back."""


@pytest.mark.timeout(180)
async def test_postgresql_outage_under_load_strands_and_doubles_nothing(tmp_path: Path) -> None:
    agent = echo_agent()
    async with (
        fresh_pg_database() as (db_name, db_url),
        strict_chatwoot() as (mock, chatwoot_url),
        agent.serving("127.0.0.1", 0) as agent_port,
    ):
        env = bridge_env(
            chatwoot_url,
            {"websocket_url": f"ws://127.0.0.1:{agent_port}", "timeout_seconds": 30},
        )
        async with ReplicaSet(1, database_url=db_url, env=env, workdir=tmp_path) as bridges:
            bridge = bridges[0]
            mock.webhook_url = f"{bridge.url}/webhook/chatwoot"
            customers = Customers(mock, seed=101)
            cut = DatabaseCut(db_name)
            lines: list[str] = []
            try:
                async with ReadyWatch(bridge.url) as watch:
                    customers.start()
                    await wait_until(
                        lambda: customers.acknowledged >= LOAD_BEFORE, 30, what="load started"
                    )
                    cut_at = time.time()
                    await cut.flap(FLAPPING)  # the outage itself: connections die …
                    refused_at = time.time()
                    await cut.cut()
                    await cut.hold(OUTAGE - FLAPPING)  # … then none is accepted
                    not_ready_at = watch.first(503, after=refused_at)
                    await cut.restore()
                    back_at = time.time()
                    with contextlib.suppress(AssertionError):
                        await wait_until(
                            lambda: watch.first(200, after=back_at), READY_AGAIN_WITHIN,
                            what="/ready 200 after the database came back",
                        )  # fmt: skip
                    ready_at = watch.first(200, after=back_at)
                    await asyncio.sleep(LOAD_AFTER)  # customers keep writing: the scenario
                    await customers.stop()
                    answered_at = await wait_answered(mock, customers, ANSWERED_WITHIN)
                    stuck_ready = watch.samples[-1][1] if answered_at is None else None
                    counts = await wait_settled(db_url, SETTLE_WITHIN)
                    ready_runs = watch.describe(cut_at)
            finally:
                await customers.cancel()
            result = outcome(mock, customers)
            during = sum(
                1 for m in customers.messages
                if m.acked_at is not None and cut_at <= m.acked_at <= back_at
            )  # fmt: skip
            lines += [
                f"database cut {back_at - cut_at:.1f}s at t+{cut_at - customers.started_at:.1f}s "
                f"({cut.terminated} backends terminated); "
                f"{customers.acknowledged_since(back_at)} acknowledged after it came back, "
                f"{during} while it was cut",
                f"/ready 503 {_after(not_ready_at, refused_at)} after connections were "
                f"refused, 200 again "
                f"{_after(ready_at, back_at)} after it came back; answers since the cut: "
                f"{ready_runs}",
                f"every acknowledged message answered "
                f"{_after(answered_at, back_at)} after the database came back",
                f"turns and deliveries by state at the end: {counts}",
                f"bridge process starts: {bridge.starts} (must stay 1), running: {bridge.running}",
            ]
            assert bridge.starts == 1 and bridge.running, "the bridge was restarted or died"
            problems = []
            if not_ready_at is None or not_ready_at - refused_at > NOT_READY_WITHIN:
                problems.append(
                    f"/ready did not answer 503 within {NOT_READY_WITHIN}s of the database "
                    "refusing connections"
                )
            if stuck_ready == 200:
                problems.append(
                    "/ready answered 200 while acknowledged messages were stuck unanswered"
                )
            if ready_at is None:
                problems.append(f"/ready not 200 within {READY_AGAIN_WITHIN}s of the database")
            report("PostgreSQL outage, bridge not restarted", result, lines + problems, bridges)
            assert not problems, problems


def _after(at: float | None, start: float) -> str:
    return "never" if at is None else f"{at - start:.1f}s"
