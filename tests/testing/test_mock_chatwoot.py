"""The mock Chatwoot: realistic signed webhooks, its REST API, faults, duplicates."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from chatbridge.channels.chatwoot import parse_webhook
from chatbridge.errors import BadSignature
from chatbridge.models import (
    ConversationEvent,
    DeliveryReceipt,
    Ignored,
    InboundMessage,
    OwnerSignal,
)
from chatbridge.testing.chatwoot_state import rails_boolean
from chatbridge.testing.mock_chatwoot import (
    Faults,
    MockChatwoot,
    TriggerRequest,
    create_mock_chatwoot,
)
from chatbridge.testing.servers import serve_app
from tests.e2e.drain import within

SECRET = "s3cret-for-webhooks"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
API = "/api/v1/accounts/1/conversations"


@dataclass
class Delivery:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook target on a real socket that keeps every request it gets."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    # what the ``slow`` target waits for before it answers: the end of the test
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def parse(self, index: int = -1, *, secret: str | None = SECRET) -> Any:
        delivery = self.deliveries[index]
        return parse_webhook(delivery.headers, delivery.body, secret=secret)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = FastAPI()
    holder: list[Receiver] = []

    @app.post("/hook/{kind}")
    async def hook(kind: str, request: Request) -> Response:
        holder[0].deliveries.append(
            Delivery(
                path=request.url.path,
                query=dict(request.query_params),
                headers=dict(request.headers),
                body=await request.body(),
            )
        )
        if kind == "text":
            return PlainTextResponse("thanks")
        if kind == "fail":
            return PlainTextResponse("boom", status_code=500)
        if kind == "slow":
            await holder[0].released.wait()  # a target slower than any sender's timeout
        return Response('{"status":"queued"}', media_type="application/json")

    async with serve_app(app) as url:
        holder.append(Receiver(url))
        try:
            yield holder[0]
        finally:
            holder[0].released.set()


@dataclass
class Mock:
    app: FastAPI
    state: MockChatwoot
    client: httpx.AsyncClient


async def _mock(**kwargs: Any) -> Mock:
    app = create_mock_chatwoot(**kwargs)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock")
    return Mock(app, app.state.mock, client)


@pytest.fixture
async def mock(receiver: Receiver) -> AsyncIterator[Mock]:
    m = await _mock()
    response = await m.client.post(
        "/mock/webhook/register", json={"url": f"{receiver.url}/hook/json", "secret": SECRET}
    )
    assert response.json() == {"url": f"{receiver.url}/hook/json", "signed": True}
    try:
        yield m
    finally:
        await m.client.aclose()
        await m.state.aclose()


async def trigger(mock: Mock, event: str, **body: Any) -> dict[str, Any]:
    response = await mock.client.post(f"/mock/webhook/trigger/{event}", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


# --- webhooks ------------------------------------------------------------------------------------


async def test_incoming_message_is_signed_realistic_and_parses(
    mock: Mock, receiver: Receiver
) -> None:
    result = await trigger(
        mock,
        "message_created",
        conversation_id=7,
        inbox_id=3,
        content="Where is my order?",
        sender={"id": 12, "name": "Ana", "email": "ana@example.com"},
    )

    assert result["status_code"] == 200
    assert result["response"] == {"status": "queued"}
    [delivery] = receiver.deliveries
    assert delivery.headers["x-chatwoot-delivery"] == result["delivery_id"]
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["x-chatwoot-signature"].startswith("sha256=")

    parsed = receiver.parse()
    assert isinstance(parsed, InboundMessage)
    assert (parsed.channel_key, parsed.inbox_id, parsed.text) == ("1:7", 3, "Where is my order?")
    assert parsed.external_message_id == f"1:{result['message_id']}"
    assert parsed.delivery_id == result["delivery_id"]
    assert parsed.external_status == "pending"
    assert parsed.contact is not None
    assert (parsed.contact.external_id, parsed.contact.name) == ("12", "Ana")

    payload = mock.state.webhook_history[0]["payload"]
    assert payload["message_type"] == "incoming"
    assert ISO.match(payload["created_at"])
    assert "type" not in payload["sender"]
    assert payload["account"] == {"id": 1, "name": "Acme Inc"}
    assert payload["inbox"]["id"] == 3
    conversation = payload["conversation"]
    assert conversation["id"] == 7
    assert conversation["account"]["id"] == 1
    assert conversation["meta"]["sender"]["type"] == "contact"
    [latest] = conversation["messages"]
    assert latest["message_type"] == 0
    assert isinstance(latest["created_at"], int)
    assert latest["id"] == result["message_id"]


async def test_signature_uses_the_registered_secret(mock: Mock, receiver: Receiver) -> None:
    await trigger(mock, "message_created")
    with pytest.raises(BadSignature):
        receiver.parse(secret="some-other-secret")

    await mock.client.post("/mock/webhook/register", json={"url": f"{receiver.url}/hook/json"})
    await trigger(mock, "message_created")
    assert receiver.deliveries[-1].headers["x-chatwoot-signature"].startswith("sha256=")

    await mock.client.post(
        "/mock/webhook/register", json={"url": f"{receiver.url}/hook/json", "secret": None}
    )
    await trigger(mock, "message_created")
    assert "x-chatwoot-signature" not in receiver.deliveries[-1].headers
    assert isinstance(receiver.parse(secret=None), InboundMessage)


@pytest.mark.parametrize(
    ("event", "body", "expected"),
    [
        (
            "message_created",
            {"message_type": "outgoing", "content": "Sam here"},
            OwnerSignal,
        ),
        (
            "message_created",
            {"message_type": "outgoing", "sender_type": "agent_bot"},
            Ignored("own_reply"),
        ),
        ("message_created", {"private": True, "sender_type": "user"}, Ignored("private_note")),
        ("message_created", {"message_type": "template"}, Ignored("template")),
        ("message_updated", {}, Ignored("message_updated")),
        ("conversation_created", {}, ConversationEvent),
        ("webwidget_triggered", {}, ConversationEvent),
        ("conversation_status_changed", {"status": "open"}, OwnerSignal),
        ("conversation_updated", {"status": "resolved"}, OwnerSignal),
        ("conversation_opened", {}, OwnerSignal),
        ("conversation_resolved", {}, OwnerSignal),
    ],
)
async def test_every_event_parses(
    mock: Mock, receiver: Receiver, event: str, body: dict[str, Any], expected: Any
) -> None:
    result = await trigger(mock, event, **body)
    parsed = receiver.parse()
    if isinstance(expected, Ignored):
        assert parsed == Ignored(expected.reason, delivery_id=result["delivery_id"])
    else:
        assert isinstance(parsed, expected)
        assert parsed.delivery_id == result["delivery_id"]


async def test_human_reply_and_template_shapes(mock: Mock, receiver: Receiver) -> None:
    await trigger(mock, "message_created", message_type="outgoing", sender={"name": "Sam"})
    await trigger(mock, "message_created", message_type="template")
    human, template = (h["payload"] for h in mock.state.webhook_history)
    assert human["sender"] == {"id": 1, "name": "Sam", "email": "agent@example.com", "type": "user"}
    assert human["conversation"]["messages"][0]["message_type"] == 1
    assert template["sender"] is None
    assert template["conversation"]["messages"][0]["message_type"] == 3
    signal = receiver.parse(0)
    assert isinstance(signal, OwnerSignal)
    assert (signal.owner, signal.author_name) == ("human", "Sam")


async def test_private_note_is_not_in_conversation_messages(mock: Mock) -> None:
    first = await trigger(mock, "message_created", content="hi")
    await trigger(mock, "message_created", private=True, sender_type="user")
    payload = mock.state.webhook_history[-1]["payload"]
    assert [m["id"] for m in payload["conversation"]["messages"]] == [first["message_id"]]


async def test_status_change_carries_previous_and_current(mock: Mock, receiver: Receiver) -> None:
    await trigger(mock, "message_created", conversation_id=5)
    await trigger(mock, "conversation_status_changed", conversation_id=5)
    payload = mock.state.webhook_history[-1]["payload"]
    assert payload["changed_attributes"] == [
        {"status": {"previous_value": "pending", "current_value": "open"}}
    ]
    assert "inbox" not in payload
    signal = receiver.parse()
    assert isinstance(signal, OwnerSignal)
    assert (signal.external_status, signal.previous_status) == ("open", "pending")


async def test_webwidget_with_and_without_conversation(mock: Mock, receiver: Receiver) -> None:
    await trigger(mock, "webwidget_triggered", inbox_id=4)
    await trigger(mock, "webwidget_triggered", conversation_id=9)
    without, with_conversation = receiver.parse(0), receiver.parse(1)
    assert isinstance(without, ConversationEvent) and isinstance(
        with_conversation, ConversationEvent
    )
    assert (without.channel_key, without.inbox_id) == (None, 4)
    assert with_conversation.channel_key == "1:9"
    assert with_conversation.data["widget_language"] == "en"


async def test_duplicate_delivery_resends_the_same_payload(mock: Mock, receiver: Receiver) -> None:
    first = await trigger(mock, "message_created", content="once", delivery_id="dup-1")
    second = await trigger(mock, "message_created", content="changed?", delivery_id="dup-1")

    assert first["delivery_id"] == second["delivery_id"] == "dup-1"
    assert first["message_id"] == second["message_id"]
    assert receiver.deliveries[0].body == receiver.deliveries[1].body
    parsed = [receiver.parse(0), receiver.parse(1)]
    assert parsed[0].external_message_id == parsed[1].external_message_id
    assert [h["delivery_id"] for h in mock.state.webhook_history] == ["dup-1", "dup-1"]
    assert len(mock.state.conversations[1].messages) == 1


async def test_query_is_appended_to_the_webhook_url(mock: Mock, receiver: Receiver) -> None:
    await trigger(mock, "message_created", query={"mode": "sync", "wait": 2, "debug": True})
    assert receiver.deliveries[0].query == {"mode": "sync", "wait": "2", "debug": "true"}
    assert mock.state.webhook_history[0]["url"].endswith("?mode=sync&wait=2&debug=true")


async def test_history_records_status_and_body(mock: Mock, receiver: Receiver) -> None:
    for kind in ("text", "fail"):
        await mock.client.post(
            "/mock/webhook/register", json={"url": f"{receiver.url}/hook/{kind}"}
        )
        await trigger(mock, "message_created")
    await mock.client.post("/mock/webhook/register", json={"url": "http://127.0.0.1:9/nowhere"})
    unreachable = await trigger(mock, "message_created")

    history = (await mock.client.get("/mock/webhook/history")).json()
    assert [(h["event"], h["status_code"], h["response"]) for h in history] == [
        ("message_created", 200, "thanks"),
        ("message_created", 500, "boom"),
        ("message_created", None, None),
    ]
    assert history[2]["error"] and unreachable["error"]
    assert all(h["payload"]["event"] == "message_created" for h in history)


async def test_trigger_timeout_is_recorded(mock: Mock, receiver: Receiver) -> None:
    await mock.client.post("/mock/webhook/register", json={"url": f"{receiver.url}/hook/slow"})
    result = await trigger(mock, "message_created", timeout=0.2)
    assert result["status_code"] is None
    assert "Timeout" in result["error"]
    assert mock.state.webhook_history[-1]["error"] == result["error"]


async def test_trigger_refuses_without_webhook_or_for_unknown_event() -> None:
    m = await _mock()
    try:
        response = await m.client.post("/mock/webhook/trigger/message_created", json={})
        assert response.status_code == 409
        await m.client.post("/mock/webhook/register", json={"url": "http://127.0.0.1:9/x"})
        response = await m.client.post("/mock/webhook/trigger/contact_merged")
        assert response.status_code == 404
        assert m.state.conversations == {}
    finally:
        await m.client.aclose()
        await m.state.aclose()


# --- REST API ------------------------------------------------------------------------------------


async def test_bot_message_is_recorded_and_listed(mock: Mock) -> None:
    await trigger(mock, "message_created", conversation_id=3, content="hello")
    response = await mock.client.post(
        f"{API}/3/messages",
        json={
            "content": "Hi! How can I help?",
            "message_type": "outgoing",
            "private": False,
            "echo_id": "dlv_1",
            "content_attributes": '{"x": 1}',
        },
    )
    assert response.status_code == 200
    created = response.json()
    assert created["message_type"] == 1
    assert isinstance(created["created_at"], int)
    assert created["sender"]["type"] == "agent_bot"
    assert created["content_attributes"] == {"x": 1}

    # A bot token may not list messages (Chatwoot's BOT_ACCESSIBLE_ENDPOINTS).
    refused = await mock.client.get(f"{API}/3/messages")
    assert refused.status_code == 401
    mock.state.allow_list_messages = True  # as with a user token
    listed = (await mock.client.get(f"{API}/3/messages")).json()
    assert listed["meta"] == {}
    # echo_id is not stored by Chatwoot: it never comes back in a listing
    assert [(m["content"], m["message_type"], "echo_id" in m) for m in listed["payload"]] == [
        ("hello", 0, False),
        ("Hi! How can I help?", 1, False),
    ]
    received = (await mock.client.get("/mock/api/received_messages")).json()
    assert isinstance(received[0]["received_at"], float)
    assert received == [
        {
            "received_at": received[0]["received_at"],
            "conversation_id": 3,
            "content": "Hi! How can I help?",
            "echo_id": "dlv_1",
            "id": created["id"],
            "created_at": created["created_at"],
            "private": False,
            "source_id": None,
            "content_type": "text",
            "content_attributes": {"x": 1},
        }
    ]
    assert (await mock.client.get("/mock/api/notes")).json() == []


async def test_conversation_status_and_typing(mock: Mock, receiver: Receiver) -> None:
    await trigger(mock, "message_created", conversation_id=3)
    conversation = (await mock.client.get(f"{API}/3")).json()
    assert (conversation["id"], conversation["status"]) == (3, "pending")

    typing = await mock.client.post(f"{API}/3/toggle_typing_status", json={"typing_status": "on"})
    assert typing.status_code == 200
    toggled = await mock.client.post(f"{API}/3/toggle_status", json={"status": "open"})
    assert toggled.json() == {
        "payload": {"success": True, "conversation_id": 3, "current_status": "open"}
    }
    await mock.state.drain()

    actions = (await mock.client.get("/mock/api/actions")).json()
    assert [(a["kind"], a["conversation_id"]) for a in actions] == [
        ("typing_on", 3),
        ("toggle_status", 3),
    ]
    assert mock.state.webhook_history[-1]["event"] == "conversation_status_changed"
    signal = receiver.parse()
    assert isinstance(signal, OwnerSignal)
    assert (signal.channel_key, signal.previous_status, signal.external_status) == (
        "1:3",
        "pending",
        "open",
    )

    bad = await mock.client.post(f"{API}/3/toggle_status", json={"status": "closed"})
    assert bad.status_code == 422
    missing = await mock.client.post(f"{API}/99/toggle_status", json={"status": "open"})
    assert missing.status_code == 404


async def test_status_webhooks_can_be_turned_off(receiver: Receiver) -> None:
    m = await _mock(webhook_url=f"{receiver.url}/hook/json", emit_status_webhooks=False)
    try:
        m.state.conversation(3)
        await m.client.post(f"{API}/3/toggle_status", json={"status": "open"})
        await m.state.drain()
        assert m.state.webhook_history == []
        assert m.state.conversations[3].status == "open"
    finally:
        await m.client.aclose()
        await m.state.aclose()


async def test_bot_replies_can_echo_as_webhooks(receiver: Receiver) -> None:
    """Like real Chatwoot for bots: the bot's own message comes back and must be dropped."""
    m = await _mock(webhook_url=f"{receiver.url}/hook/json", emit_message_webhooks=True)
    try:
        m.state.conversation(3)
        await m.client.post(f"{API}/3/messages", json={"content": "hi", "echo_id": "k"})
        await m.state.drain()
        assert isinstance(receiver.parse(secret=None), Ignored)
        assert receiver.parse(secret=None).reason == "own_reply"
    finally:
        await m.client.aclose()
        await m.state.aclose()


