"""Replicas share one agent's turns: whoever has a live link claims them from the database
(an http-webhook agent's: any replica).

In-process replicas on PostgreSQL and a private Redis (``sharing_rig``); their claim loops
never poll, so every turn was claimed on a wake-up. ``test_sharing_replica_loss`` kills a
replica process.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from websockets.asyncio.client import ClientConnection

from chatbridge.config import AgentConfig
from chatbridge.testing.cluster import RedisServer, TcpBalancer
from chatbridge.testing.mock_agent import build_mock_agent
from chatbridge.testing.servers import serve_app
from tests.cluster.sharing_rig import (
    AGENT_ID,
    AGENT_TOKEN,
    answer,
    dial_in_config,
    next_turn,
    raw_dial_in,
    replicas,
)
from tests.e2e.harness import dialing_in, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


async def test_every_replica_dials_the_agent_and_runs_some_of_its_turns(
    database_url_pg: str, redis_server: RedisServer
) -> None:
    agent = build_mock_agent("echo", agent_id=AGENT_ID, delay=0)
    async with agent.serving("127.0.0.1", 0) as port:
        config = AgentConfig(
            agent_id=AGENT_ID, websocket_url=f"ws://127.0.0.1:{port}", timeout_seconds=30
        )
        async with replicas(database_url_pg, redis_server.url, config) as c:
            # each replica has its own link, and knows the other has one too
            await wait_until(lambda: all(r.knows_linked() == [r.name, *others(r.name)] for r in c))
            assert len(agent._peers) == 2  # type: ignore[attr-defined]
            for i in range(10):
                await c.say(i % 2, conv=100 + i, text=f"m{i}")
            await wait_until(lambda: len(c.replies()) == 10, timeout=60)
            assert sorted(c.replies()) == sorted(f"Echo: m{i}" for i in range(10))
            # a webhook wakes its own replica first: each ran the turns it was told of
            answered = {r.name: r.answered() for r in c}
            assert sum(answered.values()) == 10 and min(answered.values()) > 0, answered
            assert {r.name: len(r.claimed) for r in c} == answered


def others(name: str) -> list[str]:
    return [r for r in ("r0", "r1") if r != name]


async def test_an_sdk_agent_with_two_connections_is_served_by_both_replicas(
    database_url_pg: str, redis_server: RedisServer
) -> None:
    async with replicas(database_url_pg, redis_server.url, dial_in_config()) as c:
        backends = [("127.0.0.1", int(r.url.rsplit(":", 1)[1])) for r in c]
        async with TcpBalancer(backends, mode="round_robin") as balancer:
            agent = build_mock_agent("echo", agent_id=AGENT_ID, delay=0)
            stop = asyncio.Event()
            url = f"{balancer.ws_url}/api/ws/agent"
            dialing = asyncio.create_task(agent.dial_in(url, AGENT_TOKEN, stop=stop, connections=2))
            try:
                await wait_until(lambda: all(len(r.knows_linked()) == 2 for r in c))
                for i in range(10):
                    await c.say(i % 2, conv=500 + i, text=f"s{i}")
                await wait_until(lambda: len(c.replies()) == 10, timeout=60)
            finally:
                stop.set()
                await dialing
        assert sorted(c.replies()) == sorted(f"Echo: s{i}" for i in range(10))
        answered = {r.name: r.answered() for r in c}
        assert min(answered.values()) > 0, answered


async def test_a_replica_without_a_link_claims_none_of_the_agents_turns(
    database_url_pg: str, redis_server: RedisServer
) -> None:
    async with replicas(database_url_pg, redis_server.url, dial_in_config()) as c:
        agent = build_mock_agent("echo", agent_id=AGENT_ID, delay=0)
        async with dialing_in(agent, c[0].ws_url, AGENT_TOKEN):
            await wait_until(lambda: c[1].knows_linked() == ["r0"])
            for i in range(4):  # every webhook reaches r1, which has no link
                await c.say(1, conv=200 + i, text=f"w{i}")
            await wait_until(lambda: len(c.replies()) == 4, timeout=60)
        assert sorted(c.replies()) == [f"Echo: w{i}" for i in range(4)]
        assert c[1].claimed == [] and c[1].answered() == 0
        assert c[0].answered() == 4


async def test_a_turn_whose_link_drops_is_run_by_a_replica_with_a_link(
    database_url_pg: str, redis_server: RedisServer
) -> None:
    async with replicas(database_url_pg, redis_server.url, dial_in_config()) as c:
        links = {
            "r0": await raw_dial_in(c[0].ws_url, "link-0"),
            "r1": await raw_dial_in(c[1].ws_url, "link-1"),
        }
        try:
            await wait_until(lambda: all(len(r.knows_linked()) == 2 for r in c))
            await c.say(0, conv=400, text="hi")
            where, turn = await first_turn(links)
            # the agent's connection to the replica running the turn drops before it answers
            await links.pop(where).close()
            [(other, ws)] = links.items()
            again = await next_turn(ws)
            assert again["message_id"] == turn["message_id"]
            await answer(ws, again, "answered on the other link")
            await wait_until(lambda: c.replies(400) == ["answered on the other link"])
            by = {r.name: [t.id for t in r.claimed] for r in c}
            assert by[where] == by[other] == [int(turn["message_id"][2:])], by
        finally:
            for ws in links.values():
                await ws.close()


async def test_a_connection_reopened_on_another_replica_takes_the_turns_along(
    database_url_pg: str, redis_server: RedisServer
) -> None:
    """The agent's connection ``link-a`` reaches r1 while r0 still has it open (a half-open
    connection, or a load balancer that moved it): r0 closes its copy at once."""
    async with replicas(database_url_pg, redis_server.url, dial_in_config()) as c:
        old = await raw_dial_in(c[0].ws_url, "link-a")
        await wait_until(lambda: c[1].knows_linked() == ["r0"])
        new = await raw_dial_in(c[1].ws_url, "link-a")
        try:
            await old.wait_closed()
            await wait_until(lambda: not c[0].linked() and c[0].knows_linked() == ["r1"])
            await c.say(0, conv=300, text="hello")  # to r0, which has no link now
            turn = await next_turn(new)
            await answer(new, turn, "from r1")
            await wait_until(lambda: c.replies(300) == ["from r1"])
            assert c[0].claimed == []
        finally:
            await new.close()


async def first_turn(links: dict[str, ClientConnection]) -> tuple[str, dict[str, Any]]:
    """The first ``user_message`` on any of ``links``: on which, and the frame."""
    reads = {asyncio.create_task(next_turn(ws)): name for name, ws in links.items()}
    done, pending = await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    task = done.pop()
    return reads[task], task.result()


async def test_a_late_webhook_reply_reaching_another_replica_is_passed_to_the_turns_runner(
    database_url_pg: str, redis_server: RedisServer
) -> None:
    """http-webhook turns run on any replica; the agent answers later on ``reply_url``
    through a load balancer, so its answer may reach a replica the turn does not run on."""
    posted: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    agent_app = FastAPI()

    @agent_app.post("/turns")
    async def take(request: Request) -> Response:
        await posted.put(await request.json())
        return Response(status_code=202)  # accepted: the answer comes later

    async with serve_app(agent_app) as agent_url:
        config = AgentConfig(
            agent_id=AGENT_ID,
            webhook_url=f"{agent_url}/turns",
            token=AGENT_TOKEN,
            timeout_seconds=30,
        )
        async with replicas(database_url_pg, redis_server.url, config) as c:
            await c.say(0, conv=600, text="later please")
            turn = await asyncio.wait_for(posted.get(), 30)
            [runner] = [r for r in c if r.bridge.hub.pull.find(AGENT_ID, turn["message_id"])]
            [other] = [r for r in c if r is not runner]
            async with httpx.AsyncClient() as http:
                r = await http.post(
                    f"{other.url}/api/agent/turns/{turn['message_id']}/reply",
                    params={"lease": turn["lease_id"]},
                    headers={"Authorization": f"Bearer {AGENT_TOKEN}", "X-Agent-Id": AGENT_ID},
                    json={"type": "agent_message", "content": "here it is"},
                )
            assert (r.status_code, r.json()) == (200, {"status": "answered"}), r.text
            await wait_until(lambda: c.replies(600) == ["here it is"])
