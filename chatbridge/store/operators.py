"""Operator accounts, who a conversation is assigned to, and the audit log.

An operator's email is kept in lower case and is unique. An invited operator has no
password hash yet, only the SHA-256 of an invitation token with an expiry; accepting the
invitation sets the password and forgets the token. ``session_version`` is part of every
session cookie: changing a password, the role or disabling the account moves it on, and the
console sessions opened before are refused from then on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from chatbridge.ids import new_id
from chatbridge.store import tables as t
from chatbridge.store.base import StoreBase


@dataclass(slots=True)
class OperatorRecord:
    """One operator account (the hash stays in the store: ``body()`` leaves it out)."""

    id: str
    email: str
    name: str
    role: str
    active: bool
    session_version: int
    password_hash: str | None
    invite_expires_at: float | None
    last_login_at: float | None
    created_at: float
    updated_at: float

    @property
    def invited(self) -> bool:
        """Invited and not yet signed up (no password chosen)."""
        return self.password_hash is None

    def body(self) -> dict[str, Any]:
        """The account as the API answers it."""
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "active": self.active,
            "status": "disabled" if not self.active else "invited" if self.invited else "active",
            "invite_expires_at": self.invite_expires_at if self.invited else None,
            "last_login_at": self.last_login_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class OperatorTaken(Exception):
    """Another operator already has this email."""


def _operator(row: Any) -> OperatorRecord:
    return OperatorRecord(
        id=row.id,
        email=row.email,
        name=row.name,
        role=row.role,
        active=bool(row.active),
        session_version=int(row.session_version),
        password_hash=row.password_hash,
        invite_expires_at=row.invite_expires_at,
        last_login_at=row.last_login_at,
        created_at=float(row.created_at),
        updated_at=float(row.updated_at),
    )


AssignOutcome = Literal["ok", "no_thread", "no_operator"]


class OperatorStore(StoreBase):
    """Operators, assignments and the audit log."""

    async def create_operator(
        self,
        *,
        email: str,
        name: str,
        role: str,
        password_hash: str | None = None,
        invite_hash: str | None = None,
        invite_expires_at: float | None = None,
    ) -> OperatorRecord:
        """Store a new operator. Raises ``OperatorTaken`` when the email is in use."""
        now = time.time()
        op = t.operators
        values = {
            "id": new_id("op"),
            "email": email.strip().lower(),
            "name": name,
            "role": role,
            "password_hash": password_hash,
            "invite_hash": invite_hash,
            "invite_expires_at": invite_expires_at,
            "active": True,
            "session_version": 1,
            "last_login_at": None,
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self._tx() as conn:
                taken = await conn.execute(
                    select(op.c.id).where(op.c.email == values["email"]).limit(1)
                )
                if taken.scalar_one_or_none() is not None:
                    raise OperatorTaken(values["email"])
                await conn.execute(op.insert().values(**values))
        except IntegrityError as exc:  # a concurrent create with the same email
            raise OperatorTaken(values["email"]) from exc
        return _operator(_Row(values))

    async def _one_operator(self, where: Any) -> OperatorRecord | None:
        async with self._tx() as conn:
            row = (await conn.execute(select(t.operators).where(where))).one_or_none()
        return None if row is None else _operator(row)

    async def get_operator(self, operator_id: str) -> OperatorRecord | None:
        return await self._one_operator(t.operators.c.id == operator_id)

    async def operator_by_email(self, email: str) -> OperatorRecord | None:
        return await self._one_operator(t.operators.c.email == email.strip().lower())

    async def operator_by_invite(self, invite_hash: str) -> OperatorRecord | None:
        """The active, invited operator whose invitation this is and has not expired."""
        op = t.operators
        found = await self._one_operator(op.c.invite_hash == invite_hash)
        if found is None or not found.active or (found.invite_expires_at or 0) < time.time():
            return None
        return found

    async def list_operators(self) -> list[OperatorRecord]:
        op = t.operators
        async with self._tx() as conn:
            rows = (await conn.execute(select(op).order_by(op.c.name, op.c.email))).all()
        return [_operator(r) for r in rows]

    async def count_active_admins(self) -> int:
        op = t.operators
        async with self._tx() as conn:
            n = await conn.execute(
                select(func.count())
                .select_from(op)
                .where(op.c.role == "admin", op.c.active.is_(True), op.c.password_hash.is_not(None))
            )
        return int(n.scalar_one())

    async def update_operator(
        self, operator_id: str, changes: dict[str, Any], *, end_sessions: bool = False
    ) -> OperatorRecord | None:
        """Change some columns of an operator (``name``, ``role``, ``active``,
        ``password_hash``, ``invite_hash``, ``invite_expires_at``); ``end_sessions`` refuses
        the sessions opened before. Returns the account as it is now, or None."""
        op = t.operators
        values = {**changes, "updated_at": time.time()}
        if end_sessions:
            values["session_version"] = op.c.session_version + 1
        async with self._tx() as conn:
            done = await conn.execute(update(op).where(op.c.id == operator_id).values(**values))
            if done.rowcount == 0:
                return None
            row = (await conn.execute(select(op).where(op.c.id == operator_id))).one()
        return _operator(row)

    async def operator_logged_in(self, operator_id: str, at: float | None = None) -> None:
        op = t.operators
        async with self._tx() as conn:
            await conn.execute(
                update(op).where(op.c.id == operator_id).values(last_login_at=at or time.time())
            )

    # ---- assignment

    async def assign_thread(
        self, conversation_id: str, operator_id: str | None, *, by: str | None
    ) -> AssignOutcome:
        """Assign the conversation to an active operator, or unassign it (None)."""
        ca, op = t.conversation_assignments, t.operators
        now = time.time()
        async with self._tx() as conn:
            exists = await conn.execute(
                select(t.conversations.c.id).where(t.conversations.c.id == conversation_id)
            )
            if exists.scalar_one_or_none() is None:
                return "no_thread"
            if operator_id is None:
                await conn.execute(delete(ca).where(ca.c.conversation_id == conversation_id))
                return "ok"
            found = await conn.execute(
                select(op.c.id).where(op.c.id == operator_id, op.c.active.is_(True))
            )
            if found.scalar_one_or_none() is None:
                return "no_operator"
            values = {"operator_id": operator_id, "assigned_by": by, "assigned_at": now}
            await conn.execute(
                self._insert(ca)
                .values(conversation_id=conversation_id, **values)
                .on_conflict_do_update(index_elements=[ca.c.conversation_id], set_=values)
            )
        return "ok"

    async def thread_assignee(self, conversation_id: str) -> dict[str, Any] | None:
        """``{id, name, assigned_at}`` of the conversation's operator; None if unassigned."""
        ca, op = t.conversation_assignments, t.operators
        async with self._tx() as conn:
            row = (
                await conn.execute(
                    select(op.c.id, op.c.name, ca.c.assigned_at)
                    .select_from(ca.join(op, op.c.id == ca.c.operator_id))
                    .where(ca.c.conversation_id == conversation_id)
                )
            ).one_or_none()
        if row is None:
            return None
        return {"id": row.id, "name": row.name, "assigned_at": row.assigned_at}

    # ---- the audit log

    async def add_audit(
        self,
        *,
        actor_id: str | None,
        actor: str,
        action: str,
        target: str | None = None,
        details: dict[str, Any] | None = None,
        ip: str | None = None,
    ) -> None:
        """Write one audit row."""
        async with self._tx() as conn:
            await conn.execute(
                t.audit_log.insert().values(
                    at=time.time(),
                    actor_id=actor_id,
                    actor=actor[:600],
                    action=action,
                    target=None if target is None else target[:300],
                    details=details or {},
                    ip=None if ip is None else ip[:64],
                )
            )

    async def list_audit(
        self,
        *,
        limit: int,
        offset: int = 0,
        action: str | None = None,
        actor_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Audit rows, newest first, and how many match in all."""
        a = t.audit_log
        conds = []
        if action:
            conds.append(a.c.action.startswith(action, autoescape=True))
        if actor_id:
            conds.append(a.c.actor_id == actor_id)
        async with self._tx() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(a).where(*conds))
            ).scalar_one()
            rows = (
                await conn.execute(
                    select(a)
                    .where(*conds)
                    .order_by(a.c.at.desc(), a.c.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            ).all()
        return [
            {
                "id": r.id,
                "at": r.at,
                "actor_id": r.actor_id,
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "details": r.details or {},
                "ip": r.ip,
            }
            for r in rows
        ], int(total)


class _Row:
    """Attribute access to a dict (a row we just wrote)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
