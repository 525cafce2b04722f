"""The generic ``http`` channel without a bridge: signatures, the body parser, and sends to a
real callback receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chatbridge.channels.base import Channel, ChannelContext, InboundRequest
from chatbridge.channels.http import (
    HttpChannel,
    HttpInbox,
    HttpSettings,
    build,
    callback_body,
    parse_payload,
    sign,
    verify,
)
from chatbridge.channels.http_receiver import CallbackReceiver
from chatbridge.channels.registry import channel_settings
from chatbridge.config import Settings
from chatbridge.errors import BadInput, BadSignature, PermanentDelivery, RetryableDelivery
from chatbridge.models import (
    Attachment,
    ConversationEvent,
    ConversationRef,
    Ignored,
    InboundMessage,
    OutboundAction,
    OwnerSignal,
)
from chatbridge.testing.servers import serve_app
from tests.e2e.drain import within

SECRET = "an-inbox-secret-0123456789"
OTHER = "another-secret-9876543210"
NOW = 1_700_000_000


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def message(**fields: Any) -> dict[str, Any]:
    return {"type": "message", "conversation_id": "c1", "message_id": "m1", "text": "hi", **fields}


def request(
    payload: dict[str, Any] | bytes,
    *,
    inbox: str = "7",
    secret: str = SECRET,
    stamp: float = NOW,
    now: float = NOW,
) -> InboundRequest:
    body = payload if isinstance(payload, bytes) else dumps(payload)
    headers = {k.lower(): v for k, v in sign(secret, body, stamp).items()}
    return InboundRequest(body=body, headers=headers, path={"inbox": inbox}, received_at=now)


def channel(url: str = "http://127.0.0.1:9/cb", **kwargs: Any) -> HttpChannel:
    return HttpChannel({7: HttpInbox(secret=SECRET, callback_url=url)}, **kwargs)


def action(kind: str = "message", **fields: Any) -> OutboundAction:
    conversation = ConversationRef(id="conv-1", channel="http", channel_key="7:c1", inbox_id=7)
    fields.setdefault("idempotency_key", "d-1")
    return OutboundAction(kind, conversation, **fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- signatures


@given(
    signer=st.sampled_from([SECRET, OTHER]),
    checker=st.sampled_from([SECRET, OTHER]),
    body=st.binary(max_size=300),
    stamp=st.integers(min_value=0, max_value=2**40),
)
def test_a_signature_is_the_documented_hmac_and_verifies_with_its_secret_alone(
    signer: str, checker: str, body: bytes, stamp: int
) -> None:
    headers = sign(signer, body, stamp)
    formula = hmac.new(signer.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    assert headers["X-Chatbridge-Signature"] == f"sha256={formula.hexdigest()}"
    assert headers["X-Chatbridge-Timestamp"] == str(stamp)
    args = (checker, body, headers["X-Chatbridge-Timestamp"], headers["X-Chatbridge-Signature"])
    if signer == checker:
        verify(*args, max_age=None)
    else:
        with pytest.raises(BadSignature, match="does not match"):
            verify(*args, max_age=None)


@given(
    body=st.binary(min_size=1, max_size=200), index=st.integers(min_value=0), bit=st.integers(0, 7)
)
def test_any_changed_byte_of_the_body_breaks_the_signature(
    body: bytes, index: int, bit: int
) -> None:
    headers = sign(SECRET, body, NOW)
    tampered = bytearray(body)
    tampered[index % len(body)] ^= 1 << bit
    with pytest.raises(BadSignature):
        verify(
            SECRET,
            bytes(tampered),
            headers["X-Chatbridge-Timestamp"],
            headers["X-Chatbridge-Signature"],
            max_age=None,
        )


@pytest.mark.parametrize(
    ("timestamp", "signature", "problem"),
    [
        (None, "sha256=" + "0" * 64, "missing X-Chatbridge-Timestamp"),
        (str(NOW), None, "missing X-Chatbridge-Signature"),
        ("yesterday", "sha256=" + "0" * 64, "malformed X-Chatbridge-Timestamp"),
        (str(NOW), "md5=abc", "malformed X-Chatbridge-Signature"),
        (str(NOW), "sha256=" + "0" * 64, "does not match"),
    ],
)
def test_missing_or_malformed_headers_are_named(
    timestamp: str | None, signature: str | None, problem: str
) -> None:
    with pytest.raises(BadSignature, match=problem) as caught:
        verify(SECRET, b"{}", timestamp, signature, max_age=300, now=NOW)
    assert caught.value.status_code == 401


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_a_timestamp_outside_the_window_is_refused(skew: int) -> None:
    headers = sign(SECRET, b"{}", NOW + skew)
    with pytest.raises(BadSignature, match="more than 300 s"):
        verify(
            SECRET,
            b"{}",
            headers["X-Chatbridge-Timestamp"],
            headers["X-Chatbridge-Signature"],
            max_age=300,
            now=NOW,
        )


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_a_timestamp_inside_the_window_is_accepted(skew: int) -> None:
    headers = sign(SECRET, b"{}", NOW + skew)
    stamp, signature = headers["X-Chatbridge-Timestamp"], headers["X-Chatbridge-Signature"]
    verify(SECRET, b"{}", stamp, signature, max_age=300, now=NOW)


# --------------------------------------------------------------------------- the parser


def test_a_message_becomes_an_inbound_message_with_ids_namespaced_by_inbox() -> None:
    parsed = parse_payload(
        dumps(
            message(
                contact={"id": "u1", "name": "Ada", "email": "ada@example.com", "phone": "+1"},
                attachments=[{"url": "https://example.com/a.png", "mime": "image/png", "size": 3}],
                metadata={"page": "/pricing"},
            )
        ),
        7,
        received_at=5.0,
    )
    assert isinstance(parsed, InboundMessage)
    assert (parsed.channel, parsed.inbox_id, parsed.channel_key) == ("http", 7, "7:c1")
    assert (parsed.text, parsed.external_message_id, parsed.received_at) == ("hi", "7:m1", 5.0)
    assert parsed.contact is not None
    assert (parsed.contact.external_id, parsed.contact.name) == ("7:u1", "Ada")
    assert parsed.attachments == [Attachment("https://example.com/a.png", "image/png", 3)]
    assert parsed.context["additional_attributes"] == {"page": "/pricing"}
    assert parsed.context["external_conversation_id"] == "c1"


def test_a_human_of_the_app_writing_takes_the_conversation_over() -> None:
    parsed = parse_payload(dumps(message(author="human", contact={"name": "Bob"})), 7)
    assert isinstance(parsed, OwnerSignal)
    assert (parsed.owner, parsed.text, parsed.author_name) == ("human", "hi", "Bob")
    assert parsed.external_message_id == "7:m1"


def test_the_bots_own_reply_mirrored_back_is_ignored() -> None:
    assert parse_payload(dumps(message(author="bot")), 7) == Ignored("own_reply")


@pytest.mark.parametrize("to", ["human", "bot"])
def test_a_handoff_either_way_is_an_owner_signal(to: str) -> None:
    body = {"type": "handoff", "conversation_id": "c1", "to": to, "event_id": "e1"}
    parsed = parse_payload(dumps(body), 7)
    assert isinstance(parsed, OwnerSignal)
    assert (parsed.owner, parsed.channel_key, parsed.delivery_id) == (to, "7:c1", "7:e1")
    assert parsed.text is None


def test_an_event_is_a_conversation_event() -> None:
    body = {"type": "event", "event": "page_opened", "conversation_id": "c1", "data": {"x": 1}}
    parsed = parse_payload(dumps(body), 7)
    assert parsed == ConversationEvent("http", 7, "page_opened", channel_key="7:c1", data={"x": 1})


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"type": "typo"}, "type"),
        ({}, "type"),
        (message(conversation_id=None), "conversation_id"),
        (message(conversation_id=42), "conversation_id"),
        (message(conversation_id="x" * 151), "conversation_id"),
        (message(conversation_id="a\nb"), "conversation_id"),
        (message(message_id=None), "message_id"),
        (message(text=None), "text"),
        (message(text=""), "text"),
        (message(text=["hi"]), "text"),
        (message(author="robot"), "author"),
        (message(contact="Ada"), "contact"),
        (message(contact={"name": 1}), "contact.name"),
        (message(attachments={}), "attachments"),
        (message(attachments=[{"mime": "image/png"}]), "attachments[0].url"),
        (message(attachments=[{"url": "file:///etc/passwd"}]), "attachments[0].url"),
        (message(attachments=[{"url": "https://x/y", "size": -1}]), "attachments[0].size"),
        (message(metadata=[1]), "metadata"),
        ({"type": "handoff", "conversation_id": "c1", "to": "robot"}, "to"),
        ({"type": "handoff", "to": "human"}, "conversation_id"),
        ({"type": "event"}, "event"),
        ({"type": "event", "event": ""}, "event"),
        ({"type": "event", "event": "x", "data": "y"}, "data"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_payload(dumps(payload), 7)
    assert caught.value.status_code == 400
    assert caught.value.details == {"field": field}
    assert caught.value.message.startswith(field)


@pytest.mark.parametrize("body", [b"", b"not json", b"[1]", b'"x"', b"{"])
def test_a_body_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    with pytest.raises(BadInput) as caught:
        parse_payload(body, 7)
    assert (caught.value.status_code, caught.value.code) == (400, "invalid_json")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = ["type", "conversation_id", "message_id", "text", "author", "contact", "attachments"]


@given(
    st.dictionaries(st.sampled_from([*FIELDS, "to", "event", "data", "metadata"]), JSON),
    st.sampled_from(["message", "handoff", "event", None]),
)
def test_any_json_object_parses_or_is_a_clear_400(
    payload: dict[str, Any], kind: str | None
) -> None:
    if kind is not None:
        payload["type"] = kind
    try:
        parsed = parse_payload(dumps(payload), 7)
    except BadInput as exc:
        assert (exc.status_code, exc.code) == (400, "invalid_payload")
        assert exc.message.startswith(exc.details["field"])
    else:
        assert isinstance(parsed, InboundMessage | OwnerSignal | ConversationEvent | Ignored)


@given(
    conversation_id=st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=150
    ),
    message_id=st.text(st.characters(min_codepoint=0x20), min_size=1, max_size=150).filter(
        lambda s: "\x7f" not in s
    ),
    text=st.text(min_size=1),
)
def test_every_valid_message_keeps_its_ids_and_text(
    conversation_id: str, message_id: str, text: str
) -> None:
    body = message(conversation_id=conversation_id, message_id=message_id, text=text)
    parsed = parse_payload(dumps(body), 123)
    assert isinstance(parsed, InboundMessage)
    assert parsed.channel_key == f"123:{conversation_id}"
    assert parsed.external_message_id == f"123:{message_id}"
    assert parsed.text == text


# --------------------------------------------------------------------------- Channel.parse


async def test_the_channel_meets_the_contract_and_parses_a_signed_request() -> None:
    ch = channel()
    assert isinstance(ch, Channel)
    assert ch.capabilities.typing and ch.capabilities.media
    assert not (ch.capabilities.read_receipts or ch.capabilities.templates)
    assert not (ch.capabilities.interactive or ch.capabilities.streaming)
    [parsed] = await ch.parse(request(message()))
    assert isinstance(parsed, InboundMessage) and parsed.channel_key == "7:c1"


@pytest.mark.parametrize("inbox", ["8", "x", "-7", "07a", "99999999999", "७"])
async def test_an_unknown_inbox_is_a_404(inbox: str) -> None:
    with pytest.raises(BadInput) as caught:
        await channel().parse(request(message(), inbox=inbox))
    assert (caught.value.status_code, caught.value.code) == (404, "unknown_inbox")


async def test_a_request_signed_with_another_secret_is_a_401() -> None:
    with pytest.raises(BadSignature) as caught:
        await channel().parse(request(message(), secret=OTHER))
    assert caught.value.status_code == 401


async def test_a_replayed_request_is_a_401_and_the_window_is_configurable() -> None:
    old = request(message(), stamp=NOW - 301)
    with pytest.raises(BadSignature, match="more than 300 s"):
        await channel().parse(old)
    [parsed] = await channel(max_age=3600).parse(old)
    assert isinstance(parsed, InboundMessage)


async def test_a_bad_signature_is_refused_before_the_body_is_read() -> None:
    with pytest.raises(BadSignature):
        await channel().parse(request(b"not json", secret=OTHER))


async def test_headers_are_found_in_any_case() -> None:
    body = dumps(message())
    headers = sign(SECRET, body, NOW)  # mixed case, as a plain dict
    req = InboundRequest(body=body, headers=headers, path={"inbox": "7"}, received_at=NOW)
    assert len(await channel().parse(req)) == 1


def http_settings(**values: Any) -> HttpSettings:
    """The channel's settings as the registry builds them from ``Settings``."""
    own = channel_settings(Settings(channel_settings={"http": values}), "http")
    assert isinstance(own, HttpSettings)
    return own


