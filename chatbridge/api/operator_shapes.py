"""The documented answers of the operator APIs (accounts, assignment, private notes, canned
replies, the audit log), for the OpenAPI document. The routes build plain dicts; these models
only describe them (``responses={status: {"model": …}}``), so nothing is dropped or renamed on
the way out."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


class OperatorOut(_Shape):
    """One operator account (an agent-role reader gets id, name, role and status only)."""

    id: str = Field(examples=["op_01JD5Y2M3XQ8R4T6V9W0Z1A2B3"])
    name: str
    role: Literal["admin", "agent"]
    status: Literal["active", "invited", "disabled"]
    email: str | None = None
    active: bool | None = None
    invite_expires_at: float | None = Field(default=None, description="invited: link expiry")
    last_login_at: float | None = None
    created_at: float | None = None
    updated_at: float | None = None


class Me(_Shape):
    id: str | None = Field(description="null for the admin key")
    name: str
    email: str | None
    role: Literal["admin", "agent"]
    via: Literal["session", "key", "local"] = Field(
        description="a console session, the admin key, or a local client with no key set"
    )


class MeOut(_Shape):
    operator: Me


class OperatorsOut(_Shape):
    operators: list[OperatorOut]


class OperatorOne(_Shape):
    operator: OperatorOut


class OperatorCreated(_Shape):
    operator: OperatorOut
    invite_url: str | None = Field(
        default=None, description="without a password: the link where they choose one (once)"
    )
    invite_expires_at: float | None = None


class PasswordChanged(_Shape):
    changed: Literal[True]


class Assignee(_Shape):
    id: str
    name: str
    assigned_at: float | None = None


class Assigned(_Shape):
    id: str = Field(description="the thread")
    assignee: Assignee | None = Field(description="null: unassigned")


class ThreadNote(_Shape):
    id: str
    direction: Literal["note"]
    author: Literal["human"]
    role: Literal["note"]
    text: str
    meta: dict[str, Any] = Field(description="operator_id, operator_name, private")
    created_at: float


class NoteAdded(_Shape):
    note: ThreadNote


class CannedReply(_Shape):
    id: str
    shortcut: str
    text: str
    owner_id: str | None = Field(description="null: the team's (made with the admin key)")
    shared: bool
    created_at: float
    updated_at: float


class CannedReplies(_Shape):
    canned_replies: list[CannedReply]


class CannedReplyOne(_Shape):
    canned_reply: CannedReply


class Deleted(_Shape):
    deleted: Literal[True]
    id: str


class AuditEntry(_Shape):
    id: int
    at: float
    actor_id: str | None = Field(description="null: the admin key")
    actor: str = Field(examples=["Ada <ada@example.com>", "admin key"])
    action: str = Field(examples=["route.save", "settings.change", "dead_letter.retry"])
    target: str | None
    details: dict[str, Any]
    ip: str | None


class AuditPage(_Shape):
    entries: list[AuditEntry]
    total: int
    limit: int
    offset: int


def ok(model: type[BaseModel], status: int = 200) -> dict[int | str, dict[str, Any]]:
    """A ``responses=`` entry documenting a success answer of ``model``."""
    return {status: {"model": model, "description": model.__doc__ or "OK"}}
