"""The media store's index and its durable download (and transcription) jobs.

A ``media`` row is one stored file. An upload is written ``done`` at once. Inbound media
(a WhatsApp image, voice note, document…) is a download job queued in the ingest
transaction of its message (``queue_media_hot``): ``queued`` and due at ``available_at``,
claimed by a lease (``running``, ``lease_owner``, ``lease_expires_at``) like turns and
deliveries, retried with backoff (``available_at`` = not before), ``failed`` for good with
``last_error``. Every write after the claim is fenced by the lease (``store.leases``).

While a message's media are not settled its turn is held: the ingest pushes the turn's
``available_at`` out by the channel's wait bound, and the job that settles the last of the
turn's media pulls it back in the same transaction as it writes the message's attachments
(and a voice note's transcript as its text). A crash can only delay the turn to the bound.

The message row's ``attachments`` name media by ``media_id`` (never a provider URL); the
bridge signs a short-lived URL for them when a turn or the console reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

from sqlalchemy import and_, delete, or_, select, update

from chatbridge import clock
from chatbridge.ids import new_id
from chatbridge.store import tables as t
from chatbridge.store.base import Conn, StoreBase
from chatbridge.store.hot import HotTx, dumps, sqlite_sql
from chatbridge.store.leases import RELEASED, fenced_update, held_by

MEDIA_KEY = "media"
"""The key of ``InboundMessage.metadata`` under which a channel lists the media it wants
downloaded: ``{"hold": seconds, "items": [{kind, mime, name, provider, source}]}``."""

RUNNING = "running"
SETTLED = ("done", "failed")


@dataclass(slots=True)
class MediaRecord:
    """One stored (or to be downloaded) file."""

    id: str
    origin: str
    kind: str
    state: str
    conversation_id: str | None = None
    message_id: str | None = None
    provider: str | None = None
    source: dict[str, Any] | None = None
    mime: str | None = None
    name: str | None = None
    size: int | None = None
    sha256: str | None = None
    path: str | None = None
    attempts: int = 0
    available_at: float = 0.0
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    last_error: str | None = None
    transcript_status: str = "none"
    transcript: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    def body(self) -> dict[str, Any]:
        """The row as the admin API answers it: without the provider's fetch details (they
        may hold provider URLs) and the file's path on disk."""
        out = asdict(self)
        out.pop("path")
        source = out.pop("source") or {}
        out["hold"] = source.get("hold")
        return out


def _record(row: Any) -> MediaRecord:
    m = row._mapping
    return MediaRecord(**{k: m[k] for k in MediaRecord.__dataclass_fields__})


def attachment_of(item: dict[str, Any], media_id: str, status: str) -> dict[str, Any]:
    """A media row as the message's ``attachments`` entry names it (no URL: signed later)."""
    return {
        "media_id": media_id,
        "kind": item.get("kind"),
        "mime": item.get("mime"),
        "name": item.get("name"),
        "size": item.get("size"),
        "status": status,
    }


@dataclass(slots=True)
class PlannedMedia:
    """Media rows to write with their message (``plan_media`` → ``queue_media_hot``)."""

    attachments: list[dict[str, Any]]
    rows: list[tuple[str, dict[str, Any]]]
    hold: float


def plan_media(marker: Any) -> PlannedMedia | None:
    """The media a message's ``metadata["media"]`` asks for, with fresh ids; None if none."""
    if not isinstance(marker, dict) or not marker.get("items"):
        return None
    rows = [(new_id("md"), item) for item in marker["items"] if isinstance(item, dict)]
    return PlannedMedia(
        [attachment_of(item, media_id, "pending") for media_id, item in rows],
        rows,
        float(marker.get("hold") or 0.0),
    )


