"""Threads: the bridge's conversations on every channel as the console lists them — with the
contact, the linked person, the unread count and the last message — and their history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, TypedDict

from sqlalchemy import ColumnElement, Row, Select, func, or_, select
from sqlalchemy.sql.elements import Label
from sqlalchemy.sql.selectable import NamedFromClause

from chatbridge.store import tables as t
from chatbridge.store.crm.links import ThreadLinkStore
from chatbridge.store.crm.rows import (
    Call,
    Note,
    Person,
    PersonRef,
    Task,
    like,
    person_row,
    read_calls,
    read_notes,
    read_tasks,
    thread_exists,
)


@dataclass(slots=True)
class ThreadFilter:
    """What ``GET /api/comms/threads`` narrows the list by (all optional)."""

    q: str | None = None  # contact name / phone, person name / phone, last message text
    channel: str | None = None
    status: str | None = None
    owner: str | None = None
    unlinked: bool | None = None
    unread: bool | None = None
    limit: int = 50
    offset: int = 0
    # operators (migration 0010): assigned to this operator id, or (``unassigned``) to nobody
    assignee: str | None = None
    unassigned: bool | None = None


class ThreadContact(TypedDict):
    id: str
    name: str | None
    phone: str | None
    email: str | None
    external_id: str | None


class LastMessage(TypedDict):
    text: str
    direction: str
    author: str
    created_at: float


class _ThreadBase(TypedDict):
    id: str
    channel: str
    channel_key: str
    inbox_id: int
    owner: str  # bot | human
    status: str
    external_status: str | None
    created_at: float
    last_activity_at: float
    contact: ThreadContact | None


class Assignee(TypedDict):
    id: str
    name: str


class _ThreadState(TypedDict):
    linked_by: str | None  # auto | operator | unlinked
    unlinked: bool
    unread: int
    last_read_at: float | None
    last_message: LastMessage | None
    assignee: Assignee | None  # the operator the thread is assigned to


class Thread(_ThreadBase, _ThreadState):
    """A thread as ``GET /api/comms/threads`` lists it."""

    person: PersonRef | None


class Identity(TypedDict):
    kind: str  # phone | jid | lid | bsuid
    value: str


class ThreadDetail(_ThreadBase, _ThreadState):
    """A thread with its CRM view (``GET /api/comms/threads/{id}``)."""

    person: Person | None
    identities: list[Identity]
    person_threads: list[str]  # the linked person's other threads
    notes: list[Note]
    tasks: list[Task]
    calls: list[Call]


class ThreadMessage(TypedDict):
    id: str
    direction: str  # in | out | note
    author: str
    role: str  # contact | agent | human | system | note
    text: str
    content_type: str
    attachments: list[dict[str, Any]]
    status: str | None  # the provider's delivery status of ours
    meta: dict[str, Any]
    created_at: float


def role(direction: str, author: str) -> str:
    """How the console shows a message: contact, agent, human, system or note."""
    if direction == "in":
        return "contact"
    if direction == "note":
        return "system" if author == "system" else "note"
    return author if author in ("agent", "human", "system") else "agent"


def _thread_select() -> tuple[Select[Any], Label[Any], NamedFromClause[Any]]:
    """The threads query (one row per conversation), its unread count and its last message."""
    c, ct, tl, p, m = t.conversations, t.contacts, t.thread_links, t.people, t.messages
    ca, op = t.conversation_assignments, t.operators
    last_id = (
        select(m.c.id)
        .where(m.c.conversation_id == c.c.id)
        .order_by(m.c.created_at.desc(), m.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    unread = (
        select(func.count())
        .select_from(m)
        .where(
            m.c.conversation_id == c.c.id,
            m.c.direction == "in",
            m.c.created_at > func.coalesce(tl.c.last_read_at, 0.0),
        )
        .scalar_subquery()
        .label("unread")
    )
    lm = m.alias("lm")
    stmt = select(
        c,
        ct.c.name.label("contact_name"),
        ct.c.phone.label("contact_phone"),
        ct.c.email.label("contact_email"),
        ct.c.external_id.label("contact_external_id"),
        tl.c.person_id,
        tl.c.linked_by,
        tl.c.last_read_at,
        p.c.name.label("person_name"),
        p.c.phone.label("person_phone"),
        unread,
        lm.c.text.label("last_text"),
        lm.c.direction.label("last_direction"),
        lm.c.author.label("last_author"),
        lm.c.created_at.label("last_at"),
        ca.c.operator_id.label("assignee_id"),
        op.c.name.label("assignee_name"),
    ).select_from(
        c.outerjoin(ct, ct.c.id == c.c.contact_id)
        .outerjoin(tl, tl.c.conversation_id == c.c.id)
        .outerjoin(p, p.c.id == tl.c.person_id)
        .outerjoin(lm, lm.c.id == last_id)
        .outerjoin(ca, ca.c.conversation_id == c.c.id)
        .outerjoin(op, op.c.id == ca.c.operator_id)
    )
    return stmt, unread, lm


def _thread(row: Row[Any]) -> Thread:
    return {
        "id": row.id,
        "channel": row.channel,
        "channel_key": row.channel_key,
        "inbox_id": row.inbox_id,
        "owner": row.owner,
        "status": row.status,
        "external_status": row.external_status,
        "created_at": row.created_at,
        "last_activity_at": row.last_activity_at,
        "contact": (
            {
                "id": row.contact_id,
                "name": row.contact_name,
                "phone": row.contact_phone,
                "email": row.contact_email,
                "external_id": row.contact_external_id,
            }
            if row.contact_id
            else None
        ),
        "person": (
            {"id": row.person_id, "name": row.person_name, "phone": row.person_phone}
            if row.person_id
            else None
        ),
        "linked_by": row.linked_by if row.person_id or row.linked_by == "unlinked" else None,
        "unlinked": row.person_id is None,
        "unread": int(row.unread or 0),
        "last_read_at": row.last_read_at,
        "last_message": (
            {
                "text": row.last_text,
                "direction": row.last_direction,
                "author": row.last_author,
                "created_at": row.last_at,
            }
            if row.last_at is not None
            else None
        ),
        "assignee": (
            {"id": row.assignee_id, "name": row.assignee_name} if row.assignee_id else None
        ),
    }


class ThreadStore(ThreadLinkStore):
    """Threads: the list, one thread's CRM view, its history, its owner and unread marker."""

    async def list_threads(self, f: ThreadFilter) -> tuple[list[Thread], int]:
        """Threads, most recently active first, and how many match in all."""
        c, ct, tl, p = t.conversations, t.contacts, t.thread_links, t.people
        stmt, unread, lm = _thread_select()
        conds: list[ColumnElement[bool]] = []
        if f.channel:
            conds.append(c.c.channel == f.channel)
        if f.status:
            conds.append(c.c.status == f.status)
        if f.owner:
            conds.append(c.c.owner == f.owner)
        if f.unlinked is not None:
            conds.append(tl.c.person_id.is_(None) if f.unlinked else tl.c.person_id.is_not(None))
        if f.unread is not None:
            conds.append(unread > 0 if f.unread else unread == 0)
        if f.assignee is not None:
            conds.append(t.conversation_assignments.c.operator_id == f.assignee)
        if f.unassigned is not None:
            assigned = t.conversation_assignments.c.operator_id
            conds.append(assigned.is_(None) if f.unassigned else assigned.is_not(None))
        if f.q:
            pattern = like(f.q)
            cols = (ct.c.name, ct.c.phone, p.c.name, p.c.phone, c.c.channel_key, lm.c.text)
            conds.append(or_(*(col.ilike(pattern, escape="\\") for col in cols)))
        stmt = stmt.where(*conds)
        async with self._tx() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(stmt.subquery()))
            ).scalar_one()
            rows = (
                await conn.execute(
                    stmt.order_by(c.c.last_activity_at.desc(), c.c.id)
                    .limit(f.limit)
                    .offset(f.offset)
                )
            ).all()
        return [_thread(r) for r in rows], int(total)

    async def get_thread(self, conversation_id: str) -> ThreadDetail | None:
        """One thread with its contact's identities, the person's record, notes, tasks, calls
        and the person's other threads (the CRM view)."""
        stmt, _, _ = _thread_select()
        async with self._tx() as conn:
            row = (
                await conn.execute(stmt.where(t.conversations.c.id == conversation_id))
            ).one_or_none()
            if row is None:
                return None
            ids = t.contact_identities
            identities: list[Identity] = (
                [
                    {"kind": r.kind, "value": r.value}
                    for r in (
                        await conn.execute(
                            select(ids.c.kind, ids.c.value)
                            .where(ids.c.contact_id == row.contact_id)
                            .order_by(ids.c.kind, ids.c.value)
                        )
                    ).all()
                ]
                if row.contact_id
                else []
            )
            person: Person | None = None
            person_threads: list[str] = []
            if row.person_id:
                found = (
                    await conn.execute(select(t.people).where(t.people.c.id == row.person_id))
                ).one()
                person = person_row(found)
                others = await conn.execute(
                    select(t.thread_links.c.conversation_id).where(
                        t.thread_links.c.person_id == row.person_id,
                        t.thread_links.c.conversation_id != conversation_id,
                    )
                )
                person_threads = sorted(r[0] for r in others.all())
            return {
                **_thread(row),
                "person": person,
                "identities": identities,
                "person_threads": person_threads,
                "notes": await read_notes(conn, t.notes.c.conversation_id == conversation_id),
                "tasks": await read_tasks(conn, t.tasks.c.conversation_id == conversation_id),
                "calls": await read_calls(conn, t.call_logs.c.conversation_id == conversation_id),
            }

    async def thread_messages(
        self, conversation_id: str, *, limit: int, before: float | None = None
    ) -> list[ThreadMessage] | None:
        """The latest ``limit`` messages (older than ``before``), oldest first, with the
        provider's delivery status of ours; None if there is no such thread."""
        m, ms = t.messages, t.message_status
        async with self._tx() as conn:
            if not await thread_exists(conn, conversation_id):
                return None
            stmt = (
                select(m, ms.c.status.label("delivery_status"))
                .select_from(m.outerjoin(ms, ms.c.message_id == m.c.id))
                .where(m.c.conversation_id == conversation_id)
            )
            if before is not None:
                stmt = stmt.where(m.c.created_at < before)
            rows = (
                await conn.execute(stmt.order_by(m.c.created_at.desc(), m.c.id.desc()).limit(limit))
            ).all()
        return [
            {
                "id": r.id,
                "direction": r.direction,
                "author": r.author,
                "role": role(r.direction, r.author),
                "text": r.text,
                "content_type": r.content_type,
                "attachments": r.attachments or [],
                "status": r.delivery_status,
                "meta": r.meta or {},
                "created_at": r.created_at,
            }
            for r in reversed(rows)
        ]

    async def set_thread_owner(self, conversation_id: str, owner: str) -> str | None:
        """Give the thread to ``owner`` (``human`` cancels its pending turns); returns the
        previous owner, or None if there is no such thread."""
        async with self._tx() as conn:
            before = (
                await conn.execute(self._stmts.conversation_owner, {"b_id": conversation_id})
            ).scalar_one_or_none()
            if before is not None and before != owner:
                await self._set_owner(conn, conversation_id, owner)
        return str(before) if before is not None else None

    async def mark_read(self, conversation_id: str, at: float | None = None) -> bool:
        """Everything in the thread up to ``at`` (now) is read; False if there is no thread."""
        now = time.time()
        at = now if at is None else at
        async with self._tx() as conn:
            if not await thread_exists(conn, conversation_id):
                return False
            await self._upsert_link(conn, conversation_id, {"last_read_at": at}, now)
        return True
