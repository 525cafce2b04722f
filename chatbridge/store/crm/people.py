"""People: the CRM side of a thread. A person's phone (E.164) is unique among people — it is
the key threads are auto-linked by — and a new or changed phone links that phone's threads.
"""

from __future__ import annotations

import time

from sqlalchemy import String, cast, delete, func, or_, select, update

from chatbridge.errors import BadInput
from chatbridge.ids import new_id
from chatbridge.store import tables as t
from chatbridge.store.base import Conn
from chatbridge.store.crm.links import ThreadLinkStore
from chatbridge.store.crm.rows import (
    PERSON_FIELDS,
    NewPerson,
    Person,
    PersonChanges,
    PersonDetail,
    like,
    person_exists,
    person_row,
    read_calls,
    read_notes,
    read_tasks,
)


def like_quoted(tag: str) -> str:
    """A LIKE pattern for ``"tag"`` inside a JSON list's text (wildcards escaped)."""
    escaped = tag.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f'%"{escaped}"%'


class PhoneTaken(BadInput):
    """Two people with one phone would make linking by phone ambiguous (409)."""

    status_code = 409

    def __init__(self, phone: str, person_id: str) -> None:
        super().__init__(
            "phone_taken",
            f"{phone} is already the phone of person {person_id}",
            details={"person_id": person_id},
        )


class PeopleStore(ThreadLinkStore):
    """People: create, read, search, change, delete."""

    async def _check_phone_free(self, conn: Conn, phone: str, person_id: str | None) -> None:
        stmt = select(t.people.c.id).where(t.people.c.phone == phone)
        if person_id is not None:
            stmt = stmt.where(t.people.c.id != person_id)
        other = (await conn.execute(stmt.limit(1))).scalar_one_or_none()
        if other is not None:
            raise PhoneTaken(phone, str(other))

    async def create_person(self, values: NewPerson, *, auto_link: bool) -> tuple[Person, int]:
        """A new person (``phone`` already E.164); with ``auto_link``, the threads of that
        phone are linked to them. Returns (person, threads linked). Raises ``PhoneTaken``."""
        now = time.time()
        person: Person = {
            "id": new_id("ps"),
            "name": values["name"],
            "phone": values.get("phone"),
            "email": values.get("email"),
            "company": values.get("company"),
            "external_ref": values.get("external_ref"),
            "meta": values.get("meta") or {},
            "tags": values.get("tags") or [],
            "opted_out_at": values.get("opted_out_at"),
            "created_at": now,
            "updated_at": now,
        }
        phone = person["phone"]
        async with self._tx() as conn:
            if phone:
                await self._check_phone_free(conn, phone, None)
            await conn.execute(t.people.insert().values(**person))
            linked = await self._link_by_phone(conn, phone, now) if phone else 0
        return person, linked

    async def get_person(self, person_id: str) -> PersonDetail | None:
        """A person with their threads, notes, tasks and calls."""
        async with self._tx() as conn:
            row = (
                await conn.execute(select(t.people).where(t.people.c.id == person_id))
            ).one_or_none()
            if row is None:
                return None
            threads = await conn.execute(
                select(t.thread_links.c.conversation_id).where(
                    t.thread_links.c.person_id == person_id
                )
            )
            return {
                **person_row(row),
                "threads": sorted(r[0] for r in threads.all()),
                "notes": await read_notes(conn, t.notes.c.person_id == person_id),
                "tasks": await read_tasks(conn, t.tasks.c.person_id == person_id),
                "calls": await read_calls(conn, t.call_logs.c.person_id == person_id),
            }

    async def list_people(
        self,
        *,
        q: str | None,
        limit: int,
        offset: int,
        tag: str | None = None,
        opted_out: bool | None = None,
    ) -> tuple[list[Person], int]:
        """People by name (``q`` searches name, phone and email; ``tag``: who has it;
        ``opted_out``: who did / did not opt out), and how many match in all."""
        p = t.people
        stmt = select(p)
        if opted_out is not None:
            stmt = stmt.where(
                p.c.opted_out_at.is_not(None) if opted_out else p.c.opted_out_at.is_(None)
            )
        if tag:
            # tags are a JSON list of lower-case words: match the quoted element in its text
            stmt = stmt.where(cast(p.c.tags, String).like(like_quoted(tag), escape="\\"))
        if q:
            pattern = like(q)
            stmt = stmt.where(
                or_(*(col.ilike(pattern, escape="\\") for col in (p.c.name, p.c.phone, p.c.email)))
            )
        async with self._tx() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(stmt.subquery()))
            ).scalar_one()
            rows = (
                await conn.execute(stmt.order_by(p.c.name, p.c.id).limit(limit).offset(offset))
            ).all()
        return [person_row(r) for r in rows], int(total)

    async def update_person(
        self, person_id: str, changes: PersonChanges, *, auto_link: bool
    ) -> Person | None:
        """Apply ``changes`` (a new phone links that phone's unlinked threads)."""
        now = time.time()
        phone = changes.get("phone")
        values = {k: v for k, v in changes.items() if k in PERSON_FIELDS}
        async with self._tx() as conn:
            if not await person_exists(conn, person_id):
                return None
            if phone:
                await self._check_phone_free(conn, phone, person_id)
            await conn.execute(
                update(t.people).where(t.people.c.id == person_id).values(**values, updated_at=now)
            )
            if auto_link and phone:
                await self._link_by_phone(conn, phone, now)
            row = (await conn.execute(select(t.people).where(t.people.c.id == person_id))).one()
        return person_row(row)

    async def delete_person(self, person_id: str) -> bool:
        """Delete a person; their threads become unlinked (not auto-linked again), their
        notes, tasks and calls stay with the threads, their broadcast recipient rows go."""
        now = time.time()
        async with self._tx() as conn:
            if not await person_exists(conn, person_id):
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
            # their broadcast rows go with them (a deleted person's data is deleted); each
            # broadcast's total shrinks so its counts still add up
            br = t.broadcast_recipients
            gone = (
                await conn.execute(
                    select(br.c.broadcast_id, func.count())
                    .where(br.c.person_id == person_id)
                    .group_by(br.c.broadcast_id)
                )
            ).all()
            if gone:
                await conn.execute(delete(br).where(br.c.person_id == person_id))
                for broadcast_id, n in gone:
                    await conn.execute(
                        update(t.broadcasts)
                        .where(t.broadcasts.c.id == broadcast_id)
                        .values(total=t.broadcasts.c.total - n)
                    )
            await conn.execute(delete(t.people).where(t.people.c.id == person_id))
        return True
