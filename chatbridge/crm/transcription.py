"""Call recordings → transcripts: the provider interface, its three implementations, and the
durable job worker.

Providers (``CommsSettings.transcription_provider``):

- ``none``: transcription is off; queued jobs wait until a provider is configured.
- ``openai``: any OpenAI-compatible ``POST {base}/audio/transcriptions`` (multipart ``file`` +
  ``model``, ``Authorization: Bearer``). A recording registered by URL is downloaded first.
- ``local``: ``faster_whisper`` or ``whisper`` if one is installed, else "not installed".

Jobs are queued on the ``call_logs`` row and leased (see ``store.transcriptions``); the worker is a
``ClaimLoop`` like the bridge's other workers. A failed attempt is settled by the retry
decision (``chatbridge.retry``): retried with exponential backoff up to ``MAX_ATTEMPTS``, a
permanent failure ends it at once.

    TranscriptionError
    ├── RetryableTranscription     connection error, 429, 5xx: try again later
    └── PermanentTranscription     other 4xx, missing file, no engine: fail now
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import ChatbridgeError
from chatbridge.retry import FailureKind, RetryAt, decide_retry
from chatbridge.store import Store
from chatbridge.store.claim_loop import ClaimLoop
from chatbridge.store.crm.rows import Call
from chatbridge.store.transcriptions import TranscriptionJob

log = logging.getLogger("chatbridge.crm.transcription")

MAX_ATTEMPTS = 5
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
LEASE_SECONDS = 600.0


class TranscriptionError(ChatbridgeError):
    """Transcribing a recording failed."""


class RetryableTranscription(TranscriptionError):
    """Worth another attempt later."""


class PermanentTranscription(TranscriptionError):
    """Will fail the same way again."""


class Recording:
    """Where a call's audio is: a file on local disk, or a URL to download."""

    def __init__(self, *, path: str | None = None, url: str | None = None) -> None:
        if not path and not url:
            raise PermanentTranscription("the call has no recording")
        self.path = path
        self.url = url

    @property
    def filename(self) -> str:
        name = Path(self.path).name if self.path else (self.url or "").rsplit("/", 1)[-1]
        return name.split("?", 1)[0] or "recording"


class Transcriber(Protocol):
    """Turns a recording into text."""

    name: str

    async def transcribe(self, recording: Recording) -> str: ...

    async def aclose(self) -> None: ...


class NoTranscriber:
    name = "none"

    async def transcribe(self, recording: Recording) -> str:
        raise PermanentTranscription("no transcription provider is configured")

    async def aclose(self) -> None:
        return None


async def _read_recording(recording: Recording, session: aiohttp.ClientSession) -> bytes:
    if recording.path:
        path = Path(recording.path)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise PermanentTranscription(f"recording file cannot be read: {path.name}") from exc
    assert recording.url is not None
    try:
        async with session.get(recording.url) as resp:
            if resp.status >= 500 or resp.status == 429:
                raise RetryableTranscription(f"recording download: HTTP {resp.status}")
            if resp.status >= 400:
                raise PermanentTranscription(f"recording download: HTTP {resp.status}")
            data = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > MAX_DOWNLOAD_BYTES:
                    raise PermanentTranscription("recording is larger than 200 MiB")
            return bytes(data)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise RetryableTranscription(f"recording download failed: {exc!r}") from exc
    except ValueError as exc:  # a URL aiohttp cannot use
        raise PermanentTranscription(f"recording URL is not usable: {exc}") from exc


