"""The fake WAHA's LID endpoints (an extension of ``chatbridge.testing.fake_whatsapp``).

Answers like WAHA's ``/api/{session}/lids…`` (waha-docs, "Contacts → API - Lids"):

* ``GET /api/{session}/lids/{lid}`` → ``{"lid": "<n>@lid", "pn": "<digits>@c.us" | null}``;
  ``{lid}`` is the number alone or ``<n>@lid`` with the ``@`` escaped (``%40``) or not.
* ``GET /api/{session}/lids/pn/{phone}`` → ``{"lid": … | null, "pn": "<digits>@c.us"}``.
* ``GET /api/{session}/lids`` (``limit``, ``offset``) → ``[{lid, pn}, …]``;
  ``GET /api/{session}/lids/count`` → ``{"count": n}``.

As strict as WAHA: 401 without the right ``X-Api-Key``, 404 for a session it does not have,
422 for a session that is not ``WORKING``, 400 for a ``{lid}`` that is no LID. State lives in
``fake.ext["lids"]`` (``lids_of(fake)``): ``known`` maps each session's ``<n>@lid`` to the
phone JID (``add_lid``),
``raw_paths`` records each lookup's path as it came on the wire, and ``hold`` (an
``asyncio.Event``, when set by a test) keeps lookups waiting until it is set, for timeouts.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from fastapi import Request
from fastapi.responses import JSONResponse, Response

if TYPE_CHECKING:
    from chatbridge.testing.fake_whatsapp import FakeWhatsApp

_PATH = re.compile(r"/api/(?P<session>[^/]+)/lids(?:/(?P<rest>.*))?")
_LID = re.compile(r"(?P<n>[0-9]{1,30})(?:@lid)?")


@dataclass
class LidState:
    # session → {"<n>@lid": "<digits>@c.us"}: each WhatsApp account knows its own contacts
    known: dict[str, dict[str, str]] = field(default_factory=dict)
    raw_paths: list[str] = field(default_factory=list)
    hold: asyncio.Event | None = None


def lids_of(fake: FakeWhatsApp) -> LidState:
    """The fake's LID state (created on first use)."""
    state = fake.ext.get("lids")
    if not isinstance(state, LidState):
        state = fake.ext["lids"] = LidState()
    return state


def add_lid(fake: FakeWhatsApp, lid: str, phone: str, session: str = "default") -> None:
    """Teach the fake's ``session`` that ``lid`` (``"<n>@lid"`` or ``"<n>"``) is ``phone``
    (digits or a JID)."""
    number = lid.partition("@")[0]
    digits = phone.partition("@")[0].lstrip("+")
    lids_of(fake).known.setdefault(session, {})[f"{number}@lid"] = f"{digits}@c.us"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "statusCode": status}, status_code=status)


async def handle(
    fake: FakeWhatsApp,
    request: Request,
    path: str,
    headers: dict[str, str],
    body: Any,
    raw: bytes,
) -> Response | None:
    match = _PATH.fullmatch(path)
    if match is None:
        return None
    if fake.waha_api_key and headers.get("x-api-key") != fake.waha_api_key:
        return _error(401, "Unauthorized")
    if request.method != "GET":
        return _error(404, f"Cannot {request.method} {path}")
    state = lids_of(fake)
    state.raw_paths.append(request.scope.get("raw_path", b"").decode("latin-1"))
    session = match["session"]
    if session not in fake.waha_sessions:
        return _error(404, "Session not found")
    if fake.waha_sessions[session] != "WORKING":
        return _error(
            422, f"Session status is not as expected. Status: {fake.waha_sessions[session]}"
        )
    if state.hold is not None:
        await state.hold.wait()
    rest = unquote(match["rest"] or "")
    known = state.known.get(session, {})
    if rest == "":
        pairs = [{"lid": lid, "pn": pn} for lid, pn in known.items()]
        offset = int(request.query_params.get("offset", 0))
        limit = int(request.query_params.get("limit", 100))
        return JSONResponse(pairs[offset : offset + limit])
    if rest == "count":
        return JSONResponse({"count": len(known)})
    if rest.startswith("pn/"):
        digits = rest.removeprefix("pn/").partition("@")[0].lstrip("+")
        pn = f"{digits}@c.us"
        lid = next((k for k, v in known.items() if v == pn), None)
        return JSONResponse({"lid": lid, "pn": pn})
    lid_match = _LID.fullmatch(rest)
    if lid_match is None:
        return _error(400, f"'{rest}' is not a lid: use <number> or <number>@lid")
    lid = f"{lid_match['n']}@lid"
    return JSONResponse({"lid": lid, "pn": known.get(lid)})
