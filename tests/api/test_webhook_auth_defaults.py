"""Safe defaults at the webhook edge: each test fails if its default regresses.

* a signed Chatwoot delivery outside the timestamp window is refused (401), nothing stored;
* an Evolution bearer JWT needs ``iat`` and a bounded lifetime;
* with nothing configured WhatsApp is off: every provider webhook (the mock's included) is a
  404 and stores nothing; the mock answers only once chosen explicitly;
* one WARNING per channel whose webhooks are unauthenticated, and no start on a public
  address with any unless ``allow_unsigned_webhooks``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from chatbridge.api import create_app
from chatbridge.api.exposure import exposure_problem, is_loopback, open_webhooks
from chatbridge.channels.signatures import sign_chatwoot
from chatbridge.channels.whatsapp.signatures import encode_jwt_hs256, evolution_jwt
from chatbridge.channels.whatsapp.signatures import verify_jwt_hs256 as verify_jwt
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import BadSignature, ConfigError
from chatbridge.store import tables as t
from chatbridge.testing.mock_chatwoot import TriggerRequest
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import Stack, running_stack

SECRET = "a-chatwoot-webhook-secret-32-chars"
JAN_2001 = 978_307_200


async def message_rows(s: Stack) -> int:
    """Customer messages stored (the agent's reply to an accepted one may be stored too, at
    any moment: it is not what these tests count)."""
    query = select(func.count()).select_from(t.messages).where(t.messages.c.direction == "in")
    async with s.bridge.store.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def post_signed(s: Stack, event: str, stamp: int, **spec: Any) -> Any:
    payload, _ = s.mock.build_event(event, TriggerRequest(inbox_id=1, **spec))
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **sign_chatwoot(SECRET, body, stamp)}
    return await s.http.post("/webhook/chatwoot", content=body, headers=headers)


# ------------------------------------------------------------------ Chatwoot replay window


async def test_a_signed_chatwoot_delivery_from_2001_is_refused(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, secret=SECRET) as s:
        old = await post_signed(s, "conversation_status_changed", JAN_2001, status="open")
        assert old.status_code == 401, old.text
        error = old.json()["error"]
        assert error["code"] == "bad_signature" and "X-Chatwoot-Timestamp" in error["message"]
        replayed = await post_signed(s, "message_created", JAN_2001, content="replayed")
        assert replayed.status_code == 401
        assert await message_rows(s) == 0
        # the same delivery signed now is accepted
        fresh = await post_signed(s, "message_created", int(time.time()), content="hello")
        assert fresh.status_code == 200 and fresh.json()["status"] == "accepted", fresh.text
        assert await message_rows(s) == 1


async def test_the_window_covers_chatwoots_retries_and_is_configurable(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, secret=SECRET, chatwoot_signature_max_age_seconds=30) as s:
        # Chatwoot retries 3 times 3 s apart (plus queue delays): a 20 s old delivery passes
        late = await post_signed(s, "message_created", int(time.time()) - 20, content="late")
        assert late.status_code == 200, late.text
        stale = await post_signed(s, "message_created", int(time.time()) - 90, content="stale")
        assert stale.status_code == 401
    assert Settings().chatwoot_signature_max_age_seconds == 300


# ------------------------------------------------------------------ Evolution JWT


def test_an_evolution_jwt_lasting_until_5138_is_refused() -> None:
    now = time.time()
    forever = encode_jwt_hs256("jwt-key", {"iat": int(now), "exp": 99_999_999_999})
    with pytest.raises(BadSignature, match="longer than 3600"):
        verify_jwt("jwt-key", forever, now=now)
    no_iat = encode_jwt_hs256("jwt-key", {"exp": int(now) + 600})
    with pytest.raises(BadSignature, match="iat"):
        verify_jwt("jwt-key", no_iat, now=now)
    future = encode_jwt_hs256("jwt-key", {"iat": int(now) + 3000, "exp": int(now) + 3600})
    with pytest.raises(BadSignature, match="future"):
        verify_jwt("jwt-key", future, now=now)
    # what Evolution really sends (ten minutes) passes
    assert verify_jwt("jwt-key", evolution_jwt("jwt-key", now=now), now=now)["action"] == "webhook"


# ------------------------------------------------------------------ WhatsApp off by default


def test_no_whatsapp_provider_is_configured_by_default() -> None:
    assert CommsSettings(_env_file=None).provider == "none"  # type: ignore[call-arg]


async def test_with_nothing_configured_whatsapp_webhooks_are_404_and_store_nothing(
    sqlite_url: str,
) -> None:
    async with running_stack(sqlite_url) as s:
        await s.bridge.save_mapping(
            InboxMapping(
                channel="whatsapp",
                inbox_id=1,
                agent_config=AgentConfig(agent_id="wa-agent"),
            )
        )
        # a stranger's "the business replied from its phone": would silence the bot
        takeover = {"from": "+15550001111", "text": "I'll handle it", "id": "x1", "fromMe": True}
        for provider, body in (
            ("mock", takeover),
            ("mock", {"from": "+15550001111", "text": "hi", "id": "x2"}),
            ("waha", {"event": "message", "payload": {}}),
            ("evolution", {"event": "messages.upsert", "data": {}}),
            ("meta", {"object": "whatsapp_business_account"}),
        ):
            r = await s.http.post(f"/api/comms/webhooks/{provider}", json=body)
            assert r.status_code == 404, (provider, r.text)
            assert r.json()["error"]["code"] == "whatsapp_not_configured"
        assert await message_rows(s) == 0
        check = (await s.http.post("/api/comms/provider/test")).json()
        assert check["ok"] is False and "no WhatsApp provider" in check["problems"][0]
        # chosen explicitly (as the demo does), the mock provider answers
        s.bridge.set_comms_settings(s.bridge.comms_settings().updated({"provider": "mock"}))
        r = await s.http.post("/api/comms/webhooks/mock", json=takeover)
        assert r.status_code == 200, r.text


# ------------------------------------------------------------------ start-up warnings


def _settings(tmp: str, **kw: Any) -> Settings:
    return Settings(database_url=f"sqlite+aiosqlite:///{tmp}/b.db", instance_id="t", **kw)


def test_every_unauthenticated_channel_is_named() -> None:
    open_all = [
        CommsSettings(_env_file=None, provider=p)  # type: ignore[call-arg]
        for p in ("mock", "waha", "evolution", "meta_cloud")
    ]
    names = [
        [o.channel for o in open_webhooks(Settings(), c, chatwoot_in_use=False)] for c in open_all
    ]
    assert names == [
        ["WhatsApp (mock provider)"],
        ["WhatsApp (WAHA)"],
        ["WhatsApp (Evolution)"],
        ["WhatsApp (Meta)"],
    ]
    closed = [
        CommsSettings(_env_file=None, provider="waha", waha_hmac_key="k"),  # type: ignore[call-arg]
        CommsSettings(_env_file=None, provider="evolution", evolution_jwt_key="k"),  # type: ignore[call-arg]
        CommsSettings(  # type: ignore[call-arg]
            _env_file=None, provider="evolution", evolution_webhook_header_value="k"
        ),
        CommsSettings(_env_file=None, provider="meta_cloud", meta_app_secret="k"),  # type: ignore[call-arg]
        CommsSettings(_env_file=None),  # type: ignore[call-arg]
    ]
    signed = Settings(chatwoot_webhook_secret=SECRET)
    for comms in closed:
        assert open_webhooks(signed, comms, chatwoot_in_use=True) == []
    assert [o.channel for o in open_webhooks(Settings(), closed[-1], chatwoot_in_use=True)] == [
        "Chatwoot"
    ]


def test_only_loopback_binds_may_serve_open_webhooks() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "", "10.0.0.5", "bridge.example"))
    hooks = open_webhooks(Settings(), CommsSettings(_env_file=None), chatwoot_in_use=True)  # type: ignore[call-arg]
    assert exposure_problem(Settings(host="127.0.0.1"), hooks) is None
    assert "0.0.0.0" in (exposure_problem(Settings(host="0.0.0.0"), hooks) or "")
    assert exposure_problem(Settings(host="0.0.0.0", allow_unsigned_webhooks=True), hooks) is None


async def test_start_up_warns_once_per_open_channel(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    mapping = InboxMapping(inbox_id=1, agent_config=AgentConfig(agent_id="a"))
    app = create_app(_settings(str(tmp_path), inbox_agent_mappings=[mapping]))
    app.state.bridge.set_comms_settings(
        CommsSettings(_env_file=None, provider="waha")  # type: ignore[call-arg]
    )
    with caplog.at_level(logging.WARNING, logger="chatbridge.api.exposure"):
        async with serve_app(app):
            pass
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "chatbridge.api.exposure"
    ]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("Chatwoot webhooks (/webhook/chatwoot) are accepted WITHOUT")
    assert warnings[1].startswith("WhatsApp (WAHA) webhooks")


async def test_a_public_bind_with_open_webhooks_does_not_start(tmp_path: Any) -> None:
    mapping = InboxMapping(inbox_id=1, agent_config=AgentConfig(agent_id="a"))
    app = create_app(_settings(str(tmp_path), host="0.0.0.0", inbox_agent_mappings=[mapping]))
    with pytest.raises(ConfigError, match="CHATBRIDGE_ALLOW_UNSIGNED_WEBHOOKS"):
        async with app.router.lifespan_context(app):
            pass
    allowed = create_app(
        _settings(
            str(tmp_path),
            host="0.0.0.0",
            inbox_agent_mappings=[mapping],
            allow_unsigned_webhooks=True,
        )
    )
    async with allowed.router.lifespan_context(allowed):
        assert allowed.state.bridge.started


def test_serve_refuses_a_public_bind_with_unsigned_webhooks(tmp_path: Any) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHATBRIDGE_", "CHATWOOT_", "INBOX_AGENT"))
    }
    env.update(
        CHATWOOT_API_ACCESS_TOKEN="bot-token",
        CHATBRIDGE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/s.db",
    )
    command = [sys.executable, "-m", "chatbridge", "serve", "--host", "0.0.0.0", "--port", "0"]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "Chatwoot webhooks" in done.stderr and "refusing to serve on 0.0.0.0" in done.stderr
