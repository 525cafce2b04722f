"""Three replicas on PostgreSQL + Redis; the one holding the agent SIGKILLed twice: 0 doubled.

Three ``chatbridge serve`` processes share a PostgreSQL database of their own and a private
Redis. Chatwoot's webhooks, the customers' and the echoes of the bridge's own replies alike,
go round-robin through a ``TcpBalancer`` (a dead replica's connections are refused and the
next one is tried, as a load balancer's health check would). One WebSocket agent dials in
through a failover balancer, so it sits on one replica at a time. Twice, the replica holding
the agent is SIGKILLed mid-load: the agent reconnects through its balancer to another replica,
the dead one is started again, and its work (turns with the agent, replies in flight to
Chatwoot) is taken over by the others when its leases expire.

Every acknowledged message must be answered exactly once, in order, within
``ANSWERED_WITHIN`` seconds of the last restart.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from chatbridge.testing.cluster import RedisServer, ReplicaSet, TcpBalancer
from tests.chaos.harness import (
    AGENT_TOKEN,
    KILL_LEASE_SECONDS,
    Customers,
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

REPLICAS = 3
KILLS = 2
BETWEEN_KILLS = (2.0, 4.0)
LOAD_AFTER = 3.0
AGENT_MOVES_WITHIN = 20.0
ANSWERED_WITHIN = 60.0
SETTLE_WITHIN = 20.0


@pytest.mark.timeout(240)
async def test_sigkill_the_agents_replica_twice(tmp_path: Path, chaos_redis: RedisServer) -> None:
    rng = random.Random("replica-loss")
    runs: Counter[str] = Counter()
    agent = echo_agent(runs)
    async with (
        fresh_pg_database() as (_, db_url),
        strict_chatwoot() as (mock, chatwoot_url),
    ):
        env = bridge_env(
            chatwoot_url,
            {"transport": "ws-dial-in", "token": AGENT_TOKEN, "timeout_seconds": 30},
            lease_seconds=KILL_LEASE_SECONDS,
        )
        env["CHATBRIDGE_CLUSTER_PRESENCE_SECONDS"] = "3"
        env["CHATBRIDGE_HEARTBEAT_INTERVAL"] = "2"
        replicas = ReplicaSet(
            REPLICAS, database_url=db_url, redis_url=chaos_redis.url, env=env, workdir=tmp_path
        )
        async with (
            replicas,
            # a load balancer that answers 500 for a replica that dies under a request, so
            # Chatwoot retries it (on another replica) — see docs/reliability.md
            TcpBalancer(replicas.backends(), mode="round_robin", when_down=500) as webhooks,
            TcpBalancer(replicas.backends(), mode="failover") as agent_lb,
        ):
            mock.webhook_url = f"{webhooks.url}/webhook/chatwoot"

            def holder() -> int | None:
                """The running replica the agent's connection goes to, if exactly one."""
                running = replicas.running()
                on = {replicas.ports.index(port) for _, port in agent_lb.active()}
                alive = [i for i in on if i in running]
                return alive[0] if len(alive) == 1 else None

            stop = asyncio.Event()
            dialing = asyncio.create_task(
                agent.dial_in(f"{agent_lb.ws_url}/api/ws/agent", AGENT_TOKEN, stop=stop)
            )
            customers = Customers(mock, seed=303)
            timeline: list[str] = []
            try:
                await wait_until(lambda: holder() == 0, AGENT_MOVES_WITHIN, what="agent on 0")
                customers.start()
                for _ in range(KILLS):
                    await asyncio.sleep(rng.uniform(*BETWEEN_KILLS))  # when the crash comes
                    victim = holder()
                    assert victim is not None, f"the agent is not connected: {agent_lb.active()}"
                    killed_at = time.time()
                    await replicas.kill(victim)
                    try:
                        moved_to = (
                            await wait_until(
                                lambda v=victim: (h := holder()) is not None and h != v and h + 1,
                                AGENT_MOVES_WITHIN,
                                what="the agent reconnected to another replica",
                            )
                            - 1
                        )
                    except AssertionError as exc:
                        raise AssertionError(
                            f"{exc}: agent connections {agent_lb.active()}, dialing "
                            f"{dialing!r}\n{replicas.tails()}"
                        ) from None
                    moved_at = time.time()
                    await replicas.start(victim)
                    timeline.append(
                        f"SIGKILL replica-{victim} (holds the agent) at "
                        f"t+{killed_at - customers.started_at:.1f}s (acknowledged "
                        f"{customers.acknowledged}); agent on replica-{moved_to} "
                        f"{moved_at - killed_at:.1f}s later; replica-{victim} ready again "
                        f"{time.time() - killed_at:.1f}s after the kill"
                    )
                restarted_at = time.time()
                await asyncio.sleep(LOAD_AFTER)  # customers keep writing: the scenario
                await customers.stop()
                answered_at = await wait_answered(mock, customers, ANSWERED_WITHIN)
                counts = await wait_settled(db_url, SETTLE_WITHIN)
            finally:
                await customers.cancel()
                stop.set()
                await asyncio.gather(dialing, return_exceptions=True)
            result = outcome(mock, customers)
            reruns = sum(n - 1 for n in runs.values() if n > 1)
            connections = {
                f"replica-{replicas.ports.index(port)}": n
                for (_, port), n in agent_lb.connections.items()
            }
            lines = [
                *timeline,
                f"every acknowledged message answered "
                f"{_after(answered_at, restarted_at)} after the last restart; agent handler "
                f"runs {sum(runs.values())} for {len(runs)} turns ({reruns} re-runs); agent "
                f"connections {connections}; webhook connections refused by the balancer "
                f"{webhooks.refused}",
                f"turns and deliveries by state at the end: {counts}",
            ]
            report(
                f"{REPLICAS} replicas, the agent's replica SIGKILLed x{KILLS}",
                result,
                lines,
                replicas,
            )


def _after(at: float | None, start: float) -> str:
    return "never" if at is None else f"{at - start:.1f}s"
