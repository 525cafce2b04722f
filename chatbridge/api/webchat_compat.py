"""The drop-in web chat *action API*: ``/api/v1/?action=…`` (contract: ``webchat-compat``).

An existing agent broker's ``web_chat`` plugin polls ``inbox`` and answers through ``outbox``;
a web page posts ``messages`` and polls ``responses``. Methods, auth, field names, id types,
the ``{"success": …}`` envelope, the error strings and the HTTP codes are the contract's, so
the unmodified plugin and widget work against the bridge. Behind it there is no second store:

- ``messages`` is a visitor message of the ``webchat`` channel (inbox
  ``webchat_compat_inbox_id``), stored as sent (never HTML-escaped) with its turn.
- ``inbox`` shows the turns offered to the http-pull agent ``webchat_compat_agent_id`` and
  *leases* what it returns; ``outbox`` settles the leased turns of the session's conversation
  with the reply (or, with none, sends a proactive message). A lease that runs out offers the
  message again, up to ``webchat_compat_max_offers`` times; then the turn fails to the route's
  fallback. ``webchat_mark_on_read`` offers each message once.
- ``responses`` is the agent side of the session's history.

Safe by default, unlike the PHP original:

- **Off unless both keys are set** (``WEB_CHAT_API_KEY`` and ``WEB_CHAT_ADMIN_KEY``, at least
  16 characters, different, never the PHP defaults ``YOUR_WEB_CHAT_API_KEY`` / ``free0ps``).
  Off, every action is refused with 404 in the API's envelope and nothing is read or written.
- **Its own inbox only.** The actions see the sessions of ``webchat_compat_inbox_id`` and
  nothing else: a native widget session of another inbox is unknown here.
- **No key material out.** ``config`` GET masks the keys; ``config`` POST refuses weak ones.
- **Nothing written by a stranger's GET.** ``responses`` of an unknown session is an empty
  list (the session is created by the first ``messages``); the route to the pull agent is
  created at start-up (``Bridge.ensure_webchat_compat_route``), never by a request.
- **Failed-key budget** per client address (``chatbridge.api.auth_limits``): over it, 429
  with ``Retry-After`` whatever the key.

Every answer, refusals included, is built here (``application/json; charset=utf-8`` plus the
contract's CORS headers): nothing reaches the app's own error envelope.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from chatbridge.api.auth_limits import auth_failures
from chatbridge.api.errors import BodyTooLarge
from chatbridge.api.forward import forwarded, to_holder
from chatbridge.api.webchat import _service
from chatbridge.config import WEAK_WEB_CHAT_KEYS, Settings, check_secret
from chatbridge.errors import BadInput
from chatbridge.pipeline.bridge import Bridge
from chatbridge.ratelimit import RateLimited, client_ip
from chatbridge.store.records import DeliverySpec, MessageRecord
from chatbridge.store.webchat import WEBCHAT, WebchatSession
from chatbridge.transports.base import AgentOutcome
from chatbridge.transports.pull import Offer, PullBroker
from chatbridge.webchat.service import SESSION_ID, WebchatService

log = logging.getLogger("chatbridge.webchat_compat")
router = APIRouter(tags=["webchat-compat"])

# The plugin builds ``{api_url}/api/v1/``; an ``api_url`` with a trailing slash gives ``//``.
PATHS = ("/api/v1/", "/api/v1", "/api/v1/index.php", "//api/v1/", "//api/v1/index.php")
METHODS = ["GET", "POST", "OPTIONS", "HEAD", "PUT", "PATCH", "DELETE"]
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Max-Age": "86400",
}
JSON_TYPE = "application/json; charset=utf-8"
MAX_TEXT_BYTES = 10_000
REPLY_WAIT_SECONDS = 10.0
PAGE = 500
KEY_MASK = "********"
DISABLED = (
    "Web chat action API is disabled: set WEB_CHAT_API_KEY and WEB_CHAT_ADMIN_KEY to enable it"
)


# ------------------------------------------------------------------------------ envelope


class Refusal(Exception):
    """A request answered with the contract's error envelope."""

    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.headers = headers or {}


