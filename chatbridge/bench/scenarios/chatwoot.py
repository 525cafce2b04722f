"""The ``chatwoot`` scenario: signed ``message_created`` webhooks → agent → Chatwoot API.

Three processes on loopback: the mock agent (``chatbridge mock-agent --behaviour echo``, the
bridge dials it), the mock Chatwoot (``chatbridge.bench.channel``: receives the replies and
stamps their arrival) and the bridge (``chatbridge serve``, default settings except what a
benchmark must set, listed in ``StackInfo.settings``). The load generator plays Chatwoot's
webhook sender: payloads come from the mock Chatwoot's own builder (one template per
conversation, made once), signed with ``sign_chatwoot`` as Chatwoot 4.12+ signs them.
"""

from __future__ import annotations

import json
import time
import uuid

import aiohttp
from yarl import URL

from chatbridge.bench.accounting import Reply, marker
from chatbridge.bench.channel import INBOX_ID
from chatbridge.bench.processes import free_port, port_open
from chatbridge.bench.scenarios.base import Request, Stack
from chatbridge.channels.signatures import DELIVERY_HEADER, sign_chatwoot
from chatbridge.testing.chatwoot_state import MockChatwoot, TriggerRequest

AGENT_ID = "bench-agent"
API_TOKEN = "bench-api-token"
WEBHOOK_SECRET = "bench-webhook-secret"
ADMIN_KEY = "bench-admin-key"

_CONTENT = "__BENCH_CONTENT__"
_MESSAGE_ID = 987654321012345  # a number that appears nowhere else in a payload
_FIRST_MESSAGE_ID = 10_000_001


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

    async def start(self) -> None:
        agent_port, channel_port, bridge_port = free_port(), free_port(), free_port()
        think = self.ctx.think_seconds
        agent_args = ["-m", "chatbridge", "mock-agent", "--agent-id", AGENT_ID]
        agent_args += ["--host", "127.0.0.1", "--port", str(agent_port)]
        if think > 0:
            agent_args += ["--behaviour", "delay", "--delay", str(think)]
        else:
            agent_args += ["--behaviour", "echo"]
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
        self.bridge_url = f"http://127.0.0.1:{bridge_port}"
        mapping = [
            {
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
            "CHATWOOT_BASE_URL": self.channel_url,
            "CHATWOOT_API_ACCESS_TOKEN": API_TOKEN,
            "CHATWOOT_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "INBOX_AGENT_MAPPINGS": json.dumps(mapping),
            "CHATBRIDGE_ADMIN_KEY": ADMIN_KEY,
        }
        bridge = self.spawn(
            "bridge", ["-m", "chatbridge", "serve", "--port", str(bridge_port)], env
        )
        self.info.settings = {
            **env,
            "command": f"chatbridge serve --port {bridge_port}",
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

            await channel.wait_until(
                lambda: answers(f"{self.channel_url}/bench/stats"), timeout=60, what="mock up"
            )
            await bridge.start()
            await bridge.wait_until(
                lambda: answers(f"{self.bridge_url}/ready"), timeout=60, what="/ready"
            )

            async def agent_connected() -> bool:
                async with http.get(
                    f"{self.bridge_url}/agents/status",
                    headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                ) as response:
                    body = await response.json()
                return any(a["agent_id"] == AGENT_ID and a["connected"] for a in body["agents"])

            await bridge.wait_until(agent_connected, timeout=30, what="agent connected")

        self._prepare(webhook_templates(self.ctx.conversations))

    def _prepare(self, templates: list[bytes]) -> None:
        """Get ready to build requests to ``self.bridge_url`` from ``templates``."""
        self._templates = templates
        self._url = URL(f"{self.bridge_url}/webhook/chatwoot")
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
        return Request(self._url, body, headers)

    def acknowledged(self, status: int, body: bytes) -> bool:
        if status != 200:
            return False
        try:
            answer = json.loads(body)
        except ValueError:
            return False
        return isinstance(answer, dict) and answer.get("status") in ("accepted", "duplicate")

    async def replies_after(
        self, http: aiohttp.ClientSession, after: int, wait: float = 0.0
    ) -> list[Reply]:
        params = {"after": after, "wait": wait}
        async with http.get(f"{self.channel_url}/bench/replies", params=params) as r:
            r.raise_for_status()
            rows = await r.json()
        return [Reply(conversation=c, content=text, received_at=at) for c, text, at in rows]
