"""WAHA's three engines (WEBJS, NOWEB, GOWS) fill a message differently; the parser reads all.

For a message we (or the operator's phone) sent, WEBJS puts the chat in ``to``, current NOWEB
in ``from`` with no ``to`` at all, GOWS in ``from`` with ``to: null``. The push name sits in
``_data.notifyName``, ``_data.pushName`` or ``_data.Info.PushName``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbridge.channels.whatsapp import parse_webhook
from chatbridge.channels.whatsapp.waha import sent_id
from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import BadInput
from chatbridge.models import DeliveryReceipt, Ignored, InboundMessage, OwnerSignal
from chatbridge.testing.fake_whatsapp import (
    WAHA_ENGINES,
    WahaEngine,
    create_fake_whatsapp,
    waha_message,
)

CHAT_KEY = "waha:default:919876543210@c.us"
engines = pytest.mark.parametrize("engine", WAHA_ENGINES)


def parse(payload: dict[str, Any], **kw: Any) -> Any:
    settings = CommsSettings(_env_file=None, **kw)  # type: ignore[call-arg]
    [result] = parse_webhook("waha", {}, json.dumps(payload).encode(), settings)
    return result


@engines
def test_a_customer_message(engine: WahaEngine) -> None:
    payload = waha_message("Is this in stock?", engine=engine)
    msg = parse(payload)
    assert isinstance(msg, InboundMessage)
    assert msg.channel_key == CHAT_KEY and msg.text == "Is this in stock?"
    assert msg.external_message_id == payload["payload"]["id"]
    assert msg.contact is not None
    assert (msg.contact.name, msg.contact.phone) == ("Asha", "+919876543210")


@engines
def test_an_operator_reply_from_the_phone_is_a_human_takeover(engine: WahaEngine) -> None:
    payload = waha_message(
        "I'll take this", msg_id="HUMAN1", event="message.any", from_me=True, engine=engine
    )
    parsed = parse(payload)
    # a cut-off send of ours with this text would take it as its receipt; else a human's
    assert isinstance(parsed, DeliveryReceipt)
    assert (parsed.channel_key, parsed.text) == (CHAT_KEY, "I'll take this")
    sig = parsed.otherwise
    assert isinstance(sig, OwnerSignal)
    assert (sig.owner, sig.channel_key, sig.text) == ("human", CHAT_KEY, "I'll take this")
    assert sig.external_message_id == "true_919876543210@c.us_HUMAN1"


@engines
async def test_the_echo_of_our_send_carries_the_id_the_send_returned(engine: WahaEngine) -> None:
    """The id WAHA answers a send with is the id its ``message.any`` echo carries, on every
    engine, so the bridge can tell its own message from the operator's. NOWEB and GOWS also
    say ``source: "api"`` (surely ours); WEBJS sends no source, so its echo may also be the
    operator's message (matched by id or text in the pipeline)."""
    app = create_fake_whatsapp(waha_engine=engine, waha_api_key=None)
    fake = app.state.fake
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://waha") as http:
        body = {"session": "default", "chatId": "919876543210@c.us", "text": "Echo: hi"}
        r = await http.post("/api/sendText", json=body)
    returned = sent_id(r.json(), "919876543210@c.us")
    echo = fake.waha_echo(fake.waha_sent[0])
    assert returned is not None and returned == echo["payload"]["id"]
    parsed = parse(echo)
    assert isinstance(parsed, DeliveryReceipt)
    assert (parsed.channel_key, parsed.text) == (CHAT_KEY, "Echo: hi")
    assert parsed.external_message_id == returned
    if engine == "WEBJS":
        assert isinstance(parsed.otherwise, OwnerSignal)
    else:
        assert parsed.otherwise is None


@engines
def test_a_group_message_names_its_member(engine: WahaEngine) -> None:
    payload = waha_message(
        "hi all", chat="120363025555@g.us", participant="919876543210@c.us", engine=engine
    )
    assert parse(payload) == Ignored("group_chat")
    msg = parse(payload, groups_enabled=True)
    assert isinstance(msg, InboundMessage)
    assert msg.channel_key == "waha:default:120363025555@g.us"
    assert msg.context["participant"] == "919876543210@c.us"
    assert msg.contact is not None and msg.contact.phone == "+919876543210"
    assert msg.contact.name == "Asha"


@pytest.mark.parametrize("engine", ["NOWEB", "GOWS"])
def test_a_hidden_user_is_keyed_by_the_phone_the_engine_gives(engine: WahaEngine) -> None:
    alt = "919876543210@s.whatsapp.net"
    payload = waha_message(chat="160159216382146@lid", remote_jid_alt=alt, engine=engine)
    msg = parse(payload)
    assert msg.channel_key == CHAT_KEY
    assert msg.context["lid"] == "160159216382146@lid"
    typed = waha_message(
        "ok", chat="160159216382146@lid", remote_jid_alt=alt, from_me=True, engine=engine
    )
    assert parse(typed).channel_key == CHAT_KEY
    assert parse(typed).otherwise.channel_key == CHAT_KEY


def test_older_noweb_and_ids_without_the_chat_still_parse() -> None:
    # older NOWEB: from = me, to = the chat
    legacy = waha_message("typed", event="message.any", from_me=True)
    legacy["payload"].update({"from": "15550001111@c.us", "to": "919876543210@c.us"})
    assert parse(legacy).channel_key == CHAT_KEY
    # an id that does not embed the chat: the chat comes from _data, whatever the engine
    for engine in WAHA_ENGINES:
        payload = waha_message("typed", from_me=True, event="message.any", engine=engine)
        payload["payload"]["id"] = "3EB0C0BD05DCA97A7C09CB"
        parsed = parse(payload)
        assert isinstance(parsed, DeliveryReceipt) and parsed.channel_key == CHAT_KEY, engine
        assert isinstance(parsed.otherwise, OwnerSignal), engine


def test_a_message_naming_no_chat_is_refused_with_the_reason() -> None:
    payload = waha_message(from_me=True, event="message.any")
    payload["payload"].update(id="3EB0", _data={})
    del payload["payload"]["from"]
    with pytest.raises(BadInput, match="payload names no chat"):
        parse(payload)


@given(
    engine=st.sampled_from(WAHA_ENGINES),
    chat=st.sampled_from(["919876543210@c.us", "160159216382146@lid", "120363025555@g.us"]),
    from_me=st.booleans(),
    source=st.sampled_from(["app", "api"]),
    event=st.sampled_from(["message", "message.any"]),
)
def test_every_engine_shape_parses_to_its_chat(
    engine: WahaEngine, chat: str, from_me: bool, source: str, event: str
) -> None:
    participant = "919811112222@c.us" if chat.endswith("@g.us") else None
    payload = waha_message(
        chat=chat, from_me=from_me, source=source, event=event, participant=participant,
        engine=engine,
    )  # fmt: skip
    result = parse(payload, groups_enabled=True)
    assert isinstance(result, DeliveryReceipt if from_me else InboundMessage)
    assert result.channel_key == f"waha:default:{chat}"
    assert result.external_message_id == payload["payload"]["id"]
    if isinstance(result, DeliveryReceipt):
        # surely ours only when the engine says it came through the API
        sure = source == "api" and engine != "WEBJS"
        assert (result.otherwise is None) == sure
        if result.otherwise is not None:
            assert result.otherwise.channel_key == result.channel_key
