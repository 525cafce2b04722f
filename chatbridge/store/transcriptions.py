"""The durable transcription queue, kept on the ``call_logs`` row and leased like turns.

A job is claimable when ``queued`` and due (``lease_expires_at`` doubles as "not before" while
queued, which is how a retry waits out its backoff) or when ``running`` under an expired lease.
Every write after the claim is fenced by the lease (``store.leases``, with ``running`` as the
leased state): a worker that lost it changes nothing.
"""

from __future__ import annotations

import time

from sqlalchemy import and_, or_, select, update

from chatbridge.ids import new_id
from chatbridge.store import tables as t
from chatbridge.store.base import StoreBase
from chatbridge.store.crm.rows import Call, call_row, read_calls
from chatbridge.store.leases import RELEASED, fenced_update, held_by

RUNNING = "running"
"""The ``transcript_status`` of a leased job (the lease fence's ``leased`` value)."""


class TranscriptionJob(Call):
    """A claimed job: the call, and who holds its lease."""

    lease_owner: str


class TranscriptionStore(StoreBase):
    """Queue, claim, finish, retry and release transcription jobs."""

    async def queue_transcription(self, call_id: str) -> Call | str:
        """(Re)queue a call's transcription. Returns the call, ``no_call``, ``no_recording`` or
        ``busy`` (already queued or running)."""
        cl = t.call_logs
        async with self._tx() as conn:
            rows = await read_calls(conn, cl.c.id == call_id)
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
            return (await read_calls(conn, cl.c.id == call_id))[0]

    async def claim_transcriptions(
        self, owner: str, *, limit: int, lease_seconds: float
    ) -> list[TranscriptionJob]:
        """Lease due transcription jobs (queued and due, or running under a dead lease)."""
        cl = t.call_logs
        now = time.time()
        due = or_(
            and_(
                cl.c.transcript_status == "queued",
                or_(cl.c.lease_expires_at.is_(None), cl.c.lease_expires_at <= now),
            ),
            and_(cl.c.transcript_status == RUNNING, cl.c.lease_expires_at < now),
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
                    transcript_status=RUNNING,
                    lease_owner=owner,
                    lease_expires_at=now + lease_seconds,
                    attempts=cl.c.attempts + 1,
                    updated_at=now,
                )
                .returning(*cl.c)
            )
            return [TranscriptionJob(**call_row(r), lease_owner=r.lease_owner) for r in rows.all()]

    async def finish_transcription(
        self, call_id: str, owner: str, *, transcript: str, note: str | None
    ) -> bool:
        """Store the transcript on the call and, when it has a thread, as a system note there
        (never sent to the customer). Fenced by the lease: False if it was lost."""
        cl = t.call_logs
        now = time.time()
        async with self._tx() as conn:
            done = await conn.execute(
                fenced_update(cl, call_id, owner, status="transcript_status", leased=RUNNING)
                .values(
                    transcript_status="done",
                    transcript=transcript,
                    transcript_error=None,
                    **RELEASED,
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
        fence = fenced_update(
            t.call_logs, call_id, owner, status="transcript_status", leased=RUNNING
        )
        async with self._tx() as conn:
            done = await conn.execute(
                fence.values(
                    {
                        **RELEASED,
                        # while queued, lease_expires_at is the "not before" of the retry
                        "lease_expires_at": retry_at,
                        "transcript_status": "queued" if retry_at is not None else "failed",
                        "transcript_error": error[:2000],
                        "updated_at": time.time(),
                    }
                )
            )
        return bool(done.rowcount)

    async def release_transcriptions(self, owner: str) -> None:
        """Give back the jobs this process holds (on shutdown): queued again, due now."""
        cl = t.call_logs
        async with self._tx() as conn:
            await conn.execute(
                update(cl)
                .where(held_by(cl, owner, status="transcript_status", leased=RUNNING))
                .values(transcript_status="queued", **RELEASED)
            )