def php_time(ts: float | None = None) -> str:
    """PHP's ``date('c')`` in UTC: ``2026-11-21T23:55:11+00:00`` (whole seconds)."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return moment.replace(microsecond=0).isoformat()


def _json(
    status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None
) -> Response:
    content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status, headers={**CORS, **(headers or {})}, media_type=JSON_TYPE)


def success(data: Any, message: str = "Success") -> Response:
    return _json(200, {"success": True, "message": message, "timestamp": php_time(), "data": data})


def failure(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
    body = {"success": False, "error": error, "code": status, "timestamp": php_time()}
    return _json(status, body, headers)


# ------------------------------------------------------------------------------ input


def clean(value: Any) -> str | None:
    """A text field as the contract reads it: NULs stripped, then trimmed. Absent → ``""``;
    a value that is not text (an object, a list, a boolean) → ``None``."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).replace("\x00", "").strip()


def text_ok(text: str) -> bool:
    """1 to 10000 bytes of UTF-8 (no unpaired surrogates)."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return 1 <= size <= MAX_TEXT_BYTES


def php_int(raw: str | None, default: int) -> int:
    """PHP's ``(int)`` of a query value: its leading integer, else 0 (absent: ``default``)."""
    if raw is None:
        return default
    match = re.match(r"\s*([+-]?\d{1,12})", raw)
    return int(match.group(1)) if match else 0