@pytest.mark.parametrize(
    ("token_kind", "sender"),
    [
        ("bot", {"id": 1, "name": "Bridge Bot", "type": "agent_bot"}),
        ("user", {"id": 7, "name": "Bridge User", "email": "bridge@example.com", "type": "user"}),
    ],
)
async def test_private_note_is_recorded_echoed_and_hidden_from_the_customer(
    receiver: Receiver, token_kind: str, sender: dict[str, Any]
) -> None:
    """A note is a message ``create`` (allowed to a bot token) with ``private: true``; it is
    echoed from whoever holds the token, with our ``source_id``, and the bridge's parser
    takes that echo for the note's receipt."""
    m = await _mock(webhook_url=f"{receiver.url}/hook/json", api_token="tok", token_kind=token_kind)
    try:
        await m.state.trigger("message_created", TriggerRequest(conversation_id=3, content="hi"))
        headers = {"api_access_token": "tok"}
        note = {"content": "Summary", "private": True, "echo_id": "d_9", "source_id": "d_9"}
        refused = await m.client.post(f"{API}/3/messages", json=note)
        assert refused.status_code == 401 and m.state.notes() == []
        created = await m.client.post(f"{API}/3/messages", json=note, headers=headers)
        assert created.status_code == 200, created.text
        assert (created.json()["private"], created.json()["sender"]) == (True, sender)
        await m.state.drain()

        [recorded] = (await m.client.get("/mock/api/notes")).json()
        assert (recorded["conversation_id"], recorded["content"]) == (3, "Summary")
        assert (recorded["private"], recorded["source_id"]) == (True, "d_9")
        echo = m.state.webhook_history[-1]["payload"]
        assert (echo["event"], echo["message_type"], echo["private"]) == (
            "message_created",
            "outgoing",
            True,
        )
        assert (echo["sender"], echo["source_id"]) == (sender, "d_9")
        # the conversation's latest message (what the customer side shows) is still theirs
        assert [x["content"] for x in echo["conversation"]["messages"]] == ["hi"]
        assert receiver.parse(secret=None) == DeliveryReceipt(
            "chatwoot",
            "d_9",
            external_message_id=str(created.json()["id"]),
            delivery_id=m.state.webhook_history[-1]["delivery_id"],
        )
    finally:
        await m.client.aclose()
        await m.state.aclose()


