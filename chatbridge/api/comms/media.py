"""The comms API's media routes: a stored file's row (state, size, type, why it failed, a
voice note's transcript), a fresh signed URL for it, and downloading a failed one again.

The row is answered without the provider's fetch details (they may hold provider URLs) and
without its path on disk; the bytes themselves are served by ``GET /media/{id}`` (signed).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from chatbridge.api.comms.base import ERRORS
from chatbridge.api.errors import error_responses
from chatbridge.api.management import get_bridge
from chatbridge.errors import BadInput
from chatbridge.media.signing import MediaSigner
from chatbridge.pipeline.bridge import Bridge

router = APIRouter()

MediaId = Annotated[str, Path(max_length=40)]


def _body(bridge: Bridge, row: Any) -> dict[str, Any]:
    out: dict[str, Any] = row.body()
    signer = MediaSigner.for_settings(bridge.settings)
    out["url"] = signer.path(row.id) if row.state == "done" else None
    return out


@router.get(
    "/media/{media_id}",
    summary="A stored file's row, with a signed URL (relative) when it is stored",
    responses=ERRORS,
)
async def media_info(
    media_id: MediaId, bridge: Annotated[Bridge, Depends(get_bridge)]
) -> dict[str, Any]:
    row = await bridge.store.get_media(media_id)
    if row is None:
        raise BadInput("not_found", "no media with this id", status_code=404)
    return _body(bridge, row)


@router.get(
    "/threads/{thread_id}/media",
    summary="A thread's stored media, oldest first",
    responses=ERRORS,
)
async def thread_media(
    thread_id: Annotated[str, Path(max_length=40)],
    bridge: Annotated[Bridge, Depends(get_bridge)],
) -> dict[str, Any]:
    rows = await bridge.store.list_media(conversation_id=thread_id)
    return {"media": [_body(bridge, r) for r in rows]}


@router.post(
    "/media/{media_id}/retry",
    summary="Download an inbound file again (a failed one)",
    responses={**ERRORS, **error_responses({409: "queued or running, or an upload"})},
)
async def retry_media(
    media_id: MediaId, bridge: Annotated[Bridge, Depends(get_bridge)]
) -> dict[str, Any]:
    result = await bridge.store.requeue_media(media_id)
    if result == "no_media":
        raise BadInput("not_found", "no media with this id", status_code=404)
    if result == "busy":
        raise BadInput("media_busy", "the download is queued or running", status_code=409)
    if result == "upload":
        raise BadInput("media_upload", "an uploaded file has nothing to download", status_code=409)
    assert not isinstance(result, str)
    bridge.media.wake()
    return _body(bridge, result)
