"""ChatwootAdapter against the mock Chatwoot served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI, Request, Response
from hypothesis import given
from hypothesis import strategies as st

from chatbridge import __version__
from chatbridge.channels.base import ChannelAdapter
from chatbridge.channels.chatwoot import ChatwootAdapter, conversation_path
from chatbridge.channels.chatwoot_api import _may_have_landed, _message_id
from chatbridge.channels.http1 import Http1Pool
from chatbridge.errors import PermanentDelivery, RetryableDelivery
from chatbridge.models import Attachment, ConversationRef, OutboundAction
from chatbridge.testing.mock_chatwoot import (
    Faults,
    MockChatwoot,
    TriggerRequest,
    create_mock_chatwoot,
)
from chatbridge.testing.servers import serve_app
from tests.channels.scripted_origin import Origin

TOKEN = "bot-token-5ecret"


@dataclass
class Chatwoot:
    url: str
    mock: MockChatwoot
    adapter: ChatwootAdapter


@pytest.fixture
async def chatwoot() -> AsyncIterator[Chatwoot]:
    app = create_mock_chatwoot(api_token=TOKEN, account_id=1)
    mock: MockChatwoot = app.state.mock
    # Conversations 42 and 43 exist, as after a customer wrote in each.
    mock.conversation(42, inbox_id=3)
    mock.conversation(43, inbox_id=3)
    async with serve_app(app) as url:
        adapter = ChatwootAdapter(url, TOKEN, timeout=5.0)
        try:
            yield Chatwoot(url, mock, adapter)
        finally:
            await adapter.aclose()


def action(
    kind: str = "message",
    *,
    text: str | None = "Your order ships today.",
    key: str = "dlv_1",
    channel_key: str = "1:42",
    attachments: list[Attachment] | None = None,
) -> OutboundAction:
    return OutboundAction(
        kind=kind,  # type: ignore[arg-type]
        conversation=ConversationRef(
            id="c_1", channel="chatwoot", channel_key=channel_key, inbox_id=3
        ),
        idempotency_key=key,
        text=text,
        attachments=attachments or [],
    )


def test_adapter_implements_the_protocol() -> None:
    adapter = ChatwootAdapter("http://127.0.0.1:1", None)
    assert isinstance(adapter, ChannelAdapter)
    assert adapter.name == "chatwoot"


def test_conversation_path() -> None:
    assert conversation_path("3:42") == "/api/v1/accounts/3/conversations/42"
    for bad in ("42", "a:b", "1:", ":2", "1:2:3", "-1:2"):
        with pytest.raises(PermanentDelivery):
            conversation_path(bad)


async def test_message_lands_with_echo_id(chatwoot: Chatwoot) -> None:
    result = await chatwoot.adapter.send(action())

    [received] = chatwoot.mock.received_messages
    assert received["conversation_id"] == 42
    assert received["content"] == "Your order ships today."
    assert received["echo_id"] == "dlv_1"
    assert result.external_id == str(received["id"])
    [call] = chatwoot.mock.actions
    assert call["kind"] == "message"
    assert call["data"] == {
        "content": "Your order ships today.",
        "message_type": "outgoing",
        "private": False,
        "echo_id": "dlv_1",
        "source_id": "dlv_1",
    }


async def test_attachments_are_appended_as_links(chatwoot: Chatwoot) -> None:
    files = [Attachment(url="https://files.example.com/a.pdf"), Attachment(url="https://x/b.png")]
    await chatwoot.adapter.send(action(text="Here you go:", attachments=files))
    await chatwoot.adapter.send(action(text=None, attachments=files[:1], key="dlv_2"))

    assert [m["content"] for m in chatwoot.mock.received_messages] == [
        "Here you go:\n\nhttps://files.example.com/a.pdf\nhttps://x/b.png",
        "https://files.example.com/a.pdf",
    ]


async def test_content_attributes_pass_through(chatwoot: Chatwoot) -> None:
    options = {"items": [{"title": "Yes", "value": "yes"}, {"title": "No", "value": "no"}]}
    outbound = action(text="Did that help?")
    outbound.metadata = {"content_type": "input_select", "content_attributes": options}
    await chatwoot.adapter.send(outbound)

    [received] = chatwoot.mock.received_messages
    assert received["content_type"] == "input_select"
    assert received["content_attributes"] == options


async def test_typing_and_handoff_calls_land(chatwoot: Chatwoot) -> None:
    await chatwoot.adapter.send(action("typing_on", text=None))
    await chatwoot.adapter.send(action("typing_off", text=None))
    await chatwoot.adapter.send(action("handoff", text=None))

    assert [(a["kind"], a["conversation_id"], a["data"]) for a in chatwoot.mock.actions] == [
        ("typing_on", 42, {"typing_status": "on"}),
        ("typing_off", 42, {"typing_status": "off"}),
        ("toggle_status", 42, {"status": "open"}),
    ]
    assert chatwoot.mock.conversations[42].status == "open"
    assert chatwoot.mock.received_messages == []


async def test_429_is_retryable_without_retry_after(chatwoot: Chatwoot) -> None:
    chatwoot.mock.set_faults(Faults(fail_next=[429]))
    with pytest.raises(RetryableDelivery) as info:
        await chatwoot.adapter.send(action())
    assert info.value.retry_after is None
    assert "429" in str(info.value)
    assert not info.value.outcome_unknown  # Chatwoot answered: it has nothing
    assert chatwoot.mock.received_messages == []

    # The next call goes through.
    await chatwoot.adapter.send(action())
    assert len(chatwoot.mock.received_messages) == 1


async def test_500_is_retryable(chatwoot: Chatwoot) -> None:
    chatwoot.mock.set_faults(Faults(fail_next=[500, 503]))
    for kind in ("message", "typing_on"):
        with pytest.raises(RetryableDelivery) as info:
            await chatwoot.adapter.send(action(kind))
        assert not info.value.outcome_unknown
    assert chatwoot.mock.actions == []


async def test_422_too_many_messages_backs_off_a_minute(chatwoot: Chatwoot) -> None:
    chatwoot.mock.set_faults(Faults(fail_next=[422]))
    with pytest.raises(RetryableDelivery) as info:
        await chatwoot.adapter.send(action())
    assert info.value.retry_after == 60.0


async def test_unknown_conversation_is_permanent(chatwoot: Chatwoot) -> None:
    with pytest.raises(PermanentDelivery) as info:
        await chatwoot.adapter.send(action(channel_key="1:999"))
    assert "404" in str(info.value)
    with pytest.raises(PermanentDelivery):
        await chatwoot.adapter.send(action(channel_key="2:42"))


async def test_bad_token_is_permanent_and_never_echoed(chatwoot: Chatwoot) -> None:
    adapter = ChatwootAdapter(chatwoot.url, "wrong-token")
    try:
        with pytest.raises(PermanentDelivery) as info:
            await adapter.send(action())
    finally:
        await adapter.aclose()
    assert "401" in str(info.value)
    assert "wrong-token" not in str(info.value)
    assert TOKEN not in str(info.value)


async def test_invalid_status_body_is_permanent(chatwoot: Chatwoot) -> None:
    chatwoot.mock.set_faults(Faults(fail_next=[400]))
    with pytest.raises(PermanentDelivery) as info:
        await chatwoot.adapter.send(action("handoff", text=None))
    assert "400" in str(info.value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_retryable() -> None:
    adapter = ChatwootAdapter(f"http://127.0.0.1:{_closed_port()}", TOKEN)
    try:
        with pytest.raises(RetryableDelivery) as info:
            await adapter.send(action())
    finally:
        await adapter.aclose()
    assert TOKEN not in str(info.value)
    assert not info.value.outcome_unknown  # nothing was written: a known non-delivery


async def test_timeout_is_retryable(chatwoot: Chatwoot) -> None:
    chatwoot.mock.set_faults(Faults(delay_ms=300))
    adapter = ChatwootAdapter(chatwoot.url, TOKEN, timeout=0.05)
    try:
        with pytest.raises(RetryableDelivery) as info:
            await adapter.send(action("typing_on"))
    finally:
        await adapter.aclose()
    assert "timed out" in str(info.value)


async def test_a_timeout_after_chatwoot_stored_the_message_may_have_landed(
    chatwoot: Chatwoot,
) -> None:
    """Chatwoot stores the message and answers after the adapter's timeout: the error says
    the outcome is unknown, so the retry looks for the message before posting it again."""
    chatwoot.mock.set_faults(Faults(slow_answers=[1000]))
    adapter = ChatwootAdapter(chatwoot.url, TOKEN, timeout=0.2)
    try:
        with pytest.raises(RetryableDelivery) as info:
            await adapter.send(action())
    finally:
        await adapter.aclose()
    assert "timed out" in str(info.value)
    assert info.value.outcome_unknown
    assert [m["echo_id"] for m in chatwoot.mock.received_messages] == ["dlv_1"]


async def test_a_connection_dropped_before_the_answer_may_have_landed() -> None:
    async with Origin(lambda _: lambda writer: writer.close()) as origin:
        adapter = ChatwootAdapter(origin.url, TOKEN)
        try:
            with pytest.raises(RetryableDelivery) as info:
                await adapter.send(action())
        finally:
            await adapter.aclose()
    assert info.value.outcome_unknown
    assert len(origin.requests) == 1  # the request was there


async def test_a_request_that_never_got_a_connection_did_not_land() -> None:
    """The wait for a free connection ran out: nothing was written, a known non-delivery
    (as a connect timeout is). (A timeout on the answer is the test above.)"""
    async with Origin(lambda _: None) as origin:  # no answer: the first request hangs
        pool = Http1Pool(origin.url, headers={}, timeout=30.0, limit=1)
        hung = asyncio.create_task(pool.request("POST", "/first", b"{}"))
        try:
            await asyncio.wait_for(origin.arrived.wait(), 10)
            with pytest.raises(TimeoutError) as waiting:
                await pool.request("POST", "/second", b"{}", timeout=0.05)
            assert not hung.done()  # it held the only connection all along
        finally:
            hung.cancel()
            await asyncio.gather(hung, return_exceptions=True)
            await pool.aclose()
    assert not _may_have_landed(waiting.value)
    assert len(origin.requests) == 1  # the second request was never written


async def test_retry_after_header_is_honoured() -> None:
    """Real Chatwoot sends no Retry-After, but a proxy in front of it may."""
    answers = iter(
        [
            Response("slow down", status_code=429, headers={"Retry-After": "7"}),
            Response(status_code=503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
            Response(status_code=429, headers={"Retry-After": "soon"}),
        ]
    )
    proxy = FastAPI()

    @proxy.post("/api/v1/accounts/{account}/conversations/{display}/messages")
    async def messages(account: int, display: int) -> Response:
        return next(answers)

    async with serve_app(proxy) as url:
        adapter = ChatwootAdapter(url, TOKEN)
        try:
            retry_afters = []
            for _ in range(3):
                with pytest.raises(RetryableDelivery) as info:
                    await adapter.send(action())
                retry_afters.append(info.value.retry_after)
        finally:
            await adapter.aclose()
    assert retry_afters == [7.0, 0.0, None]


async def test_note_lands_as_a_private_note_with_its_key(chatwoot: Chatwoot) -> None:
    """A ``note`` is the message call with ``private: true`` (a bot token may make it), its
    key as ``echo_id`` and ``source_id``; a message's interactive extras are not sent."""
    note = action("note", text="Handoff (keyword). The last 2 messages:\n…", key="dlv_n")
    note.metadata = {"content_type": "input_select", "content_attributes": {"items": []}}
    result = await chatwoot.adapter.send(note)

    [received] = chatwoot.mock.notes(42)
    assert received["content"] == "Handoff (keyword). The last 2 messages:\n…"
    assert (received["private"], received["source_id"]) == (True, "dlv_n")
    assert received["content_type"] == "text"
    assert result.external_id == str(received["id"])
    [call] = chatwoot.mock.actions
    assert call["data"] == {
        "content": "Handoff (keyword). The last 2 messages:\n…",
        "message_type": "outgoing",
        "private": True,
        "echo_id": "dlv_n",
        "source_id": "dlv_n",
    }
    # the customer's side of the conversation does not show it
    conv = chatwoot.mock.conversations[42]
    assert [m["private"] for m in conv.messages] == [True]
    assert chatwoot.mock.notes(43) == []


