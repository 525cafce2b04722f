"""The transcription worker against a local OpenAI-compatible server: providers, retries,
permanent failures and the "none" / "local" providers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatbridge.crm.settings import CommsSettings
from chatbridge.crm.transcription import (
    MAX_ATTEMPTS,
    LocalTranscriber,
    PermanentTranscription,
    Recording,
    TranscriptionWorker,
    local_engine,
    provider_status,
    transcript_note,
)
from chatbridge.store import Store
from chatbridge.store.crm.rows import Call
from chatbridge.testing.servers import serve_app
from tests.crm.fake_transcriber import create_fake_transcriber


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[Store]:
    s = Store(sqlite_url)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


def worker(store: Store, settings: CommsSettings) -> TranscriptionWorker:
    return TranscriptionWorker(
        store, lambda: settings, owner="t", retry_base=0.001, retry_max=0.001
    )


async def queued(store: Store, **values: Any) -> str:
    call = await store.add_call({"direction": "inbound", **values}, transcribe=True)
    assert isinstance(call, dict)
    return str(call["id"])


async def test_with_no_provider_jobs_wait_queued(store: Store) -> None:
    call = await queued(store, recording_url="http://127.0.0.1:9/a.mp3")
    assert await worker(store, CommsSettings()).run_until_idle() == 0
    assert (await store.get_call(call))["transcript_status"] == "queued"  # type: ignore[index]


async def test_openai_provider_retries_then_gives_up(store: Store, tmp_path: Path) -> None:
    app = create_fake_transcriber()
    fake = app.state.fake
    async with serve_app(app) as url:
        settings = CommsSettings(
            transcription_provider="openai",
            transcription_base_url=f"{url}/v1/",
            transcription_model="tiny",
        )
        audio = tmp_path / "a.wav"
        audio.write_bytes(b"12345")
        ok = await queued(store, recording_path=str(audio))
        w = worker(store, settings)
        fake.fail_next = 2
        assert await w.run_until_idle() >= 1
        # retries wait a (tiny) backoff: run until the job is done
        for _ in range(50):
            if (await store.get_call(ok))["transcript_status"] == "done":  # type: ignore[index]
                break
            await w.run_until_idle()
        call = await store.get_call(ok)
        assert call is not None
        assert (call["transcript_status"], call["transcript"]) == (
            "done",
            "hello from a 5-byte call",
        )
        assert call["attempts"] == 3 and fake.requests[-1]["model"] == "tiny"
        assert fake.requests[-1]["auth"] is None  # no key set: no Authorization header

        fake.status = 400
        bad = await queued(store, recording_path=str(audio))
        await w.run_until_idle()
        call = await store.get_call(bad)
        assert call is not None and call["transcript_status"] == "failed"
        assert "HTTP 400" in call["transcript_error"] and call["attempts"] == 1

        gone = await queued(store, recording_path=str(tmp_path / "missing.wav"))
        await w.run_until_idle()
        assert (await store.get_call(gone))["transcript_status"] == "failed"  # type: ignore[index]
        await w._transcriber.aclose()


@pytest.mark.skipif(local_engine() is not None, reason="a local engine is installed")
async def test_the_local_provider_says_when_no_engine_is_installed(store: Store) -> None:
    settings = CommsSettings(transcription_provider="local")
    assert provider_status(settings) == {
        "provider": "local",
        "available": False,
        "detail": "not installed",
    }
    with pytest.raises(PermanentTranscription, match="not installed"):
        await LocalTranscriber().transcribe(Recording(path="/x.wav"))
    call = await queued(store, recording_path="/x.wav")
    await worker(store, settings).run_until_idle()
    done = await store.get_call(call)
    assert done is not None and done["transcript_status"] == "failed"
    assert "not installed" in done["transcript_error"]


def a_call(**fields: Any) -> Call:
    call = Call(
        id="c1",
        conversation_id=None,
        person_id=None,
        phone=None,
        direction="inbound",
        duration_seconds=None,
        started_at=None,
        recording_url=None,
        recording_path="/x.wav",
        transcript_status="running",
        transcript=None,
        transcript_error=None,
        attempts=1,
        created_at=0.0,
        updated_at=0.0,
    )
    call.update(fields)  # type: ignore[typeddict-item]
    return call


def test_the_transcript_note_names_the_call() -> None:
    call = a_call(direction="outbound", phone="+12025550143", duration_seconds=61.4)
    assert transcript_note(call, "hi") == "Call transcript (outbound, +12025550143, 1:01):\nhi"
    assert transcript_note(a_call(), "hi") == "Call transcript (inbound):\nhi"


async def test_a_job_failing_every_time_ends_after_max_attempts(
    store: Store, tmp_path: Path
) -> None:
    app = create_fake_transcriber()
    fake = app.state.fake
    async with serve_app(app) as url:
        settings = CommsSettings(
            transcription_provider="openai", transcription_base_url=f"{url}/v1/"
        )
        audio = tmp_path / "a.wav"
        audio.write_bytes(b"123")
        call = await queued(store, recording_path=str(audio))
        w = worker(store, settings)
        fake.fail_next = 100
        for _ in range(500):  # each retry waits a (tiny) backoff
            await w.run_until_idle()
            row = await store.get_call(call)
            assert row is not None
            if row["transcript_status"] == "failed":
                break
        assert (row["transcript_status"], row["attempts"]) == ("failed", MAX_ATTEMPTS)
        assert len(fake.requests) == MAX_ATTEMPTS
        # the last error as it was: a job's error is shown to the user as the reason
        assert row["transcript_error"] == "transcription: HTTP 503"
        await w._transcriber.aclose()


class GatedWorker(TranscriptionWorker):
    """Runs a job only once ``gate`` is open; ``started`` / ``finished`` say where it is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.finished = asyncio.Event()

    async def run_job(self, job: Any) -> None:
        self.started.set()
        await self.gate.wait()
        await super().run_job(job)
        self.finished.set()


async def test_the_running_worker_runs_a_woken_job_and_gives_back_the_one_in_hand_on_stop(
    store: Store, tmp_path: Path
) -> None:
    app = create_fake_transcriber()
    async with serve_app(app) as url:
        settings = CommsSettings(
            transcription_provider="openai", transcription_base_url=f"{url}/v1/"
        )
        audio = tmp_path / "a.wav"
        audio.write_bytes(b"1234")
        w = GatedWorker(store, lambda: settings, owner="t", poll_interval=3600.0)
        task = asyncio.create_task(w.run())
        try:
            first = await queued(store, recording_path=str(audio))
            w.wake()  # the poll interval is an hour: only the wake-up can start it
            await asyncio.wait_for(w.started.wait(), 10)
            w.gate.set()
            await asyncio.wait_for(w.finished.wait(), 10)
            assert (await store.get_call(first))["transcript_status"] == "done"  # type: ignore[index]

            w.gate.clear()
            w.started.clear()
            second = await queued(store, recording_path=str(audio))
            w.wake()
            await asyncio.wait_for(w.started.wait(), 10)
            assert await store.claim_transcriptions("other", limit=1, lease_seconds=60) == []
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # stopped mid-job: its lease is given back at once, for another process to take
        jobs = await store.claim_transcriptions("other", limit=1, lease_seconds=60)
        assert [j["id"] for j in jobs] == [second]
