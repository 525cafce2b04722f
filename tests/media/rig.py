"""A running bridge (real app on a socket, workers on) whose WhatsApp provider is WAHA,
Evolution or Meta, pointed at the fake gateways (with their media downloads,
``fake_wa_media``), an http-webhook agent that records what it is asked, and a local
OpenAI-compatible transcription server for voice notes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from chatbridge.api import create_app
from chatbridge.crm.settings import CommsSettings
from chatbridge.pipeline.bridge import Bridge
from chatbridge.testing.fake_whatsapp import FakeWhatsApp, create_fake_whatsapp
from chatbridge.testing.servers import serve_app
from tests.channels.whatsapp.rig import gateways_at, hook_agent_settings
from tests.crm.fake_transcriber import FakeTranscriber, create_fake_transcriber
from tests.e2e.harness import wait_until

ADMIN_KEY = "media-admin-key-0123"
AGENT_TOKEN = "media-agent-token-0123"
PHONE_NUMBER_ID = "106540352242922"

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
PDF = b"%PDF-1.7\n" + b"%binary \xe2\xe3\xcf\xd3\n" + b"1 0 obj\n" * 200
OGG = b"OggS\x00\x02" + bytes(range(200)) * 3


@dataclass
class HookAgent:
    """The agent: every ``user_message`` it was sent; it answers each with "got it"."""

    received: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            frame = json.loads(await request.body())
            if frame.get("type") != "user_message":
                return Response(status_code=204)
            self.received.append(frame)
            return JSONResponse(
                {"type": "agent_message", "message_id": frame["message_id"], "content": "got it"}
            )

        return app


@dataclass
class MediaRig:
    bridge: Bridge
    fake: FakeWhatsApp
    fake_url: str
    http: httpx.AsyncClient
    agent: HookAgent
    transcriber: FakeTranscriber
    media_dir: Path

    async def webhook(self, route: str, payload: dict[str, Any]) -> None:
        r = await self.http.post(
            f"/api/comms/webhooks/{route}",
            content=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text

    async def frame(self, n: int = 1, timeout: float = 20) -> dict[str, Any]:
        """The agent's ``n``-th user_message (1-based), once it came."""
        await wait_until(lambda: len(self.agent.received) >= n, timeout)
        return self.agent.received[n - 1]

    def files(self) -> list[Path]:
        return sorted(
            p for p in self.media_dir.rglob("*") if p.is_file() and not p.name.startswith(".")
        )


def comms_for(provider: str, fake_url: str, transcriber_url: str | None) -> CommsSettings:
    extra: dict[str, Any] = {}
    if transcriber_url:
        extra = {
            "transcription_provider": "openai",
            "transcription_base_url": f"{transcriber_url}/v1",
            "transcription_api_key": "sk-transcribe",
        }
    return gateways_at(fake_url, provider=provider, **extra)


@asynccontextmanager
async def media_rig(
    database_url: str,
    tmp_path: Path,
    provider: str,
    *,
    transcribe: bool = True,
    **settings_extra: Any,
) -> AsyncIterator[MediaRig]:
    """The running bridge on ``provider`` (``waha``, ``evolution``, ``meta_cloud``)."""
    agent = HookAgent()
    fake_app = create_fake_whatsapp()
    fake: FakeWhatsApp = fake_app.state.fake
    stt_app = create_fake_transcriber()
    media_dir = tmp_path / "media"
    async with (
        serve_app(fake_app) as fake_url,
        serve_app(agent.app()) as hook_url,
        serve_app(stt_app) as stt_url,
    ):
        settings = hook_agent_settings(
            database_url,
            instance_id="media",
            admin_key=ADMIN_KEY,
            hook_url=hook_url,
            token=AGENT_TOKEN,
            media_dir=str(media_dir),
            **settings_extra,
        )
        app = create_app(settings)
        async with serve_app(app) as url:
            bridge: Bridge = app.state.bridge
            settings.public_url = url  # signed URLs name where the test reaches the bridge
            bridge.set_comms_settings(
                comms_for(provider, fake_url, stt_url if transcribe else None)
            )
            async with httpx.AsyncClient(
                base_url=url, timeout=30, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            ) as http:
                yield MediaRig(bridge, fake, fake_url, http, agent, stt_app.state.fake, media_dir)