async def test_a_note_refused_by_chatwoot_is_permanent(chatwoot: Chatwoot) -> None:
    chatwoot.mock.set_faults(Faults(fail_next=[404]))
    with pytest.raises(PermanentDelivery, match="send private note: HTTP 404"):
        await chatwoot.adapter.send(action("note", text="summary"))
    assert chatwoot.mock.notes() == []


async def test_already_sent_finds_a_note_by_its_key(chatwoot: Chatwoot) -> None:
    await chatwoot.adapter.send(action("note", text="summary", key="dlv_n"))
    assert await chatwoot.adapter.already_sent(action("note", key="dlv_n")) is True
    chatwoot.mock.allow_list_messages = True  # a user token lists messages, notes included
    chatwoot.mock.build_event("message_created", TriggerRequest(conversation_id=42))
    assert await chatwoot.adapter.already_sent(action("note", key="dlv_n")) is True
    assert await chatwoot.adapter.already_sent(action("note", key="dlv_other")) is None


async def test_owned_client_is_closed() -> None:
    adapter = ChatwootAdapter("http://127.0.0.1:1", None)
    await adapter.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await adapter.send(action())


async def test_owned_client_is_closed_after_use(chatwoot: Chatwoot) -> None:
    """The session created on first use is closed by ``aclose`` (no unclosed-session warning)."""
    adapter = ChatwootAdapter(chatwoot.url, TOKEN)
    await adapter.send(action())
    assert await adapter.already_sent(action()) is True
    await adapter.aclose()
    await adapter.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await adapter.send(action())
    with pytest.raises(RuntimeError, match="closed"):
        await adapter.already_sent(action())


