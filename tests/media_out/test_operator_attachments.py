"""An operator attaches a file in the console: ``POST /api/comms/uploads`` stores it (checked
like every stored file), the operator's message names it (``media:<id>``) and the WhatsApp
gateway gets its bytes (WAHA ``file.data``). Refusals name the problem and send nothing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from chatbridge.agent import Agent, Turn
from chatbridge.api import create_app
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.crm.settings import CommsSettings
from chatbridge.testing.fake_whatsapp import create_fake_whatsapp, waha_message
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import FAST, wait_until

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
PDF = b"%PDF-1.7\n" + b"x" * 200
ADMIN = {"Authorization": "Bearer test-admin-key-0123"}


async def test_operator_attaches_a_file(database_url: str, tmp_path: Path) -> None:
    sdk = Agent("agent1")

    @sdk.on_message
    async def answer(turn: Turn) -> str:
        return "One moment"

    fake_app = create_fake_whatsapp()
    async with serve_app(fake_app) as fake_url, sdk.serving("127.0.0.1", 0) as port:
        settings = Settings(
            database_url=database_url,
            instance_id="e2e",
            admin_key="test-admin-key-0123",
            media_dir=str(tmp_path / "media"),
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
        async with (
            serve_app(app) as url,
            httpx.AsyncClient(base_url=url, timeout=30, headers=ADMIN) as http,
        ):
            app.state.bridge.set_comms_settings(
                CommsSettings(  # type: ignore[call-arg]
                    _env_file=None, provider="waha", waha_base_url=fake_url, waha_api_key="waha-key"
                )
            )
            await wait_until(lambda: app.state.bridge.hub.is_connected("agent1"))
            payload = waha_message("Do you have it in blue?", msg_id="3EB0CCCC00000001")
            r = await http.post("/api/comms/webhooks/waha", content=json.dumps(payload).encode())
            assert r.json()["status"] == "accepted", r.text
            fake = fake_app.state.fake
            await wait_until(lambda: fake.calls("/api/sendText"))
            threads = (await http.get("/api/comms/threads")).json()["threads"]
            [thread] = [th for th in threads if th["channel"] == "whatsapp"]
            tid = thread["id"]

            # refusals first: nothing stored, nothing sent
            r = await http.post(
                "/api/comms/uploads",
                params={"thread_id": tid, "name": "x.png"},
                content=PDF,
                headers={"Content-Type": "image/png"},
            )
            assert r.status_code == 422 and "PDF" in r.json()["error"]["message"], r.text
            r = await http.post(
                f"/api/comms/threads/{tid}/messages",
                json={"text": "", "attachments": [{"url": "media:md_never"}]},
            )
            assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_media")
            r = await http.post(f"/api/comms/threads/{tid}/messages", json={"text": " "})
            assert r.status_code == 422
            r = await http.post("/api/comms/uploads", params={"thread_id": "c_nope"}, content=PNG)
            assert r.status_code == 404

            r = await http.post(
                "/api/comms/uploads",
                params={"thread_id": tid, "name": "blue.png"},
                content=PNG,
                headers={"Content-Type": "image/png"},
            )
            assert r.status_code == 201, r.text
            upload = r.json()
            assert upload["url"] == f"media:{upload['media_id']}"
            signed = urlsplit(upload["signed_url"])  # the console shows it by this URL
            assert (await http.get(f"{signed.path}?{signed.query}")).content == PNG
            r = await http.post(
                f"/api/comms/threads/{tid}/messages",
                json={"text": "Here it is in blue", "attachments": [{"url": upload["url"]}]},
            )
            assert r.status_code == 201, r.text
            [sent] = await wait_until(lambda: fake.calls("/api/sendImage"))
            assert sent.json == {
                "session": "default",
                "chatId": "919876543210@c.us",
                "file": {
                    "data": base64.b64encode(PNG).decode(),
                    "mimetype": "image/png",
                    "filename": "blue.png",
                },
                "caption": "Here it is in blue",
            }
            messages = (await http.get(f"/api/comms/threads/{tid}/messages")).json()["messages"]
            [attached] = [m for m in messages if m.get("attachments")]
            assert attached["attachments"][0]["media_id"] == upload["media_id"]
