"""Canned replies and the operators' own lines in a thread (private notes, owner changes).

A canned reply belongs to the operator who wrote it, or to the team (``owner_id`` null, made
with the admin key). ``shared`` ones are offered to every operator; the rest only to their
owner. Its ``shortcut`` (``/refund``) is unique among what one operator sees.

A private note is a message of the thread with ``direction`` note and ``author`` human: shown
inline in the console, never queued for delivery, left out of what the agent is told (agents
get ``in`` and ``out`` messages only). A take-over or hand-back from the console leaves a note
of ``meta.kind`` ``owner_change`` naming the operator.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from chatbridge.ids import new_id
from chatbridge.store import tables as t
from chatbridge.store.base import Conn, StoreBase


class ShortcutTaken(Exception):
    """Another canned reply the same operator sees has this shortcut."""


def _canned(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "shortcut": row.shortcut,
        "text": row.text,
        "owner_id": row.owner_id,
        "shared": bool(row.shared),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _visible(viewer_id: str | None) -> Any:
    cr = t.canned_replies
    if viewer_id is None:
        return or_(cr.c.shared.is_(True), cr.c.owner_id.is_(None))
    return or_(cr.c.shared.is_(True), cr.c.owner_id == viewer_id)


class CannedReplyStore(StoreBase):
    """Canned replies, private notes and owner-change notes."""

    async def list_canned_replies(
        self, viewer_id: str | None, *, everything: bool = False
    ) -> list[dict[str, Any]]:
        """What ``viewer_id`` (None: the admin key) may use: the shared ones and their own;
        ``everything``: all of them (an admin's management view)."""
        cr = t.canned_replies
        stmt = select(cr).order_by(cr.c.shortcut, cr.c.id)
        if not everything:
            stmt = stmt.where(_visible(viewer_id))
        async with self._tx() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_canned(r) for r in rows]

    async def get_canned_reply(self, reply_id: str) -> dict[str, Any] | None:
        cr = t.canned_replies
        async with self._tx() as conn:
            row = (await conn.execute(select(cr).where(cr.c.id == reply_id))).one_or_none()
        return None if row is None else _canned(row)

    async def _shortcut_clash(
        self, conn: Conn, shortcut: str, owner_id: str | None, shared: bool, other_than: str | None
    ) -> bool:
        cr = t.canned_replies
        # clashes with: a shared one, or one of the same owner; a shared one with any
        near = (
            or_(cr.c.shared.is_(True), cr.c.owner_id.is_(None))
            if owner_id is None
            else or_(cr.c.shared.is_(True), cr.c.owner_id == owner_id)
        )
        scope = cr.c.id.is_not(None) if shared else near
        stmt = select(cr.c.id).where(and_(cr.c.shortcut == shortcut, scope))
        if other_than is not None:
            stmt = stmt.where(cr.c.id != other_than)
        return (await conn.execute(stmt.limit(1))).scalar_one_or_none() is not None

    async def create_canned_reply(
        self, *, shortcut: str, text: str, owner_id: str | None, shared: bool
    ) -> dict[str, Any]:
        """Store a canned reply. Raises ``ShortcutTaken``."""
        now = time.time()
        values = {
            "id": new_id("cr"),
            "shortcut": shortcut,
            "text": text,
            "owner_id": owner_id,
            "shared": shared,
            "created_at": now,
            "updated_at": now,
        }
        async with self._tx() as conn:
            if await self._shortcut_clash(conn, shortcut, owner_id, shared, None):
                raise ShortcutTaken(shortcut)
            await conn.execute(t.canned_replies.insert().values(**values))
        return dict(values)

    async def update_canned_reply(
        self, reply_id: str, changes: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Change ``shortcut``, ``text`` or ``shared``. Raises ``ShortcutTaken``."""
        cr = t.canned_replies
        async with self._tx() as conn:
            row = (await conn.execute(select(cr).where(cr.c.id == reply_id))).one_or_none()
            if row is None:
                return None
            after = {**_canned(row), **changes}
            if await self._shortcut_clash(
                conn, after["shortcut"], after["owner_id"], after["shared"], reply_id
            ):
                raise ShortcutTaken(after["shortcut"])
            await conn.execute(
                update(cr).where(cr.c.id == reply_id).values(**changes, updated_at=time.time())
            )
            row = (await conn.execute(select(cr).where(cr.c.id == reply_id))).one()
        return _canned(row)

    async def delete_canned_reply(self, reply_id: str) -> bool:
        cr = t.canned_replies
        async with self._tx() as conn:
            done = await conn.execute(delete(cr).where(cr.c.id == reply_id))
        return bool(done.rowcount)

    # ---- the operators' own lines in a thread

    async def add_thread_note(
        self, conversation_id: str, text: str, meta: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A private note in the thread (never sent); None if there is no such thread."""
        now = time.time()
        m = t.messages
        row: dict[str, Any] = {
            "id": new_id("m"),
            "conversation_id": conversation_id,
            "direction": "note",
            "author": "human",
            "text": text,
            "content_type": "text",
            "attachments": [],
            "dedupe_key": None,
            "external_id": None,
            "turn_id": None,
            "meta": meta,
            "created_at": now,
        }
        async with self._tx() as conn:
            exists = await conn.execute(
                select(t.conversations.c.id).where(t.conversations.c.id == conversation_id)
            )
            if exists.scalar_one_or_none() is None:
                return None
            await conn.execute(m.insert().values(**row))
        return {
            "id": row["id"],
            "direction": "note",
            "author": "human",
            "role": "note",
            "text": text,
            "meta": meta,
            "created_at": now,
        }
