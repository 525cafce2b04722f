"""parse_webhook: every row of the Chatwoot mapping, signatures, and arbitrary input."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from chatbridge.channels.chatwoot import parse_webhook
from chatbridge.channels.signatures import sign_chatwoot, verify_chatwoot
from chatbridge.errors import BadInput, BadSignature
from chatbridge.models import (
    Attachment,
    ContactInfo,
    ConversationEvent,
    DeliveryReceipt,
    Ignored,
    InboundMessage,
    OwnerSignal,
)

SECRET = "whsec-test"
DELIVERY = "3f1c9b8e-6d47-4b0e-9a55-2b7f0c1d9e11"


def conversation(status: str = "pending", **extra: Any) -> dict[str, Any]:
    """The conversation object of contract §1 (display id 42, inbox 3, account 1)."""
    data: dict[str, Any] = {
        "additional_attributes": {"browser": {"browser_name": "Firefox"}},
        "can_reply": True,
        "channel": "Channel::WebWidget",
        "contact_inbox": {
            "id": 7,
            "contact_id": 12,
            "inbox_id": 3,
            "source_id": "9c1e5d1a",
            "hmac_verified": False,
            "pubsub_token": "secret-pubsub",
        },
        "id": 42,
        "inbox_id": 3,
        "messages": [
            {
                "id": 987,
                "content": "Where is my order?",
                "message_type": 0,
                "created_at": 1781691200,
            }
        ],
        "labels": [],
        "meta": {
            "sender": {
                "id": 12,
                "name": "Ana",
                "email": "ana@example.com",
                "phone_number": "+351911111111",
                "identifier": None,
                "custom_attributes": {},
                "type": "contact",
            },
            "assignee": None,
            "assignee_type": None,
            "team": None,
            "hmac_verified": False,
        },
        "status": status,
        "custom_attributes": {},
        "priority": None,
        "unread_count": 1,
        "waiting_since": 1781691200,
        "created_at": 1781691100,
        "timestamp": 1781691200,
        "account": {"id": 1, "name": "Acme"},
    }
    data.update(extra)
    return data


def contact_sender() -> dict[str, Any]:
    return {
        "account": {"id": 1, "name": "Acme"},
        "additional_attributes": {},
        "avatar": "",
        "custom_attributes": {"plan": "gold"},
        "email": "ana@example.com",
        "id": 12,
        "identifier": "cust-12",
        "name": "Ana",
        "phone_number": "+351911111111",
        "thumbnail": "",
        "blocked": False,
    }


def message_event(**overrides: Any) -> dict[str, Any]:
    """A realistic ``message_created`` from a contact (contract §1)."""
    payload: dict[str, Any] = {
        "account": {"id": 1, "name": "Acme"},
        "additional_attributes": {},
        "content_attributes": {},
        "content_type": "text",
        "content": "Where is my order?",
        "conversation": conversation(),
        "created_at": "2026-06-17T10:13:20.000Z",
        "id": 987,
        "inbox": {"id": 3, "name": "Website"},
        "message_type": "incoming",
        "private": False,
        "sender": contact_sender(),
        "source_id": None,
        "event": "message_created",
    }
    payload.update(overrides)
    return payload


def status_event(event: str, *, previous: str | None, current: str) -> dict[str, Any]:
    payload = {**conversation(status=current), "event": event}
    if previous is not None:
        payload["changed_attributes"] = [
            {"status": {"previous_value": previous, "current_value": current}}
        ]
    return payload


def webwidget_event(with_conversation: bool = True) -> dict[str, Any]:
    return {
        "id": 7,
        "contact": contact_sender(),
        "inbox": {"id": 3, "name": "Website"},
        "account": {"id": 1, "name": "Acme"},
        "current_conversation": conversation(status="open") if with_conversation else None,
        "source_id": "9c1e5d1a",
        "event": "webwidget_triggered",
        "event_info": {"widget_language": "pt", "browser_language": "pt-PT", "browser": {}},
    }


def parse(payload: dict[str, Any], **kwargs: Any) -> Any:
    headers = {"X-Chatwoot-Delivery": DELIVERY}
    return parse_webhook(headers, json.dumps(payload).encode(), secret=None, **kwargs)


# --- message_created ----------------------------------------------------------------------


def test_incoming_message_becomes_inbound_message() -> None:
    result = parse(message_event())

    assert result == InboundMessage(
        channel="chatwoot",
        inbox_id=3,
        channel_key="1:42",
        text="Where is my order?",
        external_message_id="1:987",
        delivery_id=DELIVERY,
        content_type="text",
        attachments=[],
        contact=ContactInfo(
            external_id="12",
            name="Ana",
            email="ana@example.com",
            phone="+351911111111",
            metadata={"identifier": "cust-12", "custom_attributes": {"plan": "gold"}},
        ),
        external_status="pending",
        context={
            "channel": "Channel::WebWidget",
            "created_at": "2026-06-17T10:13:20.000Z",
            "external_conversation_id": "42",
            "additional_attributes": {"browser": {"browser_name": "Firefox"}},
        },
        metadata={"account_id": 1, "display_id": 42, "content_type": "text", "source_id": None},
        received_at=result.received_at,
    )


def test_incoming_with_attachments_and_no_content() -> None:
    payload = message_event(
        content=None,
        attachments=[
            {
                "id": 5,
                "message_id": 987,
                "file_type": "image",
                "account_id": 1,
                "extension": None,
                "content_type": "image/png",
                "data_url": "https://cw.example.com/rails/active_storage/photo.png",
                "thumb_url": "https://cw.example.com/thumb.png",
                "file_size": 2048,
            },
            {"id": 6, "message_id": 987, "file_type": "file", "data_url": "https://x/a.pdf"},
            {"id": 7, "message_id": 987, "file_type": "location", "data_url": None},
        ],
    )
    result = parse(payload)

    assert isinstance(result, InboundMessage)
    assert result.text == ""
    assert result.attachments == [
        Attachment(
            url="https://cw.example.com/rails/active_storage/photo.png", mime="image/png", size=2048
        ),
        Attachment(url="https://x/a.pdf", mime="file", size=None),
    ]


def test_inbox_falls_back_to_conversation_inbox_id() -> None:
    payload = message_event()
    del payload["inbox"]
    result = parse(payload)
    assert isinstance(result, InboundMessage)
    assert result.inbox_id == 3


def test_account_from_conversation_then_default() -> None:
    payload = message_event()
    del payload["account"]
    payload["conversation"]["account"] = {"id": 9, "name": "Other"}
    result = parse(payload)
    assert isinstance(result, InboundMessage)
    assert (result.channel_key, result.external_message_id) == ("9:42", "9:987")

    # Chatwoot before 4.14.2 sends no conversation.account.
    del payload["conversation"]["account"]
    result = parse(payload, default_account_id=5)
    assert isinstance(result, InboundMessage)
    assert result.channel_key == "5:42"
    assert result.metadata["account_id"] == 5

    with pytest.raises(BadInput) as info:
        parse(payload)
    assert info.value.code == "invalid_payload"
    assert "account.id" in info.value.message


def test_human_agent_reply_is_owner_signal() -> None:
    payload = message_event(
        message_type="outgoing",
        content="Hi Ana, I'm Sam from support.",
        id=990,
        sender={"id": 4, "name": "Sam", "email": "sam@acme.com", "type": "user"},
    )
    assert parse(payload) == OwnerSignal(
        channel="chatwoot",
        inbox_id=3,
        channel_key="1:42",
        reason="human_reply",
        owner="human",
        external_status="pending",
        text="Hi Ana, I'm Sam from support.",
        external_message_id="1:990",
        delivery_id=DELIVERY,
        author_name="Sam",
    )


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"message_type": "outgoing", "sender": {"id": 2, "name": "Bot", "type": "agent_bot"}},
            "own_reply",
        ),
        ({"message_type": "outgoing", "sender": None}, "outgoing"),
        ({"message_type": "outgoing", "sender": {"id": 2, "name": "?", "type": "x"}}, "outgoing"),
        ({"private": True}, "private_note"),
        (
            {
                "message_type": "outgoing",
                "private": True,
                "sender": {"id": 4, "name": "Sam", "type": "user"},
            },
            "private_note",
        ),
        ({"message_type": "template", "sender": None}, "template"),
        ({"event": "message_updated"}, "message_updated"),
    ],
)
def test_loop_safety_drops(overrides: dict[str, Any], reason: str) -> None:
    assert parse(message_event(**overrides)) == Ignored(reason, delivery_id=DELIVERY)


@pytest.mark.parametrize(
    "sender",
    [
        {"id": 2, "name": "Bridge Bot", "type": "agent_bot"},
        {"id": 7, "name": "Bridge", "type": "user"},
    ],
)
def test_our_private_note_echo_is_its_receipt_never_an_owner_signal(sender: dict[str, Any]) -> None:
    """A note we posted (bot or user token) comes back private, outgoing, with our
    ``source_id``: a receipt with nothing to fall back on — a human's note does not take the
    conversation over, so neither may ours if the key turned out not to be ours."""
    echo = message_event(
        message_type="outgoing", private=True, sender=sender, source_id="d_42", id=991
    )
    assert parse(echo) == DeliveryReceipt(
        channel="chatwoot", idempotency_key="d_42", external_message_id="991", delivery_id=DELIVERY
    )


@pytest.mark.parametrize(
    "overrides",
    [
        # an operator's note from the dashboard: no source_id
        {"message_type": "outgoing", "sender": {"id": 4, "name": "Sam", "type": "user"}},
        {"message_type": "outgoing", "sender": {"id": 4, "type": "user"}, "source_id": ""},
        # a customer's message marked private, whatever source_id it has
        {"source_id": "d_42"},
        {"message_type": "template", "sender": None, "source_id": "d_42"},
        # malformed senders or ids on a note are dropped, never refused (a 4xx opens a
        # pending conversation in bot mode)
        {"message_type": "outgoing", "sender": "Sam", "source_id": "d_42"},
        {"message_type": "outgoing", "sender": {"type": "agent_bot"}, "source_id": 5},
        {"message_type": "outgoing", "sender": {"type": "agent_bot"}, "source_id": "x" * 101},
    ],
)
def test_other_private_notes_are_dropped_as_before(overrides: dict[str, Any]) -> None:
    assert parse(message_event(private=True, **overrides)) == Ignored(
        "private_note", delivery_id=DELIVERY
    )


def test_a_note_echo_without_a_numeric_id_is_still_a_receipt() -> None:
    echo = message_event(
        message_type="outgoing",
        private=True,
        sender={"type": "agent_bot"},
        source_id="d_42",
        id="abc",
    )
    assert parse(echo) == DeliveryReceipt(
        channel="chatwoot", idempotency_key="d_42", external_message_id=None, delivery_id=DELIVERY
    )


# --- conversation events --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "previous", "current"),
    [
        ("conversation_status_changed", "pending", "open"),
        ("conversation_updated", "open", "resolved"),
        ("conversation_opened", None, "open"),
        ("conversation_resolved", None, "resolved"),
    ],
)
def test_status_events_become_status_signals(
    event: str, previous: str | None, current: str
) -> None:
    assert parse(status_event(event, previous=previous, current=current)) == OwnerSignal(
        channel="chatwoot",
        inbox_id=3,
        channel_key="1:42",
        reason="status_changed",
        owner=None,
        external_status=current,
        previous_status=previous,
        delivery_id=DELIVERY,
    )


def test_conversation_updated_without_status_change_is_ignored() -> None:
    payload = {
        **conversation(),
        "event": "conversation_updated",
        "changed_attributes": [{"labels": {"previous_value": [], "current_value": ["vip"]}}],
    }
    assert parse(payload) == Ignored("no_status_change", delivery_id=DELIVERY)
    del payload["changed_attributes"]
    assert parse(payload) == Ignored("no_status_change", delivery_id=DELIVERY)


def test_conversation_created_is_conversation_event() -> None:
    payload = {**conversation(status="pending"), "event": "conversation_created"}
    assert parse(payload) == ConversationEvent(
        channel="chatwoot",
        inbox_id=3,
        event="conversation_created",
        channel_key="1:42",
        contact=ContactInfo(
            external_id="12", name="Ana", email="ana@example.com", phone="+351911111111"
        ),
        external_status="pending",
        data={"status": "pending"},
        delivery_id=DELIVERY,
    )


def test_webwidget_triggered_with_and_without_conversation() -> None:
    result = parse(webwidget_event())
    assert isinstance(result, ConversationEvent)
    assert (result.event, result.inbox_id, result.channel_key) == ("webwidget_triggered", 3, "1:42")
    assert result.external_status == "open"
    assert result.contact is not None and result.contact.external_id == "12"
    assert result.data == {"widget_language": "pt", "browser_language": "pt-PT", "browser": {}}
    assert result.delivery_id == DELIVERY

    result = parse(webwidget_event(with_conversation=False))
    assert isinstance(result, ConversationEvent)
    assert result.channel_key is None
    assert result.external_status is None


@pytest.mark.parametrize(
    "event", ["contact_created", "conversation_typing_on", "inbox_updated", "something_new"]
)
def test_other_events_are_ignored(event: str) -> None:
    assert parse({"event": event, "id": 1}) == Ignored(
        f"event_not_handled:{event}", delivery_id=DELIVERY
    )


@pytest.mark.parametrize(
    "payload",
    [
        message_event(),
        message_event(private=True),
        status_event("conversation_status_changed", previous="pending", current="open"),
        {**conversation(), "event": "conversation_created"},
        webwidget_event(),
        {"event": "contact_updated"},
    ],
)
def test_delivery_id_header_is_read_case_insensitively(payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    for headers in (
        {"x-chatwoot-delivery": "abc"},
        {"X-CHATWOOT-DELIVERY": "abc"},
        Headers({"X-Chatwoot-Delivery": "abc"}),
    ):
        assert parse_webhook(headers, body, secret=None).delivery_id == "abc"
    assert parse_webhook({}, body, secret=None).delivery_id is None


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"not json", b"\xff\xfe\x00", b"[1, 2]", b'"text"', b"42"])
def test_invalid_json(body: bytes) -> None:
    with pytest.raises(BadInput) as info:
        parse_webhook({}, body, secret=None)
    assert info.value.code == "invalid_json"
    assert info.value.status_code == 400


def _without(payload: dict[str, Any], *path: str) -> dict[str, Any]:
    result = copy.deepcopy(payload)
    target = result
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return result


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"id": 1}, "event must be a string"),
        ({"event": 5}, "event must be a string"),
        (message_event(conversation={**conversation(), "id": "42"}), "conversation.id must be an"),
        (message_event(conversation={**conversation(), "id": True}), "conversation.id must be an"),
        (_without(message_event(), "conversation"), "conversation must be an object"),
        (message_event(conversation=[1]), "conversation must be an object"),
        (_without(message_event(), "id"), "id must be an integer"),
        (message_event(message_type=0), "message_type must be a string"),
        (_without(message_event(), "message_type"), "message_type must be a string"),
        (message_event(private="no"), "private must be a boolean"),
        (message_event(content=["hi"]), "content must be a string"),
        (message_event(sender="Ana"), "sender must be an object"),
        (message_event(sender={**contact_sender(), "id": "12"}), "sender.id must be an integer"),
        (message_event(attachments={"x": 1}), "attachments must be a list"),
        (message_event(attachments=[{"data_url": 5}]), "attachments[0].data_url must be a string"),
        (message_event(inbox={"id": "3"}), "inbox.id must be an integer"),
        (message_event(account={"id": "1"}), "account.id must be an integer"),
        (
            {**conversation(), "event": "conversation_status_changed", "changed_attributes": 3},
            "changed_attributes must be a list",
        ),
        (
            _without({**conversation(), "event": "conversation_created"}, "inbox_id"),
            "conversation.inbox_id must be an integer",
        ),
        (_without(webwidget_event(), "inbox"), "inbox must be an object"),
    ],
)
def test_invalid_payload_names_the_field(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput) as info:
        parse(payload)
    assert info.value.code == "invalid_payload"
    assert message in info.value.message


def test_dropped_messages_need_no_conversation() -> None:
    """A bot's own reply is dropped even when the fields a turn would need are missing."""
    payload = _without(
        message_event(message_type="outgoing", sender={"id": 1, "type": "agent_bot"}),
        "conversation",
    )
    assert parse(payload) == Ignored("own_reply", delivery_id=DELIVERY)


