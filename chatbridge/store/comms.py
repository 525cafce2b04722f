"""Comms: threads (the bridge's conversations, every channel), the people they are linked to,
notes, tasks, call logs with their transcription jobs, and the stored comms settings.

Rows come back as plain JSON-ready dicts: the comms API shows them nearly as they are.
Transcription jobs are queued durably on the ``call_logs`` row and leased like turns: a job is
claimable when ``queued`` and due (``lease_expires_at`` doubles as "not before" while queued,
which is how a retry waits out its backoff) or when ``running`` under an expired lease.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, delete, func, or_, select, update

from chatbridge.errors import BadInput
from chatbridge.ids import new_id
from chatbridge.store import tables as t
from chatbridge.store.base import Conn, StoreBase

PERSON_FIELDS = ("name", "phone", "email", "company", "external_ref", "meta")
CALL_FIELDS = (
    "conversation_id",
    "person_id",
    "phone",
    "direction",
    "duration_seconds",
    "started_at",
    "recording_url",
    "recording_path",
)


class PhoneTaken(BadInput):
    """Two people with one phone would make linking by phone ambiguous (409)."""

    status_code = 409

    def __init__(self, phone: str, person_id: str) -> None:
        super().__init__(
            "phone_taken",
            f"{phone} is already the phone of person {person_id}",
            details={"person_id": person_id},
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


def _like(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _person(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "phone": row.phone,
        "email": row.email,
        "company": row.company,
        "external_ref": row.external_ref,
        "meta": row.meta or {},
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _call(row: Any) -> dict[str, Any]:
    out = {c.name: getattr(row, c.name) for c in t.call_logs.c}
    for private in ("lease_owner", "lease_expires_at"):
        out.pop(private)
    return out


class CommsStore(StoreBase):
    """Threads, people, notes, tasks, call logs and comms settings."""

    # ------------------------------------------------------------------ threads
    def _thread_select(self) -> Any:
        c, ct, tl, p, m = t.conversations, t.contacts, t.thread_links, t.people, t.messages
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
        return (
            select(
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
            ).select_from(
                c.outerjoin(ct, ct.c.id == c.c.contact_id)
                .outerjoin(tl, tl.c.conversation_id == c.c.id)
                .outerjoin(p, p.c.id == tl.c.person_id)
                .outerjoin(lm, lm.c.id == last_id)
            ),
            unread,
            lm,
        )

    @staticmethod
    def _thread(row: Any) -> dict[str, Any]:
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
        }

    async def list_threads(self, f: ThreadFilter) -> tuple[list[dict[str, Any]], int]:
        """Threads, most recently active first, and how many match in all."""
        c, ct, tl, p = t.conversations, t.contacts, t.thread_links, t.people
        stmt, unread, lm = self._thread_select()
        conds: list[Any] = []
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
        if f.q:
            like = _like(f.q)
            cols = (ct.c.name, ct.c.phone, p.c.name, p.c.phone, c.c.channel_key, lm.c.text)
            conds.append(or_(*(col.ilike(like, escape="\\") for col in cols)))
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
        return [self._thread(r) for r in rows], int(total)

    async def get_thread(self, conversation_id: str) -> dict[str, Any] | None:
        """One thread with its contact's identities, the person's record, notes, tasks, calls
        and the person's other threads (the CRM view)."""
        stmt, _, _ = self._thread_select()
        async with self._tx() as conn:
            row = (
                await conn.execute(stmt.where(t.conversations.c.id == conversation_id))
            ).one_or_none()
            if row is None:
                return None
            out = self._thread(row)
            ids = t.contact_identities
            out["identities"] = (
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
            if row.person_id:
                person = (
                    await conn.execute(select(t.people).where(t.people.c.id == row.person_id))
                ).one()
                out["person"] = _person(person)
                others = await conn.execute(
                    select(t.thread_links.c.conversation_id).where(
                        t.thread_links.c.person_id == row.person_id,
                        t.thread_links.c.conversation_id != conversation_id,
                    )
                )
                out["person_threads"] = sorted(r[0] for r in others.all())
            else:
                out["person_threads"] = []
            out["notes"] = await self._notes(conn, t.notes.c.conversation_id == conversation_id)
            out["tasks"] = await self._tasks(conn, t.tasks.c.conversation_id == conversation_id)
            out["calls"] = await self._calls(conn, t.call_logs.c.conversation_id == conversation_id)
        return out

    async def thread_messages(
        self, conversation_id: str, *, limit: int, before: float | None = None
    ) -> list[dict[str, Any]] | None:
        """The latest ``limit`` messages (older than ``before``), oldest first, with the
        provider's delivery status of ours; None if there is no such thread."""
        m, ms = t.messages, t.message_status
        async with self._tx() as conn:
            if not await self._exists(conn, conversation_id):
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
                "role": _role(r.direction, r.author),
                "text": r.text,
                "content_type": r.content_type,
                "attachments": r.attachments or [],
                "status": r.delivery_status,
                "meta": r.meta or {},
                "created_at": r.created_at,
            }
            for r in reversed(rows)
        ]

    @staticmethod
    async def _exists(conn: Conn, conversation_id: str) -> bool:
        found = await conn.execute(
            select(t.conversations.c.id).where(t.conversations.c.id == conversation_id)
        )
        return found.first() is not None

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
            if not await self._exists(conn, conversation_id):
                return False
            await self._upsert_link(conn, conversation_id, {"last_read_at": at}, now)
        return True

    async def _upsert_link(
        self, conn: Conn, conversation_id: str, values: dict[str, Any], now: float
    ) -> None:
        tl = t.thread_links
        done = await conn.execute(
            update(tl)
            .where(tl.c.conversation_id == conversation_id)
            .values(**values, updated_at=now)
        )
        if done.rowcount == 0:
            # no link yet: "auto" with no person is "not decided", still open to auto-linking
            row = {"person_id": None, "linked_by": "auto", "last_read_at": None, **values}
            await conn.execute(
                self._insert(tl)
                .values(conversation_id=conversation_id, updated_at=now, **row)
                .on_conflict_do_update(
                    index_elements=["conversation_id"], set_={**values, "updated_at": now}
                )
            )

    async def link_thread(self, conversation_id: str, person_id: str | None) -> str:
        """An operator links the thread to a person, or (None) unlinks it for good: auto-linking
        leaves it alone from then on. Returns ``ok``, ``no_thread`` or ``no_person``."""
        now = time.time()
        async with self._tx() as conn:
            if not await self._exists(conn, conversation_id):
                return "no_thread"
            if person_id is not None and not await self._person_exists(conn, person_id):
                return "no_person"
            by = "operator" if person_id else "unlinked"
            await self._upsert_link(
                conn, conversation_id, {"person_id": person_id, "linked_by": by}, now
            )
        return "ok"

    async def auto_link_thread(self, conversation_id: str, phone: str) -> str | None:
        """Link the thread to the person whose phone is ``phone`` (E.164), unless it is linked
        already or an operator unlinked it. Returns the person id it is now linked to."""
        now = time.time()
        async with self._tx() as conn:
            return await self._auto_link(conn, conversation_id, phone, now)

    async def _auto_link(
        self, conn: Conn, conversation_id: str, phone: str, now: float
    ) -> str | None:
        tl = t.thread_links
        link = (
            await conn.execute(
                select(tl.c.person_id, tl.c.linked_by).where(
                    tl.c.conversation_id == conversation_id
                )
            )
        ).one_or_none()
        if link is not None and (link.person_id is not None or link.linked_by == "unlinked"):
            return str(link.person_id) if link.person_id else None
        person_id = (
            await conn.execute(
                select(t.people.c.id)
                .where(t.people.c.phone == phone)
                .order_by(t.people.c.created_at, t.people.c.id)
                .limit(1)
            )
        ).scalar_one_or_none()
        if person_id is None:
            return None
        await self._upsert_link(
            conn, conversation_id, {"person_id": person_id, "linked_by": "auto"}, now
        )
        return str(person_id)

    async def _link_by_phone(self, conn: Conn, phone: str, now: float) -> int:
        """Auto-link every thread whose contact has ``phone`` (as its phone or an identity)."""
        ct, ids = t.contacts, t.contact_identities
        contact_ids = (
            select(ct.c.id)
            .where(ct.c.phone == phone)
            .union(
                select(ids.c.contact_id).where(and_(ids.c.kind == "phone", ids.c.value == phone))
            )
        )
        convs = (
            await conn.execute(
                select(t.conversations.c.id).where(
                    t.conversations.c.contact_id.in_(contact_ids.scalar_subquery())
                )
            )
        ).all()
        linked = 0
        for (conversation_id,) in convs:
            if await self._auto_link(conn, conversation_id, phone, now):
                linked += 1
        return linked

    # ------------------------------------------------------------------ people
    @staticmethod
    async def _person_exists(conn: Conn, person_id: str) -> bool:
        found = await conn.execute(select(t.people.c.id).where(t.people.c.id == person_id))
        return found.first() is not None

    async def _check_phone_free(self, conn: Conn, phone: str, person_id: str | None) -> None:
        stmt = select(t.people.c.id).where(t.people.c.phone == phone)
        if person_id is not None:
            stmt = stmt.where(t.people.c.id != person_id)
        other = (await conn.execute(stmt.limit(1))).scalar_one_or_none()
        if other is not None:
            raise PhoneTaken(phone, str(other))

    async def create_person(
        self, values: dict[str, Any], *, auto_link: bool
    ) -> tuple[dict[str, Any], int]:
        """A new person (``phone`` already E.164); with ``auto_link``, the threads of that
        phone are linked to them. Returns (person, threads linked). Raises ``PhoneTaken``."""
        now = time.time()
        row = {k: values.get(k) for k in PERSON_FIELDS}
        row["meta"] = row["meta"] or {}
        row.update(id=new_id("ps"), created_at=now, updated_at=now)
        async with self._tx() as conn:
            if row["phone"]:
                await self._check_phone_free(conn, row["phone"], None)
            await conn.execute(t.people.insert().values(**row))
            linked = await self._link_by_phone(conn, row["phone"], now) if row["phone"] else 0
        return row, linked

    async def get_person(self, person_id: str) -> dict[str, Any] | None:
        """A person with their threads, notes, tasks and calls."""
        async with self._tx() as conn:
            row = (
                await conn.execute(select(t.people).where(t.people.c.id == person_id))
            ).one_or_none()
            if row is None:
                return None
            out = _person(row)
            threads = await conn.execute(
                select(t.thread_links.c.conversation_id).where(
                    t.thread_links.c.person_id == person_id
                )
            )
            out["threads"] = sorted(r[0] for r in threads.all())
            out["notes"] = await self._notes(conn, t.notes.c.person_id == person_id)
            out["tasks"] = await self._tasks(conn, t.tasks.c.person_id == person_id)
            out["calls"] = await self._calls(conn, t.call_logs.c.person_id == person_id)
        return out

    async def list_people(
        self, *, q: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        p = t.people
        stmt = select(p)
        if q:
            like = _like(q)
            stmt = stmt.where(
                or_(*(col.ilike(like, escape="\\") for col in (p.c.name, p.c.phone, p.c.email)))
            )
        async with self._tx() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(stmt.subquery()))
            ).scalar_one()
            rows = (
                await conn.execute(stmt.order_by(p.c.name, p.c.id).limit(limit).offset(offset))
            ).all()
        return [_person(r) for r in rows], int(total)

    async def update_person(
        self, person_id: str, changes: dict[str, Any], *, auto_link: bool
    ) -> dict[str, Any] | None:
        """Apply ``changes`` (a new phone links that phone's unlinked threads)."""
        now = time.time()
        changes = {k: v for k, v in changes.items() if k in PERSON_FIELDS}
        async with self._tx() as conn:
            if not await self._person_exists(conn, person_id):
                return None
            if changes.get("phone"):
                await self._check_phone_free(conn, changes["phone"], person_id)
            await conn.execute(
                update(t.people).where(t.people.c.id == person_id).values(**changes, updated_at=now)
            )
            if auto_link and changes.get("phone"):
                await self._link_by_phone(conn, changes["phone"], now)
            row = (await conn.execute(select(t.people).where(t.people.c.id == person_id))).one()
        return _person(row)

    async def delete_person(self, person_id: str) -> bool:
        """Delete a person; their threads become unlinked (not auto-linked again), their
        notes, tasks and calls stay with the threads."""
        now = time.time()
        async with self._tx() as conn:
            if not await self._person_exists(conn, person_id):
                return False
            await conn.execute(
                update(t.thread_links)
                .where(t.thread_links.c.person_id == person_id)
                .values(person_id=None, linked_by="unlinked", updated_at=now)
            )
            for table in (t.notes, t.tasks, t.call_logs):
                await conn.execute(
                    update(table).where(table.c.person_id == person_id).values(person_id=None)
                )
            await conn.execute(delete(t.people).where(t.people.c.id == person_id))
        return True

    # ------------------------------------------------------------------ notes and tasks
    async def _thread_person(self, conn: Conn, conversation_id: str) -> tuple[bool, str | None]:
        """(thread exists, its linked person)."""
        if not await self._exists(conn, conversation_id):
            return False, None
        person = (
            await conn.execute(
                select(t.thread_links.c.person_id).where(
                    t.thread_links.c.conversation_id == conversation_id
                )
            )
        ).scalar_one_or_none()
        return True, person

    async def add_note(
        self, conversation_id: str, text: str, author: str | None
    ) -> dict[str, Any] | None:
        """A note on the thread (and on its linked person); None if there is no thread."""
        fields = {"text": text, "author": author, "created_at": time.time()}
        return await self._add_to_thread(conversation_id, t.notes, "n", fields)

    async def add_task(
        self, conversation_id: str, title: str, due_at: float | None
    ) -> dict[str, Any] | None:
        """A task on the thread (and on its linked person); None if there is no thread."""
        now = time.time()
        fields = {"title": title, "due_at": due_at, "done": False, "created_at": now}
        return await self._add_to_thread(
            conversation_id, t.tasks, "tk", {**fields, "updated_at": now}
        )

    async def _add_to_thread(
        self, conversation_id: str, table: Table, prefix: str, fields: dict[str, Any]
    ) -> dict[str, Any] | None:
        async with self._tx() as conn:
            exists, person_id = await self._thread_person(conn, conversation_id)
            if not exists:
                return None
            row = {
                "id": new_id(prefix),
                "conversation_id": conversation_id,
                "person_id": person_id,
                **fields,
            }
            await conn.execute(table.insert().values(**row))
        return row

    async def update_task(self, task_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        allowed = {k: v for k, v in changes.items() if k in ("title", "due_at", "done")}
        async with self._tx() as conn:
            done = await conn.execute(
                update(t.tasks)
                .where(t.tasks.c.id == task_id)
                .values(**allowed, updated_at=time.time())
            )
            if done.rowcount == 0:
                return None
            rows = await self._tasks(conn, t.tasks.c.id == task_id)
        return rows[0]

    @staticmethod
    async def _notes(conn: Conn, where: Any) -> list[dict[str, Any]]:
        rows = await conn.execute(
            select(t.notes).where(where).order_by(t.notes.c.created_at, t.notes.c.id)
        )
        return [dict(r._mapping) for r in rows.all()]

    @staticmethod
    async def _tasks(conn: Conn, where: Any) -> list[dict[str, Any]]:
        rows = await conn.execute(
            select(t.tasks).where(where).order_by(t.tasks.c.created_at, t.tasks.c.id)
        )
        return [{**r._mapping, "done": bool(r.done)} for r in rows.all()]

    @staticmethod
    async def _calls(conn: Conn, where: Any) -> list[dict[str, Any]]:
        rows = await conn.execute(
            select(t.call_logs)
            .where(where)
            .order_by(t.call_logs.c.created_at.desc(), t.call_logs.c.id)
        )
        return [_call(r) for r in rows.all()]

    # ------------------------------------------------------------------ call logs
    async def add_call(self, values: dict[str, Any], *, transcribe: bool) -> dict[str, Any] | str:
        """A call log; with ``transcribe`` its transcription is queued in the same transaction.

        The call is attached to ``conversation_id`` and/or ``person_id``; when no person is
        named, the thread's linked person, else the person with the call's phone. Returns the
        call, or ``no_thread`` / ``no_person`` when one named does not exist.
        """
        now = time.time()
        row = {k: values.get(k) for k in CALL_FIELDS}
        row.update(
            id=new_id("cl"),
            transcript_status="queued" if transcribe else "none",
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        async with self._tx() as conn:
            if row["conversation_id"] is not None:
                exists, linked = await self._thread_person(conn, row["conversation_id"])
                if not exists:
                    return "no_thread"
                row["person_id"] = row["person_id"] or linked
            if row["person_id"] is not None and not await self._person_exists(
                conn, row["person_id"]
            ):
                return "no_person"
            if row["person_id"] is None and row["phone"]:
                row["person_id"] = (
                    await conn.execute(
                        select(t.people.c.id)
                        .where(t.people.c.phone == row["phone"])
                        .order_by(t.people.c.created_at, t.people.c.id)
                        .limit(1)
                    )
                ).scalar_one_or_none()
            await conn.execute(t.call_logs.insert().values(**row))
            out = (await self._calls(conn, t.call_logs.c.id == row["id"]))[0]
        return out

    async def get_call(self, call_id: str) -> dict[str, Any] | None:
        async with self._tx() as conn:
            rows = await self._calls(conn, t.call_logs.c.id == call_id)
        return rows[0] if rows else None

    async def list_calls(
        self, *, conversation_id: str | None, person_id: str | None, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        cl = t.call_logs
        conds = []
        if conversation_id is not None:
            conds.append(cl.c.conversation_id == conversation_id)
        if person_id is not None:
            conds.append(cl.c.person_id == person_id)
        async with self._tx() as conn:
            rows = await conn.execute(
                select(cl)
                .where(*conds)
                .order_by(cl.c.created_at.desc(), cl.c.id)
                .limit(limit)
                .offset(offset)
            )
            return [_call(r) for r in rows.all()]

    async def queue_transcription(self, call_id: str) -> dict[str, Any] | str:
        """(Re)queue a call's transcription. Returns the call, ``no_call``, ``no_recording`` or
        ``busy`` (already queued or running)."""
        cl = t.call_logs
        async with self._tx() as conn:
            rows = await self._calls(conn, cl.c.id == call_id)
            if not rows:
                return "no_call"
            call = rows[0]
            if not (call["recording_url"] or call["recording_path"]):
                return "no_recording"
            if call["transcript_status"] in ("queued", "running"):
                return "busy"
            await conn.execute(
                update(cl)
                .where(cl.c.id == call_id)
                .values(
                    transcript_status="queued",
                    transcript_error=None,
                    attempts=0,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=time.time(),
                )
            )
            return (await self._calls(conn, cl.c.id == call_id))[0]

    async def claim_transcriptions(
        self, owner: str, *, limit: int, lease_seconds: float
    ) -> list[dict[str, Any]]:
        """Lease due transcription jobs (queued and due, or running under a dead lease)."""
        cl = t.call_logs
        now = time.time()
        due = or_(
            and_(
                cl.c.transcript_status == "queued",
                or_(cl.c.lease_expires_at.is_(None), cl.c.lease_expires_at <= now),
            ),
            and_(cl.c.transcript_status == "running", cl.c.lease_expires_at < now),
        )
        candidates = (
            select(cl.c.id)
            .where(due)
            .order_by(cl.c.created_at, cl.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self._tx() as conn:
            rows = await conn.execute(
                update(cl)
                .where(cl.c.id.in_(candidates.scalar_subquery()), due)
                .values(
                    transcript_status="running",
                    lease_owner=owner,
                    lease_expires_at=now + lease_seconds,
                    attempts=cl.c.attempts + 1,
                    updated_at=now,
                )
                .returning(*cl.c)
            )
            return [{**_call(r), "lease_owner": r.lease_owner} for r in rows.all()]

    async def finish_transcription(
        self, call_id: str, owner: str, *, transcript: str, note: str | None
    ) -> bool:
        """Store the transcript on the call and, when it has a thread, as a system note there
        (never sent to the customer). Fenced by the lease: False if it was lost."""
        cl = t.call_logs
        now = time.time()
        async with self._tx() as conn:
            done = await conn.execute(
                update(cl)
                .where(
                    cl.c.id == call_id,
                    cl.c.lease_owner == owner,
                    cl.c.transcript_status == "running",
                )
                .values(
                    transcript_status="done",
                    transcript=transcript,
                    transcript_error=None,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
                .returning(cl.c.conversation_id)
            )
            row = done.first()
            if row is None:
                return False
            if row.conversation_id is not None and note is not None:
                await conn.execute(
                    t.messages.insert().values(
                        id=new_id("m"),
                        conversation_id=row.conversation_id,
                        direction="note",
                        author="system",
                        text=note,
                        content_type="text",
                        attachments=[],
                        meta={"kind": "call_transcript", "call_id": call_id},
                        created_at=now,
                    )
                )
        return True

    async def end_transcription_attempt(
        self, call_id: str, owner: str, *, error: str, retry_at: float | None
    ) -> bool:
        """A failed attempt: queued again for ``retry_at``, or (None) ``failed`` for good."""
        cl = t.call_logs
        values: dict[str, Any] = {
            "transcript_error": error[:2000],
            "lease_owner": None,
            "lease_expires_at": retry_at,
            "updated_at": time.time(),
            "transcript_status": "queued" if retry_at is not None else "failed",
        }
        async with self._tx() as conn:
            done = await conn.execute(
                update(cl)
                .where(
                    cl.c.id == call_id,
                    cl.c.lease_owner == owner,
                    cl.c.transcript_status == "running",
                )
                .values(**values)
            )
        return bool(done.rowcount)

    async def release_transcriptions(self, owner: str) -> None:
        """Give back the jobs this process holds (on shutdown): queued again, due now."""
        cl = t.call_logs
        async with self._tx() as conn:
            await conn.execute(
                update(cl)
                .where(cl.c.lease_owner == owner, cl.c.transcript_status == "running")
                .values(transcript_status="queued", lease_owner=None, lease_expires_at=None)
            )

    # ------------------------------------------------------------------ settings
    async def comms_overrides(self) -> dict[str, Any]:
        """The settings changed through the API (they win over the environment)."""
        async with self._tx() as conn:
            rows = await conn.execute(select(t.comms_settings.c.key, t.comms_settings.c.value))
            return {r.key: r.value for r in rows.all()}

    async def save_comms_settings(self, changes: dict[str, Any]) -> None:
        """Store changed settings, one row per key, in one transaction."""
        if not changes:
            return
        now = time.time()
        table = t.comms_settings
        async with self._tx() as conn:
            for key, value in changes.items():
                await conn.execute(
                    self._insert(table)
                    .values(key=key, value=value, updated_at=now)
                    .on_conflict_do_update(
                        index_elements=["key"], set_={"value": value, "updated_at": now}
                    )
                )


def _role(direction: str, author: str) -> str:
    """How the console shows a message: contact, agent, human, system or note."""
    if direction == "in":
        return "contact"
    if direction == "note":
        return "system" if author == "system" else "note"
    return author if author in ("agent", "human", "system") else "agent"


__all__: Sequence[str] = ("CommsStore", "PhoneTaken", "ThreadFilter")