_INSERT = (
    "INSERT INTO media (id, conversation_id, message_id, origin, kind, provider, source, mime,"
    " name, state, attempts, available_at, transcript_status, created_at, updated_at)"
    " VALUES ($1, $2, $3, 'inbound', $4, $5, $6, $7, $8, 'queued', 0, $9, 'none', $9, $9)"
)
_HOLD = (
    "UPDATE turns SET available_at = $2 WHERE id = $1 AND state = 'pending' AND available_at < $2"
)


async def queue_media_hot(
    tx: HotTx,
    planned: PlannedMedia,
    *,
    conversation_id: str,
    message_id: str,
    turn_id: int | None,
    turn_at: float,
    now: float,
) -> None:
    """Queue a message's downloads in its ingest transaction, and hold its turn until they
    settle (at most ``planned.hold`` seconds). Two statements, only for media messages."""
    hold = {"turn_id": turn_id, "planned": turn_at} if turn_id is not None else None
    rows = [
        (
            media_id,
            conversation_id,
            message_id,
            str(item.get("kind") or "document"),
            item.get("provider"),
            dumps({**(item.get("source") or {}), "hold": hold}),
            item.get("mime"),
            (item.get("name") or None) and str(item["name"])[:300],
            now,
        )
        for media_id, item in planned.rows
    ]
    sqlite = tx.dialect == "sqlite"
    await tx.many(sqlite_sql(_INSERT) if sqlite else _INSERT, rows)
    if turn_id is not None and planned.hold > 0:
        until = max(turn_at, now + planned.hold)
        await tx.run(sqlite_sql(_HOLD) if sqlite else _HOLD, (turn_id, until))


