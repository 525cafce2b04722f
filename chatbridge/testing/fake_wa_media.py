"""The fake gateways' media downloads (an extension of ``chatbridge.testing.fake_whatsapp``).

As strict as the real ones, with their shapes:

* WAHA ``GET /api/files/{session}/{file}`` (the ``media.url`` of a webhook) → the bytes with
  their ``Content-Type``; 401 ``{"message": "Unauthorized", "statusCode": 401}`` without the
  right ``X-Api-Key``; 404 for a file it does not have.
* Evolution ``POST /chat/getBase64FromMediaMessage/{instance}`` with ``apikey`` and
  ``{"message": {"key": {"id": …}}}`` → 201 ``{mediaType, fileName, size: {fileLength},
  mimetype, base64}``; 401 without the key, 400 for a body without ``message.key.id`` or a
  message it has not stored (as Evolution answers then).
* Meta ``GET /{version}/{media-id}`` with ``Authorization: Bearer`` → ``{messaging_product,
  url, mime_type, sha256, file_size, id}``; the ``url`` (``/whatsapp_business/attachments/
  ?mid=…``, like lookaside.fbsbx.com) → the bytes, again only with the Bearer token (401
  ``OAuthException`` otherwise).

State lives in ``fake.ext["media"]`` (``media_of(fake)``): the files by provider, and
``gate`` (an ``asyncio.Event`` a test may set up) which holds every download until it is set.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

if TYPE_CHECKING:
    from chatbridge.testing.fake_whatsapp import FakeWhatsApp

_WAHA = re.compile(r"/api/files/(?P<session>[^/]+)/(?P<file>[^/]+)")
_EVOLUTION = re.compile(r"/chat/getBase64FromMediaMessage/(?P<instance>[^/]+)")
_META_INFO = re.compile(r"/v[0-9.]+/(?P<id>[0-9]+)")
_META_FILE = "/whatsapp_business/attachments/"


@dataclass(frozen=True)
class FakeFile:
    data: bytes
    mime: str
    name: str | None = None


@dataclass
class MediaState:
    waha: dict[tuple[str, str], FakeFile] = field(default_factory=dict)
    evolution: dict[tuple[str, str], FakeFile] = field(default_factory=dict)
    meta: dict[str, FakeFile] = field(default_factory=dict)
    gate: asyncio.Event | None = None


def media_of(fake: FakeWhatsApp) -> MediaState:
    """The fake's media state (created on first use)."""
    state = fake.ext.get("media")
    if not isinstance(state, MediaState):
        state = fake.ext["media"] = MediaState()
    return state


def add_waha_file(
    fake: FakeWhatsApp, data: bytes, mime: str, file: str, *, session: str = "default"
) -> str:
    """A file WAHA downloaded; returns its path (``media.url`` is the fake's base + it)."""
    media_of(fake).waha[(session, file)] = FakeFile(data, mime, file)
    return f"/api/files/{session}/{file}"


def add_evolution_file(
    fake: FakeWhatsApp,
    key_id: str,
    data: bytes,
    mime: str,
    name: str | None = None,
    *,
    instance: str = "shop",
) -> None:
    """A media message Evolution stored (``key.id`` of its ``messages.upsert``)."""
    media_of(fake).evolution[(instance, key_id)] = FakeFile(data, mime, name)


def add_meta_file(fake: FakeWhatsApp, media_id: str, data: bytes, mime: str) -> None:
    """A media id Meta's webhook named."""
    media_of(fake).meta[media_id] = FakeFile(data, mime)


def _waha_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "statusCode": status}, status_code=status)


def _meta_auth_error() -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "message": "Invalid OAuth access token - Cannot parse access token",
                "type": "OAuthException",
                "code": 190,
            }
        },
        status_code=401,
    )


async def handle(
    fake: FakeWhatsApp,
    request: Request,
    path: str,
    headers: dict[str, str],
    body: Any,
    raw: bytes,
) -> Response | None:
    state = media_of(fake)
    if match := _WAHA.fullmatch(path):
        if fake.waha_api_key and headers.get("x-api-key") != fake.waha_api_key:
            return _waha_error(401, "Unauthorized")
        file = state.waha.get((match["session"], match["file"]))
        if request.method != "GET" or file is None:
            return _waha_error(404, f"Cannot {request.method} {path}")
        if state.gate is not None:
            await state.gate.wait()
        return Response(file.data, media_type=file.mime)
    if match := _EVOLUTION.fullmatch(path):
        if fake.evolution_api_key and headers.get("apikey") != fake.evolution_api_key:
            return JSONResponse(
                {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}},
                status_code=401,
            )
        key = body.get("message", {}).get("key", {}) if isinstance(body, dict) else {}
        key_id = key.get("id") if isinstance(key, dict) else None
        file = state.evolution.get((match["instance"], str(key_id)))
        if request.method != "POST" or not isinstance(key_id, str) or file is None:
            return JSONResponse(
                {
                    "status": 400,
                    "error": "Bad Request",
                    "response": {"message": ["Message not found"]},
                },
                status_code=400,
            )
        if state.gate is not None:
            await state.gate.wait()
        kind = file.mime.partition("/")[0]
        return JSONResponse(
            {
                "mediaType": f"{kind if kind in ('image', 'audio', 'video') else 'document'}"
                "Message",
                "fileName": file.name or "file",
                "size": {"fileLength": str(len(file.data))},
                "mimetype": file.mime,
                "base64": base64.b64encode(file.data).decode(),
            },
            status_code=201,
        )
    bearer = f"Bearer {fake.meta_token}" if fake.meta_token else None
    if (match := _META_INFO.fullmatch(path)) and match["id"] in state.meta:
        if bearer and headers.get("authorization") != bearer:
            return _meta_auth_error()
        file = state.meta[match["id"]]
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "url": f"{base}{_META_FILE}?mid={match['id']}&ext=1&hash=ATfake",
                "mime_type": file.mime,
                "sha256": hashlib.sha256(file.data).hexdigest(),
                "file_size": len(file.data),
                "id": match["id"],
            }
        )
    if path == _META_FILE:
        if bearer and headers.get("authorization") != bearer:
            return _meta_auth_error()
        found = state.meta.get(request.query_params.get("mid", ""))
        if found is None:
            return JSONResponse({"error": {"message": "not found", "code": 100}}, status_code=404)
        if state.gate is not None:
            await state.gate.wait()
        return Response(found.data, media_type=found.mime)
    return None
