"""The comms API's broadcasts routes: a WhatsApp template sent to a segment of CRM people.

``POST /broadcasts/preview`` says how many a segment reaches (and a sample) without writing;
``POST /broadcasts`` creates the broadcast with its recipients snapshotted (201) and wakes the
worker; ``GET /broadcasts`` / ``/broadcasts/{id}`` show counts per state and progress;
``GET /broadcasts/{id}/recipients`` pages through recipients (filter by state);
``POST /broadcasts/{id}/pause|resume|cancel|retry-uncertain`` steer it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import Field

from chatbridge.api.comms.base import ERRORS, Body, Id, Limit, Offset, not_found, storing
from chatbridge.api.errors import error_responses
from chatbridge.api.management import get_bridge
from chatbridge.api.shapes import envelope
from chatbridge.channels.whatsapp.templates import (
    TemplateProblem,
    check_parameters,
    check_sendable,
)
from chatbridge.crm.segments import Segment, SegmentProblem, Snapshot, person_fields, snapshot
from chatbridge.errors import BadInput
from chatbridge.pipeline.bridge import Bridge
from chatbridge.pipeline.broadcasts import address_for, default_rate
from chatbridge.store.broadcasts import BROADCAST_STATES, RECIPIENT_STATES
from chatbridge.store.templates import TemplateRecord

router = APIRouter()

SAMPLE = 10
Action = Literal["pause", "resume", "cancel"]


class BroadcastDraft(Body):
    template_id: str = Field(min_length=1, max_length=40)
    # slot → value; a value may name the person's fields: "{person.name}", "{person.meta.x}"
    parameters: dict[str, Annotated[str, Field(max_length=1024)]] = Field(default_factory=dict)
    segment: dict[str, Any] = Field(default_factory=dict)


class BroadcastBody(BroadcastDraft):
    name: str = Field(min_length=1, max_length=300)
    # messages per second; default: Meta's throughput tier, else CHATBRIDGE_COMMS_BROADCAST_RATE
    rate_per_second: float | None = Field(default=None, allow_inf_nan=False)


def _bad(code: str, message: str, status: int = 422, **details: Any) -> BadInput:
    return BadInput(code, message, status_code=status, details=details or None)


async def _checked(bridge: Bridge, draft: BroadcastDraft) -> tuple[TemplateRecord, Segment]:
    """The template and segment of a draft, or a 4xx naming what is wrong."""
    settings = bridge.comms_settings()
    if settings.provider == "none":
        raise _bad("whatsapp_off", "WhatsApp is off (CHATBRIDGE_COMMS_PROVIDER=none)", 409)
    template = await bridge.store.get_template(draft.template_id)
    if template is None:
        raise _bad("unknown_template", f"no template {draft.template_id}", 422)
    try:
        segment = Segment.parse(draft.segment)
        person_fields(draft.parameters)
    except SegmentProblem as exc:
        raise _bad("invalid_segment", str(exc)) from exc
    try:
        check_parameters(template, dict(draft.parameters))
        check_sendable(template, settings.provider)
    except TemplateProblem as exc:
        raise _bad(
            "invalid_parameters", str(exc), missing=exc.missing, unknown=exc.unknown
        ) from exc
    return template, segment


def _plan(bridge: Bridge, segment: Segment, parameters: dict[str, str]) -> Any:
    settings = bridge.comms_settings()

    def plan(people: Any) -> list[dict[str, Any]]:
        return snapshot(people, segment, parameters, lambda p: address_for(settings, p)).rows

    return plan


def _summary(snap: Snapshot) -> dict[str, Any]:
    return {
        "recipients": len(snap.rows),
        "sendable": snap.sendable,
        "skipped": snap.counts.get("skipped", 0),
        "skipped_reasons": snap.skipped_reasons(),
        "sample": [
            {k: row[k] for k in ("person_id", "name", "address", "state", "reason")}
            for row in snap.rows[:SAMPLE]
        ],
    }


@router.post("/broadcasts/preview", responses=ERRORS)
async def preview_broadcast(
    body: BroadcastDraft, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """How many people the segment reaches now, how many are skipped and why, and a sample.
    Nothing is written."""
    _, segment = await _checked(bridge, body)
    settings = bridge.comms_settings()
    async with storing():
        people = await bridge.store.people_facts()
    snap = snapshot(people, segment, body.parameters, lambda p: address_for(settings, p))
    return _summary(snap)


@router.post(
    "/broadcasts",
    status_code=201,
    responses={
        **envelope(201, "broadcast", "the broadcast, queued"),
        **ERRORS,
        **error_responses({409: "WhatsApp is off"}),
    },
)
async def create_broadcast(
    body: BroadcastBody, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    """A broadcast: the segment's recipients are snapshotted now (opted-out and unreachable
    people recorded as skipped) and the worker starts sending at the rate."""
    template, segment = await _checked(bridge, body)
    rate = body.rate_per_second
    if rate is None:
        rate = default_rate(bridge.comms_settings())
    if rate <= 0 or rate > 1000:
        raise _bad("invalid_rate", "rate_per_second must be more than 0 and at most 1000")
    async with storing():
        preview = snapshot(
            await bridge.store.people_facts(),
            segment,
            body.parameters,
            lambda p: address_for(bridge.comms_settings(), p),
        )
        if not preview.rows:
            raise _bad("empty_segment", "no person is in this segment", segment=segment.body())
        if not preview.sendable:
            raise _bad(
                "nobody_to_send",
                "every person in this segment would be skipped",
                skipped_reasons=preview.skipped_reasons(),
            )
        record = await bridge.store.create_broadcast(
            name=body.name,
            template_id=template.id,
            parameters=dict(body.parameters),
            segment=segment.body(),
            rate_per_second=rate,
            plan=_plan(bridge, segment, dict(body.parameters)),
        )
    bridge.broadcasts.wake()
    return JSONResponse({"broadcast": record.body()}, status_code=201)


@router.get("/broadcasts", responses=ERRORS)
async def list_broadcasts(
    state: Annotated[str | None, Query(max_length=20)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    """Broadcasts, newest first, with counts per recipient state and progress."""
    if state is not None and state not in BROADCAST_STATES:
        raise _bad("invalid_state", f"state must be one of {', '.join(BROADCAST_STATES)}")
    records, total = await bridge.store.list_broadcasts(state=state, limit=limit, offset=offset)
    return {
        "broadcasts": [r.body() for r in records],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/broadcasts/{broadcast_id}", responses=ERRORS)
async def get_broadcast(broadcast_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """One broadcast: its state, counts per recipient state and progress (0 to 1)."""
    record = await bridge.store.get_broadcast(broadcast_id)
    if record is None:
        raise not_found("broadcast", broadcast_id)
    return {"broadcast": record.body()}


@router.get("/broadcasts/{broadcast_id}/recipients", responses=ERRORS)
async def list_recipients(
    broadcast_id: Id,
    state: Annotated[str | None, Query(max_length=20)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    """A broadcast's recipients in send order, with state, reason and the provider's id."""
    if state is not None and state not in RECIPIENT_STATES:
        raise _bad("invalid_state", f"state must be one of {', '.join(RECIPIENT_STATES)}")
    if await bridge.store.get_broadcast(broadcast_id) is None:
        raise not_found("broadcast", broadcast_id)
    rows, total = await bridge.store.list_recipients(
        broadcast_id, state=state, limit=limit, offset=offset
    )
    return {
        "recipients": [r.body() for r in rows],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.post("/broadcasts/{broadcast_id}/retry-uncertain", responses=ERRORS)
async def retry_uncertain(broadcast_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """Queue the ``uncertain`` recipients again: the operator checked their chats and the
    cut-off send did not arrive (if it did, they get the template twice)."""
    if await bridge.store.get_broadcast(broadcast_id) is None:
        raise not_found("broadcast", broadcast_id)
    async with storing():
        queued = await bridge.store.retry_uncertain(broadcast_id)
    bridge.broadcasts.wake()
    return {"queued": queued}


@router.post(
    "/broadcasts/{broadcast_id}/{action}",
    responses={**ERRORS, **error_responses({409: "not possible in the broadcast's state"})},
)
async def change_broadcast(
    broadcast_id: Id, action: Action, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """``pause`` (queued or running), ``resume`` (paused) or ``cancel`` (not finished: its
    queued recipients are skipped as "cancelled"). A send in flight still completes."""
    async with storing():
        result = await bridge.store.change_broadcast(broadcast_id, action)
    if result == "missing":
        raise not_found("broadcast", broadcast_id)
    if isinstance(result, str):
        state = result.partition(":")[2]
        raise _bad("conflict", f"cannot {action} a broadcast that is {state}", 409, state=state)
    if action == "resume":
        bridge.broadcasts.wake()
    return {"broadcast": result.body()}