def parse_since(raw: str | None) -> float | str | None:
    """``since`` as a time; text that is no ISO time is compared as text (as PHP does)."""
    if not raw:
        return None
    value = raw.strip()
    # An unencoded "+00:00" in a query string arrives as " 00:00".
    value = re.sub(r" (\d\d:?\d\d)$", r"+\1", value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return raw
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def newer(ts: float, since: float | str | None) -> bool:
    if since is None:
        return True
    if isinstance(since, str):
        return php_time(ts) > since
    return ts > since


def iso_to_ts(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return time.time()


# ------------------------------------------------------------------------------ a call


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


def _bearer_matches(header: str | None, key: str | None) -> bool:
    if not header or not key or not header.startswith("Bearer "):
        return False
    given = header[len("Bearer ") :].encode("latin-1", "replace")
    return hmac.compare_digest(given, key.encode("utf-8", "replace"))


def _check_session_id(session_id: str) -> None:
    if not SESSION_ID.match(session_id):
        raise Refusal(400, "Invalid session ID")


async def _active_session(call: Call, session_id: str) -> WebchatSession:
    session = await call.svc.store.get_session(session_id, timeout=call.svc.timeout)
    if call.ours(session) is None:
        raise Refusal(400, "Invalid or expired session")
    session = await call.svc.store.get_session(session_id, timeout=call.svc.timeout, touch=True)
    if session is None:
        raise Refusal(400, "Invalid or expired session")
    return session


# ------------------------------------------------------------------------------ offers


def offer_messages(offer: Offer) -> list[dict[str, Any]]:
    """The inbox entries of one offered turn: one per visitor message."""
    frame = offer.req.frame
    context = frame.get("context") or {}
    uid = context.get("uid") or (frame.get("sender") or {}).get("id")
    out = []
    for m in frame.get("messages") or []:
        created = iso_to_ts(m.get("created_at"))
        out.append(
            {
                "id": str(m.get("id")),
                "session_id": context.get("session_id"),
                "message": m.get("content") or "",
                "timestamp": php_time(created),
                "uid": uid,
                "_ts": created,
            }
        )
    return out


# ------------------------------------------------------------------------------ actions


def pagination(total: int, limit: int, offset: int) -> dict[str, Any]:
    """The ``pagination`` object of ``inbox`` and ``sessions``."""
    return {"total": total, "limit": limit, "offset": offset, "has_more": offset + limit < total}


async def act_messages(call: Call) -> Response:
    s = call.settings
    body = await call.body()
    session_id, text = clean(body.get("session_id")), clean(body.get("message"))
    if session_id == "" or text == "":
        raise Refusal(400, "Missing required fields")
    if session_id is None:
        raise Refusal(400, "Invalid session ID")
    _check_session_id(session_id)
    if text is None or not text_ok(text):
        raise Refusal(400, "Invalid message")
    await call.limit("webchat_message_session", s.rate_limit_messages_session, session_id)
    existing = await call.svc.store.get_session(session_id)
    if existing is not None and call.ours(existing) is None:
        raise Refusal(400, "Invalid session ID")  # a session of another inbox: not ours
    posted = await call.svc.post(
        session_id,
        text,
        inbox_id=s.webchat_compat_inbox_id,
        ip=call.ip,
        extra={"via": "action_api"},
    )
    if posted.message is None:
        raise RuntimeError(f"message of session {session_id} was not stored")
    return success(
        {
            "message_id": posted.message.id,
            "session_id": posted.session.id,
            "timestamp": php_time(posted.message.created_at),
            "uid": posted.session.uid,
            "is_new_user": posted.new_session,
        },
        "Message received",
    )


async def act_inbox(call: Call) -> Response:
    limit = max(0, min(php_int(call.param("limit"), 50), 100))
    offset = max(0, php_int(call.param("offset"), 0))
    since = parse_since(call.param("since"))
    call.pull.take(call.agent_id, 0)  # leases nothing; records that the agent polled
    now = time.time()
    entries: list[tuple[Offer, dict[str, Any]]] = [
        (offer, entry)
        for offer in call.pull.open_offers(call.agent_id)
        if offer.available(now) and offer.req.frame.get("channel") == WEBCHAT
        for entry in offer_messages(offer)
        if newer(entry["_ts"], since)
    ]
    entries.sort(key=lambda pair: pair[1]["_ts"])
    total = len(entries)
    page = entries[offset : offset + limit]
    leased: set[int] = set()
    for offer, _ in page:
        if id(offer) not in leased:
            leased.add(id(offer))
            call.pull.lease(offer, now)
    if page:
        log.info("action API inbox: leased %d turn(s) to %s", len(leased), call.agent_id)
    return success(
        {
            "messages": [{k: v for k, v in e.items() if k != "_ts"} for _, e in page],
            "pagination": pagination(total, limit, offset),
        }
    )


async def act_outbox(call: Call) -> Response:
    body = await call.body()
    session_id, text = clean(body.get("session_id")), clean(body.get("response"))
    if session_id == "" or text == "":
        raise Refusal(400, "Missing required fields")
    if session_id is None:
        raise Refusal(400, "Invalid session ID")
    _check_session_id(session_id)
    if text is None or not text_ok(text):
        raise Refusal(400, "Invalid response")
    session = await _active_session(call, session_id)
    conversation_id = await call.svc.conversation_id(session)
    if conversation_id is None:
        raise Refusal(400, "Invalid or expired session")
    response_id, at = await _settle(call, conversation_id, text)
    if response_id is None:
        response_id, at = await _proactive(call, conversation_id, text)
    return success(
        {"response_id": response_id, "session_id": session.id, "timestamp": php_time(at)},
        "Response sent successfully",
    )


async def _settle(call: Call, conversation_id: str, text: str) -> tuple[str | None, float]:
    """Answer the conversation's turns handed out by ``inbox`` (leased, or lapsed but not
    yet re-offered): the first gets the reply, any others end without one."""
    handed_out = [
        o
        for o in call.pull.open_offers(call.agent_id)
        if o.req.conversation_id == conversation_id and o.offers > 0
    ]
    answered: Offer | None = None
    for offer in handed_out:
        outcome = AgentOutcome("reply", content=text) if answered is None else None
        if call.pull.settle(offer, outcome or AgentOutcome("no_reply")) and outcome:
            answered = offer
    if answered is None:
        return None, time.time()
    turn_id = answered.req.seq
    await call.bridge.wait_for_reply(turn_id, REPLY_WAIT_SECONDS)
    row = await call.bridge.store.get_turn(turn_id)
    if row is None or not row.get("reply_message_id"):
        log.warning("action API outbox: turn %s has no reply message yet", turn_id)
        return f"t_{turn_id}", time.time()
    return str(row["reply_message_id"]), float(row.get("finished_at") or time.time())


async def _proactive(call: Call, conversation_id: str, text: str) -> tuple[str, float]:
    """A message nobody asked for (no turn handed out): sent like the agent's own message."""
    b = call.bridge
    conv = await b.store.get_conversation(conversation_id)
    route = b.route_for(conv.channel, conv.inbox_id) if conv else None
    if conv is None or route is None or route.agent_id != call.agent_id:
        # Agents may only write into conversations routed to them.
        raise Refusal(400, "Invalid or expired session")
    done = await b.store.add_outbound(
        conv.id,
        text=text,
        author="agent",
        deliveries=[DeliverySpec("message", b.settings.delivery_max_attempts, text=text)],
        meta={"proactive": True, "agent_id": call.agent_id, "via": "action_api"},
    )
    if not done.ok or done.reply_message_id is None:
        raise Refusal(400, "Invalid or expired session")
    b.wake_deliveries()
    return done.reply_message_id, time.time()


async def act_responses(call: Call) -> Response:
    session_id = clean(call.param("session_id")) or ""
    if not session_id:
        raise Refusal(400, "Missing session_id parameter")
    _check_session_id(session_id)
    since = parse_since(call.param("since"))
    session = call.ours(await call.svc.store.get_session(session_id, timeout=call.svc.timeout))
    if session is None:
        # Nothing to show yet; the first ``messages`` creates the session. (The PHP original
        # created it here, so any GET from anyone wrote a row.)
        return success({"session_id": session_id, "responses": []})
    await call.svc.store.get_session(session_id, timeout=call.svc.timeout, touch=True)
    rows = await _history(call, session.uid, since if isinstance(since, float) else None)
    asked: dict[int, str] = {m.turn_id: m.id for m in rows if m.direction == "in" and m.turn_id}
    out = []
    for m in rows:
        if m.direction != "out" or not newer(m.created_at, since):
            continue
        message_id = asked.get(m.turn_id) if m.turn_id else None
        if m.turn_id and message_id is None:
            turn = await call.bridge.store.get_turn(m.turn_id)
            ids = (turn or {}).get("message_ids") or []
            message_id = str(ids[-1]) if ids else None
        out.append(
            {
                "id": m.id,
                "response": m.text,
                "timestamp": php_time(m.created_at),
                "message_id": message_id,
            }
        )
    return success({"session_id": session.id, "responses": out})


async def _history(call: Call, uid: str, since: float | None = None) -> list[MessageRecord]:
    """The whole history of a session (after ``since``), oldest first."""
    rows: list[MessageRecord] = []
    after: str | None = None
    while True:
        chunk = await call.svc.store.webchat_history(uid, after=after, limit=PAGE, since=since)
        rows.extend(chunk)
        if len(chunk) < PAGE:
            return rows
        after = chunk[-1].id


def _session_view(s: WebchatSession) -> dict[str, Any]:
    return {
        "id": s.id,
        "uid": s.uid,
        "created_at": php_time(s.created_at),
        "last_active": php_time(s.last_active),
        "ip_address": s.ip_address,
        "metadata": s.meta or None,
    }


async def act_sessions(call: Call) -> Response:
    limit = max(0, min(php_int(call.param("limit"), 50), 100))
    offset = max(0, php_int(call.param("offset"), 0))
    active = (call.param("active") or "true") == "true"
    summaries, total = await call.svc.store.list_sessions(
        active_within=call.svc.timeout if active else None,
        limit=limit,
        offset=offset,
        inbox_id=call.inbox_id,
    )
    return success(
        {
            "sessions": [
                {
                    **_session_view(x.session),
                    "message_count": x.message_count,
                    "response_count": x.response_count,
                }
                for x in summaries
            ],
            "pagination": pagination(total, limit, offset),
        }
    )


async def act_session_messages(call: Call) -> Response:
    session_id = clean(call.param("session_id")) or ""
    if not session_id:
        raise Refusal(400, "Session ID required")
    _check_session_id(session_id)
    session = call.ours(await call.svc.store.get_session(session_id))
    if session is None:
        raise Refusal(404, "Session not found")
    rows = await _history(call, session.uid)
    return success(
        {
            "session": _session_view(session),
            "messages": [
                {
                    "id": m.id,
                    "session_id": session.id,
                    "message": m.text,
                    "timestamp": php_time(m.created_at),
                }
                for m in rows
                if m.direction == "in"
            ],
            "responses": [
                {
                    "id": m.id,
                    "session_id": session.id,
                    "response": m.text,
                    "timestamp": php_time(m.created_at),
                }
                for m in rows
                if m.direction == "out"
            ],
        },
        "Session messages retrieved",
    )


def weak_key_reason(name: str, key: str) -> str | None:
    """Why ``key`` may not be the action API's ``name`` key, or None if it may."""
    if key in WEAK_WEB_CHAT_KEYS:
        return f"{name} is a published default key; choose your own"
    try:
        check_secret(name, key)
    except ValueError as exc:
        return str(exc)
    return None


async def act_config(call: Call) -> Response:
    """GET: the session timeout, and the keys masked (never their value). POST: new keys,
    in this process only, refused with 422 when weak (short, a PHP default, or equal)."""
    s = call.settings
    method = call.request.method
    if method == "GET":
        timeout = s.webchat_session_timeout
        return success(
            {
                "session_timeout": int(timeout) if float(timeout).is_integer() else timeout,
                "api_key": KEY_MASK,
                "admin_key": KEY_MASK,
            }
        )
    if method != "POST":
        raise Refusal(405, "Method not allowed")
    body = await call.body()
    api_key, admin_key = clean(body.get("api_key")), clean(body.get("admin_key"))
    if not api_key or not admin_key:
        raise Refusal(400, "Missing required fields")
    for name, key in (("api_key", api_key), ("admin_key", admin_key)):
        reason = weak_key_reason(name, key)
        if reason is not None:
            raise Refusal(422, reason)
    if api_key == admin_key:
        raise Refusal(422, "api_key and admin_key must differ")
    # In this process only: the environment sets them again at the next start.
    s.web_chat_api_key = api_key
    s.web_chat_admin_key = admin_key
    log.warning("action API: web chat API and admin keys changed by an admin (%s)", call.ip)
    return success({"message": "Configuration updated successfully"})


async def act_cleanup(call: Call) -> Response:
    n = await call.svc.store.delete_expired_sessions(call.svc.timeout, inbox_id=call.inbox_id)
    return success({"cleaned_count": n, "message": f"Cleaned up {n} inactive sessions"})


async def act_clear_data(call: Call) -> Response:
    """Forget every session of the action API's inbox (other inboxes' sessions are not its
    own). Their messages are conversation history of the bridge and stay (the management API
    deletes conversations); ``remaining_data`` says so."""
    summaries: list[Any] = []
    while True:
        chunk, _ = await call.svc.store.list_sessions(
            active_within=None, limit=PAGE, offset=len(summaries), inbox_id=call.inbox_id
        )
        summaries.extend(chunk)
        if len(chunk) < PAGE:
            break
    await call.svc.store.clear_webchat(inbox_id=call.inbox_id)
    _, sessions_left = await call.svc.store.list_sessions(
        active_within=None, limit=1, offset=0, inbox_id=call.inbox_id
    )
    return success(
        {
            "message": "All data cleared successfully",
            "remaining_data": {
                "responses": sum(x.response_count for x in summaries),
                "messages": sum(x.message_count for x in summaries),
                "sessions": sessions_left,
            },
        }
    )


async def act_cleanup_logs(call: Call) -> Response:
    # The bridge writes no log files of its own (it logs to stdout): nothing to prune.
    return success(
        {
            "message": "Log cleanup completed successfully",
            "current_log_size_mb": 0,
            "backup_files_count": 0,
            "total_log_size_mb": 0,
            "retention_days": 0,
            "max_size_mb": 0,
        }
    )


Auth = Literal["api", "admin"] | None


@dataclass(frozen=True, slots=True)
class Action:
    run: Callable[[Call], Awaitable[Response]]
    method: str | None  # None: the action checks the method itself, after auth (config)
    auth: Auth
    # per caller IP: (scope, the setting holding the limit); shared with the native API
    limit: tuple[str, str]


_VISITOR = ("webchat_message_ip", "rate_limit_messages_ip")
_POLL = ("webchat_history", "rate_limit_history")
_AGENT = ("webchat_compat_agent", "rate_limit_agent")
_ADMIN = ("webchat_compat_admin", "rate_limit_agent")

ACTIONS: dict[str, Action] = {
    "messages": Action(act_messages, "POST", None, _VISITOR),
    "inbox": Action(act_inbox, "GET", "api", _AGENT),
    "outbox": Action(act_outbox, "POST", "api", _AGENT),
    "responses": Action(act_responses, "GET", None, _POLL),
    "sessions": Action(act_sessions, "GET", "admin", _ADMIN),
    "session_messages": Action(act_session_messages, "GET", "admin", _ADMIN),
    "config": Action(act_config, None, "admin", _ADMIN),
    "cleanup": Action(act_cleanup, "POST", "admin", _ADMIN),
    "clear_data": Action(act_clear_data, "POST", "admin", _ADMIN),
    "cleanup_logs": Action(act_cleanup_logs, "POST", "admin", _ADMIN),
}

# The service's refusals, in the contract's words (by the action's kind of text).
_BAD_INPUT = {
    "invalid_session_id": "Invalid session ID",
    "unknown_session": "Invalid or expired session",
}


async def _authorize(call: Call, auth: Auth) -> None:
    """Check the action's key. A wrong one (a header was sent) spends the caller's budget;
    over it, 429 before the key is even compared."""
    if auth is None:
        return
    header = call.request.headers.get("authorization")
    s = call.settings
    failures = auth_failures(call.request)
    here = not forwarded(call.request)  # a forwarded call was checked where it arrived
    if here:
        wait = await failures.retry_after("action_api", call.ip)
        if wait is not None:
            raise Refusal(
                429, "Too many failed authentication attempts", {"Retry-After": str(wait)}
            )
    key = s.web_chat_api_key if auth == "api" else s.web_chat_admin_key
    if _bearer_matches(header, key):
        return
    if header and here:
        await failures.failed("action_api", call.ip)
    raise Refusal(
        401, "Invalid or missing API key" if auth == "api" else "Invalid or missing admin key"
    )


async def action_api(request: Request) -> Response:
    """``/api/v1/?action=…``: route on ``action``, check method and key, run the action."""
    if request.method == "OPTIONS":
        return _json(200, None)
    bridge: Bridge = request.app.state.bridge
    if not bridge.settings.webchat_compat_enabled:
        return failure(404, DISABLED)
    name = request.query_params.get("action") or ""
    action = ACTIONS.get(name)
    if action is None:
        return failure(400, "Invalid action")
    call = Call(request, bridge, _service(bridge), client_ip(request))
    try:
        if action.method is not None and request.method != action.method:
            raise Refusal(405, "Method not allowed")
        scope, setting = action.limit
        if not forwarded(request):  # a forwarded call was limited where it arrived
            await call.limit(scope, getattr(call.settings, setting), call.ip)
        await _authorize(call, action.auth)
        if bridge.cluster is not None and name in ("inbox", "outbox"):
            # They act on the pull agent's offers, which live on the replica holding it.
            elsewhere = await to_holder(request, bridge, call.agent_id)
            if elsewhere is not None:
                return elsewhere
        return await action.run(call)
    except Refusal as exc:
        return failure(exc.status, exc.error, exc.headers)
    except RateLimited as exc:
        return failure(429, "Rate limit exceeded", {"Retry-After": str(exc.retry_after)})
    except BadInput as exc:
        if exc.code in _BAD_INPUT:
            return failure(400, _BAD_INPUT[exc.code])
        if exc.status_code < 500 and exc.code != "unknown_inbox":
            return failure(400, "Invalid response" if name == "outbox" else "Invalid message")
        log.error("action API %s: %s (%s)", name, exc.message, exc.code)
        return failure(500, "Internal server error")
    except (BodyTooLarge, ClientDisconnect):
        raise  # answered by BodySizeLimit / nobody is listening
    except Exception:
        log.exception("action API %s: unexpected error", name)
        bridge.metrics.errors.labels("unhandled").inc()
        return failure(500, "Internal server error")


for _path in PATHS:
    router.add_api_route(_path, action_api, methods=METHODS, include_in_schema=False)
