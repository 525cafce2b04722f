"""One action API request: the caller, the bridge, and the checks every action shares."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from chatbridge.api.webchat_compat.envelope import Refusal, clean, text_ok
from chatbridge.config import Settings
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store.records import MessageRecord
from chatbridge.store.webchat import WebchatSession
from chatbridge.transports.pull import PullBroker
from chatbridge.webchat.service import SESSION_ID, WebchatService

PAGE = 500


@dataclass(slots=True)
class Call:
    request: Request
    bridge: Bridge
    svc: WebchatService
    ip: str

    @property
    def settings(self) -> Settings:
        return self.bridge.settings

    def param(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    async def body(self) -> dict[str, Any]:
        """The JSON object of the body; anything else (or an empty object) is refused."""
        raw = await self.request.body()
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise Refusal(400, "Invalid JSON") from None
        if not isinstance(data, dict) or not data:
            raise Refusal(400, "Invalid JSON")
        return data

    async def limit(self, scope: str, limit: str, key: str) -> None:
        await self.bridge.rate_limiter.hit(scope, limit, key)

    @property
    def agent_id(self) -> str:
        return str(self.settings.webchat_compat_agent_id)

    @property
    def inbox_id(self) -> int:
        return self.settings.webchat_compat_inbox_id

    def ours(self, session: WebchatSession | None) -> WebchatSession | None:
        """The session if it belongs to the action API's inbox; None for any other."""
        return session if session is not None and session.inbox_id == self.inbox_id else None

    @property
    def pull(self) -> PullBroker:
        return self.bridge.hub.pull


def bearer_matches(header: str | None, key: str | None) -> bool:
    if not header or not key or not header.startswith("Bearer "):
        return False
    given = header[len("Bearer ") :].encode("latin-1", "replace")
    return hmac.compare_digest(given, key.encode("utf-8", "replace"))


def check_session_id(session_id: str) -> None:
    if not SESSION_ID.match(session_id):
        raise Refusal(400, "Invalid session ID")


def session_and_text(body: dict[str, Any], field: str) -> tuple[str, str]:
    """``session_id`` and the text in ``field`` of a posted body, checked as the action API
    checks them (the same refusals, in the same order).

    Raises:
        Refusal: 400 naming what is missing or invalid.
    """
    session_id, text = clean(body.get("session_id")), clean(body.get(field))
    if session_id == "" or text == "":
        raise Refusal(400, "Missing required fields")
    if session_id is None:
        raise Refusal(400, "Invalid session ID")
    check_session_id(session_id)
    if text is None or not text_ok(text):
        raise Refusal(400, f"Invalid {field}")
    return session_id, text


async def active_session(call: Call, session_id: str) -> WebchatSession:
    session = await call.svc.store.get_session(session_id, timeout=call.svc.timeout)
    if call.ours(session) is None:
        raise Refusal(400, "Invalid or expired session")
    session = await call.svc.store.get_session(session_id, timeout=call.svc.timeout, touch=True)
    if session is None:
        raise Refusal(400, "Invalid or expired session")
    return session


async def history(call: Call, uid: str, since: float | None = None) -> list[MessageRecord]:
    """The whole history of a session (after ``since``), oldest first."""
    rows: list[MessageRecord] = []
    after: str | None = None
    while True:
        chunk = await call.svc.store.webchat_history(uid, after=after, limit=PAGE, since=since)
        rows.extend(chunk)
        if len(chunk) < PAGE:
            return rows
        after = chunk[-1].id