async def test_build_reads_the_settings() -> None:
    settings = Settings(
        channel_settings={
            "http": {
                "inboxes": {"7": {"secret": SECRET, "callback_url": "https://app.example.com/cb"}},
                "signature_max_age_seconds": 60,
            }
        }
    )
    own = channel_settings(settings, "http")
    assert channel_settings(settings, "http") is own  # built once per Settings
    context = ChannelContext(settings, None, None, None, None, own)  # type: ignore[arg-type]
    ch = build(context)
    assert isinstance(ch, HttpChannel) and ch.name == "http"
    # the window is the configured 60 s, not the default 300 s
    with pytest.raises(BadSignature, match="more than 60 s"):
        await ch.parse(request(message(), stamp=NOW - 61))
    assert len(await ch.parse(request(message(), stamp=NOW - 59))) == 1


@pytest.mark.parametrize(
    ("inbox", "problem"),
    [
        ({"secret": "short", "callback_url": "https://x.example"}, "at least 16"),
        ({"secret": SECRET, "callback_url": "ftp://x.example"}, "http:// or https://"),
        ({"secret": SECRET, "callback_url": "https://"}, "http:// or https://"),
        ({"secret": SECRET}, "callback_url"),
    ],
)
def test_inbox_settings_are_validated(inbox: dict[str, str], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem) as caught:
        http_settings(inboxes={"7": inbox})
    # located as the flat setting (CHATBRIDGE_HTTP_INBOXES), as the CLI reports it
    assert all(e["loc"][:2] == ("http_inboxes", "7") for e in caught.value.errors())