async def test_already_sent_with_a_bot_token_reads_the_conversation(chatwoot: Chatwoot) -> None:
    """A bot token cannot list messages; the conversation shows its latest message."""
    assert await chatwoot.adapter.already_sent(action(key="dlv_9")) is None
    await chatwoot.adapter.send(action(key="dlv_9"))
    assert await chatwoot.adapter.already_sent(action(key="dlv_9")) is True
    # Another conversation does not count.
    assert await chatwoot.adapter.already_sent(action(key="dlv_9", channel_key="1:43")) is None
    # Once the customer wrote again, the conversation no longer tells.
    chatwoot.mock.build_event("message_created", TriggerRequest(conversation_id=42))
    assert await chatwoot.adapter.already_sent(action(key="dlv_9")) is None


async def test_already_sent_with_a_user_token_lists_messages(chatwoot: Chatwoot) -> None:
    chatwoot.mock.allow_list_messages = True  # a user token
    assert await chatwoot.adapter.already_sent(action(key="dlv_9")) is None
    await chatwoot.adapter.send(action(key="dlv_9"))
    assert await chatwoot.adapter.already_sent(action(key="dlv_9")) is True
    assert await chatwoot.adapter.already_sent(action(key="dlv_10")) is None
    # Another conversation does not count.
    assert await chatwoot.adapter.already_sent(action(key="dlv_9", channel_key="1:43")) is None


