"""Call logs: a call (with a recording by URL or on local disk, if any) attached to a thread
and/or a person. Its transcription job lives on the same row (see ``store.transcriptions``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, select

from chatbridge.ids import new_id
from chatbridge.store import tables as t
from chatbridge.store.base import StoreBase
from chatbridge.store.crm.rows import (
    Call,
    call_row,
    person_exists,
    person_with_phone,
    read_calls,
    thread_person,
)

# The columns a call is logged with (the rest are the store's own).
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


class CallStore(StoreBase):
    """Call logs: log one, read one, list them."""

    async def add_call(self, values: Mapping[str, Any], *, transcribe: bool) -> Call | str:
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
                exists, linked = await thread_person(conn, row["conversation_id"])
                if not exists:
                    return "no_thread"
                row["person_id"] = row["person_id"] or linked
            if row["person_id"] is not None and not await person_exists(conn, row["person_id"]):
                return "no_person"
            if row["person_id"] is None and row["phone"]:
                row["person_id"] = await person_with_phone(conn, row["phone"])
            await conn.execute(t.call_logs.insert().values(**row))
            return (await read_calls(conn, t.call_logs.c.id == row["id"]))[0]

    async def get_call(self, call_id: str) -> Call | None:
        """A call log with its transcription status; None if there is no such call."""
        async with self._tx() as conn:
            rows = await read_calls(conn, t.call_logs.c.id == call_id)
        return rows[0] if rows else None

    async def list_calls(
        self, *, conversation_id: str | None, person_id: str | None, limit: int, offset: int
    ) -> list[Call]:
        """Call logs of a thread and/or a person (all when neither), newest first."""
        cl = t.call_logs
        conds: list[ColumnElement[bool]] = []
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
            return [call_row(r) for r in rows.all()]
