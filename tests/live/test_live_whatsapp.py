"""WhatsApp over real sockets (the fake WAHA and Graph API gateways, a scripted WebSocket
agent): cards and quick replies arrive at the gateway's send-text call as readable text, and
a slow turn's working notice goes out once, before the reply."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from chatbridge.api import create_app
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.pipeline.bridge import Bridge
from chatbridge.policies.model import RoutePolicies
from chatbridge.testing.fake_whatsapp import FakeWhatsApp, create_fake_whatsapp
from chatbridge.testing.servers import serve_app
from chatbridge.testing.whatsapp_payloads import meta_text, meta_webhook, waha_message
from tests.channels.whatsapp.rig import PHONE_NUMBER_ID, gateways_at
from tests.e2e.harness import FAST, wait_until
from tests.live.rig import ScriptedAgent, scripted_agent
from tests.live.test_live_chatwoot import CARDS_TEXT, QUICK_TEXT, answer

META_SEND = f"/v23.0/{PHONE_NUMBER_ID}/messages"


@dataclass
class WhatsApp:
    bridge: Bridge
    fake: FakeWhatsApp
    http: httpx.AsyncClient
    agent: ScriptedAgent
    provider: str
    n: int = 0

    async def customer_writes(self, text: str) -> None:
        self.n += 1
        if self.provider == "waha":
            payload = waha_message(text, msg_id=f"3EB0LIVE{self.n:04d}")
            path = "/api/comms/webhooks/waha"
        else:
            payload = meta_webhook(messages=[meta_text(text, wamid=f"wamid.LIVE{self.n}")])
            path = "/api/comms/webhooks/meta"
        r = await self.http.post(path, content=json.dumps(payload).encode())
        assert r.status_code == 200, r.text

    def texts(self) -> list[str]:
        """The bodies of the gateway's send-text calls, in order."""
        if self.provider == "waha":
            return [str(r.json["text"]) for r in self.fake.calls("/api/sendText")]
        return [
            str(r.json["text"]["body"])
            for r in self.fake.calls(META_SEND)
            if isinstance(r.json, dict) and r.json.get("type") == "text"
        ]

    async def wait_texts(self, n: int) -> list[str]:
        await wait_until(lambda: len(self.texts()) >= n, 15)
        return self.texts()


@asynccontextmanager
async def whatsapp(database_url: str, provider: str, **policies: Any) -> AsyncIterator[WhatsApp]:
    async with scripted_agent(answer) as agent:
        fake_app = create_fake_whatsapp()
        async with serve_app(fake_app) as fake_url:
            agent_config = AgentConfig(
                agent_id="agent1",
                websocket_url=f"ws://127.0.0.1:{agent.port}",
                timeout_seconds=30,
            )
            settings = Settings(
                database_url=database_url,
                instance_id="live-wa",
                inbox_agent_mappings=[
                    InboxMapping(
                        channel="whatsapp",
                        inbox_id=1,
                        agent_config=agent_config,
                        policies=RoutePolicies(**policies),
                    )
                ],
                **FAST,  # type: ignore[arg-type]
            )
            app = create_app(settings)
            async with serve_app(app) as url:
                bridge: Bridge = app.state.bridge
                bridge.set_comms_settings(gateways_at(fake_url, provider=provider))
                await wait_until(lambda: bridge.hub.is_connected("agent1"))
                async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                    yield WhatsApp(bridge, fake_app.state.fake, http, agent, provider)


@pytest.mark.parametrize("provider", ["waha", "meta_cloud"])
async def test_cards_and_quick_replies_arrive_as_readable_text(
    sqlite_url: str, provider: str
) -> None:
    async with whatsapp(sqlite_url, provider) as wa:
        await wa.customer_writes("cards please")
        assert await wa.wait_texts(1) == [CARDS_TEXT]
        await wa.customer_writes("choices please")
        assert await wa.wait_texts(2) == [CARDS_TEXT, QUICK_TEXT]
        assert wa.agent.errors == []


async def test_a_slow_turns_working_notice_goes_out_once_before_the_reply(
    database_url: str,
) -> None:
    async with whatsapp(database_url, "waha", working_notice_after=0.5) as wa:
        await wa.customer_writes("a slow question")
        assert await wa.wait_texts(1) == ["Working on it…"]
        wa.agent.gates.open("slow")
        assert await wa.wait_texts(2) == ["Working on it…", "Answer to a slow question"]
