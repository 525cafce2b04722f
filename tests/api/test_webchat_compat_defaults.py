"""The web chat action API's safe defaults: off without both keys (and never the PHP default
keys), no key material out, only its own inbox's sessions, and nothing written by a GET."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from chatbridge.config import Settings
from tests.api.live import snapshot
from tests.e2e.harness import Stack, running_stack

API_KEY = "defaults-api-key-0123"
ADMIN_KEY = "defaults-admin-key-0123"
ACTIONS = {
    "messages": "POST",
    "inbox": "GET",
    "outbox": "POST",
    "responses": "GET",
    "sessions": "GET",
    "session_messages": "GET",
    "config": "GET",
    "cleanup": "POST",
    "clear_data": "POST",
    "cleanup_logs": "POST",
}


async def act(
    s: Stack, method: str, action: str, key: str | None = None, **kw: Any
) -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    params = {"action": action, **kw.pop("params", {})}
    return await s.http.request(method, "/api/v1/", params=params, headers=headers, **kw)


def data(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True
    return r.json()["data"]


def refused(r: httpx.Response, status: int, error: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["code"] == status
    assert body["error"] == error


async def test_off_without_keys_and_the_php_defaults_open_nothing(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, webchat=True) as s:
        inbox_id = s.bridge.settings.webchat_compat_inbox_id
        assert s.bridge.route_for("webchat", inbox_id) is None
        before = await snapshot(s)
        body = {"session_id": "session_x", "message": "hi", "response": "hi"}
        for action, method in ACTIONS.items():
            for key in (None, "free0ps", "YOUR_WEB_CHAT_API_KEY"):
                r = await act(s, method, action, key, json=body, params={"session_id": "session_x"})
                assert r.status_code == 404, (action, key, r.text)
                envelope = r.json()
                assert envelope["success"] is False
                assert "WEB_CHAT_API_KEY" in envelope["error"]
                assert "data" not in envelope
        # nothing read, nothing written: no session, no message, no route
        assert await snapshot(s) == before
        assert s.bridge.route_for("webchat", inbox_id) is None


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"web_chat_api_key": "free0ps"}, "web_chat_api_key"),
        ({"web_chat_admin_key": "YOUR_WEB_CHAT_API_KEY"}, "published default"),
        ({"web_chat_api_key": "YOUR_WEB_CHAT_API_KEY"}, "published default"),
        ({"web_chat_api_key": "short-key"}, "at least 16 characters"),
        ({"web_chat_api_key": API_KEY, "web_chat_admin_key": API_KEY}, "must differ"),
    ],
)
def test_weak_keys_are_refused_at_start_up(settings: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings(**settings)  # type: ignore[arg-type]


def test_one_key_alone_leaves_it_off() -> None:
    assert not Settings(web_chat_api_key=API_KEY).webchat_compat_enabled
    assert not Settings(web_chat_admin_key=ADMIN_KEY).webchat_compat_enabled
    assert Settings(web_chat_api_key=API_KEY, web_chat_admin_key=ADMIN_KEY).webchat_compat_enabled


async def test_on_it_sees_only_its_own_inbox_and_shows_no_keys(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url, webchat=True, web_chat_api_key=API_KEY, web_chat_admin_key=ADMIN_KEY
    ) as s:
        # the route is there from the start, before any request
        compat_inbox = s.bridge.settings.webchat_compat_inbox_id
        assert s.bridge.route_for("webchat", compat_inbox) is not None
        # a visitor of the native widget on inbox 1, with a message and the agent's answer
        r = await s.http.post("/api/webchat/sessions", json={"inbox_id": 1})
        native = r.json()["session_id"]
        r = await s.http.post(f"/api/webchat/sessions/{native}/messages", json={"text": "psst"})
        assert r.status_code == 202
        # a visitor of the action API's own inbox
        data(await act(s, "POST", "messages", json={"session_id": "own_1", "message": "hello"}))

        listed = data(await act(s, "GET", "sessions", ADMIN_KEY, params={"active": "false"}))
        assert [x["id"] for x in listed["sessions"]] == ["own_1"]
        assert listed["pagination"]["total"] == 1
        refused(
            await act(s, "GET", "session_messages", ADMIN_KEY, params={"session_id": native}),
            404,
            "Session not found",
        )
        got = data(await act(s, "GET", "responses", params={"session_id": native}))
        assert got == {"session_id": native, "responses": []}
        refused(
            await act(s, "POST", "messages", json={"session_id": native, "message": "in?"}),
            400,
            "Invalid session ID",
        )
        refused(
            await act(s, "POST", "outbox", API_KEY, json={"session_id": native, "response": "x"}),
            400,
            "Invalid or expired session",
        )
        data(await act(s, "POST", "clear_data", ADMIN_KEY))
        assert await s.bridge.store.get_session(native) is not None  # not its to clear
        assert await s.bridge.store.get_session("own_1") is None

        # keys: masked when read, weak ones refused when written (and nothing changes)
        config = data(await act(s, "GET", "config", ADMIN_KEY))
        assert API_KEY not in str(config) and ADMIN_KEY not in str(config)
        for body, complaint in (
            ({"api_key": "free0ps", "admin_key": "another-admin-key-0123"}, "api_key"),
            ({"api_key": "YOUR_WEB_CHAT_API_KEY", "admin_key": ADMIN_KEY}, "published default"),
            ({"api_key": "new-api-key-0123456", "admin_key": "tiny"}, "admin_key must be at"),
            ({"api_key": "same-key-0123456789", "admin_key": "same-key-0123456789"}, "differ"),
        ):
            r = await act(s, "POST", "config", ADMIN_KEY, json=body)
            assert r.status_code == 422, r.text
            assert complaint in r.json()["error"]
        data(await act(s, "GET", "inbox", API_KEY))  # the configured keys still hold


async def test_a_strangers_get_writes_nothing(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url, web_chat_api_key=API_KEY, web_chat_admin_key=ADMIN_KEY
    ) as s:
        before = await snapshot(s)
        r = await act(s, "GET", "responses", params={"session_id": "x"})
        assert data(r) == {"session_id": "x", "responses": []}
        assert await snapshot(s) == before
        assert await s.bridge.store.get_session("x") is None
