"""A replica running a turn is SIGKILLed: a new message is answered by the others at once.

Three ``chatbridge serve`` processes dial one ws-dial-out agent (served by this test), so every
replica has a link. The replica running a turn the agent holds on to is SIGKILLed; a new
conversation's message then goes to another replica. Leases last an hour and presence five
minutes here, so a reply that comes at all did not wait for the dead replica's leases or
presence to run out: only its own conversation is held up until its turn's lease expires.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from chatbridge.agent import Agent, Turn
from chatbridge.store import Store
from chatbridge.testing.cluster import RedisServer, ReplicaSet
from chatbridge.testing.mock_chatwoot import TriggerRequest, create_mock_chatwoot
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(180)]

AGENT_ID = "agent1"
CHATWOOT_TOKEN = "bot-token"
REPLICAS = 3
REPLY_WAIT = 60.0
"""Far below the hour a lease lasts here: the test's patience, not a speed target."""


def replica_env(chatwoot_url: str, agent_port: int) -> dict[str, str]:
    agent_config = {
        "agent_id": AGENT_ID,
        "websocket_url": f"ws://127.0.0.1:{agent_port}",
        "timeout_seconds": 3000,
    }
    return {
        "CHATWOOT_BASE_URL": chatwoot_url,
        "CHATWOOT_API_ACCESS_TOKEN": CHATWOOT_TOKEN,
        "INBOX_AGENT_MAPPINGS": json.dumps([{"inbox_id": 1, "agent_config": agent_config}]),
        "CHATBRIDGE_ADMIN_KEY": "cluster-admin-key",
        "CHATBRIDGE_LEASE_SECONDS": "3600",
        "CHATBRIDGE_CLUSTER_PRESENCE_SECONDS": "300",
        "CHATBRIDGE_RECONNECT_INITIAL_DELAY": "0.1",
        "CHATBRIDGE_RECONNECT_MAX_DELAY": "1",
        "CHATBRIDGE_DRAIN_SECONDS": "1",
        "CHATBRIDGE_LOG_LEVEL": "INFO",
    }


async def test_a_new_message_is_answered_without_waiting_for_the_dead_replicas_leases(
    database_url_pg: str,
    redis_server: RedisServer,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    held: asyncio.Queue[str] = asyncio.Queue()
    release = asyncio.Event()
    agent = Agent(AGENT_ID)

    @agent.on_message
    async def answer(turn: Turn) -> str:
        if turn.content == "hold":
            await held.put(turn.id)
            await release.wait()
        return f"Echo: {turn.content}"

    async with AsyncExitStack() as exits:
        exits.callback(release.set)
        mock_app = create_mock_chatwoot(api_token=CHATWOOT_TOKEN)
        chatwoot_url = await exits.enter_async_context(serve_app(mock_app))
        mock = mock_app.state.mock
        agent_port = await exits.enter_async_context(agent.serving("127.0.0.1", 0))
        replicas = ReplicaSet(
            REPLICAS,
            database_url=database_url_pg,
            redis_url=redis_server.url,
            env=replica_env(chatwoot_url, agent_port),
            workdir=tmp_path,
        )
        await exits.enter_async_context(replicas)
        store = Store(database_url_pg)
        exits.push_async_callback(store.close)

        async def say(replica: int, conv: int, text: str) -> None:
            mock.webhook_url = f"{replicas[replica].url}/webhook/chatwoot"
            spec = TriggerRequest(conversation_id=conv, content=text, inbox_id=1)
            sent = await mock.trigger("message_created", spec)
            assert sent["status_code"] == 200, sent

        def replies(conv: int) -> list[str]:
            return [m["content"] for m in mock.received_messages if m["conversation_id"] == conv]

        # every replica dials the agent
        await wait_until(lambda: len(agent._peers) == REPLICAS, timeout=30)  # type: ignore[attr-defined]

        await say(0, conv=1, text="hold")
        turn_key = await asyncio.wait_for(held.get(), REPLY_WAIT)
        turn_id = int(turn_key.removeprefix("t_"))
        row = await store.get_turn(turn_id)
        assert row is not None and row["state"] == "leased", row
        victim = next(r.index for r in replicas if r.instance_id == row["lease_owner"])

        await replicas.kill(victim)
        killed_at = time.monotonic()
        survivor = (victim + 1) % REPLICAS
        await say(survivor, conv=2, text="after")
        try:
            await wait_until(lambda: replies(2) == ["Echo: after"], timeout=REPLY_WAIT)
        except AssertionError:
            raise AssertionError(f"no reply to a new message\n{replicas.tails()}") from None
        seconds = time.monotonic() - killed_at
        print(f"\nreplica-{victim} SIGKILLed; a new message answered {seconds:.2f}s later")
        record_property("kill_to_new_reply_s", round(seconds, 3))

        # the dead replica's turn is still leased to it: nothing waited for that lease
        row = await store.get_turn(turn_id)
        assert row is not None
        assert (row["state"], row["lease_owner"]) == ("leased", f"replica-{victim}")
        assert replies(1) == []