@pytest.mark.parametrize(
    ("value", "private"),
    [
        (True, True),
        ("true", True),
        ("no", True),  # not one of Rails' false strings
        (1, True),
        (0.0, True),
        (False, False),
        (None, False),
        ("", False),
        (0, False),
        ("0", False),
        ("f", False),
        ("FALSE", False),
        ("off", False),
    ],
)
async def test_private_is_cast_as_rails_casts_it(mock: Mock, value: object, private: bool) -> None:
    mock.state.conversation(3)
    response = await mock.client.post(f"{API}/3/messages", json={"content": "x", "private": value})
    assert response.status_code == 200
    assert response.json()["private"] is private
    assert len(mock.state.notes(3)) == (1 if private else 0)
    assert rails_boolean(value) is private


async def test_api_token_is_required_when_set() -> None:
    m = await _mock(api_token="tok")
    try:
        m.state.conversation(1)
        refused = await m.client.get(f"{API}/1")
        assert refused.status_code == 401
        assert refused.json() == {"error": "Invalid Access Token"}
        wrong = await m.client.get(f"{API}/1", headers={"api_access_token": "nope"})
        assert wrong.status_code == 401
        ok = await m.client.get(f"{API}/1", headers={"api_access_token": "tok"})
        assert ok.status_code == 200
        other_account = await m.client.get(
            "/api/v1/accounts/2/conversations/1", headers={"api_access_token": "tok"}
        )
        assert other_account.status_code == 404
        # /mock/* needs no token.
        assert (await m.client.get("/mock/api/actions")).status_code == 200
    finally:
        await m.client.aclose()
        await m.state.aclose()


