"""Logging set-up, done once by the CLI: readable lines in a terminal, JSON lines in production.

Records about a message carry its ids as fields, not only in their text: a worker binds
``conversation_id``, ``turn_id``, ``agent_id``, ``message_id`` (and ``delivery_id``) where it
picks a turn or a delivery (``bind`` / ``unbind``, a context variable: every record logged
while it runs, by any logger, gets them). The JSON format writes them as keys of the line
(through python-json-logger), beside ``ts``, ``level``, ``logger`` and ``message``, and so are
the fields a call passes in ``extra=``. The text format stays one readable line as before.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

IDS = ("conversation_id", "turn_id", "delivery_id", "agent_id", "message_id")
"""The ids a worker binds (the fields a JSON line about a message carries)."""

_bound: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "chatbridge_log_ids", default=None
)

Token = contextvars.Token[dict[str, Any] | None]


def bind(**ids: Any) -> Token:
    """Add ``ids`` (those not None) to every record logged in this context until ``unbind``;
    ids bound earlier stay unless named again. Cheap: one dict, one context variable set."""
    current = _bound.get()
    fields = {k: v for k, v in ids.items() if v is not None}
    return _bound.set({**current, **fields} if current else fields)


def unbind(token: Token) -> None:
    """Restore the ids bound before the ``bind`` that returned ``token``."""
    _bound.reset(token)


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """``bind`` for the block."""
    token = bind(**ids)
    try:
        yield
    finally:
        unbind(token)


def bound_ids() -> dict[str, Any]:
    """The ids bound in this context now."""
    return dict(_bound.get() or {})


class BoundIds(logging.Filter):
    """Copies the bound ids onto each record (a field given in ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _bound.get()
        if ids:
            for key, value in ids.items():
                if key not in record.__dict__:
                    setattr(record, key, value)
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object per line: ``ts`` (UTC, ms), ``level`` (lower case), ``logger``,
    ``message``, ``exc`` (a traceback, if any), then the record's own fields (the bound ids,
    ``extra=``)."""
    from pythonjsonlogger.json import JsonFormatter

    class Formatter(JsonFormatter):
        def add_fields(
            self,
            log_data: dict[str, Any],
            record: logging.LogRecord,
            message_dict: dict[str, Any],
        ) -> None:
            log_data["ts"] = (
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z"
            )
            log_data["level"] = record.levelname.lower()
            log_data["logger"] = record.name
            super().add_fields(log_data, record, message_dict)
            if "exc_info" in log_data:
                log_data["exc"] = log_data.pop("exc_info")

    # ``%(message)s`` alone: ts/level/logger are written above, the other fields follow
    return Formatter("%(message)s", json_ensure_ascii=False)


def text_formatter() -> logging.Formatter:
    return logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter() if fmt == "json" else text_formatter())
    handler.addFilter(BoundIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log is noisy at load; keep errors.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # At DEBUG, websockets logs handshake headers and frame heads: tokens would leak.
    logging.getLogger("websockets").setLevel(max(logging.INFO, root.level))