class OpenAITranscriber:
    """Any OpenAI-compatible ``/audio/transcriptions`` endpoint."""

    name = "openai"

    def __init__(
        self, base_url: str, api_key: str | None, model: str, *, timeout: float = 300.0
    ) -> None:
        self.url = base_url.rstrip("/") + "/audio/transcriptions"
        self.api_key = api_key
        self.model = model
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def transcribe(self, recording: Recording) -> str:
        session = self._client()
        audio = await _read_recording(recording, session)
        form = aiohttp.FormData()
        form.add_field("model", self.model)
        form.add_field("file", audio, filename=recording.filename)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            async with session.post(self.url, data=form, headers=headers) as resp:
                body = await resp.text()
                if resp.status == 429 or resp.status >= 500:
                    raise RetryableTranscription(f"transcription: HTTP {resp.status}")
                if resp.status >= 400:
                    raise PermanentTranscription(f"transcription: HTTP {resp.status}: {body[:300]}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableTranscription(f"transcription request failed: {exc!r}") from exc
        try:
            data = json.loads(body)
            text = data["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentTranscription("transcription answer has no 'text'") from exc
        if not isinstance(text, str):
            raise PermanentTranscription("transcription answer has no 'text'")
        return text.strip()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def local_engine() -> str | None:
    """The installed local speech-to-text engine: ``faster_whisper``, ``whisper`` or None."""
    for name in ("faster_whisper", "whisper"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


class LocalTranscriber:
    """A local engine, run in a worker thread (it is CPU-bound and synchronous)."""

    name = "local"

    def __init__(self, model: str = "base") -> None:
        # "whisper-1" is the OpenAI name; locally the closest is a small multilingual model
        self.model_name = "base" if model == "whisper-1" else model
        self.engine = local_engine()
        self._model: Any = None
        self._session: aiohttp.ClientSession | None = None

    async def transcribe(self, recording: Recording) -> str:
        if self.engine is None:
            raise PermanentTranscription(
                "local transcription engine not installed (pip install faster-whisper)"
            )
        if recording.path:
            return await asyncio.to_thread(self._run, recording.path)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        audio = await _read_recording(recording, self._session)
        with tempfile.NamedTemporaryFile(suffix=Path(recording.filename).suffix) as f:
            f.write(audio)
            f.flush()
            return await asyncio.to_thread(self._run, f.name)

    def _run(self, path: str) -> str:  # pragma: no cover - needs a speech model
        if self.engine == "faster_whisper":
            from faster_whisper import WhisperModel

            if self._model is None:
                self._model = WhisperModel(self.model_name)
            segments, _info = self._model.transcribe(path)
            return " ".join(s.text.strip() for s in segments).strip()
        import whisper

        if self._model is None:
            self._model = whisper.load_model(self.model_name)
        return str(self._model.transcribe(path)["text"]).strip()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def build_transcriber(settings: CommsSettings) -> Transcriber:
    """The provider ``settings`` name."""
    if settings.transcription_provider == "openai":
        return OpenAITranscriber(
            settings.transcription_base_url,
            settings.transcription_api_key,
            settings.transcription_model,
        )
    if settings.transcription_provider == "local":
        return LocalTranscriber(settings.transcription_model)
    return NoTranscriber()


class CachedTranscriber:
    """The transcriber the settings name, built on first use and rebuilt (the old one
    closed) when the transcription settings change; shared by the workers that transcribe."""

    def __init__(self) -> None:
        self._transcriber: Transcriber | None = None
        self._built_from: tuple[Any, ...] | None = None

    async def get(self, settings: CommsSettings) -> Transcriber:
        key = (
            settings.transcription_provider,
            settings.transcription_base_url,
            settings.transcription_api_key,
            settings.transcription_model,
        )
        if self._transcriber is None or key != self._built_from:
            await self.aclose()
            self._transcriber = build_transcriber(settings)
            self._built_from = key
        return self._transcriber

    async def aclose(self) -> None:
        """Close the transcriber in hand (its errors ignored); the next ``get`` builds anew."""
        if self._transcriber is not None:
            with contextlib.suppress(Exception):
                await self._transcriber.aclose()
            self._transcriber = None


def provider_status(settings: CommsSettings) -> dict[str, Any]:
    """What the console shows: the provider and whether it can run here."""
    provider = settings.transcription_provider
    if provider == "local":
        engine = local_engine()
        return {
            "provider": provider,
            "available": engine is not None,
            "detail": engine or "not installed",
        }
    if provider == "openai":
        return {"provider": provider, "available": True, "detail": settings.transcription_model}
    return {"provider": "none", "available": False, "detail": "transcription is off"}


def transcript_note(call: Call, transcript: str) -> str:
    """The system note a transcript becomes in the thread."""
    parts = [call["direction"] or "call"]
    if call["phone"]:
        parts.append(call["phone"])
    if call["duration_seconds"] is not None:
        seconds = round(call["duration_seconds"])
        parts.append(f"{seconds // 60}:{seconds % 60:02d}")
    return f"Call transcript ({', '.join(parts)}):\n{transcript}"


@dataclass(frozen=True, slots=True)
class _Job:
    """A claimed transcription job and the provider it runs on (the one configured when it
    was claimed)."""

    transcriber: Transcriber
    call: TranscriptionJob


class TranscriptionWorker:
    """Claims queued transcription jobs and runs them, one at a time per process.

    A ``ClaimLoop`` (``store.claim_loop``, the shape of every worker) around ``claim`` and
    ``run_job``. ``settings`` is read before every claim, so a provider changed through the
    API is used from the next job on. ``run_until_idle()`` is the drain-and-return mode for
    tests.
    """

    def __init__(
        self,
        store: Store,
        settings: Callable[[], CommsSettings],
        *,
        owner: str,
        poll_interval: float = 1.0,
        retry_base: float = 2.0,
        retry_max: float = 300.0,
    ) -> None:
        self.store = store
        self.settings = settings
        self.owner = owner
        self.poll_interval = poll_interval
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._transcriber = CachedTranscriber()
        self._loop: ClaimLoop[_Job] = ClaimLoop(
            "transcriptions",
            claim=self.claim,
            run=self.run_job,
            concurrency=1,
            poll_interval=poll_interval,
            batch=1,
        )

    def wake(self) -> None:
        self._loop.wake()

    async def _current(self) -> Transcriber:
        return await self._transcriber.get(self.settings())

    async def claim(self, limit: int) -> list[_Job]:
        """Lease up to ``limit`` due jobs; none while no provider is configured (the jobs
        wait, queued, until one is)."""
        transcriber = await self._current()
        if transcriber.name == "none":
            return []
        calls = await self.store.claim_transcriptions(
            self.owner, limit=limit, lease_seconds=LEASE_SECONDS
        )
        return [_Job(transcriber, call) for call in calls]

    async def run_job(self, job: _Job) -> None:
        """Transcribe one claimed call; a failure is settled by the retry decision."""
        call = job.call
        call_id = call["id"]
        try:
            recording = Recording(path=call["recording_path"], url=call["recording_url"])
            text = await job.transcriber.transcribe(recording)
        except RetryableTranscription as exc:
            await self._settle(call, "retryable", str(exc))
            return
        except Exception as exc:
            reason = str(exc) if isinstance(exc, TranscriptionError) else repr(exc)
            await self._settle(call, "permanent", reason)
            return
        note = transcript_note(call, text)
        await self.store.finish_transcription(call_id, self.owner, transcript=text, note=note)
        log.info("call %s transcribed (%d chars)", call_id, len(text))

    async def _settle(self, call: TranscriptionJob, kind: FailureKind, error: str) -> None:
        decision = decide_retry(
            attempts=call["attempts"],
            max_attempts=MAX_ATTEMPTS,
            kind=kind,
            error=error,
            now=time.time(),
            base=self.retry_base,
            cap=self.retry_max,
        )
        retry_at = decision.at if isinstance(decision, RetryAt) else None
        if kind == "permanent":
            log.warning("transcription of call %s failed for good: %s", call["id"], error)
        else:
            log.warning(
                "transcription of call %s failed (retry=%s): %s", call["id"], bool(retry_at), error
            )
        # a job that ran out of attempts keeps the last error as it was (no "gave up after")
        await self.store.end_transcription_attempt(
            call["id"], self.owner, error=decision.error, retry_at=retry_at
        )

    async def run_until_idle(self) -> int:
        """Claim and run every job due now; returns how many ran."""
        return await self._loop.run_until_idle()

    async def run(self) -> None:
        """Until cancelled: run due jobs, then sleep until woken or the poll interval passes.
        On the way out the job in hand is cancelled and its lease given back."""
        try:
            await self._loop.run()
        finally:
            await self._loop.drain(0)
            with contextlib.suppress(Exception):
                await self.store.release_transcriptions(self.owner)
            await self._transcriber.aclose()