# --- faults ---------------------------------------------------------------------------------


async def test_fail_next_answers_like_chatwoot_and_records_nothing(mock: Mock) -> None:
    mock.state.conversation(3)
    response = await mock.client.post("/mock/faults", json={"fail_next": [429, 500]})
    assert response.json()["fail_next"] == [429, 500]

    throttled = await mock.client.post(f"{API}/3/messages", json={"content": "a"})
    assert throttled.status_code == 429
    assert throttled.text == "Retry later\n"
    assert throttled.headers["content-type"].startswith("text/plain")
    assert "retry-after" not in throttled.headers
    failed = await mock.client.post(f"{API}/3/toggle_typing_status", json={"typing_status": "on"})
    assert failed.status_code == 500
    assert "error" in failed.json()
    assert mock.state.received_messages == [] and mock.state.actions == []

    ok = await mock.client.post(f"{API}/3/messages", json={"content": "a"})
    assert ok.status_code == 200
    assert len(mock.state.received_messages) == 1


async def test_rates_are_seeded_and_spare_mock_endpoints() -> None:
    async def codes(seed: int) -> list[int]:
        m = await _mock(faults=Faults(rate_429=0.3, rate_500=0.3, seed=seed))
        try:
            m.state.conversation(1)
            result = [(await m.client.get(f"{API}/1")).status_code for _ in range(40)]
            assert (await m.client.get("/mock/api/actions")).status_code == 200
            return result
        finally:
            await m.client.aclose()
            await m.state.aclose()

    first, again, other = await codes(7), await codes(7), await codes(8)
    assert first == again
    assert first != other
    assert {200, 429, 500} == set(first)


