"""Per-channel source allowlists: only the configured client networks reach a webhook.

The client is the connection's peer, or the address a trusted proxy forwards
(``proxy_headers`` with ``forwarded_allow_ips``); everyone else gets a 403 JSON error before
their body is read, and nothing is stored. Over real loopback sockets, so the address the
server sees is really 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from chatbridge.api import create_app
from chatbridge.channels.registry import channel_settings
from chatbridge.channels.signatures import sign_chatwoot
from chatbridge.config import Settings
from chatbridge.store import tables as t
from chatbridge.testing.chatwoot_state import TriggerRequest
from tests.e2e.harness import Stack, running_stack

SECRET = "allowlist-secret-0123"


def allowed(channel: str, networks: str) -> dict[str, Any]:
    """The ``running_stack`` keyword that sets ``CHATBRIDGE_<CHANNEL>_ALLOWED_NETWORKS``."""
    return {"channel_settings": {channel: {"allowed_networks": networks}}}


async def _post(stack: Stack, text: str, headers: dict[str, str] | None = None) -> Any:
    payload, _ = stack.mock.build_event("message_created", TriggerRequest(inbox_id=1, content=text))
    body = json.dumps(payload).encode()
    sent = {"Content-Type": "application/json", **sign_chatwoot(SECRET, body, int(time.time()))}
    return await stack.http.post(
        "/webhook/chatwoot", content=body, headers={**sent, **(headers or {})}
    )


async def _stored(stack: Stack) -> int:
    async with stack.bridge.store._tx() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.messages))).scalar_one())


async def test_a_client_inside_the_networks_is_served(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url, secret=SECRET, **allowed("chatwoot", "10.0.0.0/8, 127.0.0.0/8")
    ) as s:
        r = await _post(s, "hello")
        assert (r.status_code, r.json()["status"]) == (200, "accepted"), r.text
        assert await _stored(s) >= 1


async def test_a_client_outside_the_networks_gets_403_and_nothing_is_stored(
    sqlite_url: str,
) -> None:
    async with running_stack(sqlite_url, secret=SECRET, **allowed("chatwoot", "10.0.0.0/8")) as s:
        r = await _post(s, "hello")
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert error["code"] == "source_not_allowed"
        assert "127.0.0.1" in error["message"] and "CHATWOOT_ALLOWED_NETWORKS" in error["message"]
        assert await _stored(s) == 0
        # another channel's allowlist is its own: the generic route refuses likewise
        r = await s.http.post(
            "/webhook/chatwoot/1", content=b"{}", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 403, r.text


async def test_the_address_a_trusted_proxy_forwards_is_the_client(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url,
        secret=SECRET,
        **allowed("chatwoot", "10.1.0.0/16"),
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
    ) as s:
        inside = await _post(s, "from inside", {"X-Forwarded-For": "10.1.2.3"})
        assert inside.status_code == 200, inside.text
        outside = await _post(s, "from outside", {"X-Forwarded-For": "10.9.9.9"})
        assert outside.status_code == 403, outside.text
        assert "10.9.9.9" in outside.json()["error"]["message"]
        assert await _stored(s) == 1


async def test_an_untrusted_proxy_cannot_forward_its_way_in(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url,
        secret=SECRET,
        **allowed("chatwoot", "10.1.0.0/16"),
        proxy_headers=True,
        forwarded_allow_ips="10.200.0.1",  # not us: our X-Forwarded-For is not believed
    ) as s:
        r = await _post(s, "spoofed", {"X-Forwarded-For": "10.1.2.3"})
        assert r.status_code == 403, r.text
        assert "127.0.0.1" in r.json()["error"]["message"]
        assert await _stored(s) == 0


async def test_the_whatsapp_webhook_has_its_own_allowlist(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, secret=SECRET, **allowed("whatsapp", "10.0.0.0/8")) as s:
        r = await s.http.post(
            "/api/comms/webhooks/waha",
            content=b"{}",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "source_not_allowed"
        ok = await _post(s, "chatwoot is not restricted")
        assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not-a-network", "10.0.0.0/8, 300.1.1.1"])
def test_a_bad_network_is_a_clear_configuration_error(value: str) -> None:
    settings = Settings(channel_settings={"chatwoot": {"allowed_networks": value}})
    with pytest.raises(ValidationError, match=r"chatwoot_allowed_networks\s.*is not a network"):
        channel_settings(settings, "chatwoot")


def test_networks_are_read_from_a_comma_separated_environment_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHATBRIDGE_HTTP_ALLOWED_NETWORKS", "192.168.1.5, fd00::/8")
    assert channel_settings(Settings(), "http").allowed_networks == ["192.168.1.5/32", "fd00::/8"]


@pytest.mark.parametrize("channel", ["chatwoot", "whatsapp", "http", "memory"])
def test_every_webhook_channel_reads_its_own_allowlist(
    channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"CHATBRIDGE_{channel.upper()}_ALLOWED_NETWORKS", "10.0.0.0/8")
    assert channel_settings(Settings(), channel).allowed_networks == ["10.0.0.0/8"]
    other = "chatwoot" if channel != "chatwoot" else "http"
    assert channel_settings(Settings(), other).allowed_networks == []


async def test_a_bad_network_in_the_environment_stops_the_start(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATBRIDGE_WHATSAPP_ALLOWED_NETWORKS", "10.0.0.0/8, nope")
    monkeypatch.setenv("CHATBRIDGE_HTTP_INBOXES", '{"7": {"secret": "short"}}')
    with pytest.raises(ValidationError) as caught:
        create_app(Settings(database_url=sqlite_url))
    # every bad value at once, each named as the setting it is
    where = {e["loc"][0] for e in caught.value.errors()}
    assert where == {"whatsapp_allowed_networks", "http_inboxes"}, caught.value
