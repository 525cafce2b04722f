"""Thread ↔ person links: an operator's link or unlink, and auto-linking by phone.

A thread has at most one ``thread_links`` row: its person (or none), who linked it (``auto``,
``operator``, or ``unlinked`` — an operator's unlink, which auto-linking leaves alone for good)
and the console's unread marker. A thread with no row, or ``auto`` with no person, is not
decided yet and still open to auto-linking.
"""

from __future__ import annotations

import time
from typing import TypedDict

from sqlalchemy import and_, select, update

from chatbridge.store import tables as t
from chatbridge.store.base import Conn, StoreBase
from chatbridge.store.crm.rows import person_exists, person_with_phone, thread_exists


class LinkValues(TypedDict, total=False):
    """What a link write changes."""

    person_id: str | None
    linked_by: str  # auto | operator | unlinked
    last_read_at: float | None


class ThreadLinkStore(StoreBase):
    """Which person each thread is linked to."""

    async def _upsert_link(
        self, conn: Conn, conversation_id: str, values: LinkValues, now: float
    ) -> None:
        tl = t.thread_links
        done = await conn.execute(
            update(tl)
            .where(tl.c.conversation_id == conversation_id)
            .values(**values, updated_at=now)
        )
        if done.rowcount == 0:
            # no link yet: "auto" with no person is "not decided", still open to auto-linking
            row: LinkValues = {
                "person_id": None,
                "linked_by": "auto",
                "last_read_at": None,
                **values,
            }
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
            if not await thread_exists(conn, conversation_id):
                return "no_thread"
            if person_id is not None and not await person_exists(conn, person_id):
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
        person_id = await person_with_phone(conn, phone)
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