async def test_every_call_fails_at_rate_one(mock: Mock) -> None:
    mock.state.conversation(1)
    await mock.client.post("/mock/faults", json={"rate_500": 1.0})
    statuses = {(await mock.client.get(f"{API}/1/messages")).status_code for _ in range(10)}
    assert statuses == {500}
    await mock.client.post("/mock/reset")
    assert (await mock.client.get("/mock/faults")).json()["rate_500"] == 0.0


async def test_delay_over_a_real_socket() -> None:
    app = create_mock_chatwoot(faults=Faults(delay_ms=300, delay_rate=1.0))
    app.state.mock.conversation(1)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{API}/1", timeout=0.05)
        slow = await client.get(f"{API}/1", timeout=30)
        assert slow.status_code == 200
        # The control routes are never delayed: with a ten-minute delay they still answer
        # within the half minute the test gives them.
        faults = {"delay_ms": 600_000, "delay_rate": 1.0}
        changed = await within(30, client.post("/mock/faults", json=faults, timeout=None))
        assert changed.status_code == 200
        fast = await within(30, client.get("/mock/faults", timeout=None))
        assert fast.json()["delay_ms"] == 600_000


# --- state ---------------------------------------------------------------------------------------


async def test_reset_forgets_everything_but_the_webhook(mock: Mock, receiver: Receiver) -> None:
    await trigger(mock, "message_created", conversation_id=3)
    await mock.client.post(f"{API}/3/messages", json={"content": "x"})
    await mock.state.drain()  # the reply's echo has gone out
    assert (await mock.client.post("/mock/reset")).json() == {"ok": True}

    assert mock.state.conversations == {}
    assert (await mock.client.get("/mock/api/received_messages")).json() == []
    assert (await mock.client.get("/mock/api/actions")).json() == []
    assert (await mock.client.get("/mock/webhook/history")).json() == []
    await trigger(mock, "message_created")
    # the first customer message, the bot reply's echo, then this one: still delivered
    assert len(receiver.deliveries) == 3


