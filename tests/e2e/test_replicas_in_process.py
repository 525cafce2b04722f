"""Several bridge replicas in one test process, on the real PostgreSQL and Redis.

Each replica is a full app (its own ``Bridge``, workers, hub and cluster) served on its own
port; they share one database and one Redis (under a key prefix of the test's own). The
claim loops poll only every 10 s here; the tests that prove work is picked up by a wake-up
poll only every hour and wait far less than that, so a reply that comes at all came through
a wake-up, not a poll. ``tests/cluster`` runs the same kind of checks on separate processes,
with SIGKILLs and a Redis restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets

from chatbridge.agent import Agent, Turn
from chatbridge.agent.pull import PullClient, PullConfig
from chatbridge.api.app import create_app
from chatbridge.config import AgentConfig, InboxMapping, RouteAgentConfig, Settings
from chatbridge.pipeline.bridge import Bridge
from chatbridge.policies.model import DEFAULT_POLICIES, RoutePolicies
from chatbridge.testing.mock_agent import build_mock_agent, echo_text, split_chunks
from chatbridge.testing.mock_chatwoot import MockChatwoot, TriggerRequest, create_mock_chatwoot
from chatbridge.testing.servers import serve_app
from tests.e2e.drain import within
from tests.e2e.harness import FAST, TOKEN, agent_ws_url, dialing_in, wait_until

REDIS_URL = os.environ.get("CHATBRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN = "admin-key-for-tests"
AGENT_TOKEN = "agent-token-0123456"
SLOW_POLL = {**FAST, "poll_interval": 10.0}
NO_POLL = 3600.0  # claim loops and sync waiters never look at the store on their own


async def _redis_up() -> None:
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required in CI but not reachable: {exc}")
        pytest.skip(f"Redis not reachable: {exc}")
    finally:
        await client.aclose()


@dataclass
class Replica:
    name: str
    url: str
    bridge: Bridge
    http: httpx.AsyncClient
    exits: AsyncExitStack


@dataclass
class Cluster:
    replicas: list[Replica]
    mock: MockChatwoot
    exits: AsyncExitStack

    async def say(self, replica: int, conv: int, text: str, **kw: Any) -> dict[str, Any]:
        """A Chatwoot customer writes; the webhook goes to ``replica``."""
        self.mock.webhook_url = f"{self.replicas[replica].url}/webhook/chatwoot"
        spec = TriggerRequest(conversation_id=conv, content=text, inbox_id=1, **kw)
        return await self.mock.trigger("message_created", spec)

    def replies(self, conv: int) -> list[str]:
        return [m["content"] for m in self.mock.received_messages if m["conversation_id"] == conv]

    async def stop(self, index: int) -> None:
        """Stop one replica the graceful way (its server stops, its app's lifespan ends)."""
        await self.replicas[index].exits.aclose()


@asynccontextmanager
async def cluster(
    database_url: str,
    agent_config: AgentConfig,
    *,
    n: int = 2,
    webchat: bool = False,
    policies: RoutePolicies = DEFAULT_POLICIES,
    agents: list[RouteAgentConfig] | None = None,
    **settings: Any,
) -> AsyncIterator[Cluster]:
    await _redis_up()
    prefix = f"cbtest-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as exits:
        mock_app = create_mock_chatwoot(api_token=TOKEN)
        chatwoot_url = await exits.enter_async_context(serve_app(mock_app))
        mappings = [
            InboxMapping(
                inbox_id=1, agent_config=agent_config, policies=policies, agents=agents or []
            )
        ]
        if webchat:
            mappings.append(InboxMapping(channel="webchat", inbox_id=1, agent_config=agent_config))
        replicas = []
        for i in range(n):
            config = Settings(
                database_url=database_url,
                redis_url=REDIS_URL,
                redis_prefix=prefix,
                cluster_presence_seconds=2.0,
                chatwoot_base_url=chatwoot_url,
                chatwoot_api_access_token=TOKEN,
                inbox_agent_mappings=mappings,
                instance_id=f"r{i}",
                admin_key=ADMIN,
                **{**SLOW_POLL, **settings},
            )
            app = create_app(config)
            own = AsyncExitStack()
            exits.push_async_callback(own.aclose)
            url = await own.enter_async_context(serve_app(app))
            auth = {"Authorization": f"Bearer {ADMIN}"}
            http = await own.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=30, headers=auth)
            )
            replicas.append(Replica(f"r{i}", url, app.state.bridge, http, own))
        yield Cluster(replicas, mock_app.state.mock, exits)


def dial_in_config(**kw: Any) -> AgentConfig:
    return AgentConfig(
        agent_id="agent1", transport="ws-dial-in", token=AGENT_TOKEN, timeout_seconds=10, **kw
    )


