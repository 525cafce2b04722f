"""The comms API (``/api/comms/…``, admin key or console session): threads — the bridge's
conversations on every channel — with their people, notes, tasks and call logs, operator
messages and take-over, people (the CRM side), comms settings, and call transcription.

Every refusal is the JSON error envelope; a refused request writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatbridge.api.errors import error_responses, unstorable_reason
from chatbridge.api.management import admin, get_bridge
from chatbridge.crm.phones import normalize
from chatbridge.crm.settings import SECRETS, CommsSettings
from chatbridge.crm.transcription import provider_status
from chatbridge.errors import BadInput
from chatbridge.ids import new_id
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store.crm import ThreadFilter
from chatbridge.store.records import DeliverySpec

router = APIRouter(prefix="/api/comms", tags=["comms"], dependencies=admin)

# Recordings are far bigger than any other request: their upload path has a body limit of its
# own (``body_limits``); the file itself may be up to 25 MiB, what OpenAI's endpoint takes.
RECORDING_UPLOAD_PATH = "/api/comms/calls/upload"
RECORDING_MAX_BYTES = 25 * 1024 * 1024


def body_limits(max_body_bytes: int) -> dict[str, int]:
    """``BodySizeLimit``'s per-path limits: a recording plus its form fields."""
    return {RECORDING_UPLOAD_PATH: max(max_body_bytes, RECORDING_MAX_BYTES + 1024 * 1024)}


_MASK = "********"

Id = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
OptionalId = Annotated[str | None, Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
Time = Annotated[float, Field(ge=0, le=1e11, allow_inf_nan=False)]
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=10**9)]

_ERRORS = error_responses(
    {
        400: "a value cannot be stored",
        401: "missing or wrong admin key",
        403: "not allowed",
        404: "not found",
        429: "too many wrong admin keys from this address",
    }
)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OperatorMessage(Body):
    text: str = Field(min_length=1, max_length=4096)


class OwnerChange(Body):
    owner: Literal["human", "bot"]


class LinkPerson(Body):
    person_id: OptionalId = Field(description="the person to link; null unlinks for good")


class NoteBody(Body):
    text: str = Field(min_length=1, max_length=10_000)
    author: str | None = Field(default=None, max_length=200)


class TaskBody(Body):
    title: str = Field(min_length=1, max_length=500)
    due_at: Time | None = None


class TaskPatch(Body):
    title: str | None = Field(default=None, min_length=1, max_length=500)
    due_at: Time | None = None
    done: bool | None = None


class PersonBody(Body):
    name: str = Field(min_length=1, max_length=300)
    phone: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=300)
    company: str | None = Field(default=None, max_length=300)
    external_ref: str | None = Field(default=None, max_length=200)
    meta: dict[str, Any] = Field(default_factory=dict)


class PersonPatch(Body):
    name: str | None = Field(default=None, min_length=1, max_length=300)
    phone: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=300)
    company: str | None = Field(default=None, max_length=300)
    external_ref: str | None = Field(default=None, max_length=200)
    meta: dict[str, Any] | None = None


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


@contextlib.asynccontextmanager
async def _storing() -> AsyncIterator[None]:
    """A value the database refuses (NUL in text, …) is the request's fault: 400."""
    try:
        yield
    except BadInput:
        raise
    except Exception as exc:
        reason = unstorable_reason(exc)
        if reason is None:
            raise
        raise BadInput("invalid_request", reason) from exc


def _not_found(what: str, ident: str) -> BadInput:
    return BadInput("not_found", f"no {what} {ident}", status_code=404)


def _phone(bridge: Bridge, raw: str | None) -> str | None:
    return normalize(raw, bridge.comms_settings().default_country) if raw else None


# --------------------------------------------------------------------------- threads


