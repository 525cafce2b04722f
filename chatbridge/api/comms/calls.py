"""Call logs and their transcription: log a call (a recording by URL, or uploaded), list and
read calls, and queue a recording's transcription (again)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import Field

from chatbridge.api.comms.base import (
    ERRORS,
    Body,
    Id,
    Limit,
    Offset,
    OptionalId,
    Time,
    e164,
    not_found,
    storing,
)
from chatbridge.api.errors import error_responses
from chatbridge.api.management import get_bridge
from chatbridge.api.shapes import envelope
from chatbridge.crm.transcription import provider_status
from chatbridge.errors import BadInput
from chatbridge.ids import new_id
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store.crm.rows import NewCall

router = APIRouter()

# Recordings are far bigger than any other request: their upload path has a body limit of its
# own (``body_limits``); the file itself may be up to 25 MiB, what OpenAI's endpoint takes.
RECORDING_UPLOAD_PATH = "/api/comms/calls/upload"
RECORDING_MAX_BYTES = 25 * 1024 * 1024

_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")


def body_limits(max_body_bytes: int) -> dict[str, int]:
    """``BodySizeLimit``'s per-path limits: a recording plus its form fields."""
    return {RECORDING_UPLOAD_PATH: max(max_body_bytes, RECORDING_MAX_BYTES + 1024 * 1024)}


class CallBody(Body):
    conversation_id: OptionalId = None
    person_id: OptionalId = None
    phone: str | None = Field(default=None, max_length=64)
    direction: Literal["inbound", "outbound"]
    duration_seconds: float | None = Field(default=None, ge=0, le=1e7, allow_inf_nan=False)
    started_at: Time | None = None
    recording_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://\S+$")
    transcribe: bool | None = Field(
        default=None,
        description="queue a transcript (default: when there is a recording and "
        "a transcription provider)",
    )


class TranscribeBody(Body):
    call_id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")


def _wants_transcript(bridge: Bridge, asked: bool | None, has_recording: bool) -> bool:
    off = bridge.comms_settings().transcription_provider == "none"
    if asked and off:
        raise BadInput(
            "transcription_off",
            "no transcription provider is configured (PATCH /api/comms/settings)",
            status_code=409,
        )
    if asked and not has_recording:
        raise BadInput("no_recording", "a transcript needs a recording", status_code=422)
    return has_recording and not off if asked is None else asked


async def _create_call(bridge: Bridge, values: NewCall, transcribe: bool) -> JSONResponse:
    values["phone"] = e164(bridge, values.get("phone"))
    async with storing():
        call = await bridge.store.add_call(values, transcribe=transcribe)
    if call == "no_thread":
        raise not_found("thread", str(values.get("conversation_id")))
    if call == "no_person":
        raise not_found("person", str(values.get("person_id")))
    if transcribe:
        bridge.transcriptions.wake()
    return JSONResponse({"call": call}, status_code=201)


@router.post(
    "/calls",
    status_code=201,
    responses={
        **envelope(201, "call", "the call log"),
        **ERRORS,
        **error_responses({409: "transcription is off"}),
    },
)
async def create_call(body: CallBody, bridge: Bridge = Depends(get_bridge)) -> JSONResponse:
    """Log a call (a recording by URL, if any), attached to a thread and/or a person; the
    person with the call's phone when neither is named."""
    values: NewCall = {
        "conversation_id": body.conversation_id,
        "person_id": body.person_id,
        "phone": body.phone,
        "direction": body.direction,
        "duration_seconds": body.duration_seconds,
        "started_at": body.started_at,
        "recording_url": body.recording_url,
    }
    transcribe = _wants_transcript(bridge, body.transcribe, bool(body.recording_url))
    return await _create_call(bridge, values, transcribe)


