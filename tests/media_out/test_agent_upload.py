"""An agent uploads a file to the bridge (``POST /api/agent/media``) and replies with it: the
customer's WhatsApp gets the very bytes through the gateway's own media call (WAHA
``file.data``), with no link the gateway would have to reach. Bad uploads are refused with a
reason and store nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx

from chatbridge.agent import Agent, Answer, Turn
from chatbridge.api import create_app
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.crm.settings import CommsSettings
from chatbridge.testing.fake_whatsapp import create_fake_whatsapp, waha_message
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import FAST, wait_until

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
PDF = b"%PDF-1.7\n" + b"x" * 200
AGENT = {"X-Agent-Id": "agent1", "Authorization": "Bearer agent-secret-0123456789"}


async def test_agent_uploads_then_sends_a_file(database_url: str, tmp_path: Path) -> None:
    bridge_url: list[str] = []
    uploads: list[dict[str, Any]] = []
    sdk = Agent("agent1")

    @sdk.on_message
    async def answer(turn: Turn) -> Answer:
        async with httpx.AsyncClient(base_url=bridge_url[0]) as http:
            r = await http.post(
                "/api/agent/media?name=teapot.png",
                content=PNG,
                headers={**AGENT, "Content-Type": "image/png"},
            )
            assert r.status_code == 201, r.text
            uploads.append(r.json())
        return Answer("Here it is", attachments=[{"url": r.json()["url"]}])

    fake_app = create_fake_whatsapp()
    async with serve_app(fake_app) as fake_url, sdk.serving("127.0.0.1", 0) as port:
        settings = Settings(
            database_url=database_url,
            instance_id="e2e",
            media_dir=str(tmp_path / "media"),
            media_max_bytes=4096,
            agent_tokens={"agent1": "agent-secret-0123456789"},
            inbox_agent_mappings=[
                InboxMapping(
                    channel="whatsapp",
                    inbox_id=1,
                    agent_config=AgentConfig(
                        agent_id="agent1", websocket_url=f"ws://127.0.0.1:{port}"
                    ),
                )
            ],
            **FAST,  # type: ignore[arg-type]
        )
        app = create_app(settings)
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            bridge_url.append(url)
            app.state.bridge.set_comms_settings(
                CommsSettings(  # type: ignore[call-arg]
                    _env_file=None, provider="waha", waha_base_url=fake_url, waha_api_key="waha-key"
                )
            )
            await wait_until(lambda: app.state.bridge.hub.is_connected("agent1"))

            # bad uploads first: each refused with its reason, nothing stored
            r = await http.post(
                "/api/agent/media", content=PNG, headers={"Content-Type": "image/png"}
            )
            assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
            wrong = {**AGENT, "Authorization": "Bearer nope", "Content-Type": "image/png"}
            r = await http.post("/api/agent/media", content=PNG, headers=wrong)
            assert r.status_code == 401
            r = await http.post(
                "/api/agent/media", content=PDF, headers={**AGENT, "Content-Type": "image/png"}
            )
            assert r.status_code == 422, r.text
            assert "PDF" in r.json()["error"]["message"]
            r = await http.post(
                "/api/agent/media",
                content=PNG + b"\x00" * 4096,
                headers={**AGENT, "Content-Type": "image/png"},
            )
            assert r.status_code == 413, r.text
            media_dir = tmp_path / "media"
            stored = [p for p in media_dir.rglob("*") if p.is_file() and p.stat().st_size > 100]
            assert stored == []  # nothing of the refused uploads was kept

            payload = waha_message("Can I see the teapot?", msg_id="3EB0BBBB00000001")
            r = await http.post(
                "/api/comms/webhooks/waha",
                content=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert r.json()["status"] == "accepted", r.text
            fake = fake_app.state.fake
            [sent] = await wait_until(lambda: fake.calls("/api/sendImage"))
            [uploaded] = uploads
            assert uploaded["url"] == f"media:{uploaded['media_id']}"
            assert (uploaded["mime"], uploaded["kind"], uploaded["size"]) == (
                "image/png",
                "image",
                len(PNG),
            )
            assert sent.json == {
                "session": "default",
                "chatId": "919876543210@c.us",
                "file": {
                    "data": base64.b64encode(PNG).decode(),
                    "mimetype": "image/png",
                    "filename": "teapot.png",
                },
                "caption": "Here it is",
            }