async def test_already_sent_pages_back(chatwoot: Chatwoot) -> None:
    chatwoot.mock.allow_list_messages = True  # a user token
    await chatwoot.adapter.send(action(key="early"))
    for index in range(30):
        chatwoot.mock.post_message(chatwoot.mock.conversations[42], {"content": f"m{index}"})
    assert await chatwoot.adapter.already_sent(action(key="early")) is True
    assert await chatwoot.adapter.already_sent(action(key="never")) is None
    assert await chatwoot.adapter.already_sent(action(key="never"), max_pages=1) is None


async def test_already_sent_finds_incoming_source_id(chatwoot: Chatwoot) -> None:
    chatwoot.mock.post_message(
        chatwoot.mock.conversations[42], {"content": "hi", "source_id": "wamid.1"}
    )
    assert await chatwoot.adapter.already_sent(action(key="wamid.1")) is True


async def test_already_sent_unknown(chatwoot: Chatwoot) -> None:
    # Bot tokens cannot list messages: 401.
    chatwoot.mock.allow_list_messages = False
    assert await chatwoot.adapter.already_sent(action()) is None
    chatwoot.mock.allow_list_messages = True
    # Conversation gone: 404.
    assert await chatwoot.adapter.already_sent(action(channel_key="1:999")) is None
    # Server error.
    chatwoot.mock.set_faults(Faults(fail_next=[500, 500]))  # the conversation, then the list
    assert await chatwoot.adapter.already_sent(action()) is None
    # Only messages carry an echo_id.
    assert await chatwoot.adapter.already_sent(action("typing_on")) is None
    assert await chatwoot.adapter.already_sent(action(channel_key="nonsense")) is None