@router.post(
    "/calls/upload",
    status_code=201,
    responses={
        **envelope(201, "call", "the call log, its recording stored"),
        **ERRORS,
        **error_responses({409: "transcription is off", 413: "recording too large"}),
    },
)
async def upload_call(
    file: Annotated[UploadFile, File(description="the recording (audio)")],
    direction: Annotated[Literal["inbound", "outbound"], Form()],
    conversation_id: Annotated[str | None, Form(max_length=40, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    person_id: Annotated[str | None, Form(max_length=40, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    phone: Annotated[str | None, Form(max_length=64)] = None,
    duration_seconds: Annotated[float | None, Form(ge=0, le=1e7, allow_inf_nan=False)] = None,
    started_at: Annotated[float | None, Form(ge=0, le=1e11, allow_inf_nan=False)] = None,
    transcribe: Annotated[bool | None, Form()] = None,
    bridge: Bridge = Depends(get_bridge),
) -> JSONResponse:
    """Log a call with its recording uploaded (multipart), saved under ``recordings_dir``."""
    values: NewCall = {
        "conversation_id": conversation_id,
        "person_id": person_id,
        "phone": phone,
        "direction": direction,
        "duration_seconds": duration_seconds,
        "started_at": started_at,
    }
    wanted = _wants_transcript(bridge, transcribe, True)
    e164(bridge, phone)  # refuse a bad phone before anything is written
    match = _SUFFIX.search(file.filename or "")
    target = FsPath(bridge.comms_settings().recordings_dir) / (
        new_id("rec") + (match.group(0).lower() if match else "")
    )
    size = await _save_upload(file, target)
    if size == 0:
        await asyncio.to_thread(target.unlink, True)
        raise BadInput("invalid_request", "the recording is empty", status_code=422)
    values["recording_path"] = str(target)
    try:
        return await _create_call(bridge, values, wanted)
    except BaseException:
        await asyncio.to_thread(target.unlink, True)
        raise


async def _save_upload(file: UploadFile, target: FsPath) -> int:
    """Copy the upload to ``target``; refuse (and remove) it past ``RECORDING_MAX_BYTES``."""
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    size = 0
    with await asyncio.to_thread(target.open, "wb") as out:
        while chunk := await file.read(1024 * 1024):
            size += len(chunk)
            if size > RECORDING_MAX_BYTES:
                break
            await asyncio.to_thread(out.write, chunk)
    if size > RECORDING_MAX_BYTES:
        await asyncio.to_thread(target.unlink, True)
        raise BadInput(
            "payload_too_large",
            f"recording over {RECORDING_MAX_BYTES} bytes",
            status_code=413,
        )
    return size


@router.get("/calls", responses=ERRORS)
async def list_calls(
    conversation_id: Annotated[str | None, Query(max_length=40)] = None,
    person_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    """Call logs, newest first, with their transcription status."""
    async with storing():
        calls = await bridge.store.list_calls(
            conversation_id=conversation_id, person_id=person_id, limit=limit, offset=offset
        )
    return {"calls": calls}


@router.get("/calls/{call_id}", responses=ERRORS)
async def get_call(call_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """A call log: ``transcript_status`` is none, queued, running, done or failed."""
    call = await bridge.store.get_call(call_id)
    if call is None:
        raise not_found("call", call_id)
    return {"call": call}


@router.post(
    "/recordings/transcribe",
    status_code=202,
    responses={
        **envelope(202, "call", "queued: the call, and transcription: the provider's status"),
        **ERRORS,
        **error_responses({409: "transcription is off, or already queued or running"}),
    },
)
async def transcribe(body: TranscribeBody, bridge: Bridge = Depends(get_bridge)) -> JSONResponse:
    """Queue (again) the transcription of a call's recording; its status is on the call."""
    _wants_transcript(bridge, True, True)
    outcome = await bridge.store.queue_transcription(body.call_id)
    if outcome == "no_call":
        raise not_found("call", body.call_id)
    if outcome == "no_recording":
        raise BadInput("no_recording", "the call has no recording", status_code=422)
    if outcome == "busy":
        raise BadInput("busy", "the transcription is already queued or running", status_code=409)
    bridge.transcriptions.wake()
    return JSONResponse(
        {"call": outcome, "transcription": provider_status(bridge.comms_settings())},
        status_code=202,
    )
