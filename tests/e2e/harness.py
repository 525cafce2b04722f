"""A whole stack on real loopback sockets: mock agent (WebSocket), mock Chatwoot (HTTP), bridge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from chatbridge.agent import Agent
from chatbridge.api import create_app
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.pipeline.bridge import Bridge
from chatbridge.testing.mock_agent import build_mock_agent
from chatbridge.testing.mock_chatwoot import MockChatwoot, TriggerRequest, create_mock_chatwoot
from chatbridge.testing.servers import serve_app

TOKEN = "bot-token"

FAST = dict(
    poll_interval=0.05,
    retry_base_seconds=0.01,
    retry_max_seconds=0.2,
    reconnect_initial_delay=0.05,
    reconnect_max_delay=0.3,
    heartbeat_interval=5.0,
    lease_seconds=5.0,
    drain_seconds=1.0,
    # the widget tests embed it from another localhost origin, as the demo allows
    webchat_cors_origins=["*"],
)


async def wait_until(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]], timeout: float = 10.0
) -> Any:
    """Poll ``check`` (sync or async) until truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


def assert_typing_paired(kinds: list[str]) -> int:
    """Every typing_on is followed by a typing_off before the next one, none is left on, and
    there is no off without an on. Returns how many pairs were shown.

    (A reply ready before typing_on went out skips the pair: nothing to switch off.)
    """
    on = False
    pairs = 0
    for kind in kinds:
        if kind == "typing_on":
            assert not on, kinds
            on = True
        elif kind == "typing_off":
            assert on, kinds
            on = False
            pairs += 1
    assert not on, kinds
    return pairs


@dataclass
class Stack:
    bridge: Bridge
    url: str
    mock: MockChatwoot
    chatwoot_url: str
    agent: Agent
    agent_port: int | None  # None when the agent dials in
    http: httpx.AsyncClient
    exits: AsyncExitStack = field(repr=False)

    async def say(self, text: str, conv: int = 1, **kw: Any) -> dict[str, Any]:
        """A customer writes in conversation ``conv``; returns the mock's trigger record."""
        spec = TriggerRequest(
            conversation_id=conv, content=text, inbox_id=kw.pop("inbox_id", 1), **kw
        )
        return await self.mock.trigger("message_created", spec)

    async def event(self, name: str, conv: int = 1, **kw: Any) -> dict[str, Any]:
        return await self.mock.trigger(name, TriggerRequest(conversation_id=conv, inbox_id=1, **kw))

    def replies(self, conv: int | None = None) -> list[str]:
        """What the customer saw (private notes for the team are not replies)."""
        return [
            m["content"]
            for m in self.mock.received_messages
            if (conv is None or m["conversation_id"] == conv) and not m.get("private")
        ]

    def actions(self, conv: int | None = None, kinds: tuple[str, ...] = ()) -> list[str]:
        return [
            a["kind"]
            for a in self.mock.actions
            if (conv is None or a["conversation_id"] == conv) and (not kinds or a["kind"] in kinds)
        ]

    async def wait_replies(
        self, n: int, conv: int | None = None, timeout: float = 10.0
    ) -> list[str]:
        await wait_until(lambda: len(self.replies(conv)) >= n, timeout)
        return self.replies(conv)

    async def idle(self, timeout: float = 10.0) -> dict[str, dict[str, int]]:
        """Wait until no turn or delivery is pending or leased; returns the state counts."""

        async def quiet() -> dict[str, dict[str, int]] | None:
            counts = await self.bridge.store.counts()
            busy = any(
                counts[t].get(s, 0) for t in ("turns", "deliveries") for s in ("pending", "leased")
            )
            return None if busy else counts

        return await wait_until(quiet, timeout)  # type: ignore[no-any-return]

    async def agent_connected(self, timeout: float = 10.0) -> None:
        await wait_until(lambda: self.bridge.hub.is_connected("agent1"), timeout)

    @property
    def ws_url(self) -> str:
        """Where dial-in agents connect: ``ws://127.0.0.1:PORT/api/ws/agent``."""
        return agent_ws_url(self.url)

    async def agent_status(self, agent_id: str = "agent1") -> dict[str, Any]:
        """The agent's row of ``GET /agents/status``."""
        r = await self.http.get("/agents/status")
        r.raise_for_status()
        rows = [a for a in r.json()["agents"] if a["agent_id"] == agent_id]
        assert rows, f"{agent_id} not in /agents/status"
        return rows[0]  # type: ignore[no-any-return]


