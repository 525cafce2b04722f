"""The frames that answer a turn, built from what a handler returned (no I/O).

Every way an agent meets a bridge (a WebSocket, http-webhook, http-pull) answers with the
same protocol v1 frames: ``agent_message``, ``handoff``, ``agent_handoff`` (1.3), ``no_reply``
or ``error_message`` for a handler that returned or raised, ``agent_streaming`` chunks then
``agent_complete`` for one that yielded. The transports differ only in when the frames go out.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from chatbridge.agent.turn import Answer, Handoff, HandTo, NoReply, Turn, TurnError
from chatbridge.models import JsonObject
from chatbridge.protocol import Interactive, TemplateReply, error_frame
from chatbridge.richdata import dump_rich_data, parse_rich_data

log = logging.getLogger("chatbridge.agent")

A = TypeVar("A")


async def call_handler(handler: Callable[[A], Any], argument: A) -> Any:
    """Call a sync or async handler and return its result (an async iterator for a
    handler that streams)."""
    result: Any = handler(argument)
    if inspect.isawaitable(result):
        result = await result
    return result


def metadata(agent_id: str, started: float) -> JsonObject:
    """The ``metadata`` of an answer: who answered and how long the handler took."""
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return {"agent_id": agent_id, "processing_time_ms": elapsed_ms}


def reply_frame(turn: Turn, result: Any, meta: JsonObject) -> JsonObject:
    """The frame that ends ``turn`` for a handler's (non-streaming) result.

    Raises:
        TypeError: the handler returned something other than text, ``Handoff``, ``NoReply``
            or ``None``.
    """
    base = {"message_id": turn.id, "conversation_id": turn.conversation_id}
    match result:
        case str():
            return {"type": "agent_message", **base, "content": result, "metadata": meta}
        case Answer():
            return {"type": "agent_message", **base, **answer_fields(result), "metadata": meta}
        case None | NoReply():
            return {"type": "no_reply", **base, "metadata": meta}
        case Handoff(reason=reason, content=content, summary=summary):
            frame = {"type": "handoff", **base, "metadata": meta}
            if reason is not None:
                frame["reason"] = reason
            if content is not None:
                frame["content"] = content
            if summary is not None:
                frame["summary"] = summary
            return frame
        case HandTo():
            frame = {"type": "agent_handoff", **base, "metadata": meta}
            for name, value in (
                ("to_agent", result.agent),
                ("to_role", result.role),
                ("reason", result.reason),
                ("content", result.content),
            ):
                if value is not None:
                    frame[name] = value
            return frame
    raise TypeError(
        f"handler returned {type(result).__name__}; "
        "expected str, Answer, Handoff, HandTo, NoReply or None"
    )


def _model_json(value: Any, model: type[BaseModel]) -> JsonObject:
    checked = value if isinstance(value, model) else model.model_validate(value)
    return checked.model_dump(mode="json", exclude_none=True)


def answer_fields(answer: Answer) -> JsonObject:
    """The ``agent_message`` fields of an ``Answer``, checked against the protocol's models
    (a bad one raises ``pydantic.ValidationError``: the turn ends with ``handler_error``)."""
    out: JsonObject = {}
    if answer.content is not None:
        out["content"] = answer.content
    if answer.attachments:
        out["attachments"] = [dict(a) for a in answer.attachments]
    if answer.interactive is not None:
        out["interactive"] = _model_json(answer.interactive, Interactive)
    if answer.template is not None:
        out["template"] = _model_json(answer.template, TemplateReply)
    if answer.data is not None:
        data = answer.data
        if isinstance(data, BaseModel):
            data = data.model_dump(mode="json", exclude_none=True)
        out["data"] = dump_rich_data(parse_rich_data(data))
    return out


def chunk_frame(turn: Turn, index: int, chunk: Any) -> JsonObject:
    """``agent_streaming`` for the ``index``-th chunk a streaming handler yielded."""
    return {
        "type": "agent_streaming",
        "message_id": turn.id,
        "conversation_id": turn.conversation_id,
        "stream_index": index,
        "content": chunk if isinstance(chunk, str) else str(chunk),
    }


def complete_frame(turn: Turn, meta: JsonObject, content: str | None) -> JsonObject:
    """``agent_complete`` closing a stream; ``content`` (the whole text) makes it stand alone
    when chunks may have been lost, ``None`` leaves the joining of chunks to the bridge."""
    frame: JsonObject = {
        "type": "agent_complete",
        "message_id": turn.id,
        "conversation_id": turn.conversation_id,
    }
    if content is not None:
        frame["content"] = content
    frame["metadata"] = meta
    return frame


def failure_frame(turn: Turn, exc: Exception) -> JsonObject:
    """``error_message`` for a handler that raised: its ``TurnError`` code, else
    ``handler_error`` (logged with the traceback)."""
    if isinstance(exc, TurnError):
        details = exc.details if exc.details is not None else {"message": str(exc)}
        return error_frame(exc.code, message_id=turn.id, details=details)
    log.exception("handler failed on turn %s", turn.id, exc_info=exc)
    details = {"type": type(exc).__name__, "message": str(exc)[:500]}
    return error_frame("handler_error", message_id=turn.id, details=details)
