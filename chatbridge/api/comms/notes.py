"""Notes and tasks on a thread (and its linked person): internal, never sent."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import Field

from chatbridge.api.comms.base import ERRORS, Body, Id, Time, not_found, storing
from chatbridge.api.management import get_bridge
from chatbridge.api.shapes import envelope
from chatbridge.errors import BadInput
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store.crm.rows import TaskChanges

router = APIRouter()


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


@router.post(
    "/threads/{thread_id}/notes",
    status_code=201,
    responses={**envelope(201, "note", "the note"), **ERRORS},
)
async def add_note(
    thread_id: Id, body: NoteBody, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    """An internal note on the thread (and its linked person); never sent."""
    async with storing():
        note = await bridge.store.add_note(thread_id, body.text, body.author)
    if note is None:
        raise not_found("thread", thread_id)
    return JSONResponse({"note": note}, status_code=201)


@router.post(
    "/threads/{thread_id}/tasks",
    status_code=201,
    responses={**envelope(201, "task", "the task"), **ERRORS},
)
async def add_task(
    thread_id: Id, body: TaskBody, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    async with storing():
        task = await bridge.store.add_task(thread_id, body.title, body.due_at)
    if task is None:
        raise not_found("thread", thread_id)
    return JSONResponse({"task": task}, status_code=201)


@router.patch("/tasks/{task_id}", responses=ERRORS)
async def update_task(
    task_id: Id, body: TaskPatch, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """Change a task (``{"done": true}`` ticks it off)."""
    changes = body.model_dump(exclude_unset=True)
    if changes.get("title", "") is None or changes.get("done", False) is None:
        raise BadInput("invalid_request", "title and done cannot be null", status_code=422)
    async with storing():
        task = await bridge.store.update_task(task_id, cast(TaskChanges, changes))
    if task is None:
        raise not_found("task", task_id)
    return {"task": task}
