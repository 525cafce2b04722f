"""Live status across replicas (PostgreSQL and Redis): an SDK agent dialed in to one replica
reports status and progress; the console asking another replica sees them while the turn
runs, and sees them go when it ends."""

from __future__ import annotations

import asyncio
from typing import Any

from chatbridge.agent import Agent, Turn
from tests.e2e.harness import agent_ws_url, dialing_in, wait_until
from tests.e2e.test_replicas_in_process import (
    AGENT_TOKEN,
    cluster,
    dial_in_config,
    held_by,
)


async def test_the_status_reported_on_one_replica_shows_on_another(database_url_pg: str) -> None:
    agent = Agent("agent1")
    go = asyncio.Event()

    @agent.on_message
    async def answer(turn: Turn) -> str:
        await turn.status("Searching your orders…")
        await turn.progress(0.5)
        await asyncio.wait_for(go.wait(), 30)
        return "Found it"

    async with cluster(database_url_pg, dial_in_config()) as c:
        async with dialing_in(agent, agent_ws_url(c.replicas[0].url), AGENT_TOKEN):
            await held_by(c, "agent1", "r0")
            await c.say(1, conv=7, text="where is my order")
            store = c.replicas[1].bridge.store

            async def conversation() -> str | None:
                conv = await store.find_conversation("chatwoot", "1:7")
                return None if conv is None else conv.id

            conv_id = await wait_until(conversation)

            async def live_on_r1() -> Any:
                r = await c.replicas[1].http.get(f"/conversations/{conv_id}/live")
                assert r.status_code == 200, r.text
                return r.json()["live"]

            async def reported() -> Any:
                live = await live_on_r1()
                return live if live and live["progress"] == 0.5 else None

            live = await wait_until(reported, 15)
            assert (live["agent_id"], live["content"]) == ("agent1", "Searching your orders…")
            go.set()
            await wait_until(lambda: c.replies(7) == ["Found it"], 15)

            async def cleared() -> bool:
                return await live_on_r1() is None

            await wait_until(cleared, 15)
