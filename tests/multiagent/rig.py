"""A bridge with a two-agent route on real loopback sockets: the guide is a scripted
WebSocket agent the bridge dials (it answers each turn as the test tells it, ``agent_handoff``
included), the specialist an SDK agent that dials in; the customer writes through the mock
Chatwoot."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.server import ServerConnection, serve

from chatbridge.agent import Agent, Event, Turn
from chatbridge.api import create_app
from chatbridge.config import AgentConfig, InboxMapping, RouteAgentConfig, Settings
from chatbridge.pipeline.bridge import Bridge
from chatbridge.testing.mock_chatwoot import MockChatwoot, TriggerRequest, create_mock_chatwoot
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import FAST, TOKEN, agent_ws_url, dialing_in, wait_until

SPECIALIST_TOKEN = "specialist-token-0123456"

Answer = Callable[[dict[str, Any]], dict[str, Any]]


class ScriptedAgent:
    """A protocol v1 agent on a raw WebSocket: records every frame the bridge sends and
    answers each ``user_message`` with what ``answer(frame)`` returns (the reply's
    ``message_id`` and ``conversation_id`` are filled in)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.turns: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.connection: ServerConnection | None = None

    async def send(self, frame: dict[str, Any]) -> None:
        """Send a frame of the agent's own (outside a turn) on its newest connection."""
        assert self.connection is not None, "the bridge has not connected"
        await self.connection.send(json.dumps(frame))

    async def _serve(self, ws: ServerConnection) -> None:
        self.connection = ws
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif frame.get("type") == "conversation_event":
                self.events.append(frame)
            elif frame.get("type") == "user_message":
                self.turns.append(frame)
                reply = {
                    "message_id": frame["message_id"],
                    "conversation_id": frame["conversation_id"],
                    **self.answer(frame),
                }
                await ws.send(json.dumps(reply))

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        async with serve(self._serve, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            yield f"ws://127.0.0.1:{port}"


def specialist_agent() -> tuple[Agent, list[Turn], list[Event]]:
    """The SDK specialist: answers ``Billing here: <content>``; keeps its turns and events."""
    agent = Agent("specialist", reconnect_initial_delay=0.02, reconnect_max_delay=0.1)
    turns: list[Turn] = []
    events: list[Event] = []

    @agent.on_message
    async def answer(turn: Turn) -> str:
        turns.append(turn)
        return f"Billing here: {turn.content}"

    @agent.on_event
    async def event(e: Event) -> None:
        events.append(e)

    return agent, turns, events


@dataclass
class Rig:
    bridge: Bridge
    url: str
    mock: MockChatwoot
    http: httpx.AsyncClient
    guide: ScriptedAgent
    specialist_turns: list[Turn]
    specialist_events: list[Event]
    exits: AsyncExitStack = field(repr=False)

    async def say(self, text: str, conv: int = 1) -> None:
        await self.mock.trigger(
            "message_created", TriggerRequest(conversation_id=conv, content=text, inbox_id=1)
        )

    def replies(self, conv: int = 1) -> list[str]:
        return [
            m["content"]
            for m in self.mock.received_messages
            if m["conversation_id"] == conv and not m.get("private")
        ]

    async def wait_replies(self, n: int, conv: int = 1) -> list[str]:
        await wait_until(lambda: len(self.replies(conv)) >= n)
        return self.replies(conv)

    async def idle(self) -> None:
        async def quiet() -> bool:
            counts = await self.bridge.store.counts()
            return not any(
                counts[t].get(s, 0) for t in ("turns", "deliveries") for s in ("pending", "leased")
            )

        await wait_until(quiet)


@asynccontextmanager
async def two_agent_stack(
    database_url: str,
    guide_answer: Answer,
    *,
    agents: list[RouteAgentConfig] | None = None,
    webchat: bool = False,
    guide_sdk: Agent | None = None,
    **settings: Any,
) -> AsyncIterator[Rig]:
    """Chatwoot inbox 1 (and with ``webchat``, web chat inbox 1) routed to the guide (default,
    role ``guide``) and the specialist (role ``billing``), both connected when the block
    starts. With ``guide_sdk`` the guide is that SDK agent (served for the bridge to dial)
    instead of the scripted one."""
    guide = ScriptedAgent(guide_answer)
    specialist, specialist_turns, specialist_events = specialist_agent()
    async with AsyncExitStack() as exits:
        if guide_sdk is None:
            guide_url = await exits.enter_async_context(guide.serving())
        else:
            port = await exits.enter_async_context(guide_sdk.serving("127.0.0.1", 0))
            guide_url = f"ws://127.0.0.1:{port}"
        mock_app = create_mock_chatwoot(api_token=TOKEN)
        chatwoot_url = await exits.enter_async_context(serve_app(mock_app))
        route_agents = (
            agents
            if agents is not None
            else [
                RouteAgentConfig(agent_id="guide", role="guide"),
                RouteAgentConfig(agent_id="specialist", role="billing"),
            ]
        )
        mappings = [
            InboxMapping(
                channel=channel,
                inbox_id=1,
                agent_config=AgentConfig(
                    agent_id="guide", websocket_url=guide_url, timeout_seconds=5
                ),
                agents=route_agents,
                fallback_text="Sorry, we cannot answer right now.",
            )
            for channel in ("chatwoot", "webchat")[: 2 if webchat else 1]
        ]
        config = Settings(
            database_url=database_url,
            chatwoot_base_url=chatwoot_url,
            chatwoot_api_access_token=TOKEN,
            inbox_agent_mappings=mappings,
            agent_tokens={"specialist": SPECIALIST_TOKEN},
            instance_id="multiagent",
            **{**FAST, **settings},
        )
        app = create_app(config)
        url = await exits.enter_async_context(serve_app(app))
        mock: MockChatwoot = mock_app.state.mock
        mock.webhook_url = f"{url}/webhook/chatwoot"
        http = await exits.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        bridge: Bridge = app.state.bridge
        await exits.enter_async_context(dialing_in(specialist, agent_ws_url(url), SPECIALIST_TOKEN))
        await wait_until(lambda: bridge.hub.is_connected("guide"))
        await wait_until(lambda: bridge.hub.is_connected("specialist"))
        yield Rig(bridge, url, mock, http, guide, specialist_turns, specialist_events, exits)