class MediaStore(StoreBase):
    """The media store's index and its durable download (and transcription) jobs."""

    async def insert_upload(
        self,
        *,
        kind: str,
        mime: str,
        name: str | None,
        size: int,
        sha256: str,
        path: str,
        media_id: str | None = None,
        conversation_id: str | None = None,
        provider: str | None = None,
        source: dict[str, Any] | None = None,
    ) -> MediaRecord:
        """Index a file written to the media folder by an upload (``done`` at once);
        ``provider`` and ``source`` say whose upload it is, where that matters (web chat)."""
        now = clock.now()
        values = {
            "id": media_id or new_id("md"),
            "conversation_id": conversation_id,
            "message_id": None,
            "origin": "upload",
            "kind": kind,
            "provider": provider,
            "source": source,
            "mime": mime,
            "name": name[:300] if name else None,
            "size": size,
            "sha256": sha256,
            "path": path,
            "state": "done",
            "attempts": 0,
            "available_at": now,
            "transcript_status": "none",
            "created_at": now,
            "updated_at": now,
        }
        async with self._tx() as conn:
            await conn.execute(t.media.insert().values(**values))
            row = (await conn.execute(select(t.media).where(t.media.c.id == values["id"]))).one()
        return _record(row)

    async def get_media(self, media_id: str) -> MediaRecord | None:
        async with self._tx() as conn:
            row = (await conn.execute(select(t.media).where(t.media.c.id == media_id))).first()
        return _record(row) if row is not None else None

    async def link_uploads(
        self, media_ids: Sequence[str], *, conversation_id: str, message_id: str
    ) -> None:
        """Name the message (and conversation) that sent these uploads, the first time one
        is sent (a web chat visitor's files: an upload never sent is forgotten later)."""
        m = t.media
        async with self._tx() as conn:
            await conn.execute(
                update(m)
                .where(m.c.id.in_(list(media_ids)), m.c.message_id.is_(None))
                .values(conversation_id=conversation_id, message_id=message_id)
            )

    async def take_unsent_uploads(
        self, provider: str, *, before: float, limit: int = 200
    ) -> list[MediaRecord]:
        """Delete and return the rows of ``provider``'s uploads made before ``before`` that
        no message sent (their files are the caller's to remove)."""
        m = t.media
        unsent = and_(
            m.c.message_id.is_(None),
            m.c.origin == "upload",
            m.c.provider == provider,
            m.c.created_at < before,
        )
        batch = select(m.c.id).where(unsent).limit(limit)
        # ``unsent`` again on the rows themselves: one sent meanwhile is kept (and not returned)
        query = delete(m).where(m.c.id.in_(batch), unsent).returning(m)
        async with self._tx() as conn:
            rows = (await conn.execute(query)).all()
        return [_record(r) for r in rows]

    async def list_media(
        self, *, message_id: str | None = None, conversation_id: str | None = None
    ) -> list[MediaRecord]:
        """A message's or a conversation's media, oldest first."""
        m = t.media
        query = select(m).order_by(m.c.created_at, m.c.id).limit(500)
        if message_id is not None:
            query = query.where(m.c.message_id == message_id)
        if conversation_id is not None:
            query = query.where(m.c.conversation_id == conversation_id)
        async with self._tx() as conn:
            return [_record(r) for r in (await conn.execute(query)).all()]

    async def claim_media(
        self, owner: str, *, limit: int, lease_seconds: float
    ) -> list[MediaRecord]:
        """Lease due download jobs: queued and due, or running under a lease that ran out."""
        m = t.media
        now = clock.now()
        due = or_(
            and_(m.c.state == "queued", m.c.available_at <= now),
            and_(m.c.state == RUNNING, m.c.lease_expires_at < now),
        )
        candidates = (
            select(m.c.id)
            .where(due)
            .order_by(m.c.available_at, m.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self._tx() as conn:
            rows = await conn.execute(
                update(m)
                .where(m.c.id.in_(candidates.scalar_subquery()), due)
                .values(
                    state=RUNNING,
                    lease_owner=owner,
                    lease_expires_at=now + lease_seconds,
                    attempts=m.c.attempts + 1,
                    updated_at=now,
                )
                .returning(*m.c)
            )
            return [_record(r) for r in rows.all()]

    async def finish_media(
        self,
        media_id: str,
        owner: str,
        *,
        path: str,
        mime: str,
        size: int,
        sha256: str,
        name: str | None,
        kind: str,
        transcript_status: str = "none",
        transcript: str | None = None,
        text: str | None = None,
    ) -> int | bool | None:
        """A download that worked: the row ``done``, the message's attachment ``ready`` (and a
        voice note's ``text``), the turn released if this was its last unsettled media.

        Returns False if the lease was lost (nothing written), else the released turn's id
        (or None when no turn was released).
        """
        values = {
            "state": "done",
            "path": path,
            "mime": mime,
            "size": size,
            "sha256": sha256,
            "name": name[:300] if name else None,
            "kind": kind,
            "transcript_status": transcript_status,
            "transcript": transcript,
            "last_error": None,
        }
        entry = {"mime": mime, "size": size, "name": name, "kind": kind, "status": "ready"}
        if transcript_status != "none":
            entry["transcript"] = transcript
            entry["transcript_status"] = transcript_status
        return await self._settle(media_id, owner, values, entry, text)

    async def end_media_attempt(
        self, media_id: str, owner: str, *, error: str, retry_at: float | None
    ) -> int | bool | None:
        """A failed attempt: queued again for ``retry_at``, or (None) ``failed`` for good —
        then the message's attachment says why and its turn is released."""
        if retry_at is not None:
            async with self._tx() as conn:
                done = await conn.execute(
                    fenced_update(t.media, media_id, owner, leased=RUNNING).values(
                        state="queued",
                        available_at=retry_at,
                        last_error=error[:2000],
                        updated_at=clock.now(),
                        **RELEASED,
                    )
                )
            return None if done.rowcount else False
        values = {"state": "failed", "last_error": error[:2000]}
        return await self._settle(
            media_id, owner, values, {"status": "failed", "error": error[:500]}, None
        )

    async def _settle(
        self,
        media_id: str,
        owner: str,
        values: dict[str, Any],
        entry: dict[str, Any],
        text: str | None,
    ) -> int | bool | None:
        m, msgs = t.media, t.messages
        now = clock.now()
        async with self._tx() as conn:
            done = await conn.execute(
                fenced_update(m, media_id, owner, leased=RUNNING)
                .values(**values, **RELEASED, updated_at=now)
                .returning(m.c.message_id, m.c.source)
            )
            row = done.first()
            if row is None:
                return False
            if row.message_id is None:
                return None
            message = (
                await conn.execute(
                    select(msgs.c.attachments, msgs.c.text)
                    .where(msgs.c.id == row.message_id)
                    .with_for_update()
                )
            ).first()
            if message is not None:
                attachments = [
                    {**a, **entry} if a.get("media_id") == media_id else a
                    for a in cast(list[dict[str, Any]], message.attachments or [])
                ]
                change: dict[str, Any] = {"attachments": attachments}
                if text is not None:
                    change["text"] = f"{message.text}\n{text}" if message.text else text
                await conn.execute(update(msgs).where(msgs.c.id == row.message_id).values(change))
            hold = (row.source or {}).get("hold")
            return await self._release_turn(conn, hold, now)

    async def _release_turn(self, conn: Conn, hold: Any, now: float) -> int | None:
        """Pull the held turn back to when it was planned (or now) if none of its messages'
        media is still waiting; its id if it was released."""
        if not isinstance(hold, dict) or hold.get("turn_id") is None:
            return None
        turn_id = int(hold["turn_id"])
        turns, m = t.turns, t.media
        turn = (
            await conn.execute(
                select(turns.c.message_ids, turns.c.available_at).where(
                    turns.c.id == turn_id, turns.c.state == "pending"
                )
            )
        ).first()
        if turn is None:
            return None
        ids = [str(i) for i in (turn.message_ids or [])]
        waiting = (
            await conn.execute(
                select(m.c.id).where(m.c.message_id.in_(ids), m.c.state.not_in(SETTLED)).limit(1)
            )
        ).first()
        if waiting is not None:
            return None
        at = max(now, float(hold.get("planned") or now))
        released = await conn.execute(
            update(turns)
            .where(turns.c.id == turn_id, turns.c.state == "pending", turns.c.available_at > at)
            .values(available_at=at)
        )
        return turn_id if released.rowcount else None

    async def requeue_media(self, media_id: str) -> MediaRecord | str:
        """Download a failed (or stuck) inbound file again. Returns the row, or ``no_media``,
        ``upload`` (nothing to download) or ``busy`` (queued or running)."""
        m = t.media
        async with self._tx() as conn:
            row = (await conn.execute(select(m).where(m.c.id == media_id))).first()
            if row is None:
                return "no_media"
            if row.origin != "inbound":
                return "upload"
            if row.state in ("queued", RUNNING):
                return "busy"
            now = clock.now()
            await conn.execute(
                update(m)
                .where(m.c.id == media_id)
                .values(
                    state="queued",
                    attempts=0,
                    available_at=now,
                    last_error=None,
                    updated_at=now,
                    **RELEASED,
                )
            )
            return _record((await conn.execute(select(m).where(m.c.id == media_id))).one())

    async def release_media(self, owner: str) -> None:
        """Give back the jobs this process holds (on shutdown): queued again, due now."""
        m = t.media
        async with self._tx() as conn:
            await conn.execute(
                update(m)
                .where(held_by(m, owner, leased=RUNNING))
                .values(state="queued", available_at=clock.now(), **RELEASED)
            )

    async def media_by_ids(self, ids: Sequence[str]) -> dict[str, MediaRecord]:
        """Rows by id (the console's and the API's message views)."""
        if not ids:
            return {}
        async with self._tx() as conn:
            rows = (await conn.execute(select(t.media).where(t.media.c.id.in_(list(ids))))).all()
        return {r.id: _record(r) for r in rows}
