"""The WhatsApp parsers on the contract's payload shapes (pure: bytes in, neutral models out)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatbridge.channels.whatsapp import parse_webhook
from chatbridge.channels.whatsapp.ids import ChatAddress, e164, jid_kind, to_c_us
from chatbridge.channels.whatsapp.signatures import (
    evolution_jwt,
    sign_meta,
    sign_waha,
    verify_jwt_hs256,
)
from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import BadInput, BadSignature, PermanentDelivery
from chatbridge.models import (
    DeliveryReceipt,
    Ignored,
    InboundMessage,
    OwnerSignal,
    StatusUpdate,
)
from chatbridge.testing.fake_whatsapp import (
    evolution_message,
    evolution_status,
    meta_status,
    meta_text,
    meta_webhook,
    waha_ack,
    waha_message,
)


def settings(**kw: Any) -> CommsSettings:
    return CommsSettings(_env_file=None, **kw)  # type: ignore[call-arg]


def parse(provider: str, payload: dict[str, Any], headers: dict[str, str] | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    return parse_webhook(provider, headers or {}, json.dumps(payload).encode(), settings(**kw))


def one(provider: str, payload: dict[str, Any], **kw: Any) -> Any:
    result = parse(provider, payload, **kw)
    assert len(result) == 1, result
    return result[0]


# ------------------------------------------------------------------ ids


def test_ids() -> None:
    assert to_c_us("919876543210:12@s.whatsapp.net") == "919876543210@c.us"
    assert jid_kind("120363025@g.us") == "group"
    assert jid_kind("status@broadcast") == "broadcast"
    assert jid_kind("1234@lid") == "lid"
    assert e164("919876543210") == "+919876543210"
    assert e164("(415) 555-2671", "US") == "+14155552671"
    assert e164("not a number") is None
    assert ChatAddress.parse("waha:default:91@c.us") == ChatAddress("waha", "default", "91@c.us")
    with pytest.raises(PermanentDelivery):
        ChatAddress.parse("3:42")


# ------------------------------------------------------------------ WAHA


def test_waha_text() -> None:
    msg = one("waha", waha_message())
    assert isinstance(msg, InboundMessage)
    assert msg.channel == "whatsapp" and msg.inbox_id == 1
    assert msg.channel_key == "waha:default:919876543210@c.us"
    assert msg.text == "Is this in stock?"
    assert msg.external_message_id == "false_919876543210@c.us_3EB0C0BD05DCA97A7C09CB"
    assert msg.contact is not None
    assert msg.contact.name == "Asha" and msg.contact.phone == "+919876543210"
    assert msg.context["provider"] == "waha" and msg.context["chat_id"] == "919876543210@c.us"


def test_waha_instance_inbox() -> None:
    msg = one("waha", waha_message(session="sales"), instance_inboxes={"sales": 7})
    assert msg.inbox_id == 7 and msg.channel_key.startswith("waha:sales:")


def test_waha_media() -> None:
    media = {"url": "http://waha/api/files/x.jpg", "mimetype": "image/jpeg", "filename": None}
    msg = one("waha", waha_message("look", media=media))
    assert msg.text == "look"
    assert [(a.url, a.mime) for a in msg.attachments] == [(media["url"], "image/jpeg")]


def test_waha_from_me_app_is_takeover_api_is_our_receipt() -> None:
    """A ``fromMe`` message is matched to a cut-off send of ours first (conversation, text);
    failing that, "app" means the operator took over and "api" is ignored as ours."""
    sig = one("waha", waha_message("I'll handle it", event="message.any", from_me=True))
    assert isinstance(sig, DeliveryReceipt) and sig.idempotency_key is None
    assert sig.channel_key == "waha:default:919876543210@c.us" and sig.text == "I'll handle it"
    assert sig.external_message_id == "true_919876543210@c.us_3EB0C0BD05DCA97A7C09CB"
    human = sig.otherwise
    assert isinstance(human, OwnerSignal) and human.owner == "human"
    assert human.channel_key == sig.channel_key and human.text == "I'll handle it"
    own = one("waha", waha_message("bot", event="message.any", from_me=True, source="api"))
    assert isinstance(own, DeliveryReceipt) and own.otherwise is None
    assert (own.channel_key, own.text) == ("waha:default:919876543210@c.us", "bot")


def test_waha_group_and_broadcast_ignored_unless_enabled() -> None:
    group = waha_message(chat="120363025555@g.us", participant="919876543210@c.us")
    assert isinstance(one("waha", group), Ignored)
    allowed = one("waha", group, groups_enabled=True)
    assert isinstance(allowed, InboundMessage) and allowed.context["is_group"] is True
    assert allowed.contact is not None and allowed.contact.phone == "+919876543210"
    status = one("waha", waha_message(chat="status@broadcast"))
    assert isinstance(status, Ignored) and status.reason == "status_broadcast"


def test_waha_lid_uses_phone_jid_and_keeps_lid() -> None:
    payload = waha_message(chat="160159216382146@lid", remote_jid_alt="919876543210@s.whatsapp.net")
    msg = one("waha", payload)
    assert msg.channel_key == "waha:default:919876543210@c.us"
    kinds = {i["kind"]: i["value"] for i in msg.contact.metadata["identities"]}
    assert kinds == {
        "phone": "+919876543210",
        "jid": "919876543210@c.us",
        "lid": "160159216382146@lid",
    }


def test_waha_ack() -> None:
    up = one("waha", waha_ack("true_919876543210@c.us_ABC", 3))
    assert isinstance(up, StatusUpdate) and (up.external_message_id, up.status) == (
        "true_919876543210@c.us_ABC",
        "read",
    )
    assert one("waha", waha_ack("x", -1)).status == "failed"
    assert isinstance(one("waha", waha_ack("x", 0)), Ignored)


def test_waha_hmac() -> None:
    body = json.dumps(waha_message()).encode()
    s = settings(waha_hmac_key="k3y")
    assert parse_webhook("waha", sign_waha("k3y", body), body, s)
    with pytest.raises(BadSignature):
        parse_webhook("waha", sign_waha("other", body), body, s)
    with pytest.raises(BadSignature):
        parse_webhook("waha", {}, body, s)


def test_bad_json() -> None:
    with pytest.raises(BadInput) as err:
        parse_webhook("waha", {}, b"[1,", settings())
    assert err.value.code == "invalid_json"


# ------------------------------------------------------------------ Evolution


def test_evolution_text() -> None:
    msg = one("evolution", evolution_message())
    assert isinstance(msg, InboundMessage)
    assert msg.channel_key == "evolution:shop:919876543210@s.whatsapp.net"
    assert msg.external_message_id == "3A554E20ECABF3D45BB2"
    assert msg.contact is not None and msg.contact.name == "Asha"
    assert msg.contact.external_id == "+919876543210"


def test_evolution_extended_text_and_media() -> None:
    ext = evolution_message(message={"extendedTextMessage": {"text": "see https://x"}})
    assert one("evolution", ext).text == "see https://x"
    image = {
        "imageMessage": {
            "url": "https://mmg.whatsapp.net/o1/v/x.enc",
            "mimetype": "image/jpeg",
            "caption": "this one",
        },
        "mediaUrl": "https://s3.example.com/x.jpg",
    }
    msg = one("evolution", evolution_message(message=image, message_type="imageMessage"))
    assert msg.text == "this one" and msg.content_type == "media"
    assert [(a.url, a.mime) for a in msg.attachments] == [
        ("https://s3.example.com/x.jpg", "image/jpeg")
    ]


def test_evolution_from_me_is_takeover_send_message_is_our_receipt() -> None:
    key = "evolution:shop:919876543210@s.whatsapp.net"
    sig = one("evolution", evolution_message("on it", msg_id="ME1", from_me=True))
    assert isinstance(sig, DeliveryReceipt) and (sig.channel_key, sig.text) == (key, "on it")
    human = sig.otherwise
    assert isinstance(human, OwnerSignal) and human.owner == "human" and human.text == "on it"
    own = one(
        "evolution",
        evolution_message("Echo: hi", msg_id="BAE5", event="send.message", from_me=True),
    )
    assert isinstance(own, DeliveryReceipt) and own.otherwise is None
    assert (own.channel_key, own.text, own.external_message_id) == (key, "Echo: hi", "BAE5")
    # a @lid chat is the phone's conversation, as for the customer's own messages
    lid = evolution_message(
        "Echo: hi",
        remote_jid="160159216382146@lid",
        remote_jid_alt="919876543210@s.whatsapp.net",
        from_me=True,
        event="SEND_MESSAGE",
    )
    assert one("evolution", lid).channel_key == key


def test_evolution_lid_and_group() -> None:
    lid = evolution_message(
        remote_jid="160159216382146@lid", remote_jid_alt="919876543210@s.whatsapp.net"
    )
    msg = one("evolution", lid)
    assert msg.channel_key == "evolution:shop:919876543210@s.whatsapp.net"
    assert msg.context["lid"] == "160159216382146@lid"
    group = evolution_message(remote_jid="1203630@g.us", participant="919876543210@s.whatsapp.net")
    assert one("evolution", group).reason == "group_chat"


def test_evolution_status() -> None:
    up = one("evolution", evolution_status("BAE5X", "DELIVERY_ACK"))
    assert isinstance(up, StatusUpdate) and (up.external_message_id, up.status) == (
        "BAE5X",
        "delivered",
    )
    assert one("evolution", evolution_status("BAE5X", "PENDING")).reason.startswith("status:")


def test_evolution_auth() -> None:
    body = json.dumps(evolution_message()).encode()
    static = settings(evolution_webhook_header_value="s3cret")
    assert parse_webhook("evolution", {"x-webhook-secret": "s3cret"}, body, static)
    with pytest.raises(BadSignature):
        parse_webhook("evolution", {"X-Webhook-Secret": "nope"}, body, static)
    jwt = settings(evolution_jwt_key="jwt-key")
    token = evolution_jwt("jwt-key")
    assert parse_webhook("evolution", {"Authorization": f"Bearer {token}"}, body, jwt)
    for bad in (evolution_jwt("other"), evolution_jwt("jwt-key", now=1_000_000), "a.b.c"):
        with pytest.raises(BadSignature):
            parse_webhook("evolution", {"Authorization": f"Bearer {bad}"}, body, jwt)
    assert verify_jwt_hs256("jwt-key", token)["action"] == "webhook"


# ------------------------------------------------------------------ Meta


def test_meta_several_messages_and_statuses() -> None:
    payload = meta_webhook(
        messages=[meta_text("one", wamid="wamid.1"), meta_text("two", wamid="wamid.2")],
        statuses=[meta_status("wamid.OUT", "delivered")],
    )
    first, second, status = parse("meta_cloud", payload)
    assert isinstance(first, InboundMessage) and isinstance(second, InboundMessage)
    assert (first.text, second.text) == ("one", "two")
    assert first.channel_key == "meta_cloud:106540352242922:919876543210"
    assert first.contact is not None and first.contact.name == "Asha"
    assert isinstance(status, StatusUpdate) and status.status == "delivered"


def test_meta_status_names_the_conversation_of_its_recipient() -> None:
    """A status names its recipient; it is keyed as that customer's messages are, so a status
    for a wamid we never recorded can be matched to the conversation's cut-off send."""
    [msg] = parse("meta_cloud", meta_webhook(messages=[meta_text()]))
    [status] = parse("meta_cloud", meta_webhook(statuses=[meta_status("wamid.OUT", "sent")]))
    assert isinstance(status, StatusUpdate) and status.channel_key == msg.channel_key
    bsuid = meta_status("wamid.B", "sent", recipient="")
    bsuid["recipient_user_id"] = "US.13491208655302741918"
    [up] = parse("meta_cloud", meta_webhook(statuses=[bsuid]))
    assert up.channel_key == "meta_cloud:106540352242922:US.13491208655302741918"
    group = meta_status("wamid.G", "sent", recipient="120363025555")
    group["recipient_type"] = "group"
    [up] = parse("meta_cloud", meta_webhook(statuses=[group]))
    assert up.channel_key == "meta_cloud:106540352242922:120363025555@g.us"


