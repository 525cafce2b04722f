"""The admin key's actions: sessions and their messages, the keys, and clean-ups."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.responses import Response

from chatbridge.api.webchat_compat.call import PAGE, Call, check_session_id, history
from chatbridge.api.webchat_compat.envelope import (
    Refusal,
    clean,
    pagination,
    php_int,
    php_time,
    success,
)
from chatbridge.config import WEAK_WEB_CHAT_KEYS, check_secret
from chatbridge.store.webchat import WebchatSession

log = logging.getLogger("chatbridge.webchat_compat")

KEY_MASK = "********"


def session_view(s: WebchatSession) -> dict[str, Any]:
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
                    **session_view(x.session),
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
    check_session_id(session_id)
    session = call.ours(await call.svc.store.get_session(session_id))
    if session is None:
        raise Refusal(404, "Session not found")
    rows = await history(call, session.uid)
    return success(
        {
            "session": session_view(session),
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
