"""``GET /media/{id}?exp=…&sig=…``: a stored file, to whoever holds its signed URL.

Public on purpose: agents and the console's media elements fetch files by URL, without the
admin key. The URL is the credential (``media.signing``): an expired, altered or unsigned one
is refused with 403 and the JSON error body, and a file that is not (yet) stored is 404. The
bytes come from the bridge's media folder, never from a provider, with the stored type, the
file's name in ``Content-Disposition`` and ``X-Content-Type-Options: nosniff`` (a stored file
is never rendered as something else, e.g. an HTML page on the bridge's origin).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from chatbridge.api.errors import error_responses
from chatbridge.api.shapes import binary
from chatbridge.errors import BadInput
from chatbridge.media.files import open_media
from chatbridge.media.signing import MediaSigner
from chatbridge.pipeline.bridge import Bridge

router = APIRouter(tags=["media"])

# Types a browser may show inline; anything else is offered as a download.
_INLINE = ("image/", "audio/", "video/", "application/pdf", "text/plain")


def disposition(name: str | None, mime: str, media_id: str) -> str:
    """``inline`` for what the console shows, else ``attachment``; the name in both forms
    (RFC 6266: an ASCII fallback and ``filename*`` in UTF-8)."""
    kind = "inline" if mime.startswith(_INLINE) else "attachment"
    name = name or media_id
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.get(
    "/media/{media_id}",
    summary="A stored file, by its signed URL",
    response_class=Response,  # its bytes, not JSON
    responses={
        **binary(200, "the file's bytes, with its stored type"),
        **error_responses({403: "expired, altered or unsigned URL", 404: "no such file"}),
    },
)
async def get_media(
    request: Request,
    media_id: Annotated[str, Path(max_length=40)],
    exp: Annotated[str | None, Query(max_length=20)] = None,
    sig: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    bridge: Bridge = request.app.state.bridge
    settings = bridge.settings
    refusal = MediaSigner.for_settings(settings).refusal(media_id, exp, sig)
    if refusal is not None:
        raise BadInput("media_url_refused", refusal, status_code=403)
    opened = await open_media(bridge.store, settings, media_id)
    if opened is None:
        raise BadInput("not_found", "no stored file with this id", status_code=404)
    row, data = opened
    mime = row.mime or "application/octet-stream"
    return Response(
        content=data,
        media_type=mime,
        headers={
            "Content-Disposition": disposition(row.name, mime, row.id),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=300",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )
