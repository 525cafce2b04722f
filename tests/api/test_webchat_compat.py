"""The drop-in web chat action API (``/api/v1/?action=…``), field for field against the
``webchat-compat`` contract, over real HTTP, on SQLite and on PostgreSQL.

One stack per backend is shared by the module (its compat inbox 0 goes to the http-pull agent
``web_chat``); after each test every turn still offered to ``web_chat`` is ended and changed
settings are put back, so the tests do not see each other's messages. The last test is a
pull-plugin-style client on aiohttp doing what the broker's ``web_chat`` plugin does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import httpx
import pytest
import pytest_asyncio
from limits import parse
from sqlalchemy import update

from chatbridge.config import Settings
from chatbridge.store import tables as t
from chatbridge.transports.base import AgentOutcome
from tests.api.conftest import module_database_url
from tests.api.live import snapshot
from tests.e2e.harness import Stack, running_stack, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

API_KEY = "compat-api-key-0123"
ADMIN_KEY = "compat-admin-key-0123"
AGENT = "web_chat"
JSON_TYPE = "application/json; charset=utf-8"
CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, POST, OPTIONS",
    "access-control-allow-headers": "Content-Type, Authorization",
    "access-control-max-age": "86400",
}
PHP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
UID = re.compile(r"^[0-9a-f]{16}$")
PATHS = ("/api/v1/", "/api/v1", "/api/v1/index.php")
ACTIONS = {
    "messages": "POST",
    "inbox": "GET",
    "outbox": "POST",
    "responses": "GET",
    "sessions": "GET",
    "session_messages": "GET",
    "cleanup": "POST",
    "clear_data": "POST",
    "cleanup_logs": "POST",
}
# the settings tests change for a while (read live by the action API and the broker)
TUNED = (
    "web_chat_api_key",
    "web_chat_admin_key",
    "webchat_compat_lease_seconds",
    "webchat_mark_on_read",
    "webchat_session_timeout",
    "rate_limit_history",
    "webchat_max_message_chars",
)
ADMIN_ACTIONS = ("sessions", "session_messages", "config", "cleanup", "clear_data", "cleanup_logs")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def compat_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return module_database_url(request, tmp_path_factory)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(compat_db: str) -> AsyncIterator[Stack]:
    # Rate limits stay at their defaults: the whole module is a normal client's traffic. Only
    # the failed-key budget is raised, for the tests that send every kind of wrong key (the
    # budget itself is proven in test_safe_defaults.py).
    async with running_stack(
        compat_db,
        web_chat_api_key=API_KEY,
        web_chat_admin_key=ADMIN_KEY,
        auth_failure_limit="1000/minute",
    ) as s:
        yield s


async def end_open_turns(stack: Stack) -> None:
    """End every turn offered to ``web_chat`` (and those queued behind them) until idle."""
    pull = stack.bridge.hub.pull

    async def quiet() -> bool:
        for offer in pull.open_offers(AGENT):
            pull.settle(offer, AgentOutcome("no_reply"))
        counts = await stack.bridge.store.counts()
        return not any(
            counts[t].get(s, 0) for t in ("turns", "deliveries") for s in ("pending", "leased")
        )

    await wait_until(quiet, 15)


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def isolated(stack: Stack) -> AsyncIterator[None]:
    settings = stack.bridge.settings
    saved = {key: getattr(settings, key) for key in TUNED}
    yield
    for key, value in saved.items():
        setattr(settings, key, value)
    await end_open_turns(stack)


# --------------------------------------------------------------------------- helpers

_ids = itertools.count(1)


def sid(tag: str = "s") -> str:
    return f"session_{tag}_{next(_ids)}"


async def act(
    stack: Stack,
    method: str,
    action: str | None,
    *,
    key: str | None = None,
    body: Any = None,
    raw: bytes | None = None,
    params: dict[str, Any] | None = None,
    path: str = "/api/v1/",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    query: dict[str, Any] = {} if action is None else {"action": action}
    query.update(params or {})
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    content = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if content is not None:
        sent.setdefault("Content-Type", "application/json")
    # an absolute URL: httpx would read a relative "//api/v1/" as a host name
    url = stack.url + path
    return await stack.http.request(method, url, params=query, content=content, headers=sent)


def assert_headers(r: httpx.Response) -> None:
    assert r.headers["content-type"] == JSON_TYPE
    for name, value in CORS.items():
        assert r.headers[name] == value, name


def ok(r: httpx.Response, message: str = "Success") -> Any:
    """The ``data`` of a success envelope (after checking the envelope field for field)."""
    assert r.status_code == 200, r.text
    assert_headers(r)
    body = r.json()
    assert list(body) == ["success", "message", "timestamp", "data"], body
    assert body["success"] is True
    assert body["message"] == message
    assert PHP_TIME.match(body["timestamp"])
    return body["data"]


def refused(r: httpx.Response, status: int, error: str) -> None:
    assert r.status_code == status, r.text
    assert_headers(r)
    body = r.json()
    assert body == {"success": False, "error": error, "code": status, "timestamp": ANY_TIME}


class _AnyTime:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(PHP_TIME.match(other))

    def __repr__(self) -> str:
        return "<date('c')>"


ANY_TIME = _AnyTime()


async def say(stack: Stack, session_id: str, text: str) -> dict[str, Any]:
    data: dict[str, Any] = ok(
        await act(stack, "POST", "messages", body={"session_id": session_id, "message": text}),
        "Message received",
    )
    return data


async def inbox(stack: Stack, **params: Any) -> dict[str, Any]:
    data: dict[str, Any] = ok(await act(stack, "GET", "inbox", key=API_KEY, params=params))
    return data


async def offered(stack: Stack, n: int = 1) -> None:
    """Wait until ``n`` turns are waiting for ``web_chat`` to poll."""
    await wait_until(lambda: stack.bridge.hub.pull.available(AGENT) >= n)


async def reply(stack: Stack, session_id: str, text: str) -> dict[str, Any]:
    r = await act(
        stack, "POST", "outbox", key=API_KEY, body={"session_id": session_id, "response": text}
    )
    data: dict[str, Any] = ok(r, "Response sent successfully")
    return data


async def responses(stack: Stack, session_id: str, **params: Any) -> list[dict[str, Any]]:
    r = await act(stack, "GET", "responses", params={"session_id": session_id, **params})
    data = ok(r)
    assert list(data) == ["session_id", "responses"]
    assert data["session_id"] == session_id
    out: list[dict[str, Any]] = data["responses"]
    return out


async def assert_no_writes(stack: Stack, before: dict[str, Any]) -> None:
    assert await snapshot(stack) == before


def unhandled(stack: Stack) -> float:
    """How many requests the bridge answered with a 500 it logged as a bug."""
    registry = stack.bridge.metrics.registry
    return registry.get_sample_value("chatbridge_errors_total", {"kind": "unhandled"}) or 0.0


# --------------------------------------------------------------------------- routing, CORS


async def test_options_is_an_empty_200_with_the_cors_headers(stack: Stack) -> None:
    for path in (*PATHS, "//api/v1/"):
        for action in ("inbox", "messages", None, "nonsense"):
            r = await act(stack, "OPTIONS", action, path=path)
            assert r.status_code == 200
            assert r.content == b""
            assert_headers(r)


async def test_every_path_serves_the_same_api(stack: Stack) -> None:
    for path in (*PATHS, "//api/v1/", "//api/v1/index.php"):
        data = ok(await act(stack, "GET", "inbox", key=API_KEY, path=path))
        assert data["messages"] == []
        assert data["pagination"] == {"total": 0, "limit": 50, "offset": 0, "has_more": False}


async def test_unknown_or_empty_action(stack: Stack) -> None:
    for action in (None, "", "nonsense", "INBOX", "session_response"):
        for method in ("GET", "POST", "PUT"):
            refused(await act(stack, method, action, key=API_KEY), 400, "Invalid action")


async def test_wrong_method_is_405_before_auth_except_config(stack: Stack) -> None:
    for action, right in ACTIONS.items():
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            if method == right:
                continue
            refused(await act(stack, method, action), 405, "Method not allowed")
    # config checks the admin key first, then the method
    refused(await act(stack, "PUT", "config"), 401, "Invalid or missing admin key")
    refused(await act(stack, "PUT", "config", key=ADMIN_KEY), 405, "Method not allowed")


async def test_api_and_admin_keys(stack: Stack) -> None:
    bad_headers = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"bearer {API_KEY}"},
        {"Authorization": f"Bearer  {API_KEY}"},
        {"Authorization": f"Bearer {API_KEY}x"},
        {"Authorization": API_KEY},
        {"Authorization": f"Bearer {ADMIN_KEY}"},
    ]
    for headers in bad_headers:
        r = await act(stack, "GET", "inbox", headers=headers)
        refused(r, 401, "Invalid or missing API key")
        r = await act(stack, "POST", "outbox", headers=headers, body={"session_id": "x"})
        refused(r, 401, "Invalid or missing API key")
    for action in ADMIN_ACTIONS:
        method = ACTIONS.get(action, "GET")
        for key in (None, API_KEY, "free0ps"):
            r = await act(stack, method, action, key=key)
            refused(r, 401, "Invalid or missing admin key")
    # the public actions need no key
    ok(await act(stack, "GET", "responses", params={"session_id": sid()}))


# --------------------------------------------------------------------------- messages


async def test_messages_creates_the_session_and_stores_text_as_sent(stack: Stack) -> None:
    session_id = sid("m")
    text = "<b>'x'</b> & \"y\" — ünïcode"
    first = await say(stack, session_id, f"  {text}\x00  ")
    assert list(first) == ["message_id", "session_id", "timestamp", "uid", "is_new_user"]
    assert isinstance(first["message_id"], str) and first["message_id"]
    assert first["session_id"] == session_id
    assert PHP_TIME.match(first["timestamp"])
    assert UID.match(first["uid"])
    assert first["is_new_user"] is True
    second = await say(stack, session_id, "again")
    assert second["uid"] == first["uid"]
    assert second["is_new_user"] is False
    assert second["message_id"] != first["message_id"]

    stored = await stack.bridge.store.get_message(first["message_id"])
    assert stored is not None and stored.text == text  # NUL stripped, trimmed, not escaped
    session = await stack.bridge.store.get_session(session_id)
    assert session is not None and session.uid == first["uid"]
    assert session.inbox_id == stack.bridge.settings.webchat_compat_inbox_id

    await offered(stack)
    data = await inbox(stack)
    assert [m["message"] for m in data["messages"]] == [text]
    # the native history shows it too, unescaped
    r = await stack.http.get(f"/api/webchat/sessions/{session_id}/messages")
    assert [m["text"] for m in r.json()["messages"]][:2] == [text, "again"]


async def test_messages_refuses_bad_input_and_writes_nothing(stack: Stack) -> None:
    before = await snapshot(stack)
    good = sid("bad")
    cases: list[tuple[Any, str]] = [
        (b"", "Invalid JSON"),
        (b"not json", "Invalid JSON"),
        (b"\xff\xfe{}", "Invalid JSON"),
        (b"[" * 100_000, "Invalid JSON"),
        ([], "Invalid JSON"),
        ([1, 2], "Invalid JSON"),
        ({}, "Invalid JSON"),
        ("a string", "Invalid JSON"),
        (42, "Invalid JSON"),
        (None, "Invalid JSON"),
        ({"session_id": good}, "Missing required fields"),
        ({"message": "hi"}, "Missing required fields"),
        ({"session_id": good, "message": ""}, "Missing required fields"),
        ({"session_id": good, "message": " \t\n "}, "Missing required fields"),
        ({"session_id": good, "message": "\x00\x00"}, "Missing required fields"),
        ({"session_id": "", "message": "hi"}, "Missing required fields"),
        ({"session_id": None, "message": "hi"}, "Missing required fields"),
        ({"session_id": "bad id!", "message": "hi"}, "Invalid session ID"),
        ({"session_id": "a" * 65, "message": "hi"}, "Invalid session ID"),
        ({"session_id": "ünï", "message": "hi"}, "Invalid session ID"),
        ({"session_id": ["x"], "message": "hi"}, "Invalid session ID"),
        ({"session_id": True, "message": "hi"}, "Invalid session ID"),
        ({"session_id": {"a": 1}, "message": "hi"}, "Invalid session ID"),
        ({"session_id": good, "message": "x" * 10_001}, "Invalid message"),
        ({"session_id": good, "message": "é" * 5_001}, "Invalid message"),  # 10002 bytes
        ({"session_id": good, "message": {"text": "hi"}}, "Invalid message"),
        ({"session_id": good, "message": ["hi"]}, "Invalid message"),
        ({"session_id": good, "message": 1.5}, "Invalid message"),
        ({"session_id": good, "message": False}, "Invalid message"),
    ]
    for body, error in cases:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        refused(await act(stack, "POST", "messages", raw=raw), 400, error)
    # an unpaired surrogate cannot be stored as text
    raw = b'{"session_id": "%s", "message": "\\ud800"}' % good.encode()
    refused(await act(stack, "POST", "messages", raw=raw), 400, "Invalid message")
    await assert_no_writes(stack, before)
    assert await stack.bridge.store.get_session(good) is None
    assert unhandled(stack) == 0


async def test_messages_limit_is_bytes_and_numbers_are_text(stack: Stack) -> None:
    session_id = sid("edge")
    await say(stack, session_id, "é" * 5_000)  # exactly 10000 bytes
    data = ok(
        await act(stack, "POST", "messages", body={"session_id": 12345, "message": 7}),
        "Message received",
    )
    assert data["session_id"] == "12345"


async def test_the_services_own_refusals_read_as_the_contracts(stack: Stack) -> None:
    stack.bridge.settings.webchat_max_message_chars = 5
    before = await snapshot(stack)
    r = await act(stack, "POST", "messages", body={"session_id": sid(), "message": "toolong"})
    refused(r, 400, "Invalid message")
    await assert_no_writes(stack, before)


# --------------------------------------------------------------------------- inbox


async def test_inbox_leases_in_order_with_pagination_and_since(stack: Stack) -> None:
    sessions = [sid("in") for _ in range(3)]
    posted = []
    for i, s in enumerate(sessions):
        posted.append(await say(stack, s, f"message {i}"))
        await asyncio.sleep(0.01)
    await offered(stack, 3)

    # limit/offset: only what is returned is leased
    data = await inbox(stack, limit=1, offset=1)
    assert data["pagination"] == {"total": 3, "limit": 1, "offset": 1, "has_more": True}
    [m] = data["messages"]
    assert list(m) == ["id", "session_id", "message", "timestamp", "uid"]
    assert m == {
        "id": posted[1]["message_id"],
        "session_id": sessions[1],
        "message": "message 1",
        "timestamp": posted[1]["timestamp"],
        "uid": posted[1]["uid"],
    }
    # a future since hides everything; a past one hides nothing (nothing is leased by either)
    future = await inbox(stack, since="2999-01-01T00:00:00+00:00")
    assert future["messages"] == [] and future["pagination"]["total"] == 0
    assert (await inbox(stack, since="2000-01-01T00:00:00Z", limit=0))["pagination"] == {
        "total": 2,
        "limit": 0,
        "offset": 0,
        "has_more": True,
    }

    data = await inbox(stack, limit=500)
    assert data["pagination"] == {"total": 2, "limit": 100, "offset": 0, "has_more": False}
    assert [m["message"] for m in data["messages"]] == ["message 0", "message 2"]
    assert [m["id"] for m in data["messages"]] == [posted[0]["message_id"], posted[2]["message_id"]]

    empty = await inbox(stack)
    assert empty == {
        "messages": [],
        "pagination": {"total": 0, "limit": 50, "offset": 0, "has_more": False},
    }


async def test_inbox_query_values_are_read_like_php(stack: Stack) -> None:
    for params, expected in [
        ({"limit": "abc"}, (0, 0)),
        ({"limit": "7xyz", "offset": "-3"}, (7, 0)),
        ({"limit": "-5"}, (0, 0)),
        ({"limit": "99999999999999999999"}, (100, 0)),
        ({"offset": "2"}, (50, 2)),
        ({"since": "not a time"}, (50, 0)),
        ({"since": "2026-01-01 00:00:00 00:00"}, (50, 0)),
    ]:
        data = await inbox(stack, **params)
        p = data["pagination"]
        assert (p["limit"], p["offset"]) == expected, params
    assert unhandled(stack) == 0


# --------------------------------------------------------------------------- outbox, responses


async def test_outbox_answers_the_leased_message(stack: Stack) -> None:
    session_id = sid("out")
    said = await say(stack, session_id, "Where is my order?")
    await offered(stack)
    [m] = (await inbox(stack))["messages"]
    assert m["id"] == said["message_id"]

    data = await reply(stack, session_id, "<i>It's on its way</i>")
    assert list(data) == ["response_id", "session_id", "timestamp"]
    assert isinstance(data["response_id"], str)
    assert data["session_id"] == session_id
    assert PHP_TIME.match(data["timestamp"])

    got = await responses(stack, session_id)
    assert got == [
        {
            "id": data["response_id"],
            "response": "<i>It's on its way</i>",
            "timestamp": ANY_TIME,
            "message_id": said["message_id"],
        }
    ]
    stored = await stack.bridge.store.get_message(said["message_id"])
    assert stored is not None and stored.turn_id is not None
    turn = await stack.bridge.store.get_turn(stored.turn_id)
    assert turn is not None and turn["outcome"] == "reply"
    assert turn["reply_message_id"] == data["response_id"]
    # answered: it is not offered again
    assert stack.bridge.hub.pull.available(AGENT) == 0
    assert (await inbox(stack))["messages"] == []

    # a second outbox with nothing leased is a proactive message
    extra = await reply(stack, session_id, "Anything else?")
    await wait_until(lambda: responses(stack, session_id))
    got = await responses(stack, session_id)
    assert [(x["response"], x["message_id"]) for x in got] == [
        ("<i>It's on its way</i>", said["message_id"]),
        ("Anything else?", None),
    ]
    assert got[1]["id"] == extra["response_id"]


async def test_outbox_refuses_bad_input_and_writes_nothing(stack: Stack) -> None:
    live_session = sid("live")
    await say(stack, live_session, "hello")
    await end_open_turns(stack)
    opened_only = sid("opened")  # a session with no conversation yet
    await responses(stack, opened_only)
    before = await snapshot(stack)
    cases: list[tuple[Any, str]] = [
        (b"{", "Invalid JSON"),
        ({}, "Invalid JSON"),
        ({"session_id": live_session}, "Missing required fields"),
        ({"response": "hi"}, "Missing required fields"),
        ({"session_id": live_session, "response": "  "}, "Missing required fields"),
        ({"session_id": "no/pe", "response": "hi"}, "Invalid session ID"),
        ({"session_id": live_session, "response": "x" * 10_001}, "Invalid response"),
        ({"session_id": live_session, "response": {"a": 1}}, "Invalid response"),
        ({"session_id": sid("never"), "response": "hi"}, "Invalid or expired session"),
        ({"session_id": opened_only, "response": "hi"}, "Invalid or expired session"),
    ]
    for body, error in cases:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        refused(await act(stack, "POST", "outbox", key=API_KEY, raw=raw), 400, error)
    await assert_no_writes(stack, before)


async def test_outbox_to_an_expired_session(stack: Stack) -> None:
    session_id = sid("exp")
    await say(stack, session_id, "hello")
    await end_open_turns(stack)
    stack.bridge.settings.webchat_session_timeout = 1800
    sessions = t.webchat_sessions
    async with stack.bridge.store.engine.begin() as conn:  # idle for an hour
        await conn.execute(
            update(sessions)
            .where(sessions.c.id == session_id)
            .values(last_active=time.time() - 3600)
        )
    r = await act(
        stack, "POST", "outbox", key=API_KEY, body={"session_id": session_id, "response": "late"}
    )
    refused(r, 400, "Invalid or expired session")


async def test_responses_of_an_unknown_session_is_empty_and_filters_by_since(
    stack: Stack,
) -> None:
    before = await snapshot(stack)
    refused(await act(stack, "GET", "responses"), 400, "Missing session_id parameter")
    refused(
        await act(stack, "GET", "responses", params={"session_id": " \x00 "}),
        400,
        "Missing session_id parameter",
    )
    refused(
        await act(stack, "GET", "responses", params={"session_id": "bad id"}),
        400,
        "Invalid session ID",
    )
    await assert_no_writes(stack, before)
    session_id = sid("resp")
    assert await responses(stack, session_id) == []
    await assert_no_writes(stack, before)  # a stranger's GET creates nothing

    said = await say(stack, session_id, "hi")
    assert said["is_new_user"] is True
    await offered(stack)
    await inbox(stack)
    before_reply = time.time()
    await asyncio.sleep(0.01)
    await reply(stack, session_id, "hello there")
    after_reply = time.time() + 0.01

    def iso_ms(ts: float) -> str:  # what the widget sends: Date().toISOString()
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"

    assert [
        x["response"] for x in await responses(stack, session_id, since=iso_ms(before_reply))
    ] == ["hello there"]
    assert await responses(stack, session_id, since=iso_ms(after_reply)) == []
    # what is no time is compared as text, as PHP compares its TEXT timestamps
    assert len(await responses(stack, session_id, since="1")) == 1
    assert await responses(stack, session_id, since="garbage") == []


# --------------------------------------------------------------------------- leases


async def test_unanswered_message_is_offered_three_times_then_the_fallback(stack: Stack) -> None:
    s = stack.bridge.settings
    s.webchat_compat_lease_seconds = 0.3
    session_id = sid("lease")
    said = await say(stack, session_id, "anyone there?")
    await offered(stack)
    seen = []
    for _ in range(3):
        got = await wait_until(lambda: inbox_messages(stack), 5)
        seen.append(got)
        assert (await inbox(stack))["messages"] == []  # leased: not shown meanwhile
    assert all(g == seen[0] for g in seen)  # same id and timestamp: the plugin dedupes them
    assert seen[0][0]["id"] == said["message_id"]

    got_responses = await wait_until(lambda: responses(stack, session_id), 5)
    assert [(r["response"], r["message_id"]) for r in got_responses] == [
        (s.fallback_text, said["message_id"])
    ]
    assert (await inbox(stack))["messages"] == []
    stored = await stack.bridge.store.get_message(said["message_id"])
    assert stored is not None and stored.turn_id is not None
    turn = await stack.bridge.store.get_turn(stored.turn_id)
    assert turn is not None and turn["state"] == "failed" and turn["outcome"] == "fallback"


def lapse_leases(stack: Stack) -> None:
    """Make the leases of the offers to ``web_chat`` run out now (instead of waiting)."""
    for offer in stack.bridge.hub.pull.open_offers(AGENT):
        if offer.lease_id is not None:
            offer.lease_expires_at -= 3600


async def inbox_messages(stack: Stack) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = (await inbox(stack))["messages"]
    return messages


async def test_a_reply_after_the_lease_ran_out_still_answers_the_message(stack: Stack) -> None:
    stack.bridge.settings.webchat_compat_lease_seconds = 600
    session_id = sid("late")
    said = await say(stack, session_id, "slow agent")
    await offered(stack)
    assert (await inbox(stack))["messages"]
    lapse_leases(stack)  # lapsed, not yet polled again
    await reply(stack, session_id, "sorry for the wait")
    got = await responses(stack, session_id)
    assert [(r["response"], r["message_id"]) for r in got] == [
        ("sorry for the wait", said["message_id"])
    ]
    assert (await inbox(stack))["messages"] == []


async def test_mark_on_read_offers_each_message_once(stack: Stack) -> None:
    s = stack.bridge.settings
    s.webchat_mark_on_read = True
    s.webchat_compat_lease_seconds = 0.3
    session_id = sid("mor")
    await say(stack, session_id, "once only")
    await offered(stack)
    assert [m["message"] for m in await inbox_messages(stack)] == ["once only"]
    lapse_leases(stack)  # (its own timer may not have run yet: a poll must not offer it)
    assert await inbox_messages(stack) == []
    # never answered: the route's fallback, as for an exhausted lease
    got = await wait_until(lambda: responses(stack, session_id), 5)
    assert [r["response"] for r in got] == [s.fallback_text]


# --------------------------------------------------------------------------- rate limits


async def test_rate_limited_answers_429_with_retry_after(stack: Stack) -> None:
    stack.bridge.settings.rate_limit_history = "2/minute"
    session_id = sid("rl")
    await responses(stack, session_id)
    await responses(stack, session_id)
    r = await act(stack, "GET", "responses", params={"session_id": session_id})
    refused(r, 429, "Rate limit exceeded")
    assert int(r.headers["retry-after"]) >= 1


async def test_default_limits_never_block_a_5_second_poller_or_a_chat() -> None:
    s = Settings()

    def per_minute(limit: str) -> float:
        item = parse(limit)
        return item.amount * 60 / item.get_expiry()

    assert per_minute(s.rate_limit_agent) >= 60 / 5 * 2  # inbox + outbox every 5 s
    assert per_minute(s.rate_limit_history) >= 60 / 2  # the widget's responses poll
    assert per_minute(s.rate_limit_messages_session) >= 10


# --------------------------------------------------------------------------- admin


async def test_admin_sessions_and_session_messages(stack: Stack) -> None:
    session_id = sid("adm")
    said = await say(stack, session_id, "for the admin")
    await offered(stack)
    await inbox(stack)
    answer = await reply(stack, session_id, "noted")

    data = ok(await act(stack, "GET", "sessions", key=ADMIN_KEY, params={"limit": 1}))
    assert list(data) == ["sessions", "pagination"]
    assert data["pagination"]["limit"] == 1 and data["pagination"]["offset"] == 0
    assert data["pagination"]["has_more"] is (data["pagination"]["total"] > 1)
    [row] = data["sessions"]  # newest activity first: ours
    assert row == {
        "id": session_id,
        "uid": said["uid"],
        "created_at": ANY_TIME,
        "last_active": ANY_TIME,
        "ip_address": "127.0.0.1",
        "metadata": None,
        "message_count": 1,
        "response_count": 1,
    }
    everything = ok(
        await act(stack, "GET", "sessions", key=ADMIN_KEY, params={"active": "false", "limit": 100})
    )
    assert session_id in {x["id"] for x in everything["sessions"]}

    data = ok(
        await act(
            stack, "GET", "session_messages", key=ADMIN_KEY, params={"session_id": session_id}
        ),
        "Session messages retrieved",
    )
    assert data == {
        "session": {
            k: row[k] for k in ("id", "uid", "created_at", "last_active", "ip_address", "metadata")
        }
        | {"created_at": ANY_TIME, "last_active": ANY_TIME},
        "messages": [
            {
                "id": said["message_id"],
                "session_id": session_id,
                "message": "for the admin",
                "timestamp": ANY_TIME,
            }
        ],
        "responses": [
            {
                "id": answer["response_id"],
                "session_id": session_id,
                "response": "noted",
                "timestamp": ANY_TIME,
            }
        ],
    }
    r = await act(stack, "GET", "session_messages", key=ADMIN_KEY, params={"session_id": sid("no")})
    refused(r, 404, "Session not found")
    refused(await act(stack, "GET", "session_messages", key=ADMIN_KEY), 400, "Session ID required")
    r = await act(stack, "GET", "session_messages", key=ADMIN_KEY, params={"session_id": "a b"})
    refused(r, 400, "Invalid session ID")


async def test_admin_config_masks_and_changes_the_keys(stack: Stack) -> None:
    data = ok(await act(stack, "GET", "config", key=ADMIN_KEY))
    assert data == {"session_timeout": 1800, "api_key": "********", "admin_key": "********"}

    refused(await act(stack, "POST", "config", key=ADMIN_KEY, body={}), 400, "Invalid JSON")
    for body in (
        {"api_key": "a"},
        {"api_key": " ", "admin_key": "b"},
        {"api_key": [], "admin_key": "b"},
    ):
        r = await act(stack, "POST", "config", key=ADMIN_KEY, body=body)
        refused(r, 400, "Missing required fields")

    r = await act(
        stack,
        "POST",
        "config",
        key=ADMIN_KEY,
        body={"api_key": "new-api-key-0123456", "admin_key": "new-admin-key-0123456"},
    )
    assert ok(r) == {"message": "Configuration updated successfully"}
    refused(await act(stack, "GET", "inbox", key=API_KEY), 401, "Invalid or missing API key")
    ok(await act(stack, "GET", "inbox", key="new-api-key-0123456"))
    refused(await act(stack, "GET", "config", key=ADMIN_KEY), 401, "Invalid or missing admin key")
    assert ok(await act(stack, "GET", "config", key="new-admin-key-0123456"))["api_key"] == (
        "********"
    )
    # (the isolated fixture puts the keys back)


async def test_admin_cleanup_clear_data_and_logs(stack: Stack) -> None:
    old, fresh = sid("old"), sid("fresh")
    await say(stack, old, "old one")
    await end_open_turns(stack)
    inbox_id = stack.bridge.settings.webchat_compat_inbox_id
    await stack.bridge.store.open_session(fresh, inbox_id=inbox_id, timeout=1800)
    stack.bridge.settings.webchat_session_timeout = 1800
    sessions = t.webchat_sessions
    async with stack.bridge.store.engine.begin() as conn:  # the old one idle for an hour
        await conn.execute(
            update(sessions).where(sessions.c.id == old).values(last_active=time.time() - 3600)
        )
    data = ok(await act(stack, "POST", "cleanup", key=ADMIN_KEY))
    assert data["cleaned_count"] >= 1
    assert data["message"] == f"Cleaned up {data['cleaned_count']} inactive sessions"
    assert await stack.bridge.store.get_session(old) is None
    assert await stack.bridge.store.get_session(fresh) is not None

    data = ok(await act(stack, "POST", "clear_data", key=ADMIN_KEY))
    assert data["message"] == "All data cleared successfully"
    remaining = data["remaining_data"]
    assert list(remaining) == ["responses", "messages", "sessions"]
    assert remaining["sessions"] == 0
    assert all(isinstance(v, int) for v in remaining.values())
    assert await stack.bridge.store.get_session(fresh) is None

    data = ok(await act(stack, "POST", "cleanup_logs", key=ADMIN_KEY))
    assert data == {
        "message": "Log cleanup completed successfully",
        "current_log_size_mb": 0,
        "backup_files_count": 0,
        "total_log_size_mb": 0,
        "retention_days": 0,
        "max_size_mb": 0,
    }


# --------------------------------------------------------------------------- the plugin


class PluginClient:
    """What the broker's ``web_chat`` plugin does over HTTP (per the contract, §1)."""

    def __init__(self, api_url: str, api_key: str) -> None:
        self.api_url = api_url
        self.headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "User-Agent": "Broca2-WebChat-Plugin/1.0",
        }
        self.session = aiohttp.ClientSession()
        self.seen: set[str] = set()

    async def close(self) -> None:
        await self.session.close()

    async def _get_inbox(self, limit: int) -> list[dict[str, Any]]:
        url = f"{self.api_url}/api/v1/?action=inbox&limit={limit}&offset=0"
        async with self.session.get(url, headers=self.headers) as r:
            if r.status != 200:
                return []
            body = await r.json()  # raises unless Content-Type is application/json
            if not body.get("success"):
                return []
            messages: list[dict[str, Any]] = body["data"]["messages"]
            return messages

    async def test_connection(self) -> bool:
        await self._get_inbox(1)  # the start-up probe: its result is thrown away
        return True

    async def poll(self) -> list[dict[str, Any]]:
        new = []
        for m in await self._get_inbox(50):
            assert m["session_id"] and m["message"]
            datetime.fromisoformat(m["timestamp"].replace("Z", "+00:00"))
            key = f"{m['session_id']}_{m['id']}_{m['timestamp']}"
            if key not in self.seen:
                self.seen.add(key)
                new.append(m)
        return new

    async def post_response(self, session_id: str, response: str) -> bool:
        url = f"{self.api_url}/api/v1/?action=outbox"
        body = {"session_id": session_id, "response": response}
        async with self.session.post(url, headers=self.headers, json=body) as r:
            if r.status != 200:
                return False
            return bool((await r.json()).get("success"))


