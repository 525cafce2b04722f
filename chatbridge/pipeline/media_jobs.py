"""The media worker: downloads inbound media with the provider's credentials into the media
folder, transcribes voice notes, and lets the message's turn go.

A ``ClaimLoop`` like the bridge's other workers, around the ``media`` table's leased jobs
(``store.media``): claim, then for each job

1. download it (``channels.whatsapp.media.download``: each provider's own call);
2. check it (``media.limits``: size caps, the declared type against the bytes) and write it
   to the folder under the row's id (``media.files``);
3. a voice note: transcribe it with the configured provider (``crm.transcription``, the same
   ``Transcriber`` as call recordings); the transcript becomes the message's text, and
   without a provider or when it fails the text is "voice note (not transcribed)";
4. finish the row, fenced by its lease, in one transaction with the message's attachments
   and text and the release of its held turn — then wake the turn loop.

A failure is settled by the retry decision (``chatbridge.retry``): retried with jittered
exponential backoff up to ``MAX_ATTEMPTS``; a permanent one (a 4xx, a refused file) ends the
job ``failed`` with its reason at once, and the message's attachment says why. A worker that
dies mid-job leaves its lease to run out (``LEASE_SECONDS``); another replica takes it over.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from chatbridge import clock
from chatbridge.channels.whatsapp.media import PermanentDownload, RetryableDownload, download
from chatbridge.config import Settings
from chatbridge.crm.settings import CommsSettings
from chatbridge.crm.transcription import (
    CachedTranscriber,
    Recording,
    RetryableTranscription,
    Transcriber,
)
from chatbridge.media.files import MediaFolder, write_checked
from chatbridge.media.limits import KINDS, Kind, MediaRefused, kind_for
from chatbridge.retry import FailureKind, RetryAt, decide_retry
from chatbridge.store import Store
from chatbridge.store.claim_loop import ClaimLoop
from chatbridge.store.media import MediaRecord

log = logging.getLogger("chatbridge.media")

MAX_ATTEMPTS = 5
LEASE_SECONDS = 120.0
NOT_TRANSCRIBED = "voice note (not transcribed)"


class MediaWorker:
    """Claims due download jobs and runs them (a few at a time per process).

    ``on_released(turn_id)`` is called when a job let a held turn go (the bridge wakes its
    turn loop). ``run_until_idle()`` is the drain-and-return mode for tests.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        comms: Callable[[], CommsSettings],
        *,
        on_released: Callable[[int], None] = lambda turn_id: None,
        concurrency: int = 4,
        lease_seconds: float = LEASE_SECONDS,
        retry_base: float = 1.0,
        retry_max: float = 300.0,
    ) -> None:
        self.store = store
        self.settings = settings
        self.comms = comms
        self.owner = settings.instance_id
        self.on_released = on_released
        self.lease_seconds = lease_seconds
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.folder = MediaFolder.for_settings(settings)
        self._http: aiohttp.ClientSession | None = None
        self._transcriber = CachedTranscriber()
        self._loop: ClaimLoop[MediaRecord] = ClaimLoop(
            "media",
            claim=self.claim,
            run=self.run_job,
            concurrency=concurrency,
            poll_interval=settings.poll_interval,
            batch=concurrency,
        )

    def wake(self) -> None:
        self._loop.wake()

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120.0))
        return self._http

    async def _voice_transcriber(self) -> Transcriber:
        return await self._transcriber.get(self.comms())

    async def claim(self, limit: int) -> list[MediaRecord]:
        return await self.store.claim_media(
            self.owner, limit=limit, lease_seconds=self.lease_seconds
        )

    async def run_job(self, job: MediaRecord) -> None:
        """Download, check, store (and transcribe) one claimed file; failures are settled
        by the retry decision."""
        try:
            got = await download(
                self.comms(),
                self._client(),
                job.provider or "",
                job.source or {},
                max_bytes=self.settings.media_max_bytes,
            )
            declared = job.mime or got.mime
            kind: Kind = job.kind if job.kind in KINDS else kind_for(declared)
            stored = await write_checked(
                self.folder,
                got.data,
                declared,
                kind=kind,
                max_bytes=self.settings.media_max_bytes,
                media_id=job.id,
            )
        except RetryableDownload as exc:
            await self._settle(job, "retryable", str(exc))
            return
        except (PermanentDownload, MediaRefused) as exc:
            await self._settle(job, "permanent", str(exc))
            return
        except Exception as exc:
            log.exception("media %s: download failed", job.id)
            await self._settle(job, "permanent", f"download failed: {exc!r}")
            return
        status, transcript, text = "none", None, None
        if stored.checked.kind == "voice":
            status, transcript = await self._transcribe(job, self.folder.root / stored.path)
            if status == "retry":  # the provider is busy or away: the whole job again, soon
                await self._settle(job, "retryable", f"transcription: {transcript}")
                return
            text = transcript if status == "done" and transcript else NOT_TRANSCRIBED
        released = await self.store.finish_media(
            job.id,
            self.owner,
            path=stored.path,
            mime=stored.checked.mime,
            size=stored.size,
            sha256=stored.sha256,
            name=job.name or got.name,
            kind=stored.checked.kind,
            transcript_status=status,
            transcript=transcript,
            text=text,
        )
        log.info(
            "media %s stored (%s, %d bytes) conversation=%s message=%s",
            job.id,
            stored.checked.mime,
            stored.size,
            job.conversation_id,
            job.message_id,
        )
        self._released(released)

    async def _transcribe(self, job: MediaRecord, path: Any) -> tuple[str, str | None]:
        """(transcript status, transcript) of a stored voice note: ``done``; ``skipped``
        without a provider; ``retry`` (with the error) when the provider failed for now and
        the job has attempts left (the backoff is short next to the turn's wait); ``failed``
        when it failed for good or for the last time."""
        transcriber = await self._voice_transcriber()
        if transcriber.name == "none":
            return "skipped", None
        try:
            text = await transcriber.transcribe(Recording(path=str(path)))
        except RetryableTranscription as exc:
            if job.attempts < MAX_ATTEMPTS:
                return "retry", str(exc)
            log.warning("media %s: voice note not transcribed: %s", job.id, exc)
            return "failed", None
        except Exception as exc:
            log.warning("media %s: voice note not transcribed (for good): %s", job.id, exc)
            return "failed", None
        return "done", text

    def _released(self, released: int | bool | None) -> None:
        if released is not None and released is not False and released is not True:
            self.on_released(int(released))

    async def _settle(self, job: MediaRecord, kind: FailureKind, error: str) -> None:
        decision = decide_retry(
            attempts=job.attempts,
            max_attempts=MAX_ATTEMPTS,
            kind=kind,
            error=error,
            now=clock.now(),
            base=self.retry_base,
            cap=self.retry_max,
        )
        retry_at = decision.at if isinstance(decision, RetryAt) else None
        log.warning(
            "media %s: download failed (retry=%s) conversation=%s: %s",
            job.id,
            bool(retry_at),
            job.conversation_id,
            error,
        )
        released = await self.store.end_media_attempt(
            job.id, self.owner, error=decision.error, retry_at=retry_at
        )
        self._released(released)

    async def run_until_idle(self) -> int:
        """Claim and run every job due now; returns how many ran."""
        return await self._loop.run_until_idle()

    async def run(self) -> None:
        """Until cancelled; on the way out the jobs in hand are cancelled and given back."""
        try:
            await self._loop.run()
        finally:
            await self._loop.drain(0)
            with contextlib.suppress(Exception):
                await self.store.release_media(self.owner)
            await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self._transcriber.aclose()
