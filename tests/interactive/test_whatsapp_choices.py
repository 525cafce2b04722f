"""Choices through the WhatsApp providers against the local fake gateways: Meta's exact
interactive bodies (checked by the fake as Meta checks them), numbered text on WAHA and
Evolution, and the customer's tap read from each provider's webhook."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatbridge.channels.whatsapp import WhatsAppChannel, parse_webhook
from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import PermanentDelivery
from chatbridge.models import Attachment, ConversationRef, InboundMessage, OutboundAction
from chatbridge.testing.fake_wa_interactive import state
from chatbridge.testing.fake_whatsapp import (
    FakeWhatsApp,
    create_fake_whatsapp,
    evolution_message,
    meta_webhook,
)
from chatbridge.testing.servers import serve_app
from tests.channels.whatsapp.rig import gateways_at

WAHA = "waha:default:919876543210@c.us"
EVO = "evolution:shop:919876543210@s.whatsapp.net"
META = "meta_cloud:106540352242922:919876543210"
MOCK = "mock:default:919876543210@c.us"
YES_NO = {
    "kind": "buttons",
    "options": [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}],
}


class Rig:
    def __init__(self, url: str, fake: FakeWhatsApp) -> None:
        self.fake = fake
        self.settings = gateways_at(url)
        self.channel = WhatsAppChannel(lambda: self.settings, timeout=5)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    app = create_fake_whatsapp()
    async with serve_app(app) as url:
        r = Rig(url, app.state.fake)
        try:
            yield r
        finally:
            await r.channel.aclose()


def action(key: str, text: str | None, interactive: Any, **kw: Any) -> OutboundAction:
    conv = ConversationRef(id="c_1", channel="whatsapp", channel_key=key, inbox_id=1)
    return OutboundAction(
        kind="message",
        conversation=conv,
        idempotency_key="k1",
        text=text,
        interactive=interactive,
        **kw,
    )


async def test_meta_reply_buttons_exact_body(rig: Rig) -> None:
    result = await rig.channel.send(action(META, "Confirm the order?", YES_NO))
    [req] = rig.fake.calls("/v23.0/106540352242922/messages")
    assert req.headers["authorization"] == "Bearer meta-token"
    assert req.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+919876543210",
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Confirm the order?"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                    {"type": "reply", "reply": {"id": "no", "title": "No"}},
                ]
            },
        },
    }
    assert state(rig.fake)["sent"] == [req.json["interactive"]]  # the fake accepted it
    assert result.external_id is not None and result.external_id.startswith("wamid.")


async def test_meta_list_exact_body(rig: Rig) -> None:
    offer = {
        "kind": "list",
        "title": "Our sizes",
        "button": "Sizes",
        "options": [
            {"id": "s", "title": "Small", "description": "250 ml"},
            {"id": "m", "title": "Medium"},
            {"id": "l", "title": "Large"},
            {"id": "xl", "title": "Extra large"},
        ],
    }
    await rig.channel.send(action(META, "Which size?", offer))
    assert rig.fake.requests[-1].json["interactive"] == {
        "type": "list",
        "header": {"type": "text", "text": "Our sizes"},
        "body": {"text": "Which size?"},
        "action": {
            "button": "Sizes",
            "sections": [
                {
                    "rows": [
                        {"id": "s", "title": "Small", "description": "250 ml"},
                        {"id": "m", "title": "Medium"},
                        {"id": "l", "title": "Large"},
                        {"id": "xl", "title": "Extra large"},
                    ]
                }
            ],
        },
    }
    assert len(state(rig.fake)["sent"]) == 1


async def test_meta_beyond_limits_sends_numbered_text(rig: Rig) -> None:
    long = {"kind": "buttons", "options": [{"id": "a", "title": "A much too long option title"}]}
    await rig.channel.send(action(META, "Pick", long))
    req = rig.fake.requests[-1]
    assert req.json["type"] == "text"
    assert req.json["text"] == {
        "preview_url": False,
        "body": "Pick\n\n1. A much too long option title",
    }
    assert state(rig.fake)["sent"] == []


async def test_fake_meta_refuses_a_bad_interactive_as_meta_does(rig: Rig) -> None:
    """The fake is strict: a body Meta would refuse is a permanent failure, not a success."""
    provider = rig.channel.provider("meta_cloud")
    from chatbridge.channels.whatsapp.ids import ChatAddress

    bad = {"type": "button", "body": {"text": "x"}, "action": {"buttons": []}}
    with pytest.raises(PermanentDelivery, match="131009"):
        await provider.send_interactive(ChatAddress.parse(META), bad)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("key", "path", "expected"),
    [
        (
            WAHA,
            "/api/sendText",
            {
                "session": "default",
                "chatId": "919876543210@c.us",
                "text": "Confirm?\n\n1. Yes\n2. No",
            },
        ),
        (
            EVO,
            "/message/sendText/shop",
            {"number": "919876543210", "text": "Confirm?\n\n1. Yes\n2. No"},
        ),
    ],
)
async def test_waha_and_evolution_send_numbered_text(
    rig: Rig, key: str, path: str, expected: dict[str, Any]
) -> None:
    await rig.channel.send(action(key, "Confirm?", YES_NO))
    [req] = [r for r in rig.fake.requests if r.method == "POST"]
    assert (req.path, req.json) == (path, expected)


async def test_mock_outbox_shows_numbered_text(rig: Rig) -> None:
    await rig.channel.send(action(MOCK, "Confirm?", YES_NO))
    assert rig.channel.mock_outbox.items[-1]["text"] == "Confirm?\n\n1. Yes\n2. No"


async def test_attachment_then_choices(rig: Rig) -> None:
    """The words go with the choices; the picture goes first, without a caption."""
    pic = Attachment(url="https://x/y.jpg", mime="image/jpeg", name="y.jpg")
    await rig.channel.send(action(WAHA, "This one?", YES_NO, attachments=[pic]))
    sends = [r for r in rig.fake.requests if r.method == "POST"]
    assert [r.path for r in sends] == ["/api/sendImage", "/api/sendText"]
    assert "caption" not in sends[0].json or not sends[0].json["caption"]
    assert sends[1].json["text"] == "This one?\n\n1. Yes\n2. No"


# ------------------------------------------------------------------------------ taps back


def _only_message(parsed: list[Any]) -> InboundMessage:
    [msg] = parsed
    assert isinstance(msg, InboundMessage), msg
    return msg


@pytest.mark.parametrize(
    ("interactive", "expected"),
    [
        (
            {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}},
            {"id": "yes", "title": "Yes"},
        ),
        (
            {"type": "list_reply", "list_reply": {"id": "l", "title": "Large", "description": "x"}},
            {"id": "l", "title": "Large"},
        ),
    ],
)
def test_meta_tap_is_metadata_interactive(
    interactive: dict[str, Any], expected: dict[str, str]
) -> None:
    tap = {
        "from": "919876543210",
        "id": "wamid.TAP1",
        "timestamp": "1749416383",
        "type": "interactive",
        "interactive": interactive,
        "context": {"from": "15550783881", "id": "wamid.FAKE00000001"},
    }
    settings = CommsSettings(_env_file=None, provider="meta_cloud")  # type: ignore[call-arg]
    body = json.dumps(meta_webhook(messages=[tap])).encode()
    msg = _only_message(parse_webhook("meta_cloud", {}, body, settings))
    assert msg.text == expected["title"]
    assert msg.metadata["interactive"] == expected


@pytest.mark.parametrize(
    ("message", "message_type", "expected"),
    [
        (
            {"buttonsResponseMessage": {"selectedButtonId": "yes", "selectedDisplayText": "Yes"}},
            "buttonsResponseMessage",
            {"id": "yes", "title": "Yes"},
        ),
        (
            {
                "listResponseMessage": {
                    "title": "Large",
                    "singleSelectReply": {"selectedRowId": "l"},
                }
            },
            "listResponseMessage",
            {"id": "l", "title": "Large"},
        ),
    ],
)
def test_evolution_tap_is_metadata_interactive(
    message: dict[str, Any], message_type: str, expected: dict[str, str]
) -> None:
    settings = CommsSettings(_env_file=None, provider="evolution")  # type: ignore[call-arg]
    payload = evolution_message(message=message, message_type=message_type)
    msg = _only_message(parse_webhook("evolution", {}, json.dumps(payload).encode(), settings))
    assert (msg.text, msg.content_type) == (expected["title"], "text")
    assert msg.metadata["interactive"] == expected


async def test_the_echo_of_numbered_text_is_not_a_human_takeover(rig: Rig) -> None:
    """WAHA may echo our send (``fromMe``) before the send returns its id: the numbered text
    is what it echoes, and it is known as ours, not taken for a person on the phone."""
    from chatbridge.channels.base import InboundRequest
    from chatbridge.models import DeliveryReceipt
    from chatbridge.testing.fake_whatsapp import waha_message

    rig.settings = rig.settings.updated({"provider": "waha"})
    await rig.channel.send(action(WAHA, "Confirm?", YES_NO))
    echo = waha_message(
        "Confirm?\n\n1. Yes\n2. No", msg_id="3EB0UNKNOWN0001", from_me=True, engine="WEBJS"
    )
    [parsed] = await rig.channel.parse(
        InboundRequest(json.dumps(echo).encode(), path={"provider": "waha"})
    )
    assert isinstance(parsed, DeliveryReceipt)
    assert parsed.otherwise is None  # ours: never a human taking over