def test_the_secret_is_not_in_the_settings_repr() -> None:
    inboxes = {"7": {"secret": SECRET, "callback_url": "https://x.y/cb"}}
    settings = Settings(channel_settings={"http": {"inboxes": inboxes}})
    own = channel_settings(settings, "http")
    assert SECRET not in repr(settings)
    assert SECRET not in repr(own)
    assert SECRET not in repr(HttpInbox(secret=SECRET, callback_url="https://x.y/cb"))


# --------------------------------------------------------------------------- sends


@asynccontextmanager
async def receiving() -> AsyncIterator[tuple[CallbackReceiver, HttpChannel]]:
    receiver = CallbackReceiver(SECRET)
    async with serve_app(receiver.app) as url:
        ch = channel(f"{url}/hooks/chatbridge?token=t0ps3cret", timeout=5.0)
        try:
            yield receiver, ch
        finally:
            await ch.aclose()


def test_callback_bodies_name_the_apps_conversation_and_the_key() -> None:
    attachment = Attachment("https://x.example/a.pdf", "application/pdf", name="a.pdf")
    assert callback_body(action(text="hello", attachments=[attachment])) == {
        "type": "message",
        "idempotency_key": "d-1",
        "inbox_id": 7,
        "conversation_id": "c1",
        "text": "hello",
        "attachments": [{"url": attachment.url, "mime": "application/pdf", "name": "a.pdf"}],
    }
    assert callback_body(action("typing_on"))["on"] is True
    assert callback_body(action("typing_off"))["type"] == "typing"
    assert callback_body(action("handoff"))["to"] == "human"


