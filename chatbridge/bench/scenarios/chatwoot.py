"""The ``chatwoot`` scenario: signed ``message_created`` webhooks → agent → Chatwoot API.

Three processes on loopback: the mock agent (``chatbridge mock-agent --behaviour echo``, the
bridge dials it), the mock Chatwoot (``chatbridge.bench.channel``: receives the replies and
stamps their arrival) and the bridge (``chatbridge serve``, default settings except what a
benchmark must set, listed in ``StackInfo.settings``). The load generator plays Chatwoot's
webhook sender: payloads come from the mock Chatwoot's own builder (one template per
conversation, made once), signed with ``sign_chatwoot`` as Chatwoot 4.12+ signs them.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from yarl import URL

from chatbridge.bench.accounting import Reply, marker
from chatbridge.bench.channel import INBOX_ID
from chatbridge.bench.redis_server import display_url
from chatbridge.bench.replicas import Replica, plan_replicas, replica_env, scrape_replica
from chatbridge.bench.scenarios.base import Request, Stack, StackContext, stored_or_duplicate
from chatbridge.channels.signatures import DELIVERY_HEADER, sign_chatwoot
from chatbridge.testing.chatwoot_state import MockChatwoot, TriggerRequest
from chatbridge.testing.processes import ChildProcess, free_port, free_ports, port_open

AGENT_ID = "bench-agent"
API_TOKEN = "bench-api-token"
WEBHOOK_SECRET = "bench-webhook-secret"
ADMIN_KEY = "bench-admin-key-0123"

_CONTENT = "__BENCH_CONTENT__"
_MESSAGE_ID = 987654321012345  # a number that appears nowhere else in a payload
_FIRST_MESSAGE_ID = 10_000_001
AGENT_SETTLE_SECONDS = 2.0
"""With several replicas: how long the others get to connect the agent after the first did."""


def webhook_templates(conversations: int) -> list[bytes]:
    """One ``message_created`` body per conversation (index 0 = conversation 1), with
    placeholders for the content and the message id, built by the mock Chatwoot."""
    mock = MockChatwoot(account_id=1)
    templates = []
    for display_id in range(1, conversations + 1):
        payload, _ = mock.build_event(
            "message_created",
            TriggerRequest(
                conversation_id=display_id,
                inbox_id=INBOX_ID,
                content=_CONTENT,
                message_id=_MESSAGE_ID,
            ),
        )
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        assert body.count(_CONTENT.encode()) >= 1 and str(_MESSAGE_ID).encode() in body
        templates.append(body)
    return templates


class ChatwootStack(Stack):
    name = "chatwoot"
    description = "signed Chatwoot webhooks → bridge → agent (WebSocket) → Chatwoot API"
    supports_replicas = True
    admin_key = ADMIN_KEY

    def __init__(self, ctx: StackContext) -> None:
        super().__init__(ctx)
        self.measures: dict[str, Any] = {}
        """``measures["replicas"]``: what each bridge's ``/metrics`` says it did."""

    async def start(self) -> None:
        agent_port, channel_port = free_port(), free_port()
        agent_args = self.agent_args(agent_port)
        agent = self.spawn("agent", agent_args)
        channel = self.spawn(
            "channel",
            [
                "-m",
                "chatbridge.bench.channel",
                "--port",
                str(channel_port),
                "--conversations",
                str(self.ctx.conversations),
                "--token",
                API_TOKEN,
            ],
        )
        self.channel_url = f"http://127.0.0.1:{channel_port}"
        self.replicas = plan_replicas(free_ports(self.ctx.replicas), uuid.uuid4().hex[:6])
        self.bridge_url = self.replicas[0].url
        route: dict[str, Any] = {
            "inbox_id": INBOX_ID,
            "agent_config": {
                "agent_id": AGENT_ID,
                "websocket_url": f"ws://127.0.0.1:{agent_port}",
            },
        }
        if (policies := self.route_policies()) is not None:
            route["policies"] = policies
        mapping = [route]
        assert self.ctx.database_url is not None
        env = {
            "CHATBRIDGE_DATABASE_URL": self.ctx.database_url,
            "CHATWOOT_BASE_URL": self.channel_url,
            "CHATWOOT_API_ACCESS_TOKEN": API_TOKEN,
            "CHATWOOT_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "INBOX_AGENT_MAPPINGS": json.dumps(mapping),
            "CHATBRIDGE_ADMIN_KEY": ADMIN_KEY,
        }
        redis_url = self.ctx.redis_url
        if redis_url is None and len(self.replicas) > 1:
            redis_url = await self.start_redis()  # before the bridges: stopped after them
        bridges = [
            self.spawn(
                r.name,
                ["-m", "chatbridge", "serve", "--port", str(r.port)],
                replica_env(env, r, redis_url),
            )
            for r in self.replicas
        ]
        self.info.settings = {
            **env,
            **self._replica_settings(redis_url),
            "agent": "chatbridge " + " ".join(agent_args[2:]),
            "channel": "python " + " ".join(channel.argv[1:]),
        }

        await agent.start()
        await channel.start()
        await agent.wait_until(
            lambda: port_open("127.0.0.1", agent_port), timeout=30, what="agent listening"
        )
        async with aiohttp.ClientSession() as http:

            async def answers(url: str, headers: dict[str, str] | None = None) -> bool:
                async with http.get(url, headers=headers) as response:
                    return response.status == 200

            async def ready(bridge: ChildProcess, replica: Replica) -> None:
                await bridge.start()
                await bridge.wait_until(
                    lambda: answers(f"{replica.url}/ready"), timeout=60, what="/ready"
                )

            await channel.wait_until(
                lambda: answers(f"{self.channel_url}/bench/stats"), timeout=60, what="mock up"
            )
            # The first bridge migrates the fresh database alone; the others then start together.
            await ready(bridges[0], self.replicas[0])
            await asyncio.gather(*map(ready, bridges[1:], self.replicas[1:]))

            async def agent_connected(replica: Replica) -> bool:
                async with http.get(
                    f"{replica.url}/agents/status",
                    headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                ) as response:
                    body = await response.json()
                return any(a["agent_id"] == AGENT_ID and a["connected"] for a in body["agents"])

            if len(self.replicas) == 1:
                await bridges[0].wait_until(
                    lambda: agent_connected(self.replicas[0]), timeout=30, what="agent connected"
                )
            else:
                await self._wait_for_agent_links(http, bridges, agent_connected)

        self._prepare(webhook_templates(self.ctx.conversations))

    def agent_args(self, port: int) -> list[str]:
        """The agent process's arguments (``-m …``), serving on ``port``: the mock agent,
        echoing (after ``think_seconds``, when given)."""
        args = ["-m", "chatbridge", "mock-agent", "--agent-id", AGENT_ID]
        args += ["--host", "127.0.0.1", "--port", str(port)]
        think = self.ctx.think_seconds
        if think > 0:
            return [*args, "--behaviour", "delay", "--delay", str(think)]
        return [*args, "--behaviour", "echo"]

    def route_policies(self) -> dict[str, Any] | None:
        """The route's ``policies`` in ``INBOX_AGENT_MAPPINGS`` (``None``: the defaults)."""
        return None

    def _replica_settings(self, redis_url: str | None) -> dict[str, str]:
        """The settings lines that tell the bridges apart (one replica: its command only)."""
        if len(self.replicas) == 1:
            settings = {"command": f"chatbridge serve --port {self.replicas[0].port}"}
            if redis_url is not None:
                settings["CHATBRIDGE_REDIS_URL"] = display_url(redis_url)
            return settings
        first, last = self.replicas[0], self.replicas[-1]
        assert redis_url is not None
        given = self.ctx.redis_url is not None
        return {
            "CHATBRIDGE_REDIS_URL": display_url(redis_url)
            + ("" if given else " (a private redis-server started for this run)"),
            "CHATBRIDGE_INSTANCE_ID": f"{first.instance_id} … {last.instance_id}",
            "replicas": f"{len(self.replicas)} x chatbridge serve --port "
            + " | ".join(str(r.port) for r in self.replicas)
            + "; webhooks round-robin over them",
        }

    async def _wait_for_agent_links(
        self,
        http: aiohttp.ClientSession,
        bridges: list[ChildProcess],
        connected: Callable[[Replica], Awaitable[bool]],
    ) -> None:
        """Until some replica says the agent is connected, then a moment for the others.

        Whether every replica dials the agent or one holds it (a lease) is the bridge's
        choice: the run needs one link. Which replicas hold one comes from each replica's own
        ``chatbridge_agent_connected`` gauge (``/agents/status`` may answer for the cluster).
        """

        async def any_connected() -> bool:
            return any(await asyncio.gather(*map(connected, self.replicas)))

        async def linked() -> list[bool]:
            scraped = [await scrape_replica(http, r, ADMIN_KEY) for r in self.replicas]
            return [AGENT_ID in c["agent_connected"] for c in scraped]

        await bridges[0].wait_until(any_connected, timeout=30, what="agent connected (any replica)")
        deadline = time.monotonic() + AGENT_SETTLE_SECONDS
        links = await linked()
        while not all(links) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            links = await linked()
        holders = [r.name for r, up in zip(self.replicas, links, strict=True) if up]
        self.info.notes.append(
            f"agent link at the start on {len(holders)} of {len(self.replicas)} replicas "
            f"({', '.join(holders) or 'none'})"
        )

    def _prepare(self, templates: list[bytes]) -> None:
        """Get ready to build requests from ``templates``: to ``self.bridge_url``, or, with
        several replicas, to each replica in turn (message *i* to replica *i mod N*)."""
        self._templates = templates
        bases = [r.url for r in self.replicas] or [self.bridge_url]
        self._urls = [URL(f"{base}/webhook/chatwoot") for base in bases]
        self._next_id = _FIRST_MESSAGE_ID
        self._run_tag = uuid.uuid4().hex[:8]

    def request(self, conversation: int, seq: int) -> Request:
        message_id = self._next_id
        self._next_id += 1
        body = (
            self._templates[conversation - 1]
            .replace(_CONTENT.encode(), marker(conversation, seq).encode())
            .replace(str(_MESSAGE_ID).encode(), str(message_id).encode())
        )
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: f"bench-{self._run_tag}-{message_id}",
            **sign_chatwoot(WEBHOOK_SECRET, body, int(time.time())),
        }
        return Request(self._urls[message_id % len(self._urls)], body, headers)

    def acknowledged(self, status: int, body: bytes) -> bool:
        return stored_or_duplicate(status, body)

    async def replies_after(
        self, http: aiohttp.ClientSession, after: int, wait: float = 0.0
    ) -> list[Reply]:
        params = {"after": after, "wait": wait}
        async with http.get(f"{self.channel_url}/bench/replies", params=params) as r:
            r.raise_for_status()
            rows = await r.json()
        return [Reply(conversation=c, content=text, received_at=at) for c, text, at in rows]

    async def stop(self) -> None:
        """Ask each bridge what it did (``measures["replicas"]``), then stop every process."""
        if self.replicas:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                scraped = []
                for replica in self.replicas:
                    child = self.processes.get(replica.name)
                    if child is None or not child.running:
                        continue
                    try:
                        scraped.append(await scrape_replica(http, replica, ADMIN_KEY))
                    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                        self.info.notes.append(f"{replica.name}: /metrics not read: {exc}")
            self.measures["replicas"] = scraped
        await super().stop()