async def test_pull_plugin_round_trip_with_the_native_widget(stack: Stack) -> None:
    stack.bridge.settings.webchat_compat_lease_seconds = 0.5
    inbox_id = stack.bridge.settings.webchat_compat_inbox_id
    # The visitor, through the native widget API.
    r = await stack.http.post("/api/webchat/sessions", json={"inbox_id": inbox_id})
    assert r.status_code == 200, r.text
    session = r.json()
    r = await stack.http.post(
        f"/api/webchat/sessions/{session['session_id']}/messages",
        json={"text": "Hi, is <this> & 'that' in stock?", "client_message_id": "c1"},
    )
    assert r.status_code == 202, r.text
    message_id = r.json()["message_id"]
    await offered(stack)

    # The plugin starts (its trailing-slash URL gives //api/v1/), probes, then polls.
    plugin = PluginClient(stack.url + "/", API_KEY)
    try:
        assert await plugin.test_connection()
        assert await plugin.poll() == []  # the probe leased it …
        got = await wait_until(plugin.poll, 5)  # … and it comes back when the lease ends
        [m] = got
        assert m["id"] == message_id
        assert m["session_id"] == session["session_id"]
        assert m["uid"] == session["uid"]
        assert m["message"] == "Hi, is <this> & 'that' in stock?"
        assert await plugin.post_response(m["session_id"], f"Echo: {m['message']}")
        # answered: its offer is closed, so no poll, after any lease, offers it again
        assert stack.bridge.hub.pull.open_offers(AGENT) == []
        assert await plugin.poll() == []
    finally:
        await plugin.close()

    # The widget sees the reply in its history and through the action API.
    r = await stack.http.get(f"/api/webchat/sessions/{session['session_id']}/messages")
    texts = [(x["role"], x["text"]) for x in r.json()["messages"]]
    assert texts == [
        ("user", "Hi, is <this> & 'that' in stock?"),
        ("agent", "Echo: Hi, is <this> & 'that' in stock?"),
    ]
    got_responses = await responses(stack, session["session_id"])
    assert [(x["response"], x["message_id"]) for x in got_responses] == [
        ("Echo: Hi, is <this> & 'that' in stock?", message_id)
    ]
    assert unhandled(stack) == 0
