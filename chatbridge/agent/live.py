"""What a handler tells the bridge while it works (protocol 1.3), and where it goes.

``Turn.status()``, ``Turn.progress()``, ``Turn.file_processing()`` / ``file_complete()`` /
``file_error()`` and ``Turn.notice()`` build their frame here and hand it to the turn's
``LiveSend``: the SDK gives every turn one that fits how it met the bridge.

- over a WebSocket (dial-in, served): sent at once on the connection the turn came on (or that
  connection's successor); not at all to a bridge whose ``hello_ok`` names a revision before
  1.3, which would not know the frames;
- http-webhook: put in the response body before the answer (the bridge reads them in order;
  they arrive together with it, as streamed chunks do on that transport);
- http-pull: posted to the turn's reply URL at once.

A frame that cannot go out is dropped (``False``): a status line is worth nothing late.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Literal

from chatbridge.models import JsonObject
from chatbridge.protocol import (
    NOTICE_MAX,
    STATUS_MAX,
    FileComplete,
    FileError,
    FileProcessing,
    ProgressUpdate,
    StatusUpdate,
    SystemMessage,
    WarningMessage,
)

LiveSend = Callable[[JsonObject], Awaitable[bool]]
"""Sends one live frame or notice for a turn; False when it did not go out."""

NoticeLevel = Literal["system", "warning"]
FileState = Literal["processing", "complete", "error"]

_FILE_EVENTS: dict[str, type[FileProcessing | FileComplete | FileError]] = {
    "processing": FileProcessing,
    "complete": FileComplete,
    "error": FileError,
}


LIVE_SINCE = (1, 3)
"""The revision that brought these frames; an older bridge answers them ``unknown_type``."""

SDK_FEATURES = frozenset(
    ("status", "progress", "files", "file_events", "rich_data", "agent_handoff")
)
"""What the SDK announces for every agent; ``sessions`` and ``notices`` only for an agent with
an ``on_session`` / ``on_notice`` handler (frames nobody handles are not asked for)."""


def bridge_takes_live_frames(version: str | None) -> bool:
    """Whether a bridge that negotiated ``version`` (``hello_ok.version``) reads live frames:
    yes from 1.3 on, and when nobody said (a bridge that dialed us, ``None``)."""
    if version is None:
        return True
    major, _, minor = version.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        return False
    return (int(major), int(minor)) >= LIVE_SINCE


async def nowhere(frame: JsonObject) -> bool:
    """The ``LiveSend`` of a turn with no way to tell the bridge anything but its answer."""
    return False


def _line(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (an over-long line is cut, not refused)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_frame(turn_id: str, conversation_id: str, text: str) -> JsonObject:
    """``status_update`` for a turn.

    Raises:
        ValueError: ``text`` is empty.
    """
    if not text.strip():
        raise ValueError("a status line needs text")
    frame = StatusUpdate(
        message_id=turn_id, conversation_id=conversation_id, content=_line(text, STATUS_MAX)
    )
    return frame.model_dump(mode="json", exclude_none=True)


def progress_frame(
    turn_id: str, conversation_id: str, value: float, text: str | None
) -> JsonObject:
    """``progress_update`` for a turn; ``value`` is clamped to 0.0 to 1.0.

    Raises:
        ValueError: ``value`` is not a number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"progress must be a number from 0.0 to 1.0, not {value!r}")
    frame = ProgressUpdate(
        message_id=turn_id,
        conversation_id=conversation_id,
        progress=min(1.0, max(0.0, float(value))),
        content=_line(text, STATUS_MAX) if text else None,
    )
    return frame.model_dump(mode="json", exclude_none=True)


def file_frame(
    state: FileState,
    turn_id: str,
    conversation_id: str,
    file_id: str,
    text: str | None = None,
    error: str | None = None,
) -> JsonObject:
    """``file_processing`` / ``file_complete`` / ``file_error`` about one of the turn's files.

    Raises:
        ValueError: ``file_id`` is empty.
    """
    if not file_id:
        raise ValueError("name the file (its file_id)")
    frame: JsonObject = {
        "type": f"file_{state}",
        "message_id": turn_id,
        "conversation_id": conversation_id,
        "file_id": file_id,
    }
    if text:
        frame["content"] = _line(text, NOTICE_MAX)
    if state == "error" and error:
        frame["error"] = _line(error, NOTICE_MAX)
    model = _FILE_EVENTS[state].model_validate(frame)
    return model.model_dump(mode="json", exclude_none=True)


def notice_frame(
    turn_id: str | None, conversation_id: str, text: str, level: NoticeLevel
) -> JsonObject:
    """``system_message`` or ``warning_message`` into a conversation.

    Raises:
        ValueError: ``text`` is empty or ``level`` is neither ``system`` nor ``warning``.
    """
    if not text.strip():
        raise ValueError("a notice needs text")
    content = _line(text, NOTICE_MAX)
    model: SystemMessage | WarningMessage
    if level == "system":
        model = SystemMessage(message_id=turn_id, conversation_id=conversation_id, content=content)
    elif level == "warning":
        model = WarningMessage(message_id=turn_id, conversation_id=conversation_id, content=content)
    else:
        raise ValueError(f"a notice is 'system' or 'warning', not {level!r}")
    return model.model_dump(mode="json", exclude_none=True)
