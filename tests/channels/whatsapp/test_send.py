"""The providers' outbound calls against the local fake gateways: exact paths, headers, bodies,
and how failures map onto retryable / permanent delivery errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from chatbridge.channels.base import ChannelAdapter
from chatbridge.channels.whatsapp import WhatsAppChannel
from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import PermanentDelivery, RetryableDelivery
from chatbridge.models import Attachment, ConversationRef, OutboundAction
from chatbridge.testing.fake_whatsapp import FakeWhatsApp, RecordedRequest, create_fake_whatsapp
from chatbridge.testing.servers import serve_app
from tests.channels.whatsapp.rig import gateways_at


@dataclass
class Gateway:
    url: str
    fake: FakeWhatsApp
    settings: CommsSettings
    channel: WhatsAppChannel

    def use(self, **changes: Any) -> None:
        self.settings = self.settings.updated(changes)

    def last(self) -> RecordedRequest:
        return self.fake.requests[-1]


@pytest.fixture
async def gw() -> AsyncIterator[Gateway]:
    app = create_fake_whatsapp()
    async with serve_app(app) as url:
        settings = gateways_at(url)
        holder: list[Gateway] = []
        channel = WhatsAppChannel(lambda: holder[0].settings, timeout=5)
        holder.append(Gateway(url, app.state.fake, settings, channel))
        try:
            yield holder[0]
        finally:
            await channel.aclose()


def action(key: str, kind: str = "message", text: str | None = "Hi", **kw: Any) -> OutboundAction:
    conv = ConversationRef(id="c_1", channel="whatsapp", channel_key=key, inbox_id=1)
    return OutboundAction(kind=kind, conversation=conv, idempotency_key="k1", text=text, **kw)  # type: ignore[arg-type]


WAHA = "waha:default:919876543210@c.us"
EVO = "evolution:shop:919876543210@s.whatsapp.net"
META = "meta_cloud:106540352242922:919876543210"


def test_is_a_channel_adapter() -> None:
    assert isinstance(WhatsAppChannel(CommsSettings), ChannelAdapter)


async def test_waha_text_media_typing(gw: Gateway) -> None:
    result = await gw.channel.send(action(WAHA))
    req = gw.last()
    assert (req.method, req.path) == ("POST", "/api/sendText")
    assert req.headers["x-api-key"] == "waha-key"
    assert req.json == {"session": "default", "chatId": "919876543210@c.us", "text": "Hi"}
    assert result.external_id is not None
    assert result.external_id.startswith("true_919876543210@c.us_3EB0FAKE")
    # its echo in message.any is ours
    assert await gw.channel.is_own_message(result.external_id)

    pic = Attachment(url="https://x/y.jpg", mime="image/jpeg", name="y.jpg")
    await gw.channel.send(action(WAHA, text="look", attachments=[pic]))
    assert (gw.last().path, gw.last().json) == (
        "/api/sendImage",
        {
            "session": "default",
            "chatId": "919876543210@c.us",
            "file": {"url": "https://x/y.jpg", "mimetype": "image/jpeg", "filename": "y.jpg"},
            "caption": "look",
        },
    )
    await gw.channel.send(action(WAHA, kind="typing_on", text=None))
    await gw.channel.send(action(WAHA, kind="typing_off", text=None))
    assert [(r.path, r.json) for r in gw.fake.requests[-2:]] == [
        ("/api/startTyping", {"session": "default", "chatId": "919876543210@c.us"}),
        ("/api/stopTyping", {"session": "default", "chatId": "919876543210@c.us"}),
    ]


async def test_evolution_text_media_presence(gw: Gateway) -> None:
    result = await gw.channel.send(action(EVO))
    req = gw.last()
    assert (req.path, req.headers["apikey"]) == ("/message/sendText/shop", "evo-key")
    assert req.json == {"number": "919876543210", "text": "Hi"}
    assert result.external_id is not None and result.external_id.startswith("BAE5FAKE")

    doc = Attachment(url="https://x/a.pdf", mime="application/pdf", name="a.pdf")
    await gw.channel.send(action(EVO, text="invoice", attachments=[doc]))
    assert (gw.last().path, gw.last().json) == (
        "/message/sendMedia/shop",
        {
            "number": "919876543210",
            "mediatype": "document",
            "media": "https://x/a.pdf",
            "mimetype": "application/pdf",
            "caption": "invoice",
            "fileName": "a.pdf",
        },
    )
    await gw.channel.send(action(EVO, kind="typing_on", text=None))
    assert (gw.last().path, gw.last().json["presence"]) == ("/chat/sendPresence/shop", "composing")


async def test_meta_text_and_media(gw: Gateway) -> None:
    result = await gw.channel.send(action(META))
    req = gw.last()
    assert req.path == "/v23.0/106540352242922/messages"
    assert req.headers["authorization"] == "Bearer meta-token"
    assert req.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+919876543210",
        "type": "text",
        "text": {"preview_url": False, "body": "Hi"},
    }
    assert result.external_id is not None and result.external_id.startswith("wamid.")
    pic = Attachment(url="https://x/y.jpg", mime="image/jpeg")
    await gw.channel.send(action(META, text="look", attachments=[pic]))
    assert gw.last().json["image"] == {"link": "https://x/y.jpg", "caption": "look"}


async def test_read_receipts(gw: Gateway) -> None:
    await gw.channel._read_receipt(WAHA, "false_919876543210@c.us_ABC")
    await gw.channel._read_receipt(EVO, "3A55")
    await gw.channel._read_receipt(META, "wamid.IN")
    assert [(r.path, r.json) for r in gw.fake.requests] == [
        (
            "/api/sendSeen",
            {
                "session": "default",
                "chatId": "919876543210@c.us",
                "messageIds": ["false_919876543210@c.us_ABC"],
            },
        ),
        (
            "/chat/markMessageAsRead/shop",
            {
                "readMessages": [
                    {"remoteJid": "919876543210@s.whatsapp.net", "fromMe": False, "id": "3A55"}
                ]
            },
        ),
        (
            "/v23.0/106540352242922/messages",
            {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN"},
        ),
    ]


async def test_failures_map_to_retryable_and_permanent(gw: Gateway) -> None:
    gw.fake.fail_next.append((429, {"Retry-After": "7"}, {"error": "slow down"}))
    with pytest.raises(RetryableDelivery) as retry:
        await gw.channel.send(action(WAHA))
    assert retry.value.retry_after == 7.0
    gw.fake.fail_next.append((503, {}, {"error": "down"}))
    with pytest.raises(RetryableDelivery):
        await gw.channel.send(action(EVO))
    gw.use(meta_access_token="wrong-token")
    with pytest.raises(PermanentDelivery) as perm:
        await gw.channel.send(action(META))
    assert "401" in str(perm.value) and "wrong-token" not in str(perm.value)
    gw.use(waha_base_url="http://127.0.0.1:9")
    with pytest.raises(RetryableDelivery, match="cannot reach"):
        await gw.channel.send(action(WAHA))
    with pytest.raises(PermanentDelivery, match="channel_key"):
        await gw.channel.send(action("nonsense"))


async def test_provider_check(gw: Gateway) -> None:
    for provider in ("mock", "waha", "evolution", "meta_cloud"):
        gw.use(provider=provider)
        check = await gw.channel.check_provider()
        assert check.ok, check
    gw.use(provider="waha", waha_api_key="bad")
    check = await gw.channel.check_provider()
    assert not check.ok and "API key" in check.problems[0]
    gw.fake.evolution_instances["shop"] = "close"
    gw.use(provider="evolution")
    assert "not open" in (await gw.channel.check_provider()).problems[0]
    gw.use(provider="meta_cloud", meta_phone_number_id="999")
    assert "phone number id" in (await gw.channel.check_provider()).problems[0]
    gw.use(provider="waha", waha_base_url="http://127.0.0.1:9")
    assert "cannot reach WAHA" in (await gw.channel.check_provider()).problems[0]
