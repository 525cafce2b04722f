"""The ``pull`` scenario: signed Chatwoot webhooks → bridge → http-pull agent → Chatwoot API.

The ``chatwoot`` scenario with the agent on the other transport, so the two compare directly:
the same webhooks, mock Chatwoot and accounting, but the agent (``chatbridge.bench.pull_agent``)
has no port of its own. It long-polls ``GET /api/agent/turns`` with ``POLLERS`` concurrent
requests (up to ``LIMIT`` turns each) and answers each turn with ``POST
/api/agent/turns/{id}/reply?lease=…`` — two HTTP requests to the bridge per turn at most,
where a WebSocket agent exchanges two frames on a connection the bridge holds open.
"""

from __future__ import annotations

import json

import aiohttp

from chatbridge.bench.channel import INBOX_ID
from chatbridge.bench.replicas import Replica
from chatbridge.bench.scenarios.chatwoot import (
    ADMIN_KEY,
    AGENT_ID,
    API_TOKEN,
    WEBHOOK_SECRET,
    ChatwootStack,
    webhook_templates,
)
from chatbridge.bench.scenarios.webchat import answers, rate_limit_env, wait_for_agent
from chatbridge.testing.processes import free_port

AGENT_TOKEN = "bench-pull-token"
POLLERS = 4
LIMIT = 10


class PullStack(ChatwootStack):
    name = "pull"
    description = "signed Chatwoot webhooks → bridge → agent (http-pull) → Chatwoot API"
    supports_replicas = False

    async def start(self) -> None:
        channel_port, bridge_port = free_port(), free_port()
        self.channel_url = f"http://127.0.0.1:{channel_port}"
        self.bridge_url = f"http://127.0.0.1:{bridge_port}"
        channel_args = [
            "-m", "chatbridge.bench.channel", "--port", str(channel_port),
            "--conversations", str(self.ctx.conversations), "--token", API_TOKEN,
        ]  # fmt: skip
        channel = self.spawn("channel", channel_args)
        mapping = [
            {
                "inbox_id": INBOX_ID,
                "agent_config": {
                    "agent_id": AGENT_ID,
                    "transport": "http-pull",
                    "token": AGENT_TOKEN,
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
            **rate_limit_env(),
        }
        bridge = self.spawn(
            "bridge", ["-m", "chatbridge", "serve", "--port", str(bridge_port)], env
        )
        self.replicas = [Replica("bridge", bridge_port)]
        agent_args = [
            "-m", "chatbridge.bench.pull_agent", "--bridge", self.bridge_url,
            "--agent-id", AGENT_ID, "--token", AGENT_TOKEN,
            "--pollers", str(POLLERS), "--limit", str(LIMIT),
        ]  # fmt: skip
        if self.ctx.think_seconds > 0:
            agent_args += ["--delay", str(self.ctx.think_seconds)]
        agent = self.spawn("agent", agent_args)
        self.info.settings = {
            **env,
            "command": f"chatbridge serve --port {bridge_port}",
            "agent": "python " + " ".join(agent_args),
            "channel": "python " + " ".join(channel_args),
        }

        await channel.start()
        async with aiohttp.ClientSession() as http:
            await channel.wait_until(
                lambda: answers(http, f"{self.channel_url}/bench/stats"), timeout=60, what="mock up"
            )
            await bridge.start()
            await bridge.wait_until(
                lambda: answers(http, f"{self.bridge_url}/ready"), timeout=60, what="/ready"
            )
            await agent.start()
            await wait_for_agent(bridge, http, self.bridge_url, AGENT_ID)

        self._prepare(webhook_templates(self.ctx.conversations))