async def test_concurrent_requests_keep_state_consistent(mock: Mock, receiver: Receiver) -> None:
    await trigger(mock, "message_created", conversation_id=1)
    posts = [
        mock.client.post(f"{API}/1/messages", json={"content": f"r{i}", "echo_id": f"k{i}"})
        for i in range(40)
    ]
    triggers = [
        mock.client.post("/mock/webhook/trigger/message_created", json={"conversation_id": 2})
        for _ in range(20)
    ]
    responses = await asyncio.gather(*posts, *triggers)
    assert all(r.status_code == 200 for r in responses)

    ids = [m["id"] for c in mock.state.conversations.values() for m in c.messages]
    assert len(ids) == len(set(ids)) == 61
    assert sorted(m["echo_id"] for m in mock.state.received_messages) == sorted(
        f"k{i}" for i in range(40)
    )
    await mock.state.drain()  # the 40 replies' message_created echoes go out in the background
    assert len(receiver.deliveries) == 61
    assert len({d.headers["x-chatwoot-delivery"] for d in receiver.deliveries}) == 61


async def test_served_over_a_socket_with_lifespan(receiver: Receiver) -> None:
    app = create_mock_chatwoot(webhook_url=f"{receiver.url}/hook/json", secret=SECRET)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        result = (
            await client.post("/mock/webhook/trigger/message_created", json={"content": "yo"})
        ).json()
        assert result["status_code"] == 200
    assert isinstance(receiver.parse(), InboundMessage)
    assert app.state.mock._client is None, "lifespan shutdown closed the webhook client"


def test_trigger_request_defaults() -> None:
    spec = TriggerRequest()
    assert (spec.conversation_id, spec.message_type, spec.private) == (1, "incoming", False)
