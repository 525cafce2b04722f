"""``POST /api/comms/uploads``: an operator's file for a thread, before it is sent.

The console's composer uploads the chosen file (the body is the file itself, its type in
``Content-Type``, its name in ``?name=``), gets ``{media_id, url: "media:<id>", …}`` and sends
the operator's message with ``attachments: [{"url": "media:<id>"}]``
(``POST /api/comms/threads/{id}/messages``). The file is checked like every stored file
(``media.limits``: size cap, allowed type, magic bytes) — 413 / 422 with the reason — and
the channel sends its bytes with the provider's own media call (WhatsApp: see
``channels/whatsapp/media_out.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request

from chatbridge.api.bodies import declared_file_type, file_upload_limit
from chatbridge.api.comms.base import ERRORS, Id, not_found
from chatbridge.api.errors import error_responses
from chatbridge.api.management import get_bridge
from chatbridge.media.files import put
from chatbridge.media.signing import MediaSigner
from chatbridge.pipeline.bridge import Bridge

router = APIRouter()

UPLOAD_PATH = "/api/comms/uploads"


def body_limit(max_body_bytes: int, media_max_bytes: int) -> dict[str, int]:
    """``BodySizeLimit``'s limit for this path: a whole file up to the media cap."""
    return file_upload_limit(UPLOAD_PATH, max_body_bytes, media_max_bytes)


@router.post(
    "/uploads",
    status_code=201,
    summary="Upload a file to attach to an operator's message",
    responses={
        **ERRORS,
        **error_responses(
            {413: "over the media size cap", 422: "type not allowed, or bytes of another type"}
        ),
    },
)
async def upload(
    request: Request,
    thread_id: Annotated[Id, Query()],
    name: Annotated[str | None, Query(max_length=255)] = None,
    content_type: Annotated[str | None, Header(max_length=200)] = None,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    conv = await bridge.store.get_conversation(thread_id)
    if conv is None:
        raise not_found("thread", thread_id)
    mime = declared_file_type(content_type)
    row = await put(
        bridge.store, bridge.settings, await request.body(), mime, name, conversation_id=conv.id
    )
    return {
        "media_id": row.id,
        "url": f"media:{row.id}",
        "mime": row.mime,
        "kind": row.kind,
        "size": row.size,
        "name": row.name,
        "signed_url": MediaSigner.for_settings(bridge.settings).url(row.id),
    }
