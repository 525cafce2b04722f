"""The ``webchat`` scenario: widget WebSockets → bridge → agent (WebSocket) → widget WebSockets.

Four processes on loopback: the mock agent (``chatbridge mock-agent --behaviour echo``, the
bridge dials it), the bridge (``chatbridge serve`` with a web chat route on inbox 1), and the
widgets (``chatbridge.bench.widgets``): one session and one live socket per conversation,
all opened and connected before the load starts and kept open (heartbeats included) for the
whole run, so ``--conversations 10000`` is 10,000 concurrent widget sessions, most of them
idle at any moment. The load generator tells widget ``c`` to send message ``seq``; the widget
sends the ``user_message`` frame, answers the call when the bridge's ``ack`` frame comes, and
stamps the agent's ``message`` frame when it arrives.

Latency at the widget (first ``user_message`` frame written → agent ``message`` frame read)
is in ``measures["reply_latency_at_widget"]``; the run's end-to-end figure also includes the
load generator's loopback call to the widgets process.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiohttp
from yarl import URL

from chatbridge.bench.accounting import Reply
from chatbridge.bench.replicas import Replica
from chatbridge.bench.scenarios.base import Request, Stack, StackContext, stored_or_duplicate
from chatbridge.bench.widgets import raise_open_files_limit
from chatbridge.testing.processes import ChildProcess, free_port, port_open

AGENT_ID = "bench-agent"
ADMIN_KEY = "bench-admin-key-0123"
INBOX_ID = 1
OPEN_CONCURRENCY = 32
UNLIMITED = "1000000/second"
"""What the bench sets every rate limit to: all visitors share one IP (127.0.0.1)."""

_JSON = {"Content-Type": "application/json"}


def rate_limit_env() -> dict[str, str]:
    """Rate limits raised out of the way (kept enabled, so their cost is measured)."""
    names = (
        "SESSION_CREATE", "MESSAGES_IP", "MESSAGES_SESSION", "HISTORY", "AGENT", "AGENT_REPLIES",
    )  # fmt: skip
    return {f"CHATBRIDGE_RATE_LIMIT_{name}": UNLIMITED for name in names}


async def wait_for_agent(
    bridge: ChildProcess, http: aiohttp.ClientSession, url: str, agent_id: str
) -> None:
    """Until the bridge's ``/agents/status`` shows ``agent_id`` connected (a puller: polling)."""

    async def connected() -> bool:
        async with http.get(
            f"{url}/agents/status", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        ) as response:
            body = await response.json()
        return any(a["agent_id"] == agent_id and a["connected"] for a in body["agents"])

    await bridge.wait_until(connected, timeout=30, what="agent connected")


async def answers(http: aiohttp.ClientSession, url: str) -> bool:
    async with http.get(url) as response:
        return response.status == 200


