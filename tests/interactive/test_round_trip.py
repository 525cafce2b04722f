"""Choices end to end, on SQLite and PostgreSQL: a real bridge (its webhook endpoint, workers
and store), an SDK agent over a WebSocket, and the fake WhatsApp gateways.

* Meta: the agent answers with buttons → the fake Graph API gets ``type: "interactive"`` →
  the customer taps (a ``button_reply`` webhook) → the agent's next turn has
  ``turn.choice == {"id": "yes", "title": "Yes"}``.
* WAHA (no buttons): the same reply goes out as numbered text → the customer types "2" →
  the bridge matches it against the offer kept in the store → ``turn.choice`` names "no".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from chatbridge.agent import Agent, Answer, Turn
from chatbridge.api import create_app
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.crm.settings import CommsSettings
from chatbridge.testing.fake_whatsapp import (
    FakeWhatsApp,
    create_fake_whatsapp,
    meta_text,
    meta_webhook,
    waha_message,
)
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import FAST, wait_until

PHONE_NUMBER_ID = "106540352242922"
CHOICES = {
    "kind": "buttons",
    "options": [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}],
}


@dataclass
class Rig:
    fake: FakeWhatsApp
    http: httpx.AsyncClient
    provider_route: str
    turns: list[Turn] = field(default_factory=list)
    seen: asyncio.Event = field(default_factory=asyncio.Event)

    async def post(self, payload: dict[str, Any]) -> None:
        r = await self.http.post(
            f"/api/comms/webhooks/{self.provider_route}",
            content=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted", r.json()

    def sends(self, path: str) -> list[Any]:
        return [r.json for r in self.fake.calls(path) if r.method == "POST"]


def agent() -> tuple[Agent, list[Turn]]:
    """Offers yes/no on a first message; thanks for the choice on an answer."""
    sdk = Agent("agent1")
    turns: list[Turn] = []

    @sdk.on_message
    async def answer(turn: Turn) -> str | Answer:
        turns.append(turn)
        if turn.choice is not None:
            return f"You picked {turn.choice['id']}"
        return Answer("Confirm the order?", interactive=CHOICES)

    return sdk, turns


@asynccontextmanager
async def rig(database_url: str, provider: str, route: str) -> AsyncIterator[Rig]:
    sdk, turns = agent()
    fake_app = create_fake_whatsapp()
    async with (
        serve_app(fake_app) as fake_url,
        sdk.serving("127.0.0.1", 0) as agent_port,
    ):
        settings = Settings(
            database_url=database_url,
            instance_id="e2e",
            inbox_agent_mappings=[
                InboxMapping(
                    channel="whatsapp",
                    inbox_id=1,
                    agent_config=AgentConfig(
                        agent_id="agent1", websocket_url=f"ws://127.0.0.1:{agent_port}"
                    ),
                )
            ],
            **FAST,  # type: ignore[arg-type]
        )
        app = create_app(settings)
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            app.state.bridge.set_comms_settings(
                CommsSettings(  # type: ignore[call-arg]
                    _env_file=None,
                    provider=provider,
                    waha_base_url=fake_url,
                    waha_api_key="waha-key",
                    meta_graph_url=fake_url,
                    meta_access_token="meta-token",
                    meta_phone_number_id=PHONE_NUMBER_ID,
                )
            )
            await wait_until(lambda: app.state.bridge.hub.is_connected("agent1"))
            r = Rig(fake_app.state.fake, http, route)
            r.turns = turns
            yield r


async def test_meta_buttons_tap_reaches_the_agent(database_url: str) -> None:
    async with rig(database_url, "meta_cloud", "meta") as r:
        path = f"/v23.0/{PHONE_NUMBER_ID}/messages"
        await r.post(meta_webhook(messages=[meta_text("I'd like to order")]))
        interactive = await wait_until(
            lambda: [b for b in r.sends(path) if b.get("type") == "interactive"]
        )
        assert interactive[0]["interactive"] == {
            "type": "button",
            "body": {"text": "Confirm the order?"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                    {"type": "reply", "reply": {"id": "no", "title": "No"}},
                ]
            },
        }
        tap = {
            "from": "919876543210",
            "id": "wamid.TAP0000001",
            "timestamp": "1749416400",
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}},
        }
        await r.post(meta_webhook(messages=[tap]))
        await wait_until(lambda: len(r.turns) >= 2)
        second = r.turns[1]
        assert second.choice == {"id": "yes", "title": "Yes"}
        assert second.messages[-1]["metadata"] == {"interactive": {"id": "yes", "title": "Yes"}}
        assert second.content == "Yes"
        assert r.turns[0].choice is None
        texts = await wait_until(
            lambda: [b["text"]["body"] for b in r.sends(path) if b.get("type") == "text"]
        )
        assert texts == ["You picked yes"]


async def test_waha_numbered_text_answer_reaches_the_agent(database_url: str) -> None:
    async with rig(database_url, "waha", "waha") as r:
        await r.post(waha_message("I'd like to order", msg_id="3EB0AAAA00000001"))
        sent = await wait_until(lambda: r.sends("/api/sendText"))
        assert sent[0] == {
            "session": "default",
            "chatId": "919876543210@c.us",
            "text": "Confirm the order?\n\n1. Yes\n2. No",
        }
        await r.post(waha_message("2", msg_id="3EB0AAAA00000002"))
        await wait_until(lambda: len(r.turns) >= 2)
        assert r.turns[1].choice == {"id": "no", "title": "No"}
        await wait_until(lambda: len(r.sends("/api/sendText")) >= 2)
        assert r.sends("/api/sendText")[1]["text"] == "You picked no"
        # the offer is closed by that reply: a later "1" is a plain message
        await r.post(waha_message("1", msg_id="3EB0AAAA00000003"))
        await wait_until(lambda: len(r.turns) >= 3)
        assert r.turns[2].choice is None