@router.get("/threads", responses=_ERRORS)
async def list_threads(
    q: Annotated[str | None, Query(max_length=200, description="name, phone or text")] = None,
    channel: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[str | None, Query(max_length=10)] = None,
    owner: Literal["bot", "human"] | None = None,
    unlinked: bool | None = None,
    unread: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    """Threads of every channel, most recently active first, with unread counts."""
    f = ThreadFilter(q, channel, status, owner, unlinked, unread, limit, offset)
    async with _storing():
        threads, total = await bridge.store.list_threads(f)
    return {"threads": threads, "total": total, "limit": limit, "offset": offset}


@router.get("/threads/{thread_id}", responses=_ERRORS)
async def get_thread(thread_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """A thread with its contact, identities, linked person, notes, tasks and calls."""
    thread = await bridge.store.get_thread(thread_id)
    if thread is None:
        raise _not_found("thread", thread_id)
    return {"thread": thread}


@router.get("/threads/{thread_id}/messages", responses=_ERRORS)
async def thread_messages(
    thread_id: Id,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[float | None, Query(ge=0, le=1e11, allow_inf_nan=False)] = None,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    """The latest messages, oldest first; ``role`` is contact, agent, human, system or note
    (system notes, such as call transcripts, are never sent to the customer)."""
    messages = await bridge.store.thread_messages(thread_id, limit=limit, before=before)
    if messages is None:
        raise _not_found("thread", thread_id)
    return {"messages": messages}


@router.post(
    "/threads/{thread_id}/messages",
    status_code=201,
    responses={**_ERRORS, **error_responses({422: "invalid message"})},
)
async def send_operator_message(
    thread_id: Id, body: OperatorMessage, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    """An operator writes to the customer: sent through the channel, and the thread is the
    operator's from now on (owner ``human``; the agent is told)."""
    conv = await bridge.store.get_conversation(thread_id)
    if conv is None:
        raise _not_found("thread", thread_id)
    spec = DeliverySpec("message", bridge.settings.delivery_max_attempts, text=body.text)
    async with _storing():
        done = await bridge.store.add_outbound(
            conv.id,
            text=body.text,
            author="human",
            deliveries=[spec],
            respect_owner=False,
            handoff=True,  # owner → human in the same transaction
            meta={"operator": True},
        )
    if not done.ok:
        raise _not_found("thread", thread_id)
    bridge.wake_deliveries()
    if conv.owner != "human":
        await _notify_owner(bridge, conv.channel, conv.inbox_id, conv.id, "human", "operator")
    return JSONResponse(
        {"message_id": done.reply_message_id, "owner": "human", "queued": done.delivered},
        status_code=201,
    )


async def _notify_owner(
    bridge: Bridge, channel: str, inbox_id: int, conversation_id: str, owner: str, reason: str
) -> None:
    route = bridge.route_for(channel, inbox_id)
    if route is not None:
        await bridge.notify_agent_owner(route.agent_id, conversation_id, owner, reason)


@router.post("/threads/{thread_id}/owner", responses=_ERRORS)
async def set_owner(
    thread_id: Id, body: OwnerChange, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """Take a thread over (``human``: the bot stops answering) or hand it back (``bot``)."""
    conv = await bridge.store.get_conversation(thread_id)
    if conv is None:
        raise _not_found("thread", thread_id)
    before = await bridge.store.set_thread_owner(thread_id, body.owner)
    if before is None:
        raise _not_found("thread", thread_id)
    if before != body.owner:
        reason = "operator_takeover" if body.owner == "human" else "operator_handback"
        await _notify_owner(bridge, conv.channel, conv.inbox_id, conv.id, body.owner, reason)
        if body.owner == "bot":
            bridge.wake_turns()
    return {"id": thread_id, "owner": body.owner, "previous_owner": before}


@router.post("/threads/{thread_id}/read", responses=_ERRORS)
async def mark_read(thread_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """Everything in the thread so far is read (its unread count drops to 0)."""
    if not await bridge.store.mark_read(thread_id):
        raise _not_found("thread", thread_id)
    return {"id": thread_id, "unread": 0}


async def _link(bridge: Bridge, thread_id: str, person_id: str | None) -> dict[str, Any]:
    outcome = await bridge.store.link_thread(thread_id, person_id)
    if outcome == "no_thread":
        raise _not_found("thread", thread_id)
    if outcome == "no_person":
        raise _not_found("person", str(person_id))
    return {
        "id": thread_id,
        "person_id": person_id,
        "linked_by": "operator" if person_id else "unlinked",
    }


@router.post("/threads/{thread_id}/link-person", responses=_ERRORS)
async def link_person(
    thread_id: Id, body: LinkPerson, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """Link the thread to a person by hand (``person_id: null`` unlinks it)."""
    return await _link(bridge, thread_id, body.person_id)


@router.delete("/threads/{thread_id}/link-person", responses=_ERRORS)
async def unlink_person(thread_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """Unlink the thread; auto-linking by phone leaves it alone from then on."""
    return await _link(bridge, thread_id, None)


@router.post("/threads/{thread_id}/notes", status_code=201, responses=_ERRORS)
async def add_note(
    thread_id: Id, body: NoteBody, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    """An internal note on the thread (and its linked person); never sent."""
    async with _storing():
        note = await bridge.store.add_note(thread_id, body.text, body.author)
    if note is None:
        raise _not_found("thread", thread_id)
    return JSONResponse({"note": note}, status_code=201)


@router.post("/threads/{thread_id}/tasks", status_code=201, responses=_ERRORS)
async def add_task(
    thread_id: Id, body: TaskBody, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    async with _storing():
        task = await bridge.store.add_task(thread_id, body.title, body.due_at)
    if task is None:
        raise _not_found("thread", thread_id)
    return JSONResponse({"task": task}, status_code=201)


@router.patch("/tasks/{task_id}", responses=_ERRORS)
async def update_task(
    task_id: Id, body: TaskPatch, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """Change a task (``{"done": true}`` ticks it off)."""
    changes = body.model_dump(exclude_unset=True)
    if changes.get("title", "") is None or changes.get("done", False) is None:
        raise BadInput("invalid_request", "title and done cannot be null", status_code=422)
    async with _storing():
        task = await bridge.store.update_task(task_id, changes)
    if task is None:
        raise _not_found("task", task_id)
    return {"task": task}


@router.get("/threads/{thread_id}/calls", responses=_ERRORS)
async def thread_calls(
    thread_id: Id, limit: Limit = 50, offset: Offset = 0, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    calls = await bridge.store.list_calls(
        conversation_id=thread_id, person_id=None, limit=limit, offset=offset
    )
    return {"calls": calls}


# --------------------------------------------------------------------------- people


@router.get("/people", responses=_ERRORS)
async def list_people(
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    """People by name (search: name, phone, email)."""
    async with _storing():
        people, total = await bridge.store.list_people(q=q, limit=limit, offset=offset)
    return {"people": people, "total": total, "limit": limit, "offset": offset}


@router.post(
    "/people",
    status_code=201,
    responses={**_ERRORS, **error_responses({409: "the phone is another person's"})},
)
async def create_person(body: PersonBody, bridge: Bridge = Depends(get_bridge)) -> JSONResponse:
    """A person; the phone is stored in E.164 and, with auto-linking on, the threads of that
    phone are linked to them."""
    values = body.model_dump()
    values["phone"] = _phone(bridge, body.phone)
    async with _storing():
        person, linked = await bridge.store.create_person(
            values, auto_link=bridge.comms_settings().auto_link
        )
    return JSONResponse({"person": person, "linked_threads": linked}, status_code=201)


@router.get("/people/{person_id}", responses=_ERRORS)
async def get_person(person_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """A person with their threads, notes, tasks and calls."""
    person = await bridge.store.get_person(person_id)
    if person is None:
        raise _not_found("person", person_id)
    return {"person": person}


@router.patch(
    "/people/{person_id}",
    responses={**_ERRORS, **error_responses({409: "the phone is another person's"})},
)
async def update_person(
    person_id: Id, body: PersonPatch, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        raise BadInput("invalid_request", "name cannot be null", status_code=422)
    if "meta" in changes and changes["meta"] is None:
        changes["meta"] = {}
    if "phone" in changes:
        changes["phone"] = _phone(bridge, changes["phone"])
    async with _storing():
        person = await bridge.store.update_person(
            person_id, changes, auto_link=bridge.comms_settings().auto_link
        )
    if person is None:
        raise _not_found("person", person_id)
    return {"person": person}


@router.delete("/people/{person_id}", responses=_ERRORS)
async def delete_person(person_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """Delete a person: their threads are unlinked; notes, tasks and calls stay."""
    if not await bridge.store.delete_person(person_id):
        raise _not_found("person", person_id)
    return {"deleted": True, "id": person_id}


@router.get("/people/{person_id}/calls", responses=_ERRORS)
async def person_calls(
    person_id: Id, limit: Limit = 50, offset: Offset = 0, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    calls = await bridge.store.list_calls(
        conversation_id=None, person_id=person_id, limit=limit, offset=offset
    )
    return {"calls": calls}


# --------------------------------------------------------------------------- settings


def _settings_view(bridge: Bridge) -> dict[str, Any]:
    s = bridge.comms_settings()
    return {"settings": s.public_view(), "transcription": provider_status(s)}


@router.get("/settings", responses=_ERRORS)
async def get_settings(bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """Every comms setting; secrets are masked, with ``<name>_set`` flags."""
    return _settings_view(bridge)


@router.patch(
    "/settings", responses={**_ERRORS, **error_responses({422: "unknown or invalid setting"})}
)
async def patch_settings(
    changes: dict[str, Any], bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """Change settings (only the keys given). A secret sent back masked is left as it is."""
    current = bridge.comms_settings()
    known = set(CommsSettings.model_fields)
    unknown = sorted(k for k in changes if k not in known)
    if unknown:
        raise BadInput(
            "invalid_request", f"unknown setting(s): {', '.join(unknown)}", status_code=422
        )
    changes = {k: v for k, v in changes.items() if not (k in SECRETS and v == _MASK)}
    try:
        updated = current.updated(changes)
    except ValidationError as exc:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        first = details[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise BadInput(
            "invalid_request", f"{where}: {first['msg']}", status_code=422, details=details
        ) from None
    before, after = current.model_dump(mode="json"), updated.model_dump(mode="json")
    changed = {k: after[k] for k in changes if after[k] != before[k]}
    async with _storing():
        await bridge.store.save_comms_settings(changed)
    bridge.set_comms_settings(updated)
    bridge.transcriptions.wake()
    return {**_settings_view(bridge), "changed": sorted(changed)}


# --------------------------------------------------------------------------- call logs


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


async def _create_call(bridge: Bridge, values: dict[str, Any], transcribe: bool) -> JSONResponse:
    values["phone"] = _phone(bridge, values.get("phone"))
    async with _storing():
        call = await bridge.store.add_call(values, transcribe=transcribe)
    if call == "no_thread":
        raise _not_found("thread", str(values["conversation_id"]))
    if call == "no_person":
        raise _not_found("person", str(values["person_id"]))
    if transcribe:
        bridge.transcriptions.wake()
    return JSONResponse({"call": call}, status_code=201)


@router.post(
    "/calls",
    status_code=201,
    responses={**_ERRORS, **error_responses({409: "transcription is off"})},
)
async def create_call(body: CallBody, bridge: Bridge = Depends(get_bridge)) -> JSONResponse:
    """Log a call (a recording by URL, if any), attached to a thread and/or a person; the
    person with the call's phone when neither is named."""
    values = body.model_dump(exclude={"transcribe"})
    transcribe = _wants_transcript(bridge, body.transcribe, bool(body.recording_url))
    return await _create_call(bridge, values, transcribe)


_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")


@router.post(
    "/calls/upload",
    status_code=201,
    responses={
        **_ERRORS,
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
    values: dict[str, Any] = {
        "conversation_id": conversation_id,
        "person_id": person_id,
        "phone": phone,
        "direction": direction,
        "duration_seconds": duration_seconds,
        "started_at": started_at,
    }
    wanted = _wants_transcript(bridge, transcribe, True)
    _phone(bridge, phone)  # refuse a bad phone before anything is written
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


@router.get("/calls", responses=_ERRORS)
async def list_calls(
    conversation_id: Annotated[str | None, Query(max_length=40)] = None,
    person_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    """Call logs, newest first, with their transcription status."""
    async with _storing():
        calls = await bridge.store.list_calls(
            conversation_id=conversation_id, person_id=person_id, limit=limit, offset=offset
        )
    return {"calls": calls}


@router.get("/calls/{call_id}", responses=_ERRORS)
async def get_call(call_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """A call log: ``transcript_status`` is none, queued, running, done or failed."""
    call = await bridge.store.get_call(call_id)
    if call is None:
        raise _not_found("call", call_id)
    return {"call": call}


@router.post(
    "/recordings/transcribe",
    status_code=202,
    responses={
        **_ERRORS,
        **error_responses({409: "transcription is off, or already queued or running"}),
    },
)
async def transcribe(body: TranscribeBody, bridge: Bridge = Depends(get_bridge)) -> JSONResponse:
    """Queue (again) the transcription of a call's recording; its status is on the call."""
    _wants_transcript(bridge, True, True)
    outcome = await bridge.store.queue_transcription(body.call_id)
    if outcome == "no_call":
        raise _not_found("call", body.call_id)
    if outcome == "no_recording":
        raise BadInput("no_recording", "the call has no recording", status_code=422)
    if outcome == "busy":
        raise BadInput("busy", "the transcription is already queued or running", status_code=409)
    bridge.transcriptions.wake()
    return JSONResponse(
        {"call": outcome, "transcription": provider_status(bridge.comms_settings())},
        status_code=202,
    )