class WebchatStack(Stack):
    name = "webchat"
    description = "widget WebSockets → bridge → agent (WebSocket) → widget WebSockets"
    admin_key = ADMIN_KEY
    chunks = 0
    """Chunks per streamed reply the widgets should expect (0: replies are not streamed)."""

    def __init__(self, ctx: StackContext) -> None:
        super().__init__(ctx)
        self.measures: dict[str, Any] = {}
        """Figures the scenario's own processes measured (``RunResult.measures``)."""

    def agent_args(self, port: int) -> list[str]:
        """The agent process's arguments (after ``python``)."""
        args = ["-m", "chatbridge", "mock-agent", "--agent-id", AGENT_ID]
        args += ["--host", "127.0.0.1", "--port", str(port)]
        if self.ctx.think_seconds > 0:
            return [*args, "--behaviour", "delay", "--delay", str(self.ctx.think_seconds)]
        return [*args, "--behaviour", "echo"]

    async def start(self) -> None:
        open_files = raise_open_files_limit()  # before spawning: the bridge inherits it
        agent_port, widgets_port, bridge_port = free_port(), free_port(), free_port()
        agent_args = self.agent_args(agent_port)
        agent = self.spawn("agent", agent_args)
        self.bridge_url = f"http://127.0.0.1:{bridge_port}"
        self.widgets_url = f"http://127.0.0.1:{widgets_port}"
        mapping = [
            {
                "channel": "webchat",
                "inbox_id": INBOX_ID,
                "agent_config": {
                    "agent_id": AGENT_ID,
                    "websocket_url": f"ws://127.0.0.1:{agent_port}",
                },
            }
        ]
        assert self.ctx.database_url is not None
        env = {
            "CHATBRIDGE_DATABASE_URL": self.ctx.database_url,
            "CHATBRIDGE_INBOX_AGENT_MAPPINGS": json.dumps(mapping),
            "CHATBRIDGE_ADMIN_KEY": ADMIN_KEY,
            **rate_limit_env(),
            # every open widget socket counts against uvicorn's concurrency limit (2,000 by
            # default): room for all of them and the load besides
            "CHATBRIDGE_LIMIT_CONCURRENCY": str(self.ctx.conversations + 1000),
        }
        bridge = self.spawn(
            "bridge", ["-m", "chatbridge", "serve", "--port", str(bridge_port)], env
        )
        self.replicas = [Replica("bridge", bridge_port)]
        widgets_args = [
            "-m", "chatbridge.bench.widgets", "--port", str(widgets_port),
            "--bridge", self.bridge_url, "--inbox", str(INBOX_ID),
            "--sessions", str(self.ctx.conversations), "--chunks", str(self.chunks),
            "--concurrency", str(OPEN_CONCURRENCY),
        ]  # fmt: skip
        widgets = self.spawn("widgets", widgets_args)
        self.info.settings = {
            **env,
            "RLIMIT_NOFILE (soft, inherited)": str(open_files),
            "command": f"chatbridge serve --port {bridge_port}",
            "agent": _command(agent_args),
            "widgets": _command(widgets_args),
        }

        await agent.start()
        await agent.wait_until(
            lambda: port_open("127.0.0.1", agent_port), timeout=30, what="agent listening"
        )
        async with aiohttp.ClientSession() as http:
            await bridge.start()
            await bridge.wait_until(
                lambda: answers(http, f"{self.bridge_url}/ready"), timeout=60, what="/ready"
            )
            await wait_for_agent(bridge, http, self.bridge_url, AGENT_ID)
            await widgets.start()
            status = await self._wait_for_widgets(widgets, http)
        self.info.notes.append(
            f"{status['opened']:,} widget sessions created and connected in "
            f"{status['open_seconds']:.1f} s before the load ({OPEN_CONCURRENCY} at a time); "
            "all stay connected, with heartbeats, through the run"
        )
        self._url = URL(f"{self.widgets_url}/bench/send")

    async def _wait_for_widgets(
        self, widgets: ChildProcess, http: aiohttp.ClientSession
    ) -> dict[str, Any]:
        """Until every widget has its session and socket; fails on the first that could not."""
        status: dict[str, Any] = {}

        async def all_open() -> bool:
            nonlocal status
            async with http.get(f"{self.widgets_url}/bench/status") as response:
                status = await response.json()
            return status["open_seconds"] is not None

        timeout = 60 + self.ctx.conversations * 0.02
        await widgets.wait_until(all_open, timeout=timeout, what="widget sessions open")
        if status["failed"]:
            raise RuntimeError(f"widgets: {status['failure']}\n{widgets.tail()}")
        return status

    def request(self, conversation: int, seq: int) -> Request:
        body = b'{"conversation":%d,"seq":%d}' % (conversation, seq)
        return Request(self._url, body, _JSON)

    def acknowledged(self, status: int, body: bytes) -> bool:
        return stored_or_duplicate(status, body)

    async def replies_after(
        self, http: aiohttp.ClientSession, after: int, wait: float = 0.0
    ) -> list[Reply]:
        params = {"after": after, "wait": wait}
        async with http.get(f"{self.widgets_url}/bench/replies", params=params) as r:
            r.raise_for_status()
            rows = await r.json()
        return [Reply(conversation=c, content=text, received_at=at) for c, text, at, _ in rows]

    async def stop(self) -> None:
        """Collect what the widgets measured, then stop the processes."""
        widgets = self.processes.get("widgets")
        if widgets is not None and widgets.running:
            try:
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
                    http.get(f"{self.widgets_url}/bench/stats") as response,
                ):
                    self.record(await response.json())
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self.info.notes.append(f"widget statistics not collected: {exc}")
        await super().stop()

    def record(self, stats: dict[str, Any]) -> None:
        """Put the widgets' own measurements into ``measures`` and the notes."""
        think = self.ctx.think_seconds
        latency = {k: v - think for k, v in stats["reply_latency"].items()}
        self.measures["reply_latency_at_widget"] = latency
        self.measures["widgets"] = {
            k: stats[k]
            for k in ("sessions", "connected", "open_seconds", "repeats", "drops", "errors")
        }
        if latency:
            self.info.notes.append(
                "reply latency at the widget (user_message frame written → agent message frame "
                f"read) p50/p95/p99: {ms_triple(latency)} ms"
                + (" (agent think time excluded)" if think > 0 else "")
            )
        self.info.notes.append(
            f"widgets still connected at the end: {stats['connected']:,}/{stats['sessions']:,}; "
            f"sockets dropped: {stats['drops']}; messages repeated by id: {stats['repeats']}; "
            f"error frames: {stats['errors']}"
        )


def _command(args: Sequence[str]) -> str:
    if args[:2] == ["-m", "chatbridge"]:
        return "chatbridge " + " ".join(args[2:])
    return "python " + " ".join(args)


def ms_triple(latency: dict[str, float]) -> str:
    """``"8.6/13.9/15.8"``: p50/p95/p99 in milliseconds."""
    return "/".join(f"{latency[k] * 1000:.1f}" for k in ("p50", "p95", "p99") if k in latency)
