"""SIGKILL the bridge three times under load, on SQLite and on PostgreSQL: 0 lost, 0 doubled.

One bridge process behind a reverse proxy; customers write ~20 messages/s in 24
conversations; the mock Chatwoot behaves like real Chatwoot towards a bot token (no listing,
every reply echoed back as a webhook carrying the bridge's ``source_id``, retried only after
429 or 500). The proxy answers 500 while the bridge is down — the deployment
``docs/reliability.md`` asks of a single bridge — so Chatwoot retries the webhooks that meet
the crash, the bridge's own echoes included: an echo is the only receipt a bot token gets for
a reply whose send the crash cut off, and without it a reply the customer already has would
be sent again once the conversation has moved on. Three times, at a random moment 2-4 s after the
bridge is (again) ready, it is SIGKILLed (no shutdown code runs) and started again at once on
the same port and database. Kills land wherever the work is: webhooks half-stored, turns with
the agent, replies posted to Chatwoot but not yet marked sent, echoes in flight to a dead
process. Webhooks that got no answer while it was down are retried like Chatwoot's (same
delivery id), or given up and not counted. A kill comes only once Chatwoot has finished
retrying the echoes the previous one refused (usually already the case): the design promises
exactly one reply across a crash when one of those retries finds the bridge up again; a
second crash that refuses the last retry too leaves a cut-off send without any receipt.

Afterwards every acknowledged message must have exactly one reply at the mock Chatwoot, in
order per conversation, within ``ANSWERED_WITHIN`` seconds of the last restart.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from chatbridge.testing.cluster import ReplicaSet, TcpBalancer
from chatbridge.testing.mock_agent import echo_text
from tests.chaos.harness import (
    KILL_LEASE_SECONDS,
    Customers,
    bridge_env,
    echo_agent,
    echo_trails,
    fresh_pg_database,
    outcome,
    report,
    strict_chatwoot,
    wait_answered,
    wait_settled,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

KILLS = 3
BETWEEN_KILLS = (2.0, 4.0)
"""Seconds of load between the bridge being ready and the next SIGKILL (drawn uniformly)."""
LOAD_AFTER = 3.0
ANSWERED_WITHIN = 60.0
SETTLE_WITHIN = 20.0


@pytest.mark.timeout(200)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_sigkill_three_times_under_load(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        await _run(backend, f"sqlite+aiosqlite:///{tmp_path / 'chaos.db'}", tmp_path)
        return
    async with fresh_pg_database() as (_, db_url):
        await _run(backend, db_url, tmp_path)


async def _run(backend: str, db_url: str, workdir: Path) -> None:
    rng = random.Random(f"sigkill-{backend}")
    agent = echo_agent()
    async with (
        strict_chatwoot() as (mock, chatwoot_url),
        agent.serving("127.0.0.1", 0) as agent_port,
    ):
        env = bridge_env(
            chatwoot_url,
            {"websocket_url": f"ws://127.0.0.1:{agent_port}", "timeout_seconds": 30},
            lease_seconds=KILL_LEASE_SECONDS,
        )
        async with (
            ReplicaSet(1, database_url=db_url, env=env, workdir=workdir) as bridges,
            TcpBalancer(bridges.backends(), mode="failover", when_down=500) as proxy,
        ):
            bridge = bridges[0]
            mock.webhook_url = f"{proxy.url}/webhook/chatwoot"
            customers = Customers(mock, seed=202)
            timeline: list[str] = []
            try:
                customers.start()
                for k in range(KILLS):
                    # The echoes the last crash refused get Chatwoot's retries before the
                    # next crash: the deployment covers a crash within that window, not a
                    # second one that refuses their last try as well.
                    await asyncio.gather(
                        asyncio.sleep(rng.uniform(*BETWEEN_KILLS)),  # when the crash comes
                        mock.settle_background(),
                    )
                    killed_at = time.time()
                    await bridge.kill()
                    await bridge.start()
                    t0 = customers.started_at
                    timeline.append(
                        f"SIGKILL {k + 1} at t+{killed_at - t0:.1f}s "
                        f"(acknowledged {customers.acknowledged}), ready again "
                        f"{time.time() - killed_at:.1f}s later (t+{time.time() - t0:.1f}s)"
                    )
                restarted_at = time.time()
                await asyncio.sleep(LOAD_AFTER)  # customers keep writing: the scenario
                await customers.stop()
                answered_at = await wait_answered(mock, customers, ANSWERED_WITHIN)
                counts = await wait_settled(db_url, SETTLE_WITHIN)
            finally:
                await customers.cancel()
            result = outcome(mock, customers)
            retried = sum(len(m.attempts) > 1 for m in customers.messages)
            lines = [
                *timeline,
                f"webhooks retried (same delivery id): {retried}; every acknowledged message "
                f"answered {_after(answered_at, restarted_at)} after the last restart",
                f"turns and deliveries by state at the end: {counts}",
                *echo_trails(mock, [echo_text(t) for t in result.duplicated], customers.started_at),
            ]
            report(f"SIGKILL x{KILLS} under load on {backend}", result, lines, bridges)
            assert bridge.starts == KILLS + 1


def _after(at: float | None, start: float) -> str:
    return "never" if at is None else f"{at - start:.1f}s"
