"""An SDK agent as an http-webhook endpoint: the bridge POSTs each turn, the answer is the body.

``webhook_app(answers, secret)`` (or ``Agent.webhook_app(secret)``) is a small ASGI app with
one ``POST`` route; it needs Starlette (``pip install 'chatbridge[webhook]'``), which the rest
of the SDK does not. For each ``user_message`` it checks ``X-Chatbridge-Signature``
(``chatbridge.signing``), runs the agent's ``on_message`` handler and answers with the turn's
frames: ``agent_message`` (or ``handoff`` / ``no_reply`` / ``error_message``), or, for a
handler that yields chunks, the ``agent_streaming`` frames followed by ``agent_complete`` in
one JSON list. The chunks then arrive at the bridge together, not one by one: an agent that
must stream live should dial in or be dialed instead.

A turn the bridge sends again (it retried after a timeout or a 5xx) is answered from the
agent's kept answers (``agent.answers``), not run twice (turns are told apart by
``agent.identity.turn_key``, so another bridge's ``t_1`` is a different turn); a repeat that
arrives while the first run is still going waits for it. A ``cancel`` POST (protocol 1.1:
the bridge withdrew the turn) marks the turn cancelled and, unless the agent was made with
``cancel_handlers=False``, cancels its handler; it is answered 204, and so is the turn's own
request if it is still open. ``conversation_event`` POSTs are
acknowledged (204) and passed to the ``on_event`` handler, whose text, if any, cannot be sent
back on this transport and is logged; ``session_*`` and notice POSTs (protocol 1.3, sent when
the agent's config announces ``sessions`` / ``notices``) go to ``on_session`` / ``on_notice``.
What a handler sends while it works (``turn.status(…)``, …) comes first in the answer's list.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatbridge.agent.answers import WholeAnswers
from chatbridge.agent.identity import TurnKey, turn_key
from chatbridge.models import JsonObject
from chatbridge.protocol import (
    Cancel,
    ConversationEvent,
    ProtocolError,
    SessionCreated,
    SessionExpired,
    SessionUpdated,
    SystemMessage,
    UserMessage,
    WarningMessage,
    parse_bridge_frame,
)
from chatbridge.signing import SIGNATURE_HEADER, verify

log = logging.getLogger("chatbridge.agent.webhook")


def webhook_app(
    answers: WholeAnswers,
    secret: str | None,
    *,
    path: str = "/",
    max_body_bytes: int = 1024 * 1024,
    cancel_handlers: bool = True,
) -> Starlette:
    """The ASGI app that answers the bridge's turns with ``answers`` (an agent's) at ``path``.

    With ``secret`` (the route's ``agent_config.secret``) an unsigned or badly signed request
    gets 401 and runs nothing; without it, signatures are not checked (say so in your set-up).
    ``cancel_handlers``: a ``cancel`` from the bridge cancels the turn's handler.
    """
    running: dict[TurnKey, asyncio.Future[list[JsonObject]]] = {}

    async def turn(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > max_body_bytes:
            return _error(413, "too_large", f"body over {max_body_bytes} bytes")
        if secret is not None and not verify(secret, raw, request.headers.get(SIGNATURE_HEADER)):
            return _error(401, "bad_signature", f"missing or wrong {SIGNATURE_HEADER}")
        try:
            data = json.loads(raw)
            frame = parse_bridge_frame(data)
        except (ValueError, ProtocolError) as exc:
            return _error(400, "invalid_message", str(exc))
        if isinstance(frame, ConversationEvent):
            await answers.handle_event(frame, data)
            return Response(status_code=204)
        if isinstance(
            frame, SessionCreated | SessionUpdated | SessionExpired | SystemMessage | WarningMessage
        ):
            await answers.handle_frame(frame, data)
            return Response(status_code=204)
        if isinstance(frame, Cancel):
            answers.cancel(frame.message_id, frame.conversation_id, frame.reason)
            for (cid, mid, _), run in list(running.items()):
                matches = mid == frame.message_id and frame.conversation_id in (None, cid)
                if matches and cancel_handlers:
                    run.cancel()
            return Response(status_code=204)
        if not isinstance(frame, UserMessage):
            return Response(status_code=204)
        key = turn_key(frame)  # never message_id alone: it counts per bridge database
        pending = running.get(key)
        if pending is None:
            pending = asyncio.ensure_future(answers.answer(frame, data))
            running[key] = pending
            pending.add_done_callback(lambda _f: running.pop(key, None))
        try:
            frames = await asyncio.shield(pending)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if pending.cancelled() and (current is None or current.cancelling() == 0):
                return Response(status_code=204)  # the bridge cancelled the turn
            raise
        if not frames:
            return Response(status_code=204)  # cancelled while it ran
        return JSONResponse(frames[0] if len(frames) == 1 else frames)

    return Starlette(routes=[Route(path, turn, methods=["POST"])])


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
