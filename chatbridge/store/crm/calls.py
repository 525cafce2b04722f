"""Call logs: a call (with a recording by URL or on local disk, if any) attached to a thread
and/or a person. Its transcription job lives on the same row (see ``store.transcriptions``).
"""

from __future__ import annotations

import time

from sqlalchemy import ColumnElement, select

from chatbridge.ids import new_id
from chatbridge.store import tables as t
from chatbridge.store.base import StoreBase
from chatbridge.store.crm.rows import (
    Call,
    NewCall,
    call_row,
    person_exists,
    person_with_phone,
    read_calls,
    thread_person,
)


class CallStore(StoreBase):
    """Call logs: log one, read one, list them."""

    async def add_call(self, values: NewCall, *, transcribe: bool) -> Call | str:
        """A call log; with ``transcribe`` its transcription is queued in the same transaction.

        The call is attached to ``conversation_id`` and/or ``person_id``; when no person is
        named, the thread's linked person, else the person with the call's phone. Returns the
        call, or ``no_thread`` / ``no_person`` when one named does not exist.
        """
        now = time.time()
        call_id = new_id("cl")
        conversation_id = values.get("conversation_id")
        person_id = values.get("person_id")
        phone = values.get("phone")
        async with self._tx() as conn:
            if conversation_id is not None:
                exists, linked = await thread_person(conn, conversation_id)
                if not exists:
                    return "no_thread"
                person_id = person_id or linked
            if person_id is not None and not await person_exists(conn, person_id):
                return "no_person"
            if person_id is None and phone:
                person_id = await person_with_phone(conn, phone)
            await conn.execute(
                t.call_logs.insert().values(
                    id=call_id,
                    conversation_id=conversation_id,
                    person_id=person_id,
                    phone=phone,
                    direction=values["direction"],
                    duration_seconds=values.get("duration_seconds"),
                    started_at=values.get("started_at"),
                    recording_url=values.get("recording_url"),
                    recording_path=values.get("recording_path"),
                    transcript_status="queued" if transcribe else "none",
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
            )
            return (await read_calls(conn, t.call_logs.c.id == call_id))[0]

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