def test_meta_failed_status_has_reason() -> None:
    up = one("meta_cloud", meta_webhook(statuses=[meta_status("wamid.OUT", "failed")]))
    assert up.status == "failed" and "131047" in up.error and "24 hours" in up.error


def test_meta_media_and_bsuid() -> None:
    image = {
        "from": "919876543210",
        "id": "wamid.IMG",
        "timestamp": "1749416383",
        "type": "image",
        "image": {"caption": "this", "mime_type": "image/jpeg", "sha256": "x", "id": "1234"},
    }
    msg = one("meta_cloud", meta_webhook(messages=[image]))
    assert msg.text == "this"
    assert msg.attachments[0].url == "https://graph.facebook.com/v23.0/1234"
    username_only = {
        "user_id": "US.13491208655302741918",
        "id": "wamid.U",
        "timestamp": "1749416383",
        "type": "text",
        "text": {"body": "hi"},
    }
    contacts = [{"profile": {"name": "Bo"}, "user_id": "US.13491208655302741918"}]
    msg = one("meta_cloud", meta_webhook(messages=[username_only], contacts=contacts))
    assert msg.channel_key.endswith(":US.13491208655302741918")
    assert msg.contact.external_id == "US.13491208655302741918" and msg.contact.name == "Bo"


def test_meta_signature() -> None:
    body = json.dumps(meta_webhook(messages=[meta_text()])).encode()
    s = settings(meta_app_secret="app-secret")
    assert parse_webhook("meta_cloud", sign_meta("app-secret", body), body, s)
    with pytest.raises(BadSignature):
        parse_webhook("meta_cloud", {"X-Hub-Signature-256": "sha256=00"}, body, s)
    with pytest.raises(BadSignature):
        parse_webhook("meta_cloud", {}, body, s)


def test_mock() -> None:
    msg = one("mock", {"from": "+15550001111", "name": "Asha", "text": "hi", "id": "m1"})
    assert msg.channel_key == "mock:mock:15550001111@c.us"
    assert msg.contact.phone == "+15550001111"
    sig = one("mock", {"from": "+15550001111", "text": "human", "id": "m2", "fromMe": True})
    assert isinstance(sig, OwnerSignal)
