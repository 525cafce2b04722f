"""What operators do in threads beyond replying: assignment, private notes, canned replies.

- ``POST /api/comms/threads/{id}/assignee`` ``{"operator_id": "op_…" | "me" | null}``: who
  answers the thread; ``GET /api/comms/threads?view=mine|unassigned|all`` lists by it.
- ``POST /api/comms/threads/{id}/private-notes`` ``{"text"}``: a note inline in the thread,
  for the team only — never sent to the channel, never shown to the agent.
- ``/api/canned-replies``: canned replies (``/shortcut`` in the composer). Every operator
  makes their own; admins manage everyone's and make ``shared`` ones for the team.

Every line written here names its operator (``meta.operator_id``, ``meta.operator_name``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from chatbridge.api.attribution import attribution
from chatbridge.api.comms.base import Id, not_found, storing
from chatbridge.api.console_auth import request_principal
from chatbridge.api.errors import error_responses
from chatbridge.api.management import admin, get_bridge
from chatbridge.api.operator_shapes import (
    Assigned,
    CannedReplies,
    CannedReplyOne,
    Deleted,
    NoteAdded,
    ok,
)
from chatbridge.errors import BadInput
from chatbridge.operators.roles import Principal
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store.canned_replies import ShortcutTaken

router = APIRouter(tags=["operators"], dependencies=admin)

ERRORS = error_responses(
    {
        401: "no console session or admin key",
        403: "not yours to change",
        404: "not found",
        409: "the shortcut is taken",
        422: "invalid request",
    }
)
ReplyId = Annotated[str, Path(pattern=r"^cr_[A-Za-z0-9]{1,37}$", description="canned reply id")]
Shortcut = Annotated[
    str, Field(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9_-]*$", examples=["refund"])
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Assignment(Body):
    operator_id: str | None = Field(
        max_length=40,
        pattern=r"^(me|op_[A-Za-z0-9]+)$",
        description='an operator id, "me", or null to unassign',
    )


class PrivateNote(Body):
    text: str = Field(min_length=1, max_length=10_000)


class NewCannedReply(Body):
    shortcut: Shortcut
    text: str = Field(min_length=1, max_length=4096)
    shared: bool = Field(default=False, description="offered to every operator (admins only)")


class CannedReplyChanges(Body):
    shortcut: Shortcut | None = None
    text: str | None = Field(default=None, min_length=1, max_length=4096)
    shared: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> CannedReplyChanges:
        if not self.model_fields_set:
            raise ValueError("send at least one of shortcut, text, shared")
        return self


@router.post(
    "/api/comms/threads/{thread_id}/assignee",
    response_model=None,
    responses={**ok(Assigned), **ERRORS},
)
async def assign_thread(
    request: Request, thread_id: Id, body: Assignment, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """Assign the thread to an operator (``"me"``: yourself), or unassign it (null)."""
    me = request_principal(request)
    target = me.operator_id if body.operator_id == "me" else body.operator_id
    if body.operator_id == "me" and target is None:
        raise BadInput(
            "no_account", 'the admin key is no operator: name one, not "me"', status_code=422
        )
    outcome = await bridge.store.assign_thread(thread_id, target, by=me.operator_id)
    if outcome == "no_thread":
        raise not_found("thread", thread_id)
    if outcome == "no_operator":
        raise BadInput("unknown_operator", f"no active operator {target}", status_code=422)
    assignee = await bridge.store.thread_assignee(thread_id)
    if assignee is not None:
        who = "themselves" if assignee["id"] == me.operator_id else assignee["name"]
        text = f"{me.name} assigned the conversation to {who}"
    else:
        text = f"{me.name} unassigned the conversation"
    meta = {"kind": "assignment", "assignee": assignee, **attribution(request)}
    await bridge.store.add_thread_note(thread_id, text, meta)
    return {"id": thread_id, "assignee": assignee}


@router.post(
    "/api/comms/threads/{thread_id}/private-notes",
    status_code=201,
    response_model=None,
    responses={**ok(NoteAdded, 201), **ERRORS},
)
async def add_private_note(
    request: Request, thread_id: Id, body: PrivateNote, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    """A private note inline in the thread: the team sees it, the customer and the agent
    never do."""
    async with storing():
        note = await bridge.store.add_thread_note(
            thread_id, body.text, {"private": True, **attribution(request)}
        )
    if note is None:
        raise not_found("thread", thread_id)
    return JSONResponse({"note": note}, status_code=201)


def _may_change(me: Principal, reply: dict[str, Any]) -> None:
    if me.is_admin or (me.operator_id is not None and reply["owner_id"] == me.operator_id):
        return
    raise BadInput("forbidden", "only its owner or an admin may change it", status_code=403)


def _taken(shortcut: str) -> BadInput:
    return BadInput("shortcut_taken", f"/{shortcut} is taken", status_code=409)


@router.get("/api/canned-replies", response_model=None, responses={**ok(CannedReplies), **ERRORS})
async def list_canned_replies(
    request: Request, everyone: bool = False, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """The canned replies you may use (yours and the shared ones), by shortcut;
    ``everyone=true`` (admins): every operator's."""
    me = request_principal(request)
    rows = await bridge.store.list_canned_replies(
        me.operator_id, everything=everyone and me.is_admin
    )
    return {"canned_replies": rows}


@router.post(
    "/api/canned-replies",
    status_code=201,
    response_model=None,
    responses={**ok(CannedReplyOne, 201), **ERRORS},
)
async def create_canned_reply(
    request: Request, body: NewCannedReply, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    """A canned reply of your own (``shared``: the team's, admins only)."""
    me = request_principal(request)
    if body.shared and not me.is_admin:
        raise BadInput("forbidden", "only admins share canned replies", status_code=403)
    try:
        async with storing():
            reply = await bridge.store.create_canned_reply(
                shortcut=body.shortcut,
                text=body.text,
                owner_id=me.operator_id,
                shared=body.shared or me.operator_id is None,
            )
    except ShortcutTaken:
        raise _taken(body.shortcut) from None
    return JSONResponse({"canned_reply": reply}, status_code=201)


@router.patch(
    "/api/canned-replies/{reply_id}",
    response_model=None,
    responses={**ok(CannedReplyOne), **ERRORS},
)
async def change_canned_reply(
    request: Request,
    reply_id: ReplyId,
    body: CannedReplyChanges,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    me = request_principal(request)
    reply = await bridge.store.get_canned_reply(reply_id)
    if reply is None:
        raise not_found("canned reply", reply_id)
    _may_change(me, reply)
    if body.shared and not me.is_admin:
        raise BadInput("forbidden", "only admins share canned replies", status_code=403)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    try:
        async with storing():
            updated = await bridge.store.update_canned_reply(reply_id, changes)
    except ShortcutTaken:
        raise _taken(str(changes.get("shortcut", reply["shortcut"]))) from None
    if updated is None:
        raise not_found("canned reply", reply_id)
    return {"canned_reply": updated}


@router.delete(
    "/api/canned-replies/{reply_id}", response_model=None, responses={**ok(Deleted), **ERRORS}
)
async def delete_canned_reply(
    request: Request, reply_id: ReplyId, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    reply = await bridge.store.get_canned_reply(reply_id)
    if reply is None:
        raise not_found("canned reply", reply_id)
    _may_change(request_principal(request), reply)
    await bridge.store.delete_canned_reply(reply_id)
    return {"deleted": True, "id": reply_id}
