"""The fake Graph API's interactive messages, checked as strictly as Meta checks them.

``POST /{version}/{phone number id}/messages`` with ``type: "interactive"``:

* ``interactive.type: "button"``: ``body.text`` (1-1024 chars), ``action.buttons`` 1-3 of
  ``{type: "reply", reply: {id (≤ 256, unique), title (1-20)}}``;
* ``interactive.type: "list"``: ``body.text``, ``action.button`` (1-20), ``action.sections``
  1-10 (``title`` ≤ 24, required with more than one), 1-10 rows in all of
  ``{id (≤ 200, unique), title (1-24), description? (≤ 72)}``;
* an optional ``header {type: "text", text (≤ 60)}``.

A body that breaks a rule is refused as Meta refuses it: 400, ``(#131009) Parameter value is
not valid`` with the reason in ``error_data.details``; a wrong token is 401 (code 190). An
accepted one is answered by the fake's ordinary Meta send (``fake_whatsapp._meta``) and kept
in ``fake.ext["interactive"]["sent"]`` (the ``interactive`` objects, in order).

Media out lives here too (the fake's extension list is fixed; sending media is this part's):

* ``POST /{version}/{phone number id}/media``, multipart ``messaging_product=whatsapp``,
  ``type`` and ``file`` (Bearer token) → ``{"id": "<media id>"}``; the file is kept in
  ``fake.ext["interactive"]["uploads"][id]`` (``Upload``). A missing field is 400 (code 100).
* a media message (``type`` image/audio/video/document/sticker) sent by ``id`` must name an
  uploaded file (else 400, code 100), as Meta refuses an unknown media id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

if TYPE_CHECKING:
    from chatbridge.testing.fake_whatsapp import FakeWhatsApp

KEY = "interactive"
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")


@dataclass(frozen=True, slots=True)
class Upload:
    """A file uploaded to the fake Graph API's ``/media``."""

    data: bytes
    mime: str
    filename: str | None


def state(fake: FakeWhatsApp) -> dict[str, Any]:
    """``{"sent": [interactive objects Meta accepted], "uploads": {media id: Upload}}``."""
    found: dict[str, Any] = fake.ext.setdefault(KEY, {"sent": [], "uploads": {}})
    return found


def _param_error(message: str) -> Response:
    return JSONResponse(
        {"error": {"message": message, "type": "OAuthException", "code": 100}}, status_code=400
    )


async def _upload(fake: FakeWhatsApp, request: Request) -> Response:
    async with request.form() as form:  # closes the spooled upload
        file = form.get("file")
        if form.get("messaging_product") != "whatsapp":
            return _param_error("(#100) The parameter messaging_product is required.")
        if not isinstance(form.get("type"), str) or not form.get("type"):
            return _param_error("(#100) The parameter type is required.")
        if file is None or isinstance(file, str):
            return _param_error("(#100) The parameter file is required.")
        uploads = state(fake)["uploads"]
        media_id = str(900_000_000_000 + len(uploads) + 1)
        uploads[media_id] = Upload(await file.read(), str(form["type"]), file.filename)
    return JSONResponse({"id": media_id})


def _invalid(details: str) -> Response:
    return JSONResponse(
        {
            "error": {
                "message": "(#131009) Parameter value is not valid",
                "type": "OAuthException",
                "code": 131009,
                "error_data": {"messaging_product": "whatsapp", "details": details},
                "fbtrace_id": "AFakeTraceId",
            }
        },
        status_code=400,
    )


def _text(value: Any, low: int, high: int) -> bool:
    return isinstance(value, str) and low <= len(value) <= high


def _buttons(action: dict[str, Any]) -> str | None:
    buttons = action.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return "action.buttons must hold 1 to 3 buttons"
    ids = set()
    for button in buttons:
        reply = button.get("reply") if isinstance(button, dict) else None
        if button.get("type") != "reply" or not isinstance(reply, dict):
            return "each button needs type 'reply' and a reply object"
        if not _text(reply.get("id"), 1, 256) or not _text(reply.get("title"), 1, 20):
            return "button reply id must be 1-256 characters and title 1-20"
        ids.add(reply["id"])
    if len(ids) != len(buttons):
        return "button ids must be unique"
    return None