def agent_ws_url(bridge_url: str) -> str:
    return bridge_url.replace("http://", "ws://", 1) + "/api/ws/agent"


@asynccontextmanager
async def dialing_in(agent: Agent, url: str, token: str) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``agent.dial_in(url, token)`` while the block runs; stop it (and wait) after."""
    stop = asyncio.Event()
    task = asyncio.create_task(agent.dial_in(url, token, stop=stop))
    try:
        yield task
    finally:
        stop.set()
        await task


@asynccontextmanager
async def running_stack(
    database_url: str,
    *,
    behaviour: str = "echo",
    agent: Agent | None = None,
    delay: float = 1.0,
    timeout_seconds: float = 5.0,
    secret: str | None = None,
    mapping: dict[str, Any] | None = None,
    mock_options: dict[str, Any] | None = None,
    agent_port: int | None = None,
    transport: str = "ws-dial-out",
    route_token: str | None = None,
    dial_token: str | None = None,
    webchat: bool = False,
    agent_config: AgentConfig | None = None,
    **settings: Any,
) -> AsyncIterator[Stack]:
    """Start everything; with ``agent_port`` the caller serves the agent itself.

    ``transport="ws-dial-in"`` makes the route a dial-in one (no ``websocket_url``; the route
    stores ``route_token``, if any). With ``dial_token`` the agent then dials in to the bridge
    with that token and the stack waits until it is connected; without it, nobody dials in.
    ``webchat=True`` routes web chat inbox 1 to the same agent. ``agent_config`` replaces the
    route's agent entirely (an http-webhook or openai agent the test runs itself).
    """
    agent = agent or build_mock_agent(behaviour, agent_id="agent1", delay=delay)
    dial_in = transport == "ws-dial-in"
    async with AsyncExitStack() as exits:
        if agent_config is not None:
            pass
        elif dial_in:
            agent_config = AgentConfig(
                agent_id="agent1",
                transport="ws-dial-in",
                token=route_token,
                timeout_seconds=timeout_seconds,
            )
        else:
            if agent_port is None:
                agent_port = await exits.enter_async_context(agent.serving("127.0.0.1", 0))
            agent_config = AgentConfig(
                agent_id="agent1",
                websocket_url=f"ws://127.0.0.1:{agent_port}",
                timeout_seconds=timeout_seconds,
            )
        mock_app = create_mock_chatwoot(secret=secret, api_token=TOKEN, **(mock_options or {}))
        chatwoot_url = await exits.enter_async_context(serve_app(mock_app))
        config = Settings(
            database_url=database_url,
            chatwoot_base_url=chatwoot_url,
            chatwoot_api_access_token=TOKEN,
            chatwoot_webhook_secret=secret,
            inbox_agent_mappings=[
                InboxMapping(inbox_id=1, agent_config=agent_config, **(mapping or {})),
                *(
                    [InboxMapping(channel="webchat", inbox_id=1, agent_config=agent_config)]
                    if webchat
                    else []
                ),
            ],
            instance_id="e2e",
            **{**FAST, **settings},
        )
        app = create_app(config)
        url = await exits.enter_async_context(serve_app(app))
        mock: MockChatwoot = mock_app.state.mock
        mock.webhook_url = f"{url}/webhook/chatwoot"
        http = await exits.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        stack = Stack(app.state.bridge, url, mock, chatwoot_url, agent, agent_port, http, exits)
        if dial_in and dial_token is not None:
            await exits.enter_async_context(dialing_in(agent, stack.ws_url, dial_token))
        if not dial_in or dial_token is not None:
            await stack.agent_connected()
        yield stack


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a server the test starts (and may restart) itself.

    Only for a server that cannot be handed a bound socket (``serve_app`` and
    ``chatbridge serve --fd`` can: prefer those). Chosen below the kernel's ephemeral range,
    so no outgoing connection takes it as its local port before, or between, the server's
    binds; another process choosing the same port at random remains possible, if unlikely.
    """
    from chatbridge.testing.cluster import restartable_ports

    return restartable_ports(1)[0]
