"""Operator accounts: ``/api/operators`` (admin key or console session).

Any operator may read the team (``GET /api/operators``: names and roles, for assignment)
and their own account (``/api/operators/me``) and change their own password. Creating,
changing, disabling and inviting operators is for admins (an agent-role operator gets 403,
see ``chatbridge.operators.roles``); each of those writes an audit row.

An admin creates an operator with a password, or without one: then the answer carries an
invitation link (``/console/invitation?token=…``, valid ``INVITE_SECONDS``) where the new
operator chooses a password. Only the token's SHA-256 is stored; a new invitation replaces
the old one. Passwords are argon2id hashes, never stored or returned as typed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from chatbridge.api.auth_limits import auth_failures
from chatbridge.api.comms.base import storing
from chatbridge.api.console_auth import operator_subject, request_principal
from chatbridge.api.errors import error_responses
from chatbridge.api.management import admin, get_bridge
from chatbridge.api.operator_shapes import (
    MeOut,
    OperatorCreated,
    OperatorOne,
    OperatorsOut,
    PasswordChanged,
    ok,
)
from chatbridge.errors import BadInput
from chatbridge.operators import passwords
from chatbridge.operators.roles import Principal
from chatbridge.pipeline.bridge import Bridge
from chatbridge.ratelimit import client_ip
from chatbridge.store.operators import OperatorRecord, OperatorTaken

router = APIRouter(prefix="/api/operators", tags=["operators"], dependencies=admin)

INVITE_SECONDS = 7 * 24 * 3600
OperatorId = Annotated[str, Path(pattern=r"^op_[A-Za-z0-9]{1,37}$", description="operator id")]
Email = Annotated[
    str,
    Field(min_length=3, max_length=300, pattern=r"^[^@\s]+@[^@\s]+$", examples=["ada@example.com"]),
]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Password = Annotated[str, Field(max_length=passwords.MAX_LENGTH)]
ERRORS = error_responses(
    {
        401: "missing or wrong admin key, or no console session",
        403: "an agent-role operator on an admin action",
        404: "no such operator",
        409: "the email is taken",
        422: "invalid request",
    }
)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewOperator(Body):
    email: Email
    name: Name
    role: Literal["admin", "agent"] = "agent"
    password: Password | None = Field(
        default=None, description="omit to invite: the answer carries an invitation link"
    )


class OperatorChanges(Body):
    name: Name | None = None
    role: Literal["admin", "agent"] | None = None
    active: bool | None = None
    password: Password | None = Field(default=None, description="a new password (ends sessions)")

    @model_validator(mode="after")
    def _something(self) -> OperatorChanges:
        if not self.model_fields_set:
            raise ValueError("send at least one of name, role, active, password")
        return self


class OwnPassword(Body):
    current_password: Password
    new_password: Password


class Invitation(Body):
    token: str = Field(min_length=10, max_length=200)
    password: Password


def _strong(password: str) -> None:
    try:
        passwords.check_strength(password)
    except passwords.WeakPassword as exc:
        raise BadInput("weak_password", str(exc), status_code=422) from None


async def _hash(password: str) -> str:
    """argon2id is meant to be slow: off the event loop."""
    return await asyncio.to_thread(passwords.hash_password, password)


def _invite_url(request: Request, token: str) -> str:
    return str(request.base_url).rstrip("/") + f"/console/invitation?token={token}"


async def _invite(bridge: Bridge, request: Request, op: OperatorRecord) -> dict[str, Any]:
    token = passwords.new_invite_token()
    expires = time.time() + INVITE_SECONDS
    await bridge.store.update_operator(
        op.id, {"invite_hash": passwords.token_hash(token), "invite_expires_at": expires}
    )
    return {"invite_url": _invite_url(request, token), "invite_expires_at": expires}


def _audit_details(request: Request, details: dict[str, Any]) -> None:
    """What the audit row of this request says beyond its action and target."""
    request.state.audit_details = details


async def check_password(request: Request, email: str, password: str) -> str | None:
    """The session subject of the operator with this email and password; None if either is
    wrong (or the account is disabled or not signed up yet). A wrong one spends the
    address's ``password`` budget; a hash made with weaker parameters is renewed.

    Raises:
        RateLimited: the address has spent its budget of wrong passwords.
    """
    bridge: Bridge = request.app.state.bridge
    failures = auth_failures(request)
    address = client_ip(request)
    await failures.guard("password", address)
    async with storing():  # a value the database cannot hold (NUL) is a 400, not a 500
        op = await bridge.store.operator_by_email(email) if len(email) <= 300 else None
    if op is None or not op.active or len(password) > passwords.MAX_LENGTH:
        await asyncio.to_thread(passwords.verify_nothing, password[: passwords.MAX_LENGTH])
        right = False
    else:
        right = await asyncio.to_thread(passwords.verify, op.password_hash, password)
    if op is None or not right:
        await failures.failed("password", address)
        return None
    if op.password_hash and passwords.needs_rehash(op.password_hash):
        await bridge.store.update_operator(op.id, {"password_hash": await _hash(password)})
    await bridge.store.operator_logged_in(op.id)
    return operator_subject(op.id, op.session_version)


@router.get("/me", response_model=None, responses={**ok(MeOut), **ERRORS})
async def who_am_i(request: Request) -> dict[str, Any]:
    """Who the request comes from: an operator (``via`` session), or the admin key."""
    return {"operator": request_principal(request).body()}


@router.post("/me/password", response_model=None, responses={**ok(PasswordChanged), **ERRORS})
async def change_own_password(
    request: Request, body: OwnPassword, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """Change your own password (the current one is asked again). Your other sessions end;
    log in again."""
    me = request_principal(request)
    if me.operator_id is None:
        raise BadInput("no_account", "the admin key has no password to change", status_code=422)
    op = await bridge.store.get_operator(me.operator_id)
    if op is None or not await asyncio.to_thread(
        passwords.verify, op.password_hash, body.current_password
    ):
        await auth_failures(request).failed("password", client_ip(request))
        # 403, not 401: the session is fine (a console seeing 401 would log the operator out)
        raise BadInput("wrong_password", "the current password is wrong", status_code=403)
    _strong(body.new_password)
    await bridge.store.update_operator(
        op.id, {"password_hash": await _hash(body.new_password)}, end_sessions=True
    )
    return {"changed": True}


@router.get("", response_model=None, responses={**ok(OperatorsOut), **ERRORS})
async def list_operators(request: Request, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """Every operator account (an agent-role operator sees names, roles and status only)."""
    me = request_principal(request)
    rows = [o.body() for o in await bridge.store.list_operators()]
    if not me.is_admin:
        keep = ("id", "name", "role", "status")
        rows = [{k: r[k] for k in keep} for r in rows if r["status"] == "active"]
    return {"operators": rows}


@router.post(
    "",
    status_code=201,
    response_model=None,
    responses={**ok(OperatorCreated, 201), **ERRORS},
)
async def create_operator(
    request: Request, body: NewOperator, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    """Create an operator (admins only): with a password, or invited (no password: the answer
    has ``invite_url``, to give to them; it works once, for ``INVITE_SECONDS``)."""
    if body.password is not None:
        _strong(body.password)
    try:
        async with storing():
            op = await bridge.store.create_operator(
                email=body.email,
                name=body.name.strip() or body.email,
                role=body.role,
                password_hash=None if body.password is None else await _hash(body.password),
            )
    except OperatorTaken:
        raise BadInput(
            "email_taken", f"an operator with email {body.email} exists", status_code=409
        ) from None
    out: dict[str, Any] = {"operator": op.body()}
    if body.password is None:
        out.update(await _invite(bridge, request, op))
        out["operator"]["status"] = "invited"
    request.state.audit_target = op.id
    _audit_details(request, {"email": op.email, "role": op.role, "invited": op.invited})
    return JSONResponse(out, status_code=201)


def _not_yourself(me: Principal, op: OperatorRecord) -> None:
    """Refuse to take their admin role or account from the operator making the change (a
    console with no admin left could only be rescued with the admin key)."""
    if me.operator_id == op.id:
        raise BadInput(
            "own_account",
            "you cannot take your own admin role or disable yourself; ask another admin",
            status_code=422,
        )


@router.patch("/{operator_id}", response_model=None, responses={**ok(OperatorOne), **ERRORS})
async def change_operator(
    request: Request,
    operator_id: OperatorId,
    body: OperatorChanges,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    """Rename, change the role, disable / enable an operator or set a new password (admins
    only). A new role, a disabled account or a new password ends the operator's sessions."""
    op = await bridge.store.get_operator(operator_id)
    if op is None:
        raise BadInput("not_found", f"no operator {operator_id}", status_code=404)
    me = request_principal(request)
    if (body.role == "agent" and op.role == "admin") or body.active is False:
        _not_yourself(me, op)
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name.strip() or op.name
    if body.role is not None:
        changes["role"] = body.role
    if body.active is not None:
        changes["active"] = body.active
    if body.password is not None:
        _strong(body.password)
        changes.update(
            password_hash=await _hash(body.password), invite_hash=None, invite_expires_at=None
        )
    ends = (
        body.password is not None
        or body.active is False
        or (body.role is not None and body.role != op.role)
    )
    async with storing():
        updated = await bridge.store.update_operator(op.id, changes, end_sessions=ends)
    if updated is None:
        raise BadInput("not_found", f"no operator {operator_id}", status_code=404)
    said = {k: v for k, v in changes.items() if k in ("name", "role", "active")}
    if body.password is not None:
        said["password"] = "changed"  # never the password itself
    _audit_details(request, said)
    return {"operator": updated.body()}


