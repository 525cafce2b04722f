"""Threads: the list with its filters, one thread's CRM view and history, an operator's
message, take-over and hand-back, the unread marker, and linking a person by hand."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator

from chatbridge.api.attribution import attribution, owner_change_note, sender_name
from chatbridge.api.comms.base import (
    ERRORS,
    Body,
    Id,
    Limit,
    Offset,
    OptionalId,
    not_found,
    storing,
)
from chatbridge.api.comms.templates import require_open_window, service_window
from chatbridge.api.console_auth import request_principal
from chatbridge.api.errors import error_responses
from chatbridge.api.management import get_bridge
from chatbridge.api.shapes import OperatorSent
from chatbridge.errors import BadInput
from chatbridge.media.signing import stored_media_id
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store.crm import ThreadFilter
from chatbridge.store.records import DeliverySpec

router = APIRouter()


class OperatorAttachment(Body):
    # a file uploaded with POST /api/comms/uploads ("media:<id>"), or a link
    url: str = Field(max_length=2000, pattern=r"^(media:[A-Za-z0-9_-]{1,40}|https?://\S+)$")
    name: str | None = Field(default=None, max_length=255)
    mime: str | None = Field(default=None, max_length=200)


class OperatorMessage(Body):
    text: str = Field(default="", max_length=4096)
    attachments: list[OperatorAttachment] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _something(self) -> OperatorMessage:
        if not self.text.strip() and not self.attachments:
            raise ValueError("a message needs text or an attachment")
        return self


class OwnerChange(Body):
    owner: Literal["human", "bot"]


class LinkPerson(Body):
    person_id: OptionalId = Field(description="the person to link; null unlinks for good")


@router.get("/threads", responses=ERRORS)
async def list_threads(
    request: Request,
    q: Annotated[str | None, Query(max_length=200, description="name, phone or text")] = None,
    channel: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[str | None, Query(max_length=10)] = None,
    owner: Literal["bot", "human"] | None = None,
    unlinked: bool | None = None,
    unread: bool | None = None,
    view: Annotated[
        Literal["mine", "unassigned", "all"],
        Query(description="mine: assigned to you; unassigned: to nobody"),
    ] = "all",
    limit: Limit = 50,
    offset: Offset = 0,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    """Threads of every channel, most recently active first, with unread counts and their
    ``assignee`` (the operator who answers them)."""
    f = ThreadFilter(q, channel, status, owner, unlinked, unread, limit, offset)
    if view == "unassigned":
        f.unassigned = True
    elif view == "mine":
        me = request_principal(request).operator_id
        if me is None:  # the admin key is nobody's assignee
            return {"threads": [], "total": 0, "limit": limit, "offset": offset}
        f.assignee = me
    async with storing():
        threads, total = await bridge.store.list_threads(f)
    return {"threads": threads, "total": total, "limit": limit, "offset": offset}


@router.get("/threads/{thread_id}", responses=ERRORS)
async def get_thread(thread_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """A thread with its contact, identities, linked person, notes, tasks and calls."""
    thread = await bridge.store.get_thread(thread_id)
    if thread is None:
        raise not_found("thread", thread_id)
    window = await service_window(bridge, thread_id, thread["channel"], thread["channel_key"])
    return {"thread": {**thread, "service_window": window}}


@router.get("/threads/{thread_id}/messages", responses=ERRORS)
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
        raise not_found("thread", thread_id)
    for m in messages:
        if m.get("attachments"):
            m["attachments"] = [_shown(a) for a in m["attachments"]]
    return {"messages": messages}


def _shown(attachment: dict[str, Any]) -> dict[str, Any]:
    """An attachment as the console shows it: a file the message names as ``media:<id>``
    (a web chat visitor's upload, an agent's) by its ``media_id``, like downloaded media."""
    media_id = stored_media_id(attachment)
    if media_id is None or attachment.get("media_id"):
        return attachment
    return {**attachment, "media_id": media_id, "status": "ready"}


def _sendable(attachment: dict[str, Any]) -> dict[str, Any]:
    return {k: attachment[k] for k in ("url", "mime", "size", "name") if k in attachment}


async def _attachment(bridge: Bridge, a: OperatorAttachment) -> dict[str, Any]:
    """An operator's attachment as the message keeps it; an uploaded file (``media:<id>``)
    with its stored type, name and size, and ``media_id`` (the console shows it by a signed
    URL). Raises 422 for a file that was never uploaded."""
    out = a.model_dump(exclude_none=True)
    if not a.url.startswith("media:"):
        return out
    media_id = a.url.removeprefix("media:")
    row = await bridge.store.get_media(media_id)
    if row is None or row.state != "done":
        raise BadInput("unknown_media", f"no uploaded file {media_id!r}", status_code=422)
    return {
        **out,
        "media_id": media_id,
        "mime": a.mime or row.mime,
        "name": a.name or row.name,
        "size": row.size,
        "kind": row.kind,
        "status": "ready",
    }


@router.post(
    "/threads/{thread_id}/messages",
    status_code=201,
    responses={
        201: {"description": "the message, stored and queued", "model": OperatorSent},
        **ERRORS,
        **error_responses({409: "outside Meta's 24-hour window", 422: "invalid message"}),
    },
)
async def send_operator_message(
    request: Request, thread_id: Id, body: OperatorMessage, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    """An operator writes to the customer: sent through the channel, and the thread is the
    operator's from now on (owner ``human``; the agent is told). The message names its
    operator (``meta.operator_id``, ``meta.operator_name``; web chat shows the name)."""
    conv = await bridge.store.get_conversation(thread_id)
    if conv is None:
        raise not_found("thread", thread_id)
    await require_open_window(bridge, conv.id, conv.channel, conv.channel_key)  # else 409
    if body.attachments and conv.channel != "whatsapp":
        raise BadInput(
            "attachments_not_supported",
            f"attachments are sent on WhatsApp threads only, not on {conv.channel}",
            status_code=422,
        )
    attachments = [await _attachment(bridge, a) for a in body.attachments]
    spec = DeliverySpec(
        "message",
        bridge.settings.delivery_max_attempts,
        text=body.text,
        # the delivery carries what a channel sends (``Attachment``: url, mime, size, name)
        payload={"attachments": [_sendable(a) for a in attachments]} if attachments else {},
    )
    async with storing():
        done = await bridge.store.add_outbound(
            conv.id,
            text=body.text,
            author="human",
            deliveries=[spec],
            attachments=attachments,
            respect_owner=False,
            handoff=True,  # owner → human in the same transaction
            meta={"operator": True, **attribution(request), "sender_name": sender_name(request)},
        )
    if not done.ok:
        raise not_found("thread", thread_id)
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


@router.post("/threads/{thread_id}/owner", responses=ERRORS)
async def set_owner(
    request: Request, thread_id: Id, body: OwnerChange, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """Take a thread over (``human``: the bot stops answering) or hand it back (``bot``);
    the thread keeps a line naming the operator who did."""
    conv = await bridge.store.get_conversation(thread_id)
    if conv is None:
        raise not_found("thread", thread_id)
    before = await bridge.store.set_thread_owner(thread_id, body.owner)
    if before is None:
        raise not_found("thread", thread_id)
    if before != body.owner:
        await owner_change_note(bridge, request, thread_id, body.owner)
        reason = "operator_takeover" if body.owner == "human" else "operator_handback"
        await _notify_owner(bridge, conv.channel, conv.inbox_id, conv.id, body.owner, reason)
        if body.owner == "bot":
            bridge.wake_turns()
    return {"id": thread_id, "owner": body.owner, "previous_owner": before}


@router.post("/threads/{thread_id}/read", responses=ERRORS)
async def mark_read(thread_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """Everything in the thread so far is read (its unread count drops to 0)."""
    if not await bridge.store.mark_read(thread_id):
        raise not_found("thread", thread_id)
    return {"id": thread_id, "unread": 0}


async def _link(bridge: Bridge, thread_id: str, person_id: str | None) -> dict[str, Any]:
    outcome = await bridge.store.link_thread(thread_id, person_id)
    if outcome == "no_thread":
        raise not_found("thread", thread_id)
    if outcome == "no_person":
        raise not_found("person", str(person_id))
    return {
        "id": thread_id,
        "person_id": person_id,
        "linked_by": "operator" if person_id else "unlinked",
    }


@router.post("/threads/{thread_id}/link-person", responses=ERRORS)
async def link_person(
    thread_id: Id, body: LinkPerson, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """Link the thread to a person by hand (``person_id: null`` unlinks it)."""
    return await _link(bridge, thread_id, body.person_id)


@router.delete("/threads/{thread_id}/link-person", responses=ERRORS)
async def unlink_person(thread_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """Unlink the thread; auto-linking by phone leaves it alone from then on."""
    return await _link(bridge, thread_id, None)


@router.get("/threads/{thread_id}/calls", responses=ERRORS)
async def thread_calls(
    thread_id: Id, limit: Limit = 50, offset: Offset = 0, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    calls = await bridge.store.list_calls(
        conversation_id=thread_id, person_id=None, limit=limit, offset=offset
    )
    return {"calls": calls}
