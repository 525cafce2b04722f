"""A running bridge (real app on a socket, workers on) whose WhatsApp provider is Meta, pointed
at the fake Graph API, with an http-webhook agent the test scripts: it answers a customer's
message with text, with a template (``"template please"``), or later (``"later"``: the test
answers through the turn's ``reply_url``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import update

from chatbridge.api import create_app
from chatbridge.crm.settings import CommsSettings
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store import tables as t
from chatbridge.testing.fake_wa_templates import add_template
from chatbridge.testing.fake_whatsapp import (
    FakeWhatsApp,
    create_fake_whatsapp,
    meta_text,
    meta_webhook,
)
from chatbridge.testing.servers import serve_app
from tests.channels.whatsapp.rig import hook_agent_settings
from tests.e2e.harness import wait_until

PHONE_NUMBER_ID = "106540352242922"
ADMIN_KEY = "test-admin-key-0123"
AGENT_TOKEN = "tpl-agent-token-0123"
WABA = "102290129340398"
ORDER_UPDATE = [
    {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
    {"type": "BODY", "text": "Hi {{1}}, your order ships on {{2}}."},
]
BOOKING = [{"type": "BODY", "text": "Hi {{first_name}}, we kept a table at {{company}}."}]


@dataclass
class HookAgent:
    """The agent: what it was asked, and the turns it will answer later."""

    received: list[dict[str, Any]] = field(default_factory=list)
    later: list[dict[str, Any]] = field(default_factory=list)
    template: dict[str, Any] = field(
        default_factory=lambda: {
            "name": "order_update",
            "language": "en_US",
            "parameters": {"header.1": "A-17", "1": "Asha", "2": "Friday"},
        }
    )

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            frame = json.loads(await request.body())
            self.received.append(frame)
            if frame.get("type") != "user_message":
                return Response(status_code=204)
            content = str(frame.get("content") or "")
            if "later" in content:
                self.later.append(frame)
                return Response(status_code=202)
            answer: dict[str, Any] = {"type": "agent_message", "message_id": frame["message_id"]}
            if "template please" in content:
                answer["template"] = self.template
            else:
                answer["content"] = f"echo: {content}"
            return JSONResponse(answer)

        return app


@dataclass
class Rig:
    bridge: Bridge
    fake: FakeWhatsApp
    fake_url: str
    http: httpx.AsyncClient
    agent: HookAgent

    async def customer_writes(self, text: str, *, sender: str = "919876543210", wamid: str) -> str:
        """A Meta webhook with the customer's message; returns the thread id."""
        payload = meta_webhook(messages=[meta_text(text, wamid=wamid, sender=sender)])
        r = await self.http.post(
            "/api/comms/webhooks/meta",
            content=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        key = f"meta_cloud:{PHONE_NUMBER_ID}:{sender}"

        async def thread() -> str | None:
            conv = await self.bridge.store.find_conversation("whatsapp", key)
            return None if conv is None else conv.id

        found: str = await wait_until(thread, 10)
        return found

    async def age_inbound(self, conversation_id: str, hours: float = 25) -> None:
        """The customer's messages were written ``hours`` ago (the window closes after 24)."""
        async with self.bridge.store._tx() as conn:
            await conn.execute(
                update(t.messages)
                .where(t.messages.c.conversation_id == conversation_id)
                .where(t.messages.c.direction == "in")
                .values(created_at=t.messages.c.created_at - hours * 3600)
            )

    async def answer_later(self, frame: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
        parts = urlsplit(frame["reply_url"])
        return await self.http.post(
            f"{parts.path}?{parts.query}",
            json=body,
            headers={"Authorization": f"Bearer {AGENT_TOKEN}", "X-Agent-Id": "agent1"},
        )

    def template_sends(self) -> list[dict[str, Any]]:
        return [
            r.json
            for r in self.fake.calls(f"/v23.0/{PHONE_NUMBER_ID}/messages")
            if isinstance(r.json, dict) and r.json.get("type") == "template"
        ]

    def text_sends(self) -> list[dict[str, Any]]:
        return [
            r.json
            for r in self.fake.calls(f"/v23.0/{PHONE_NUMBER_ID}/messages")
            if isinstance(r.json, dict) and r.json.get("type") == "text"
        ]


@asynccontextmanager
async def template_rig(database_url: str, *, sync: bool = True) -> AsyncIterator[Rig]:
    """The running bridge; with ``sync`` the fake WABA's two templates are synced in."""
    agent = HookAgent()
    fake_app = create_fake_whatsapp()
    fake: FakeWhatsApp = fake_app.state.fake
    add_template(fake, "order_update", ORDER_UPDATE)
    add_template(fake, "booking", BOOKING)
    async with serve_app(fake_app) as fake_url, serve_app(agent.app()) as hook_url:
        settings = hook_agent_settings(
            database_url,
            instance_id="tpl",
            admin_key=ADMIN_KEY,
            hook_url=hook_url,
            token=AGENT_TOKEN,
        )
        app = create_app(settings)
        async with serve_app(app) as url:
            bridge: Bridge = app.state.bridge
            bridge.set_comms_settings(
                CommsSettings(  # type: ignore[call-arg]
                    _env_file=None,
                    provider="meta_cloud",
                    meta_graph_url=fake_url,
                    meta_access_token="meta-token",
                    meta_phone_number_id=PHONE_NUMBER_ID,
                    meta_waba_id=WABA,
                )
            )
            async with httpx.AsyncClient(
                base_url=url, timeout=30, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            ) as http:
                rig = Rig(bridge, fake, fake_url, http, agent)
                if sync:
                    r = await http.post("/api/comms/templates/sync")
                    assert r.status_code == 200, r.text
                yield rig
