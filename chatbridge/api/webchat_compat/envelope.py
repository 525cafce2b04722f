"""The action API's envelope and how it reads its input, as the contract (and PHP) do.

Every answer, refusals included, is ``{"success": …}`` JSON with the contract's CORS headers;
query values are read as PHP's ``(int)`` reads them and times are PHP's ``date('c')``.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import Response

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Max-Age": "86400",
}
JSON_TYPE = "application/json; charset=utf-8"
MAX_TEXT_BYTES = 10_000


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


def json_response(
    status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None
) -> Response:
    content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status, headers={**CORS, **(headers or {})}, media_type=JSON_TYPE)


def success(data: Any, message: str = "Success") -> Response:
    return json_response(
        200, {"success": True, "message": message, "timestamp": php_time(), "data": data}
    )


def failure(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
    body = {"success": False, "error": error, "code": status, "timestamp": php_time()}
    return json_response(status, body, headers)


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


def pagination(total: int, limit: int, offset: int) -> dict[str, Any]:
    """The ``pagination`` object of ``inbox`` and ``sessions``."""
    return {"total": total, "limit": limit, "offset": offset, "has_more": offset + limit < total}