async def test_already_sent_unreachable() -> None:
    adapter = ChatwootAdapter(f"http://127.0.0.1:{_closed_port()}", TOKEN)
    try:
        assert await adapter.already_sent(action()) is None
    finally:
        await adapter.aclose()


async def test_handoff_fires_status_webhook_through_the_mock(chatwoot: Chatwoot) -> None:
    """End to end with a webhook receiver: handoff → conversation_status_changed."""
    seen: list[dict[str, object]] = []
    receiver = FastAPI()

    @receiver.post("/webhooks/chatwoot")
    async def webhook(request: Request) -> dict[str, bool]:
        seen.append(await request.json())
        return {"ok": True}

    async with serve_app(receiver) as receiver_url:
        chatwoot.mock.webhook_url = f"{receiver_url}/webhooks/chatwoot"
        await chatwoot.mock.trigger("message_created", TriggerRequest(conversation_id=42))
        await chatwoot.adapter.send(action("handoff", text=None))
        await chatwoot.mock.drain()

    assert [event["event"] for event in seen] == ["message_created", "conversation_status_changed"]
    assert seen[1]["changed_attributes"] == [
        {"status": {"previous_value": "pending", "current_value": "open"}}
    ]


async def test_the_reply_on_the_wire() -> None:
    """Byte for byte: the request line, headers and compact UTF-8 JSON body of a reply."""
    async with Origin() as origin:
        adapter = ChatwootAdapter(f"{origin.url}/", TOKEN)
        try:
            result = await adapter.send(action(text="Très bien — 👍", key="dlv_7"))
            await adapter.send(action("typing_on", text=None))
        finally:
            await adapter.aclose()
    body = (
        '{"content":"Très bien — 👍","message_type":"outgoing","private":false,'
        '"echo_id":"dlv_7","source_id":"dlv_7"}'
    ).encode()
    host = origin.url.removeprefix("http://")
    assert origin.requests[0] == (
        b"POST /api/v1/accounts/1/conversations/42/messages HTTP/1.1\r\n"
        + f"Host: {host}\r\n".encode()
        + b"Accept: application/json\r\n"
        + f"User-Agent: chatbridge/{__version__}\r\n".encode()
        + f"api_access_token: {TOKEN}\r\n".encode()
        + b"Accept-Encoding: identity\r\n"
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    assert origin.requests[1].startswith(
        b"POST /api/v1/accounts/1/conversations/42/toggle_typing_status HTTP/1.1\r\n"
    )
    assert origin.requests[1].endswith(b'\r\n\r\n{"typing_status":"on"}')
    assert origin.connections == 1
    assert result.external_id == "17"


async def test_a_redirect_is_not_followed() -> None:
    moved = (
        b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://chat.example.com/api\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    async with Origin(lambda _: moved) as origin:
        adapter = ChatwootAdapter(origin.url, TOKEN)
        try:
            with pytest.raises(PermanentDelivery) as info:
                await adapter.send(action())
        finally:
            await adapter.aclose()
    assert "301" in str(info.value)
    assert "https://chat.example.com/api" in str(info.value)
    assert len(origin.requests) == 1


async def test_a_bad_base_url_is_retryable_like_an_unreachable_one() -> None:
    adapter = ChatwootAdapter("not a url", TOKEN)
    try:
        with pytest.raises(RetryableDelivery):
            await adapter.send(action())
        assert await adapter.already_sent(action()) is None
    finally:
        await adapter.aclose()


def _message_id_by_decoding(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    message_id = data.get("id") if isinstance(data, dict) else None
    return None if message_id is None else str(message_id)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(
    first=st.integers(min_value=0) | json_values,
    rest=st.dictionaries(st.text(), json_values, max_size=3),
    compact=st.booleans(),
)
def test_message_id_matches_decoding_the_answer(
    first: object, rest: dict[str, object], compact: bool
) -> None:
    """Reading ``id`` off the front of a JSON answer gives what decoding all of it gives.

    (A body that is not JSON is another matter: its id may be read off the front all the
    same. A 2xx answer cut short never gets here: the connection fails first.)
    """
    separators = (",", ":") if compact else (", ", ": ")
    for answer in ({"id": first, **rest}, {**rest, "id": first}, rest, [first]):
        body = json.dumps(answer, separators=separators, ensure_ascii=False).encode()
        assert _message_id(body) == _message_id_by_decoding(body)