# --- signatures --------------------------------------------------------------------------------


def test_sign_chatwoot_matches_the_contract_formula() -> None:
    body = b'{"event":"message_created"}'
    headers = sign_chatwoot(SECRET, body, 1781691200)
    expected = hmac.new(SECRET.encode(), b"1781691200." + body, hashlib.sha256).hexdigest()
    assert headers == {
        "X-Chatwoot-Timestamp": "1781691200",
        "X-Chatwoot-Signature": f"sha256={expected}",
    }


def _signed(payload: dict[str, Any], secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    headers = {"X-Chatwoot-Delivery": DELIVERY, **sign_chatwoot(secret, body, 1781691200)}
    return headers, body


def test_good_signature_is_accepted() -> None:
    headers, body = _signed(message_event())
    lower = Headers({k.lower(): v for k, v in headers.items()})
    assert isinstance(parse_webhook(headers, body, secret=SECRET), InboundMessage)
    assert isinstance(parse_webhook(lower, body, secret=SECRET), InboundMessage)


def test_uppercase_hex_signature_is_accepted() -> None:
    headers, body = _signed(message_event())
    headers["X-Chatwoot-Signature"] = "sha256=" + headers["X-Chatwoot-Signature"][7:].upper()
    verify_chatwoot(SECRET, body, headers)


def _tampered(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    return headers, body.replace(b"Where is my order?", b"Refund me everything")


def _wrong_secret(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    return _signed(json.loads(body), secret="another-secret")


def _other_timestamp(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    return {**headers, "X-Chatwoot-Timestamp": "1781691201"}, body


def _drop(name: str) -> Any:
    def mutate(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        return {k: v for k, v in headers.items() if k != name}, body

    return mutate


def _set(name: str, value: str) -> Any:
    def mutate(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        return {**headers, name: value}, body

    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        _tampered,
        _wrong_secret,
        _other_timestamp,
        _drop("X-Chatwoot-Signature"),
        _drop("X-Chatwoot-Timestamp"),
        _set("X-Chatwoot-Signature", "sha1=abc"),
        _set("X-Chatwoot-Signature", "sha256=" + "g" * 64),
        _set("X-Chatwoot-Signature", "sha256=" + "a" * 63),
        _set("X-Chatwoot-Signature", "sha256=é" + "a" * 63),
        _set("X-Chatwoot-Timestamp", "yesterday"),
        _set("X-Chatwoot-Timestamp", "-5"),
        _set("X-Chatwoot-Timestamp", "١٧٨١٦٩١٢٠٠"),
    ],
    ids=lambda f: f.__name__,
)
def test_bad_or_missing_signature_is_refused(mutate: Any) -> None:
    headers, body = mutate(*_signed(message_event()))
    with pytest.raises(BadSignature) as info:
        parse_webhook(headers, body, secret=SECRET)
    assert info.value.status_code == 401
    assert info.value.code == "bad_signature"


def test_signature_is_checked_before_the_body_is_parsed() -> None:
    with pytest.raises(BadSignature):
        parse_webhook({}, b"not json", secret=SECRET)


def test_unsigned_webhook_is_accepted_only_without_secret() -> None:
    body = json.dumps(message_event()).encode()
    assert isinstance(parse_webhook({}, body, secret=None), InboundMessage)
    with pytest.raises(BadSignature):
        parse_webhook({}, body, secret=SECRET)


def test_max_age_window() -> None:
    headers, body = _signed(message_event())
    verify_chatwoot(SECRET, body, headers, max_age=300, now=1781691200 + 299)
    with pytest.raises(BadSignature):
        verify_chatwoot(SECRET, body, headers, max_age=300, now=1781691200 + 301)


# --- property: nothing but BadInput escapes ----------------------------------------------------

_EVENTS = [
    "message_created",
    "message_updated",
    "conversation_created",
    "conversation_updated",
    "conversation_status_changed",
    "conversation_opened",
    "conversation_resolved",
    "webwidget_triggered",
    "contact_created",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["incoming", "outgoing", "template", "user", "agent_bot", "pending"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "event",
                    "account",
                    "inbox",
                    "inbox_id",
                    "conversation",
                    "sender",
                    "type",
                    "message_type",
                    "private",
                    "content",
                    "status",
                    "attachments",
                    "data_url",
                    "changed_attributes",
                    "previous_value",
                    "current_value",
                    "meta",
                    "current_conversation",
                    "contact",
                    "event_info",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


def _accepts(headers: dict[str, str], body: bytes, secret: str | None) -> None:
    try:
        parse_webhook(headers, body, secret=secret)
    except BadInput:
        pass


@given(body=st.binary(max_size=2000), secret=st.none() | st.just(SECRET))
def test_arbitrary_bytes_raise_only_bad_input(body: bytes, secret: str | None) -> None:
    _accepts({}, body, secret)


@given(
    payload=st.dictionaries(st.text(max_size=10), json_values, max_size=8),
    event=st.sampled_from(_EVENTS),
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_json_raises_only_bad_input(payload: dict[str, Any], event: str) -> None:
    payload["event"] = event
    _accepts({}, json.dumps(payload).encode(), None)


_REALISTIC = [
    message_event(),
    message_event(message_type="outgoing", sender={"id": 4, "name": "Sam", "type": "user"}),
    status_event("conversation_status_changed", previous="pending", current="open"),
    {**conversation(), "event": "conversation_created"},
    webwidget_event(),
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((*prefix, key))
            found.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.append((*prefix, index))
            found.extend(_paths(child, (*prefix, index)))
    return found


@st.composite
def mutated_payloads(draw: st.DrawFn) -> dict[str, Any]:
    payload: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(_REALISTIC)))
    paths = _paths(payload)
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4)):
        target: Any = payload
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced a parent
    return payload


@given(payload=mutated_payloads(), delivery=st.text(max_size=40))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_mutated_realistic_payloads_raise_only_bad_input(
    payload: dict[str, Any], delivery: str
) -> None:
    _accepts({"X-Chatwoot-Delivery": delivery}, json.dumps(payload).encode(), None)


def test_deeply_nested_json_is_bad_input_not_recursion_error() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(BadInput):
        parse_webhook({}, body, secret=None)
    huge_int = b'{"event": "message_created", "id": ' + b"9" * 5000 + b"}"
    with pytest.raises(BadInput):
        parse_webhook({}, huge_int, secret=None)
