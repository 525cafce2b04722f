"""The comms API (``/api/comms/…``, admin key or console session): threads — the bridge's
conversations on every channel — with their people, notes, tasks and call logs, operator
messages and take-over, people (the CRM side), comms settings, and call transcription.

One module per concern, each with a router of its own; ``router`` puts them under the prefix
and the admin check. Every refusal is the JSON error envelope; a refused request writes nothing.
"""

from fastapi import APIRouter

from chatbridge.api.comms import (
    broadcasts,
    calls,
    media,
    notes,
    people,
    settings,
    templates,
    threads,
    uploads,
)
from chatbridge.api.comms.calls import RECORDING_MAX_BYTES, RECORDING_UPLOAD_PATH, body_limits
from chatbridge.api.management import admin

router = APIRouter(prefix="/api/comms", tags=["comms"], dependencies=admin)
router.include_router(threads.router)
router.include_router(notes.router)
router.include_router(people.router)
router.include_router(settings.router)
router.include_router(calls.router)
router.include_router(media.router)
router.include_router(templates.router)
router.include_router(broadcasts.router)
router.include_router(uploads.router)  # operators' attachments

__all__ = ["RECORDING_MAX_BYTES", "RECORDING_UPLOAD_PATH", "body_limits", "router"]
