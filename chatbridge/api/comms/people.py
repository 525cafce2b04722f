"""People (the CRM side): search, create, read, change, delete; a person's phone is stored in
E.164 and, with auto-linking on, links the threads of that phone."""

from __future__ import annotations

import time
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import Field

from chatbridge.api.comms.base import ERRORS, Body, Id, Limit, Offset, e164, not_found, storing
from chatbridge.api.errors import error_responses
from chatbridge.api.management import get_bridge
from chatbridge.api.shapes import envelope
from chatbridge.crm.segments import SegmentProblem, normalize_tags
from chatbridge.errors import BadInput
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store.crm.rows import NewPerson, PersonChanges

router = APIRouter()


class PersonBody(Body):
    name: str = Field(min_length=1, max_length=300)
    phone: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=300)
    company: str | None = Field(default=None, max_length=300)
    external_ref: str | None = Field(default=None, max_length=200)
    meta: dict[str, Any] = Field(default_factory=dict)
    tags: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=100)
    opted_out: bool = False  # true: no broadcasts (stored as opted_out_at = now)


class PersonPatch(Body):
    name: str | None = Field(default=None, min_length=1, max_length=300)
    phone: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=300)
    company: str | None = Field(default=None, max_length=300)
    external_ref: str | None = Field(default=None, max_length=200)
    meta: dict[str, Any] | None = None
    tags: list[Annotated[str, Field(max_length=100)]] | None = Field(default=None, max_length=100)
    opted_out: bool | None = None


def _tags(raw: list[str]) -> list[str]:
    try:
        return normalize_tags(raw)
    except SegmentProblem as exc:
        raise BadInput("invalid_request", str(exc), status_code=422) from exc


@router.get("/people", responses=ERRORS)
async def list_people(
    q: Annotated[str | None, Query(max_length=200)] = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    opted_out: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    """People by name (search: name, phone, email); ``tag`` and ``opted_out`` filter."""
    tag = _tags([tag])[0] if tag else None
    async with storing():
        people, total = await bridge.store.list_people(
            q=q, limit=limit, offset=offset, tag=tag, opted_out=opted_out
        )
    return {"people": people, "total": total, "limit": limit, "offset": offset}


@router.post(
    "/people",
    status_code=201,
    responses={
        **envelope(201, "person", "the person, and linked_threads: threads linked to it"),
        **ERRORS,
        **error_responses({409: "the phone is another person's"}),
    },
)
async def create_person(body: PersonBody, bridge: Bridge = Depends(get_bridge)) -> JSONResponse:
    """A person; the phone is stored in E.164 and, with auto-linking on, the threads of that
    phone are linked to them."""
    values: NewPerson = {
        "name": body.name,
        "phone": e164(bridge, body.phone),
        "email": body.email,
        "company": body.company,
        "external_ref": body.external_ref,
        "meta": body.meta,
        "tags": _tags(body.tags),
        "opted_out_at": time.time() if body.opted_out else None,
    }
    async with storing():
        person, linked = await bridge.store.create_person(
            values, auto_link=bridge.comms_settings().auto_link
        )
    return JSONResponse({"person": person, "linked_threads": linked}, status_code=201)


@router.get("/people/{person_id}", responses=ERRORS)
async def get_person(person_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """A person with their threads, notes, tasks and calls."""
    person = await bridge.store.get_person(person_id)
    if person is None:
        raise not_found("person", person_id)
    return {"person": person}


@router.patch(
    "/people/{person_id}",
    responses={**ERRORS, **error_responses({409: "the phone is another person's"})},
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
        changes["phone"] = e164(bridge, changes["phone"])
    if "tags" in changes:
        changes["tags"] = _tags(changes["tags"] or [])
    if "opted_out" in changes:
        wanted = changes.pop("opted_out")
        if wanted is not None:
            current = await bridge.store.get_person(person_id)
            if current is None:
                raise not_found("person", person_id)
            # opting out again keeps the first time; opting back in clears it
            changes["opted_out_at"] = (current["opted_out_at"] or time.time()) if wanted else None
    # PersonPatch's fields are a person's, and a null name was refused above
    typed = cast(PersonChanges, changes)
    async with storing():
        person = await bridge.store.update_person(
            person_id, typed, auto_link=bridge.comms_settings().auto_link
        )
    if person is None:
        raise not_found("person", person_id)
    return {"person": person}


@router.delete("/people/{person_id}", responses=ERRORS)
async def delete_person(person_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """Delete a person: their threads are unlinked; notes, tasks and calls stay."""
    if not await bridge.store.delete_person(person_id):
        raise not_found("person", person_id)
    return {"deleted": True, "id": person_id}


@router.get("/people/{person_id}/calls", responses=ERRORS)
async def person_calls(
    person_id: Id, limit: Limit = 50, offset: Offset = 0, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    calls = await bridge.store.list_calls(
        conversation_id=None, person_id=person_id, limit=limit, offset=offset
    )
    return {"calls": calls}
