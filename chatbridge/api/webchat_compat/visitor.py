"""The web page's actions: ``messages`` (a visitor writes) and ``responses`` (it polls)."""

from __future__ import annotations

from fastapi.responses import Response

from chatbridge.api.webchat_compat.call import Call, check_session_id, history, session_and_text
from chatbridge.api.webchat_compat.envelope import (
    Refusal,
    clean,
    newer,
    parse_since,
    php_time,
    success,
)


async def act_messages(call: Call) -> Response:
    s = call.settings
    body = await call.body()
    session_id, text = session_and_text(body, "message")
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


async def act_responses(call: Call) -> Response:
    session_id = clean(call.param("session_id")) or ""
    if not session_id:
        raise Refusal(400, "Missing session_id parameter")
    check_session_id(session_id)
    since = parse_since(call.param("since"))
    session = call.ours(await call.svc.store.get_session(session_id, timeout=call.svc.timeout))
    if session is None:
        # Nothing to show yet; the first ``messages`` creates the session. (The PHP original
        # created it here, so any GET from anyone wrote a row.)
        return success({"session_id": session_id, "responses": []})
    await call.svc.store.get_session(session_id, timeout=call.svc.timeout, touch=True)
    rows = await history(call, session.uid, since if isinstance(since, float) else None)
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
