"""The channel registry: a new channel is one module plus one ``CHANNELS`` entry.

The proof is a throwaway channel, ``toy``, written below as a channel author would write its
module (``build``, ``SETTINGS``): registered by one entry, it gets its own settings
(``CHATBRIDGE_TOY_*``), its source allowlist and ``POST /webhook/toy/{inbox}`` end to end,
with a real agent answering and the reply reaching its ``send``, over real sockets.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import ValidationError

from chatbridge.channels import registry
from chatbridge.channels.base import (
    Capabilities,
    ChannelContext,
    ChannelSettings,
    InboundRequest,
    load_object,
)
from chatbridge.channels.registry import (
    CHANNELS,
    DEFAULT_CHANNELS,
    WEBHOOK_CHANNELS,
    ChannelUnavailable,
    Entry,
    channel_settings,
)
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.errors import BadInput, BadSignature
from chatbridge.models import InboundMessage, OutboundAction, ParsedWebhook, SendResult
from tests.e2e.drain import within
from tests.e2e.harness import Stack, running_stack

TOY_SECRET = "toy-channel-secret-0123"
INBOX = 3

# ------------------------------------------------------------------ the channel's module


class ToySettings(ChannelSettings):
    """``CHATBRIDGE_TOY_SECRET``: when set, requests must carry ``X-Toy-Signature``."""

    secret: str | None = None


SETTINGS = ToySettings


class ToyChannel:
    """``{"conversation", "id", "text"}`` in; every action it is asked to send recorded."""

    name = "toy"
    capabilities = Capabilities()

    def __init__(self, settings: ToySettings) -> None:
        self.secret = settings.secret
        self.sent: list[OutboundAction] = []
        self.changed = asyncio.Event()

    async def parse(self, request: InboundRequest) -> list[ParsedWebhook]:
        if self.secret is not None:
            mac = hmac.new(self.secret.encode(), request.body, hashlib.sha256).hexdigest()
            given = request.headers.get("x-toy-signature", "")
            if not hmac.compare_digest(mac, given):
                raise BadSignature("X-Toy-Signature does not match the body")
        payload = load_object(request.body)
        inbox = request.path.get("inbox", "")
        if not inbox.isdecimal():
            raise BadInput("unknown_inbox", f"no toy inbox {inbox!r}", status_code=404)
        return [
            InboundMessage(
                channel=self.name,
                inbox_id=int(inbox),
                channel_key=str(payload["conversation"]),
                text=str(payload["text"]),
                external_message_id=str(payload["id"]),
            )
        ]

    def stored(self, message: InboundMessage) -> None:
        return None

    async def send(self, action: OutboundAction) -> SendResult:
        self.sent.append(action)
        self.changed.set()
        return SendResult(external_id=f"toy-{len(self.sent)}")

    async def already_sent(self, action: OutboundAction) -> bool | None:
        return False

    async def aclose(self) -> None:
        return None


def build(context: ChannelContext) -> ToyChannel:
    return ToyChannel(context.own(ToySettings))


# ------------------------------------------------------------------ the one registry line


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CHANNELS, "toy", Entry(f"{__name__}:build"))


@asynccontextmanager
async def toy_stack(database_url: str, **settings: Any) -> AsyncIterator[Stack]:
    async with running_stack(database_url, **settings) as stack:
        await stack.bridge.save_mapping(
            InboxMapping(
                channel="toy",
                inbox_id=INBOX,
                agent_config=AgentConfig(
                    agent_id="agent1", websocket_url=f"ws://127.0.0.1:{stack.agent_port}"
                ),
            )
        )
        yield stack


async def post(stack: Stack, text: str, *, secret: str | None = None, n: int = 1) -> Any:
    body = json.dumps({"conversation": "c1", "id": f"m{n}", "text": text}).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Toy-Signature"] = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return await stack.http.post(f"/webhook/toy/{INBOX}", content=body, headers=headers)


async def replies(channel: ToyChannel, n: int) -> list[str]:
    async def enough() -> None:
        while sum(a.kind == "message" for a in channel.sent) < n:
            channel.changed.clear()
            await channel.changed.wait()

    await within(10, enough())
    return [a.text or "" for a in channel.sent if a.kind == "message"]


async def test_a_registered_channel_gets_signed_webhooks_end_to_end(
    toy: None, sqlite_url: str
) -> None:
    async with toy_stack(sqlite_url, channel_settings={"toy": {"secret": TOY_SECRET}}) as s:
        channel = s.bridge.channels["toy"]
        assert isinstance(channel, ToyChannel) and channel.secret == TOY_SECRET
        r = await post(s, "hello", secret=TOY_SECRET)
        assert (r.status_code, r.json()["status"]) == (200, "accepted"), r.text
        assert await replies(channel, 1) == ["Echo: hello"]
        [sent] = channel.sent
        assert (sent.conversation.channel, sent.conversation.inbox_id) == ("toy", INBOX)
        # its signature check is the generic route's 401
        r = await post(s, "forged", secret="not-the-toy-secret", n=2)
        assert r.status_code == 401, r.text
        r = await post(s, "unsigned", n=3)
        assert r.status_code == 401, r.text
        assert len(channel.sent) == 1


async def test_its_settings_come_from_its_own_environment(
    toy: None, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # unsigned unless CHATBRIDGE_TOY_SECRET says otherwise; and its allowlist is generic
    async with toy_stack(sqlite_url) as s:
        channel = s.bridge.channels["toy"]
        assert isinstance(channel, ToyChannel) and channel.secret is None
        r = await post(s, "hi")
        assert r.status_code == 200, r.text
        assert await replies(channel, 1) == ["Echo: hi"]
    monkeypatch.setenv("CHATBRIDGE_TOY_SECRET", TOY_SECRET)
    monkeypatch.setenv("CHATBRIDGE_TOY_ALLOWED_NETWORKS", "10.0.0.0/8")
    async with toy_stack(sqlite_url) as s:
        channel = s.bridge.channels["toy"]
        assert isinstance(channel, ToyChannel) and channel.secret == TOY_SECRET
        r = await post(s, "hi", secret=TOY_SECRET)
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert error["code"] == "source_not_allowed"
        assert "CHATBRIDGE_TOY_ALLOWED_NETWORKS" in error["message"]
        assert channel.sent == []


def test_the_registry_views_follow_its_entries(toy: None) -> None:
    assert "toy" in WEBHOOK_CHANNELS and "toy" in DEFAULT_CHANNELS
    assert "webchat" in DEFAULT_CHANNELS and "webchat" not in WEBHOOK_CHANNELS
    assert "memory" in WEBHOOK_CHANNELS and "memory" not in DEFAULT_CHANNELS
    # the shipped ones are there too (a channel added later needs no change here)
    assert {"chatwoot", "webchat", "whatsapp", "http", "toy"} <= set(DEFAULT_CHANNELS)
    assert len(WEBHOOK_CHANNELS) == len(list(WEBHOOK_CHANNELS))
    assert registry.settings_model("toy") is ToySettings
    assert registry.settings_model("chatwoot") is ChannelSettings


def test_the_views_lose_an_entry_taken_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(CHANNELS, "http")
    assert "http" not in WEBHOOK_CHANNELS and "http" not in DEFAULT_CHANNELS
    with pytest.raises(ChannelUnavailable, match="no channel named 'http'"):
        registry.builder("http")


def test_a_channel_whose_module_is_missing_still_has_its_allowlist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(CHANNELS, "gone", Entry("chatbridge_no_such_module:build"))
    with pytest.raises(ChannelUnavailable, match="not installed"):
        registry.builder("gone")
    settings = Settings(channel_settings={"gone": {"allowed_networks": "10.0.0.0/8"}})
    assert channel_settings(settings, "gone").allowed_networks == ["10.0.0.0/8"]


def test_a_bad_value_is_located_as_the_flat_setting(toy: None) -> None:
    settings = Settings(channel_settings={"toy": {"secret": 5}, "http": {"timeout_seconds": -1}})
    with pytest.raises(ValidationError) as caught:
        registry.load_settings(settings, ["toy", "http", "chatwoot"])
    assert [e["loc"] for e in caught.value.errors()] == [("toy_secret",), ("http_timeout_seconds",)]
    # what was good is kept; what was bad is not, and is refused again
    assert "chatwoot" in settings.built_channel_settings
    with pytest.raises(ValidationError):
        channel_settings(settings, "http")