def _list(action: dict[str, Any]) -> str | None:
    if not _text(action.get("button"), 1, 20):
        return "action.button must be 1-20 characters"
    sections = action.get("sections")
    if not isinstance(sections, list) or not 1 <= len(sections) <= 10:
        return "action.sections must hold 1 to 10 sections"
    ids: list[str] = []
    for section in sections:
        if not isinstance(section, dict) or not isinstance(section.get("rows"), list):
            return "each section needs rows"
        title = section.get("title")
        if (len(sections) > 1 and not _text(title, 1, 24)) or (
            title is not None and not _text(title, 1, 24)
        ):
            return "section title must be 1-24 characters (required with several sections)"
        for row in section["rows"]:
            if not isinstance(row, dict):
                return "each row must be an object"
            if not _text(row.get("id"), 1, 200) or not _text(row.get("title"), 1, 24):
                return "row id must be 1-200 characters and title 1-24"
            if "description" in row and not _text(row["description"], 1, 72):
                return "row description must be 1-72 characters"
            ids.append(row["id"])
    if not 1 <= len(ids) <= 10:
        return "a list holds 1 to 10 rows in all"
    if len(set(ids)) != len(ids):
        return "row ids must be unique"
    return None


def check(interactive: Any) -> str | None:
    """Why Meta would refuse ``interactive``, or ``None``."""
    if not isinstance(interactive, dict):
        return "interactive is required"
    body = interactive.get("body")
    if not isinstance(body, dict) or not _text(body.get("text"), 1, 1024):
        return "body.text must be 1-1024 characters"
    header = interactive.get("header")
    if header is not None and (
        not isinstance(header, dict)
        or header.get("type") != "text"
        or not _text(header.get("text"), 1, 60)
    ):
        return "header must be {type: text, text: 1-60 characters}"
    action = interactive.get("action")
    if not isinstance(action, dict):
        return "action is required"
    kind = interactive.get("type")
    if kind == "button":
        return _buttons(action)
    if kind == "list":
        return _list(action)
    return f"interactive type {kind!r} is not supported here"


async def handle(
    fake: FakeWhatsApp,
    request: Request,
    path: str,
    headers: dict[str, str],
    body: Any,
    raw: bytes,
) -> Response | None:
    """Check Meta interactive sends; None for every other request (and for an accepted one,
    which the ordinary send answers)."""
    parts = path.strip("/").split("/")
    if (
        len(parts) == 3
        and parts[0].startswith("v")
        and parts[2] in ("media", "messages")
        and request.method == "POST"
        and fake.meta_token
        and headers.get("authorization") != f"Bearer {fake.meta_token}"
    ):
        return None  # the ordinary Meta endpoint answers 401 as Meta does
    if len(parts) == 3 and parts[0].startswith("v") and parts[2] == "media":
        if request.method != "POST" or parts[1] not in fake.meta_phone_numbers:
            return None
        return await _upload(fake, request)
    if (
        len(parts) == 3
        and parts[0].startswith("v")
        and parts[2] == "messages"
        and isinstance(body, dict)
        and body.get("type") in MEDIA_TYPES
    ):
        media = body.get(str(body["type"]))
        media_id = media.get("id") if isinstance(media, dict) else None
        if media_id is not None and media_id not in state(fake)["uploads"]:
            return _param_error(f"(#100) Invalid parameter: unknown media id {media_id}")
        return None
    if (
        len(parts) != 3
        or not parts[0].startswith("v")
        or parts[2] != "messages"
        or request.method != "POST"
        or not isinstance(body, dict)
        or body.get("type") != "interactive"
    ):
        return None
    if fake.meta_token and headers.get("authorization") != f"Bearer {fake.meta_token}":
        return None  # the ordinary send answers 401 as Meta does
    if parts[1] not in fake.meta_phone_numbers:
        return None
    problem = check(body.get("interactive"))
    if problem is not None:
        return _invalid(problem)
    state(fake)["sent"].append(body["interactive"])
    return None
