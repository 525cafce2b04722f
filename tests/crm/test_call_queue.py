"""The durable transcription queue on the ``call_logs`` row (``store.transcriptions``), on
SQLite and PostgreSQL: lease, retry with a due time, fencing, release."""

from __future__ import annotations

import time

from sqlalchemy import update

from chatbridge.store import Store
from chatbridge.store import tables as t


async def test_transcription_jobs_are_leased_retried_when_due_and_fenced(store: Store) -> None:
    call = await store.add_call(
        {"direction": "inbound", "recording_url": "http://127.0.0.1:9/a.mp3"}, transcribe=True
    )
    assert isinstance(call, dict) and call["transcript_status"] == "queued"
    jobs = await store.claim_transcriptions("w1", limit=5, lease_seconds=30)
    assert [j["id"] for j in jobs] == [call["id"]] and jobs[0]["attempts"] == 1
    # leased: nobody else gets it
    assert await store.claim_transcriptions("w2", limit=5, lease_seconds=30) == []
    # a retry waits for its due time
    later = time.time() + 60
    assert await store.end_transcription_attempt(call["id"], "w1", error="503", retry_at=later)
    assert await store.claim_transcriptions("w2", limit=5, lease_seconds=30) == []
    assert (await store.get_call(call["id"]))["transcript_status"] == "queued"  # type: ignore[index]
    assert (
        await store.end_transcription_attempt(call["id"], "w1", error="x", retry_at=None) is False
    )

    assert await store.queue_transcription(call["id"]) == "busy"

    # its due time comes: w2 leases it (briefly); w1's late answer is refused
    async with store._tx() as conn:
        await conn.execute(update(t.call_logs).values(lease_expires_at=None))
    jobs = await store.claim_transcriptions("w2", limit=5, lease_seconds=30)
    assert [j["attempts"] for j in jobs] == [2]
    assert not await store.finish_transcription(call["id"], "w1", transcript="late", note=None)
    # w2's lease expires (aged in the row; the comms store reads time.time): w3 takes over
    async with store._tx() as conn:
        await conn.execute(
            update(t.call_logs).values(lease_expires_at=t.call_logs.c.lease_expires_at - 3600)
        )
    jobs = await store.claim_transcriptions("w3", limit=5, lease_seconds=30)
    assert [j["id"] for j in jobs] == [call["id"]]
    assert await store.finish_transcription(call["id"], "w3", transcript="hello", note=None)
    done = await store.get_call(call["id"])
    assert done is not None and (done["transcript_status"], done["transcript"]) == ("done", "hello")


async def test_released_jobs_are_due_at_once(store: Store) -> None:
    call = await store.add_call(
        {"direction": "outbound", "recording_path": "/nowhere.wav"}, transcribe=True
    )
    assert isinstance(call, dict)
    assert await store.claim_transcriptions("w1", limit=1, lease_seconds=300)
    await store.release_transcriptions("w1")
    assert [j["id"] for j in await store.claim_transcriptions("w2", limit=1, lease_seconds=5)] == [
        call["id"]
    ]