def test_a_note_is_its_own_callback_type_never_a_message() -> None:
    """A receiver that shows ``message`` callbacks to its customer must not take a note
    for one: a note has its own ``type`` and the docs say it is for the team only."""
    note = action("note", text="Handoff (keyword). The last 2 messages:\n…")
    note.metadata = {"kind": "handoff_summary"}
    assert callback_body(note) == {
        "type": "note",
        "idempotency_key": "d-1",
        "inbox_id": 7,
        "conversation_id": "c1",
        "text": "Handoff (keyword). The last 2 messages:\n…",
        "metadata": {"kind": "handoff_summary"},
    }


async def test_a_reply_arrives_signed_with_its_idempotency_key() -> None:
    async with receiving() as (receiver, ch):
        result = await ch.send(action(text="hello"))
        await ch.send(action("typing_off", idempotency_key="d-2"))
    assert result.external_id == "app-1"
    assert receiver.refused == []
    assert [c["type"] for c in receiver.received] == ["message", "typing"]
    assert receiver.received[0]["text"] == "hello"


async def test_a_repeated_send_is_deduplicated_by_the_receiver() -> None:
    async with receiving() as (receiver, ch):
        await ch.send(action(text="hello"))
        assert await ch.already_sent(action(text="hello")) is False
        await ch.send(action(text="hello"))
    assert receiver.attempts == 2
    assert len(receiver.received) == 1


