"""Bridge replicas in the test's own process, sharing one PostgreSQL and a private Redis.

Each replica is a full app (its own ``Bridge``, workers, hub and cluster) served on its own
port. The claim loops poll only once an hour: a turn claimed at all was claimed on a wake-up
(a webhook taken here, a broadcast from another replica, a turn handed back), so which
replica runs a turn follows from where work was announced and who has a link, not from a
poll that happened to come first.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from chatbridge.api.app import create_app
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store.records import ClaimedTurn
from chatbridge.testing.mock_chatwoot import MockChatwoot, TriggerRequest, create_mock_chatwoot
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import FAST, TOKEN

ADMIN = "admin-key-for-tests"
AGENT_ID = "agent1"
AGENT_TOKEN = "agent-token-0123456"
NO_POLL = 3600.0


@dataclass
class Replica:
    name: str
    url: str
    bridge: Bridge
    claimed: list[ClaimedTurn] = field(default_factory=list)
    """Every turn this replica's claim loop took, in order."""

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/api/ws/agent"

    def linked(self) -> bool:
        return self.bridge.hub.is_connected(AGENT_ID)

    def answered(self) -> int:
        [row] = [s for s in self.bridge.hub.status() if s.agent_id == AGENT_ID]
        return row.turns_answered

    def knows_linked(self) -> list[str]:
        """The replicas this one knows to have a link to the agent (itself first)."""
        return self.bridge.cluster.links_of(AGENT_ID)


@dataclass
class Replicas:
    replicas: list[Replica]
    mock: MockChatwoot

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas)

    async def say(self, replica: int, conv: int, text: str) -> None:
        """A Chatwoot customer writes; the webhook goes to ``replica``."""
        self.mock.webhook_url = f"{self.replicas[replica].url}/webhook/chatwoot"
        sent = await self.mock.trigger(
            "message_created", TriggerRequest(conversation_id=conv, content=text, inbox_id=1)
        )
        assert sent["status_code"] == 200, sent

    def replies(self, conv: int | None = None) -> list[str]:
        return [
            m["content"]
            for m in self.mock.received_messages
            if conv is None or m["conversation_id"] == conv
        ]


def _record_claims(replica: Replica) -> None:
    """Keep what the replica's claim loop takes (the store's answer, unchanged)."""
    store = replica.bridge.store
    claim = store.claim_turns

    async def claim_turns(*args: Any, **kwargs: Any) -> list[ClaimedTurn]:
        claimed = await claim(*args, **kwargs)
        replica.claimed.extend(claimed)
        return claimed

    store.claim_turns = claim_turns  # type: ignore[method-assign]


@asynccontextmanager
async def replicas(
    database_url: str, redis_url: str, agent: AgentConfig, *, n: int = 2, **settings: Any
) -> AsyncIterator[Replicas]:
    """``n`` replicas routing Chatwoot inbox 1 to ``agent``; stopped when the block ends."""
    async with AsyncExitStack() as exits:
        mock_app = create_mock_chatwoot(api_token=TOKEN)
        chatwoot_url = await exits.enter_async_context(serve_app(mock_app))
        started = []
        for i in range(n):
            config = Settings(
                database_url=database_url,
                redis_url=redis_url,
                cluster_presence_seconds=2.0,
                chatwoot_base_url=chatwoot_url,
                chatwoot_api_access_token=TOKEN,
                inbox_agent_mappings=[InboxMapping(inbox_id=1, agent_config=agent)],
                instance_id=f"r{i}",
                admin_key=ADMIN,
                **{**FAST, "poll_interval": NO_POLL, **settings},
            )
            app = create_app(config)
            url = await exits.enter_async_context(serve_app(app))
            replica = Replica(f"r{i}", url, app.state.bridge)
            _record_claims(replica)
            started.append(replica)
        yield Replicas(started, mock_app.state.mock)


def dial_in_config() -> AgentConfig:
    return AgentConfig(
        agent_id=AGENT_ID, transport="ws-dial-in", token=AGENT_TOKEN, timeout_seconds=30
    )


async def raw_dial_in(url: str, link_id: str) -> ClientConnection:
    """A hand-driven agent connection named ``link_id``, past its ``hello_ok``."""
    ws = await connect(url)
    hello = {
        "type": "hello",
        "agent_id": AGENT_ID,
        "token": AGENT_TOKEN,
        "protocol": "chatbridge/1",
        "metadata": {"link_id": link_id},
    }
    await ws.send(json.dumps(hello))
    answer = json.loads(await ws.recv())
    assert answer["type"] == "hello_ok", answer
    return ws


async def next_turn(ws: ClientConnection) -> dict[str, Any]:
    """The next ``user_message`` on a hand-driven connection (pings answered on the way)."""
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("type") == "ping":
            await ws.send(json.dumps({"type": "pong"}))
        elif frame.get("type") == "user_message":
            return frame


async def answer(ws: ClientConnection, turn: dict[str, Any], content: str) -> None:
    await ws.send(
        json.dumps({"type": "agent_message", "message_id": turn["message_id"], "content": content})
    )
