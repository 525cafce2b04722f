"""How fast the mock Chatwoot alone absorbs API posts (is the channel the bottleneck?).

The load generator posts bot replies straight to the mock's
``POST /api/v1/accounts/1/conversations/{id}/messages``, as the bridge does, with no bridge
in between. The bridge makes three such calls per message (typing on, the reply, typing
off), so a third of this rate is the most the mock lets the ``chatwoot`` scenario reach.
"""

from __future__ import annotations

import json

import aiohttp
from yarl import URL

from chatbridge.bench.accounting import marker
from chatbridge.bench.scenarios.base import Request, Stack
from chatbridge.bench.scenarios.chatwoot import API_TOKEN
from chatbridge.testing.processes import free_port


class ChannelCapacityStack(Stack):
    name = "channel-capacity"
    description = "mock Chatwoot alone: API message posts per second"
    expects_replies = False
    needs_database = False

    async def start(self) -> None:
        port = free_port()
        conversations = self.ctx.conversations
        channel = self.spawn(
            "channel",
            [
                *("-m", "chatbridge.bench.channel", "--port", str(port)),
                *("--conversations", str(conversations), "--token", API_TOKEN),
            ],
        )
        base = f"http://127.0.0.1:{port}"
        await channel.start()
        async with aiohttp.ClientSession() as http:

            async def answers() -> bool:
                async with http.get(f"{base}/bench/stats") as response:
                    return response.status == 200

            await channel.wait_until(answers, timeout=60, what="mock up")
        self.info.settings = {"command": f"python -m chatbridge.bench.channel --port {port}"}
        self._urls = [
            URL(f"{base}/api/v1/accounts/1/conversations/{c}/messages")
            for c in range(1, conversations + 1)
        ]
        self._headers = {"Content-Type": "application/json", "api_access_token": API_TOKEN}

    def request(self, conversation: int, seq: int) -> Request:
        body = json.dumps(
            {
                "content": f"Echo: {marker(conversation, seq)}",
                "message_type": "outgoing",
                "private": False,
                "echo_id": f"dlv_{conversation}_{seq}",
            }
        ).encode()
        return Request(self._urls[conversation - 1], body, self._headers)