@pytest.mark.parametrize(
    ("status", "retry_after", "error", "wait"),
    [
        (500, None, RetryableDelivery, None),
        (503, "7", RetryableDelivery, 7.0),
        (429, "2", RetryableDelivery, 2.0),
        (408, None, RetryableDelivery, None),
        (404, None, PermanentDelivery, None),
        (400, None, PermanentDelivery, None),
        (302, None, PermanentDelivery, None),
    ],
)
async def test_failures_map_to_retryable_or_permanent(
    status: int, retry_after: str | None, error: type[Exception], wait: float | None
) -> None:
    async with receiving() as (receiver, ch):
        receiver.fail_next.append((status, retry_after))
        with pytest.raises(error) as caught:
            await ch.send(action(text="hello"))
    assert f"HTTP {status}" in str(caught.value)
    assert "t0ps3cret" not in str(caught.value)
    if isinstance(caught.value, RetryableDelivery):
        assert caught.value.retry_after == wait


async def test_an_unreachable_callback_is_retryable_and_its_url_token_is_not_shown() -> None:
    async with serve_app(CallbackReceiver(SECRET).app) as url:
        pass  # the port is free again now
    ch = channel(f"{url}/cb?token=t0ps3cret")
    try:
        with pytest.raises(RetryableDelivery, match="cannot reach") as caught:
            await ch.send(action(text="hello"))
    finally:
        await ch.aclose()
    assert "t0ps3cret" not in str(caught.value)


async def test_a_callback_that_never_answers_is_retryable() -> None:
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        arrived.set()
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ch = channel(f"http://127.0.0.1:{port}/cb", timeout=0.2)
    try:
        with pytest.raises(RetryableDelivery, match="timed out"):
            await within(10, ch.send(action(text="hello")))
        assert arrived.is_set()
    finally:
        release.set()
        await ch.aclose()
        server.close()
        await server.wait_closed()


async def test_a_closed_channel_refuses_to_send_and_an_unknown_inbox_is_permanent() -> None:
    ch = channel()
    gone = action(text="x")
    gone.conversation.inbox_id = 8
    with pytest.raises(PermanentDelivery, match="inbox 8"):
        await ch.send(gone)
    await ch.aclose()
    await ch.aclose()
    with pytest.raises(RuntimeError):
        await ch.send(action(text="x"))