@router.post(
    "/{operator_id}/invitation", response_model=None, responses={**ok(OperatorCreated), **ERRORS}
)
async def reinvite(
    request: Request, operator_id: OperatorId, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """A new invitation link for an operator who has not signed up yet (the old link stops
    working). For one who has, set a new password with PATCH instead."""
    op = await bridge.store.get_operator(operator_id)
    if op is None:
        raise BadInput("not_found", f"no operator {operator_id}", status_code=404)
    if not op.invited:
        raise BadInput(
            "signed_up", f"{op.email} has a password already; set a new one", status_code=409
        )
    return {"operator": op.body(), **(await _invite(bridge, request, op))}


async def accept_invitation(request: Request, body: Invitation) -> OperatorRecord:
    """Set the password of the invited operator whose token this is (once).

    Raises:
        BadInput: 404 for an unknown, used or expired token; 422 for a weak password.
    """
    bridge: Bridge = request.app.state.bridge
    op = await bridge.store.operator_by_invite(passwords.token_hash(body.token))
    if op is None:
        raise BadInput(
            "invalid_invitation",
            "this invitation is unknown, used or expired; ask an admin for a new one",
            status_code=404,
        )
    _strong(body.password)
    updated = await bridge.store.update_operator(
        op.id,
        {
            "password_hash": await _hash(body.password),
            "invite_hash": None,
            "invite_expires_at": None,
        },
        end_sessions=True,
    )
    return updated or op