async def held_by(c: Cluster, agent_id: str, replica: str) -> None:
    """Wait until every replica knows ``replica`` holds ``agent_id``."""
    await wait_until(
        lambda: all(r.bridge.cluster.location(agent_id) == replica for r in c.replicas),
        timeout=10,
    )


# ------------------------------------------------------------------------------------------


async def test_a_turn_for_an_agent_on_another_replica_is_carried_there(
    database_url_pg: str,
) -> None:
    agent = build_mock_agent("echo", agent_id="agent1", delay=0)
    async with cluster(database_url_pg, dial_in_config(), n=3, poll_interval=NO_POLL) as c:
        a = c.replicas[0]
        async with dialing_in(agent, agent_ws_url(a.url), AGENT_TOKEN):
            await held_by(c, "agent1", "r0")
            for i in range(6):
                await c.say(i % 3, conv=10 + i % 2, text=f"m{i}")
            # no claim loop polls within the hour: replies at all came through wake-ups
            await wait_until(lambda: len(c.replies(10)) + len(c.replies(11)) == 6, timeout=30)
            assert c.replies(10) == ["Echo: m0", "Echo: m2", "Echo: m4"]
            assert c.replies(11) == ["Echo: m1", "Echo: m3", "Echo: m5"]
            # only the replica with a link to the agent ran turns
            answered = {r.name: r.bridge.hub.status()[0].turns_answered for r in c.replicas}
            assert answered == {"r0": 6, "r1": 0, "r2": 0}
            # any replica shows the cluster-wide view
            r = await c.replicas[2].http.get("/agents/status")
            assert r.status_code == 200, r.text
            body = r.json()
            [row] = [x for x in body["agents"] if x["agent_id"] == "agent1"]
            assert row["connected"] is True and row["replica"] == "r0"
            assert row["turns_answered"] == 6
            assert {x["replica"] for x in row["replicas"]} == {"r0", "r1", "r2"}
            assert [x["id"] for x in body["replicas"]] == ["r0", "r1", "r2"]
            ready = (await c.replicas[1].http.get("/ready")).json()
            assert ready["redis"] is True and ready["replica"] == "r1"
            assert ready["replicas"] == 3


async def test_a_sync_caller_gets_the_reply_made_on_another_replica(database_url_pg: str) -> None:
    agent = build_mock_agent("echo", agent_id="agent1", delay=0)
    async with cluster(
        database_url_pg, dial_in_config(), poll_interval=NO_POLL, max_sync_response_time=60
    ) as c:
        async with dialing_in(agent, agent_ws_url(c.replicas[0].url), AGENT_TOKEN):
            await held_by(c, "agent1", "r0")
            # r1's waiter re-reads the store only at its 60 s deadline: an answer within 30 s
            # came with the message r0 published when the turn was done
            sent = await within(30, c.say(1, conv=5, text="hi", query={"mode": "sync"}, timeout=90))
            assert sent["status_code"] == 200, sent
            assert sent["response"]["reply"] == {"outcome": "reply", "content": "Echo: hi"}


async def test_when_the_agents_connection_to_one_replica_ends_another_takes_its_turns(
    database_url_pg: str,
) -> None:
    """A second connection of the agent reaches r1 and the one to r0 ends: the turns go to r1
    (both connections carry turns while both are up; see tests/cluster/test_sharing.py)."""
    agent = build_mock_agent("echo", agent_id="agent1", delay=0)
    async with cluster(database_url_pg, dial_in_config()) as c:
        second = build_mock_agent("echo", agent_id="agent1", delay=0)
        async with dialing_in(second, agent_ws_url(c.replicas[1].url), AGENT_TOKEN):
            async with dialing_in(agent, agent_ws_url(c.replicas[0].url), AGENT_TOKEN):
                await wait_until(lambda: c.replicas[0].bridge.hub.is_connected("agent1"))
                await c.say(0, conv=1, text="first")
                await wait_until(lambda: c.replies(1) == ["Echo: first"])
            await held_by(c, "agent1", "r1")
            await c.say(0, conv=1, text="second")
            await wait_until(lambda: c.replies(1) == ["Echo: first", "Echo: second"])


async def test_widget_on_one_replica_sees_the_stream_of_an_agent_on_another(
    database_url_pg: str,
) -> None:
    # The agent streams its answer once the widget shows it typing: a faster answer would go
    # out with no typing at all (see test_chatwoot_flow), and this test wants both relayed.
    typing_shown = asyncio.Event()
    agent = Agent("agent1")

    @agent.on_message
    async def answer(turn: Turn) -> AsyncIterator[str]:
        await typing_shown.wait()

        async def stream() -> AsyncIterator[str]:
            for piece in split_chunks(echo_text(turn.content), 4):
                yield piece

        return stream()

    async with cluster(
        database_url_pg, dial_in_config(), webchat=True, typing_delay_seconds=0
    ) as c:
        a, b = c.replicas
        async with dialing_in(agent, agent_ws_url(a.url), AGENT_TOKEN):
            await held_by(c, "agent1", "r0")
            r = await b.http.post("/api/webchat/sessions", json={"inbox_id": 1})
            sid = r.json()["session_id"]
            frames: list[dict[str, Any]] = []
            ws_url = b.url.replace("http://", "ws://") + f"/api/ws/chat/{sid}"
            async with websockets.connect(ws_url) as ws:

                async def read() -> None:
                    async for raw in ws:
                        frames.append(json.loads(raw))
                        if frames[-1] == {"type": "typing", "on": True}:
                            typing_shown.set()

                reader = asyncio.create_task(read())
                await wait_until(lambda: any(f["type"] == "session" for f in frames))
                await ws.send(json.dumps({"type": "user_message", "content": "one two three"}))
                await wait_until(
                    lambda: (
                        any(
                            f["type"] == "message" and f["message"]["role"] == "agent"
                            for f in frames
                        )
                        and sum(f["type"] == "typing" for f in frames) >= 2
                    ),
                    timeout=8,
                )
                reader.cancel()
            chunks = [f for f in frames if f["type"] == "agent_streaming"]
            assert len(chunks) >= 2, frames
            assert "".join(f["content"] for f in chunks) == "Echo: one two three"
            assert [f["stream_index"] for f in chunks] == list(range(len(chunks)))
            typing = [f["on"] for f in frames if f["type"] == "typing"]
            assert typing == [True, False], frames


async def test_every_replica_dials_out_and_one_carries_on_when_the_other_stops(
    database_url_pg: str,
) -> None:
    agent = build_mock_agent("echo", agent_id="agent1", delay=0)
    async with AsyncExitStack() as exits:
        port = await exits.enter_async_context(agent.serving("127.0.0.1", 0))
        config = AgentConfig(
            agent_id="agent1", websocket_url=f"ws://127.0.0.1:{port}", timeout_seconds=10
        )
        async with cluster(database_url_pg, config) as c:

            def dialing() -> list[str]:
                return [r.name for r in c.replicas if r.bridge.hub.is_connected("agent1")]

            await wait_until(lambda: dialing() == ["r0", "r1"], timeout=10)
            assert len(agent._peers) == 2  # type: ignore[attr-defined]
            await c.say(1, conv=3, text="before")
            await wait_until(lambda: c.replies(3) == ["Echo: before"])
            await c.stop(0)
            await wait_until(lambda: len(agent._peers) == 1)  # type: ignore[attr-defined]
            await c.say(1, conv=3, text="after")
            await wait_until(lambda: c.replies(3) == ["Echo: before", "Echo: after"])


async def test_a_pull_agent_polling_any_replica_gets_its_turns(database_url_pg: str) -> None:
    config = AgentConfig(
        agent_id="puller", transport="http-pull", token=AGENT_TOKEN, timeout_seconds=15
    )
    async with cluster(database_url_pg, config, n=2) as c:
        await wait_until(lambda: c.replicas[0].bridge.cluster.location("puller") is not None)
        holder = c.replicas[0].bridge.cluster.location("puller")
        other = c.replicas[1] if holder == "r0" else c.replicas[0]

        # The agent reaches only the replica that does NOT hold it: every poll and reply is
        # passed on to the holder.
        async def answer(turn: Any) -> str:
            return f"pulled: {turn.content}"

        config = PullConfig(
            url=other.url, agent_id="puller", token=AGENT_TOKEN, wait=2, poll_interval=0.2
        )
        task = asyncio.create_task(PullClient(config, answer).run())
        try:
            for i in range(3):
                await c.say(i % 2, conv=7, text=f"p{i}")
            await wait_until(lambda: len(c.replies(7)) == 3, timeout=15)
            assert c.replies(7) == ["pulled: p0", "pulled: p1", "pulled: p2"]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_route_and_settings_changes_reach_the_other_replicas_at_once(
    database_url_pg: str,
) -> None:
    """Changes made through one replica's API are announced; the others do not wait for
    their periodic reload (every 10 s here)."""
    async with cluster(database_url_pg, dial_in_config(), lease_seconds=30.0) as c:
        a, b = c.replicas
        r = await a.http.patch("/api/comms/settings", json={"default_country": "DE"})
        assert r.status_code == 200, r.text
        await wait_until(lambda: b.bridge.comms_settings().default_country == "DE", timeout=3)
        mapping = {
            "channel": "webchat",
            "inbox_id": 9,
            "agent_config": {"agent_id": "agent1", "transport": "ws-dial-in"},
        }
        r = await a.http.post("/config/mappings", json=mapping)
        assert r.status_code == 201, r.text
        await wait_until(lambda: b.bridge.route_for("webchat", 9) is not None, timeout=3)
