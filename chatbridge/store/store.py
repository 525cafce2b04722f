"""The durable store: the queue *is* the database.

Why our own outbox and leases instead of a job-queue library: the guarantees we sell —
an acknowledged message gets exactly one reply, in order per conversation, across crashes —
need the inbound message, its turn, the reply and its deliveries to be written in the *same*
transactions as the domain rows, and need "at most one in flight per conversation" in the
claim itself. A separate queue cannot give either without two-phase tricks.

How claiming works (both databases, one statement):

    UPDATE turns SET state='leased', lease_owner=:me, lease_expires_at=:t, attempts+1
    WHERE id IN (SELECT id FROM turns t
                 WHERE claimable(t)                              -- pending & due, or lease expired
                   AND NOT EXISTS (an older pending/leased turn of the same conversation)
                 ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED)  -- PostgreSQL only
    RETURNING …

On PostgreSQL, ``SKIP LOCKED`` lets many processes claim at once without blocking each other
and the row lock re-checks ``claimable`` on the newest row version, so no turn is leased twice.
SQLite has one writer at a time (``BEGIN IMMEDIATE``), so the statement is atomic by itself;
within a process an ``asyncio.Lock`` queues writers so they never spin on ``SQLITE_BUSY``.
A lease is *fenced*: finishing a turn or a delivery checks that this process still owns it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import and_, event, exists, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from chatbridge.errors import StoreError
from chatbridge.ids import new_id
from chatbridge.models import ContactInfo, InboundMessage
from chatbridge.store import tables as t
from chatbridge.store.records import (
    AgentRecord,
    ClaimedDelivery,
    ClaimedTurn,
    CompletedTurn,
    ContactRecord,
    ConversationRecord,
    DeadLetter,
    DeliverySpec,
    IngestResult,
    MessageRecord,
    Route,
    TurnDecision,
)

log = logging.getLogger("chatbridge.store")

_OPEN_STATES = ("pending", "leased")

Decide = Callable[[ConversationRecord], TurnDecision]


class _Duplicate(Exception):
    """Raised inside a transaction to roll it back when the input was seen before."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _conv(row: Any) -> ConversationRecord:
    return ConversationRecord(
        id=row.id,
        channel=row.channel,
        channel_key=row.channel_key,
        inbox_id=row.inbox_id,
        contact_id=row.contact_id,
        owner=row.owner,
        status=row.status,
        external_status=row.external_status,
        meta=row.meta or {},
    )


def _route(row: Any) -> Route:
    return Route(
        id=row.id,
        channel=row.channel,
        inbox_id=row.inbox_id,
        agent_id=row.agent_id,
        reply_mode=row.reply_mode,
        timeout_seconds=row.timeout_seconds,
        fallback_text=row.fallback_text,
        on_failure=row.on_failure,
        agent_bot_mode=bool(row.agent_bot_mode),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _agent(row: Any) -> AgentRecord:
    return AgentRecord(
        id=row.id,
        transport=row.transport,
        url=row.url,
        token_hash=row.token_hash,
        timeout_seconds=row.timeout_seconds,
        enabled=bool(row.enabled),
        last_seen_at=row.last_seen_at,
    )


def _message(row: Any) -> MessageRecord:
    return MessageRecord(
        id=row.id,
        conversation_id=row.conversation_id,
        direction=row.direction,
        author=row.author,
        text=row.text,
        content_type=row.content_type,
        attachments=row.attachments or [],
        external_id=row.external_id,
        created_at=row.created_at,
        meta=row.meta or {},
    )


class Store:
    """Async access to the database. One instance per process; ``open()`` before use."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["pool_size"] = 1
            kwargs["max_overflow"] = 0
        else:
            kwargs["pool_size"] = 10
            kwargs["max_overflow"] = 10
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        except Exception as exc:  # bad URL, driver missing
            raise StoreError(f"cannot use database URL: {exc}") from exc
        self._lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            self._setup_sqlite()

    def _setup_sqlite(self) -> None:
        sync_engine = self.engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let us issue BEGIN ourselves (the driver's implicit BEGIN is DEFERRED).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            # WAL + synchronous=NORMAL survives a killed process (the OS keeps the pages);
            # only a power cut can drop the last commits. FULL would cost an fsync per commit.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(sync_engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    # ------------------------------------------------------------------ lifecycle
    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        async with self._tx() as conn:
            await conn.run_sync(_upgrade_head)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(select(1))
            return True
        except Exception:
            log.warning("store ping failed", exc_info=True)
            return False

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        if self._lock is not None:
            async with self._lock, self.engine.begin() as conn:
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    def _insert(self, table: Any) -> Any:
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return insert(table)

    # ------------------------------------------------------------------ agents & routes
    async def upsert_agent(
        self,
        agent_id: str,
        *,
        transport: str,
        url: str | None,
        timeout_seconds: float,
        token_hash: str | None = None,
        enabled: bool = True,
    ) -> AgentRecord:
        now = time.time()
        values = {
            "transport": transport,
            "url": url,
            "timeout_seconds": timeout_seconds,
            "enabled": enabled,
            "updated_at": now,
        }
        if token_hash is not None:
            values["token_hash"] = token_hash
        stmt = self._insert(t.agents).values(id=agent_id, created_at=now, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_=values)
        async with self._tx() as conn:
            await conn.execute(stmt)
            row = (await conn.execute(select(t.agents).where(t.agents.c.id == agent_id))).one()
        return _agent(row)

    async def list_agents(self) -> list[AgentRecord]:
        async with self._tx() as conn:
            rows = (await conn.execute(select(t.agents).order_by(t.agents.c.id))).all()
        return [_agent(r) for r in rows]

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        async with self._tx() as conn:
            row = (
                await conn.execute(select(t.agents).where(t.agents.c.id == agent_id))
            ).one_or_none()
        return _agent(row) if row else None

    async def touch_agents(self, seen: dict[str, float]) -> None:
        """Record when agents were last heard from (batched by the caller)."""
        if not seen:
            return
        async with self._tx() as conn:
            for agent_id, when in seen.items():
                await conn.execute(
                    update(t.agents).where(t.agents.c.id == agent_id).values(last_seen_at=when)
                )

    async def save_route(
        self,
        *,
        channel: str,
        inbox_id: int,
        agent_id: str,
        reply_mode: str,
        timeout_seconds: float,
        fallback_text: str | None,
        on_failure: str,
        agent_bot_mode: bool,
        overwrite: bool = True,
    ) -> tuple[Route, bool]:
        """Create or update the route of (channel, inbox). Returns (route, created)."""
        now = time.time()
        values = {
            "agent_id": agent_id,
            "reply_mode": reply_mode,
            "timeout_seconds": timeout_seconds,
            "fallback_text": fallback_text,
            "on_failure": on_failure,
            "agent_bot_mode": agent_bot_mode,
            "updated_at": now,
        }
        where = and_(t.routes.c.channel == channel, t.routes.c.inbox_id == inbox_id)
        async with self._tx() as conn:
            existing = (await conn.execute(select(t.routes).where(where))).one_or_none()
            if existing is None:
                await conn.execute(
                    t.routes.insert().values(
                        channel=channel, inbox_id=inbox_id, created_at=now, **values
                    )
                )
            elif overwrite:
                await conn.execute(update(t.routes).where(where).values(**values))
            row = (await conn.execute(select(t.routes).where(where))).one()
        return _route(row), existing is None

    async def list_routes(self) -> list[Route]:
        async with self._tx() as conn:
            rows = (
                await conn.execute(
                    select(t.routes).order_by(t.routes.c.channel, t.routes.c.inbox_id)
                )
            ).all()
        return [_route(r) for r in rows]

    async def delete_route(self, channel: str, inbox_id: int) -> bool:
        async with self._tx() as conn:
            result = await conn.execute(
                t.routes.delete().where(
                    and_(t.routes.c.channel == channel, t.routes.c.inbox_id == inbox_id)
                )
            )
        return bool(result.rowcount)

    # ------------------------------------------------------------------ inbound
    async def ingest(
        self,
        msg: InboundMessage,
        *,
        route: Route,
        response_mode: str,
        decide: Decide,
    ) -> IngestResult:
        """Store an inbound message and, if ``decide`` says so, its turn — one transaction.

        Deduplicates on ``msg.delivery_id`` and on ``msg.external_message_id``: a duplicate
        writes nothing at all.
        """
        try:
            return await self._ingest(msg, route=route, response_mode=response_mode, decide=decide)
        except _Duplicate as dup:
            return IngestResult(status="duplicate", reason=dup.reason)

    async def _ingest(
        self, msg: InboundMessage, *, route: Route, response_mode: str, decide: Decide
    ) -> IngestResult:
        now = time.time()
        async with self._tx() as conn:
            if msg.delivery_id:
                receipt = await conn.execute(
                    self._insert(t.inbound_receipts)
                    .values(key=f"{msg.channel}:{msg.delivery_id}", created_at=now)
                    .on_conflict_do_nothing()
                )
                if receipt.rowcount == 0:
                    raise _Duplicate("delivery_id")
            dedupe_key = (
                f"{msg.channel}:{msg.external_message_id}" if msg.external_message_id else None
            )
            if dedupe_key is not None:
                seen = await conn.execute(
                    select(t.messages.c.id).where(t.messages.c.dedupe_key == dedupe_key)
                )
                if seen.first() is not None:
                    # Abort the transaction: the receipt is rolled back too, nothing is written.
                    raise _Duplicate("message_id")
            contact_id = await self._upsert_contact(conn, msg.channel, msg.contact, now)
            conv = await self._upsert_conversation(
                conn,
                channel=msg.channel,
                channel_key=msg.channel_key,
                inbox_id=msg.inbox_id,
                contact_id=contact_id,
                external_status=msg.external_status,
                now=now,
            )
            decision = decide(conv)
            if decision.owner != conv.owner:
                await self._set_owner(conn, conv.id, decision.owner)
            message_id = new_id("m")
            await conn.execute(
                t.messages.insert().values(
                    id=message_id,
                    conversation_id=conv.id,
                    direction="in",
                    author="contact",
                    text=msg.text,
                    content_type=msg.content_type,
                    attachments=[
                        {"url": a.url, "mime": a.mime, "size": a.size, "name": a.name}
                        for a in msg.attachments
                    ],
                    dedupe_key=dedupe_key,
                    external_id=msg.external_message_id,
                    meta={"context": msg.context, **msg.metadata},
                    created_at=msg.received_at,
                )
            )
            if not decision.create_turn:
                return IngestResult(
                    status="stored",
                    conversation_id=conv.id,
                    message_id=message_id,
                    reason=decision.reason,
                )
            turn_id = (
                await conn.execute(
                    t.turns.insert()
                    .values(
                        conversation_id=conv.id,
                        agent_id=route.agent_id,
                        route_id=route.id,
                        kind="message",
                        state="pending",
                        attempts=0,
                        available_at=now,
                        response_mode=response_mode,
                        message_ids=[message_id],
                        created_at=now,
                    )
                    .returning(t.turns.c.id)
                )
            ).scalar_one()
            await conn.execute(
                update(t.messages).where(t.messages.c.id == message_id).values(turn_id=turn_id)
            )
        return IngestResult(
            status="accepted", conversation_id=conv.id, message_id=message_id, turn_id=turn_id
        )

    async def _upsert_contact(
        self, conn: AsyncConnection, channel: str, contact: ContactInfo | None, now: float
    ) -> str | None:
        if contact is None or not contact.external_id:
            return None
        changes = {"updated_at": now}
        for field in ("name", "email", "phone"):
            value = getattr(contact, field)
            if value is not None:
                changes[field] = value
        stmt = (
            self._insert(t.contacts)
            .values(
                id=new_id("p"),
                channel=channel,
                external_id=contact.external_id,
                name=contact.name,
                email=contact.email,
                phone=contact.phone,
                meta=contact.metadata,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_update(index_elements=["channel", "external_id"], set_=changes)
            .returning(t.contacts.c.id)
        )
        return str((await conn.execute(stmt)).scalar_one())

    async def _upsert_conversation(
        self,
        conn: AsyncConnection,
        *,
        channel: str,
        channel_key: str,
        inbox_id: int,
        contact_id: str | None,
        external_status: str | None,
        now: float,
    ) -> ConversationRecord:
        changes: dict[str, Any] = {"last_activity_at": now}
        if external_status is not None:
            changes["external_status"] = external_status
        if contact_id is not None:
            changes["contact_id"] = contact_id
        stmt = (
            self._insert(t.conversations)
            .values(
                id=new_id("c"),
                channel=channel,
                channel_key=channel_key,
                inbox_id=inbox_id,
                contact_id=contact_id,
                owner="bot",
                status="open",
                external_status=external_status,
                meta={},
                created_at=now,
                last_activity_at=now,
            )
            .on_conflict_do_update(index_elements=["channel", "channel_key"], set_=changes)
            .returning(*t.conversations.c)
        )
        return _conv((await conn.execute(stmt)).one())

    async def _set_owner(self, conn: AsyncConnection, conversation_id: str, owner: str) -> None:
        await conn.execute(
            update(t.conversations)
            .where(t.conversations.c.id == conversation_id)
            .values(owner=owner)
        )
        if owner == "human":
            # A human owns it now: turns not yet started will not run. A turn in flight
            # finishes, but its reply is kept as a note (see complete_turn).
            await conn.execute(
                update(t.turns)
                .where(
                    and_(t.turns.c.conversation_id == conversation_id, t.turns.c.state == "pending")
                )
                .values(state="cancelled", outcome="human_owner", finished_at=time.time())
            )

    async def apply_owner_signal(
        self,
        *,
        channel: str,
        channel_key: str,
        inbox_id: int,
        decide_owner: Callable[[ConversationRecord], str | None],
        external_status: str | None = None,
        note_text: str | None = None,
        note_author: str = "human",
        external_message_id: str | None = None,
        delivery_id: str | None = None,
    ) -> tuple[ConversationRecord | None, bool]:
        """Record a change of hands/status; returns (conversation, duplicate)."""
        try:
            conv = await self._apply_owner_signal(
                channel=channel,
                channel_key=channel_key,
                inbox_id=inbox_id,
                decide_owner=decide_owner,
                external_status=external_status,
                note_text=note_text,
                note_author=note_author,
                external_message_id=external_message_id,
                delivery_id=delivery_id,
            )
        except _Duplicate:
            return None, True
        return conv, False

    async def _apply_owner_signal(
        self,
        *,
        channel: str,
        channel_key: str,
        inbox_id: int,
        decide_owner: Callable[[ConversationRecord], str | None],
        external_status: str | None,
        note_text: str | None,
        note_author: str,
        external_message_id: str | None,
        delivery_id: str | None,
    ) -> ConversationRecord:
        now = time.time()
        async with self._tx() as conn:
            if delivery_id:
                receipt = await conn.execute(
                    self._insert(t.inbound_receipts)
                    .values(key=f"{channel}:{delivery_id}", created_at=now)
                    .on_conflict_do_nothing()
                )
                if receipt.rowcount == 0:
                    raise _Duplicate("delivery_id")
            dedupe_key = f"{channel}:{external_message_id}" if external_message_id else None
            if dedupe_key is not None:
                seen = await conn.execute(
                    select(t.messages.c.id).where(t.messages.c.dedupe_key == dedupe_key)
                )
                if seen.first() is not None:
                    raise _Duplicate("message_id")
            conv = await self._upsert_conversation(
                conn,
                channel=channel,
                channel_key=channel_key,
                inbox_id=inbox_id,
                contact_id=None,
                external_status=external_status,
                now=now,
            )
            new_owner = decide_owner(conv)
            if new_owner is not None and new_owner != conv.owner:
                await self._set_owner(conn, conv.id, new_owner)
                conv.owner = new_owner
            if note_text is not None:
                await conn.execute(
                    t.messages.insert().values(
                        id=new_id("m"),
                        conversation_id=conv.id,
                        direction="out",
                        author=note_author,
                        text=note_text,
                        content_type="text",
                        attachments=[],
                        dedupe_key=dedupe_key,
                        external_id=external_message_id,
                        meta={},
                        created_at=now,
                    )
                )
        return conv

    async def set_owner(self, conversation_id: str, owner: str) -> bool:
        async with self._tx() as conn:
            found = (
                await conn.execute(
                    select(t.conversations.c.id).where(t.conversations.c.id == conversation_id)
                )
            ).first()
            if found is None:
                return False
            await self._set_owner(conn, conversation_id, owner)
        return True

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        async with self._tx() as conn:
            row = (
                await conn.execute(
                    select(t.conversations).where(t.conversations.c.id == conversation_id)
                )
            ).one_or_none()
        return _conv(row) if row else None

    async def find_conversation(self, channel: str, channel_key: str) -> ConversationRecord | None:
        async with self._tx() as conn:
            row = (
                await conn.execute(
                    select(t.conversations).where(
                        and_(
                            t.conversations.c.channel == channel,
                            t.conversations.c.channel_key == channel_key,
                        )
                    )
                )
            ).one_or_none()
        return _conv(row) if row else None

    async def list_messages(self, conversation_id: str, limit: int = 50) -> list[MessageRecord]:
        async with self._tx() as conn:
            rows = (
                await conn.execute(
                    select(t.messages)
                    .where(t.messages.c.conversation_id == conversation_id)
                    .order_by(t.messages.c.created_at, t.messages.c.id)
                    .limit(limit)
                )
            ).all()
        return [_message(r) for r in rows]

    # ------------------------------------------------------------------ turns
    async def claim_turns(
        self, owner: str, *, limit: int, lease_seconds: float, typing_channels: Iterable[str] = ()
    ) -> list[ClaimedTurn]:
        """Lease up to ``limit`` turns (oldest first, one per conversation at most).

        For conversations on ``typing_channels`` a ``typing_on`` delivery is written in the
        same transaction, so typing always starts before — and ends after — the reply.
        """
        now = time.time()
        typing = set(typing_channels)
        tt = t.turns
        older = tt.alias("older")
        candidates = (
            select(tt.c.id)
            .where(
                or_(
                    and_(tt.c.state == "pending", tt.c.available_at <= now),
                    and_(tt.c.state == "leased", tt.c.lease_expires_at < now),
                ),
                ~exists().where(
                    and_(
                        older.c.conversation_id == tt.c.conversation_id,
                        older.c.id < tt.c.id,
                        older.c.state.in_(_OPEN_STATES),
                    )
                ),
            )
            .order_by(tt.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(tt)
            .where(tt.c.id.in_(candidates.scalar_subquery()))
            .values(
                state="leased",
                lease_owner=owner,
                lease_expires_at=now + lease_seconds,
                attempts=tt.c.attempts + 1,
                started_at=func.coalesce(tt.c.started_at, now),
            )
            .returning(*tt.c)
            .execution_options(synchronize_session=False)
        )
        async with self._tx() as conn:
            rows = (await conn.execute(stmt)).all()
            if not rows:
                return []
            conv_ids = {r.conversation_id for r in rows}
            convs = {
                r.id: _conv(r)
                for r in (
                    await conn.execute(
                        select(t.conversations).where(t.conversations.c.id.in_(conv_ids))
                    )
                ).all()
            }
            msg_ids = [m for r in rows for m in (r.message_ids or [])]
            msgs = {
                r.id: _message(r)
                for r in (
                    await conn.execute(select(t.messages).where(t.messages.c.id.in_(msg_ids)))
                ).all()
            }
            contact_ids = {c.contact_id for c in convs.values() if c.contact_id}
            contacts = (
                {
                    r.id: ContactRecord(
                        id=r.id,
                        channel=r.channel,
                        external_id=r.external_id,
                        name=r.name,
                        email=r.email,
                        phone=r.phone,
                    )
                    for r in (
                        await conn.execute(
                            select(t.contacts).where(t.contacts.c.id.in_(contact_ids))
                        )
                    ).all()
                }
                if contact_ids
                else {}
            )
            claimed = []
            typing_rows = []
            for r in sorted(rows, key=lambda r: r.id):
                conv = convs[r.conversation_id]
                claimed.append(
                    ClaimedTurn(
                        id=r.id,
                        conversation_id=r.conversation_id,
                        agent_id=r.agent_id,
                        route_id=r.route_id,
                        kind=r.kind,
                        attempts=r.attempts,
                        response_mode=r.response_mode,
                        created_at=r.created_at,
                        conversation=conv,
                        messages=[msgs[m] for m in (r.message_ids or []) if m in msgs],
                        contact=contacts.get(conv.contact_id) if conv.contact_id else None,
                    )
                )
                if conv.channel in typing and conv.owner == "bot":
                    typing_rows.append(
                        self._delivery_values(
                            r.conversation_id, r.id, None, DeliverySpec("typing_on", 3), now
                        )
                    )
            if typing_rows:
                await conn.execute(t.deliveries.insert(), typing_rows)
        return claimed

    @staticmethod
    def _delivery_values(
        conversation_id: str,
        turn_id: int | None,
        message_id: str | None,
        spec: DeliverySpec,
        now: float,
    ) -> dict[str, Any]:
        return {
            "conversation_id": conversation_id,
            "turn_id": turn_id,
            "message_id": message_id,
            "kind": spec.kind,
            "text": spec.text,
            "payload": spec.payload,
            "state": "pending",
            "attempts": 0,
            "max_attempts": spec.max_attempts,
            "next_attempt_at": now,
            "idempotency_key": new_id("d"),
            "uncertain": False,
            "created_at": now,
        }

    async def renew_leases(self, owner: str, lease_seconds: float) -> None:
        """Extend every lease this process holds (called periodically by the workers)."""
        until = time.time() + lease_seconds
        async with self._tx() as conn:
            for table in (t.turns, t.deliveries):
                await conn.execute(
                    update(table)
                    .where(and_(table.c.lease_owner == owner, table.c.state == "leased"))
                    .values(lease_expires_at=until)
                )

    async def release_leases(self, owner: str) -> None:
        """Give back every turn this process holds, so another process may take it at once."""
        async with self._tx() as conn:
            await conn.execute(
                update(t.turns)
                .where(and_(t.turns.c.lease_owner == owner, t.turns.c.state == "leased"))
                .values(state="pending", lease_owner=None, lease_expires_at=None)
            )
            # A delivery caught mid-send has an unknown outcome: expire the lease instead of
            # resetting it, so the next claim checks the channel before sending again.
            await conn.execute(
                update(t.deliveries)
                .where(and_(t.deliveries.c.lease_owner == owner, t.deliveries.c.state == "leased"))
                .values(lease_expires_at=0.0)
            )

    async def complete_turn(
        self,
        turn_id: int,
        owner: str,
        *,
        state: str,
        outcome: str,
        reply_text: str | None,
        reply_attachments: Sequence[dict[str, Any]] = (),
        reply_meta: dict[str, Any] | None = None,
        deliveries: Sequence[DeliverySpec] = (),
        handoff: bool = False,
        error: str | None = None,
    ) -> CompletedTurn:
        """Write a turn's outcome, its reply and the reply's deliveries — one transaction.

        Fenced: if this process no longer holds the lease nothing is written (``ok=False``).
        If a human owns the conversation, the reply is stored as a note and only
        ``typing_off`` deliveries are written.
        """
        now = time.time()
        async with self._tx() as conn:
            fenced = await conn.execute(
                update(t.turns)
                .where(
                    and_(
                        t.turns.c.id == turn_id,
                        t.turns.c.state == "leased",
                        t.turns.c.lease_owner == owner,
                    )
                )
                .values(
                    state=state,
                    outcome=outcome,
                    finished_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    last_error=error,
                )
                .returning(t.turns.c.conversation_id)
            )
            conversation_id = fenced.scalar_one_or_none()
            if conversation_id is None:
                return CompletedTurn(ok=False)
            conv_owner = (
                await conn.execute(
                    select(t.conversations.c.owner).where(t.conversations.c.id == conversation_id)
                )
            ).scalar_one()
            deliver = conv_owner == "bot"
            reply_id = None
            if reply_text is not None or reply_attachments:
                reply_id = new_id("m")
                await conn.execute(
                    t.messages.insert().values(
                        id=reply_id,
                        conversation_id=conversation_id,
                        direction="out" if deliver else "note",
                        author="agent",
                        text=reply_text or "",
                        content_type="text",
                        attachments=list(reply_attachments),
                        turn_id=turn_id,
                        meta=reply_meta or {},
                        created_at=now,
                    )
                )
                await conn.execute(
                    update(t.turns).where(t.turns.c.id == turn_id).values(reply_message_id=reply_id)
                )
            rows = [
                self._delivery_values(
                    conversation_id, turn_id, reply_id if s.kind == "message" else None, s, now
                )
                for s in deliveries
                if deliver or s.kind == "typing_off"
            ]
            ids: list[int] = []
            for values in rows:  # one by one: ids must follow list order
                ids.append(
                    (
                        await conn.execute(
                            t.deliveries.insert().values(**values).returning(t.deliveries.c.id)
                        )
                    ).scalar_one()
                )
            if handoff and deliver:
                await self._set_owner(conn, conversation_id, "human")
        return CompletedTurn(
            ok=True, reply_message_id=reply_id, delivered=deliver, delivery_ids=ids
        )

    async def get_turn(self, turn_id: int) -> dict[str, Any] | None:
        """The turn row with its reply text, for sync waiters and the API."""
        async with self._tx() as conn:
            row = (
                await conn.execute(
                    select(t.turns, t.messages.c.text.label("reply_text"))
                    .select_from(
                        t.turns.outerjoin(t.messages, t.messages.c.id == t.turns.c.reply_message_id)
                    )
                    .where(t.turns.c.id == turn_id)
                )
            ).one_or_none()
        return dict(row._mapping) if row else None

    # ------------------------------------------------------------------ outbound
    async def add_outbound(
        self,
        conversation_id: str,
        *,
        text: str | None,
        author: str,
        deliveries: Sequence[DeliverySpec],
        attachments: Sequence[dict[str, Any]] = (),
        meta: dict[str, Any] | None = None,
        respect_owner: bool = True,
        handoff: bool = False,
    ) -> CompletedTurn:
        """A message not tied to a turn (proactive agent message, operator message).

        While a human owns the conversation, the text is kept as a note and nothing is sent.
        """
        now = time.time()
        async with self._tx() as conn:
            conv_owner = (
                await conn.execute(
                    select(t.conversations.c.owner).where(t.conversations.c.id == conversation_id)
                )
            ).scalar_one_or_none()
            if conv_owner is None:
                return CompletedTurn(ok=False)
            deliver = conv_owner == "bot" or not respect_owner
            message_id = None
            if text is not None:
                message_id = new_id("m")
                await conn.execute(
                    t.messages.insert().values(
                        id=message_id,
                        conversation_id=conversation_id,
                        direction="out" if deliver else "note",
                        author=author,
                        text=text,
                        content_type="text",
                        attachments=list(attachments),
                        meta=meta or {},
                        created_at=now,
                    )
                )
            ids = []
            if deliver:
                for spec in deliveries:
                    values = self._delivery_values(
                        conversation_id,
                        None,
                        message_id if spec.kind == "message" else None,
                        spec,
                        now,
                    )
                    ids.append(
                        (
                            await conn.execute(
                                t.deliveries.insert().values(**values).returning(t.deliveries.c.id)
                            )
                        ).scalar_one()
                    )
                if handoff:
                    await self._set_owner(conn, conversation_id, "human")
        return CompletedTurn(
            ok=True, reply_message_id=message_id, delivered=deliver, delivery_ids=ids
        )

    async def claim_deliveries(
        self, owner: str, *, limit: int, lease_seconds: float
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` deliveries: the oldest open one of each conversation."""
        now = time.time()
        dd = t.deliveries
        older = dd.alias("older")
        candidates = (
            select(dd.c.id)
            .where(
                or_(
                    and_(dd.c.state == "pending", dd.c.next_attempt_at <= now),
                    and_(dd.c.state == "leased", dd.c.lease_expires_at < now),
                ),
                ~exists().where(
                    and_(
                        older.c.conversation_id == dd.c.conversation_id,
                        older.c.id < dd.c.id,
                        older.c.state.in_(_OPEN_STATES),
                    )
                ),
            )
            .order_by(dd.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(dd)
            .where(dd.c.id.in_(candidates.scalar_subquery()))
            .values(
                state="leased",
                lease_owner=owner,
                lease_expires_at=now + lease_seconds,
                attempts=dd.c.attempts + 1,
                # SET expressions see the *old* row: was it leased by a process that died
                # mid-send? Then the far side may already have it.
                uncertain=dd.c.state == "leased",
            )
            .returning(*dd.c)
        )
        async with self._tx() as conn:
            rows = (await conn.execute(stmt)).all()
            if not rows:
                return []
            conv_ids = {r.conversation_id for r in rows}
            convs = {
                r.id: _conv(r)
                for r in (
                    await conn.execute(
                        select(t.conversations).where(t.conversations.c.id.in_(conv_ids))
                    )
                ).all()
            }
        return [
            ClaimedDelivery(
                id=r.id,
                conversation_id=r.conversation_id,
                turn_id=r.turn_id,
                message_id=r.message_id,
                kind=r.kind,
                text=r.text,
                payload=r.payload or {},
                attempts=r.attempts,
                max_attempts=r.max_attempts,
                idempotency_key=r.idempotency_key,
                uncertain=bool(r.uncertain),
                conversation=convs[r.conversation_id],
            )
            for r in sorted(rows, key=lambda r: r.id)
        ]

    async def finish_delivery(
        self, delivery_id: int, owner: str, *, external_id: str | None
    ) -> bool:
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.deliveries)
                .where(
                    and_(
                        t.deliveries.c.id == delivery_id,
                        t.deliveries.c.lease_owner == owner,
                        t.deliveries.c.state == "leased",
                    )
                )
                .values(
                    state="done",
                    done_at=time.time(),
                    external_id=external_id,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            if result.rowcount and external_id is not None:
                message_id = (
                    await conn.execute(
                        select(t.deliveries.c.message_id).where(t.deliveries.c.id == delivery_id)
                    )
                ).scalar_one()
                if message_id:
                    await conn.execute(
                        update(t.messages)
                        .where(t.messages.c.id == message_id)
                        .values(external_id=external_id)
                    )
        return bool(result.rowcount)

    async def retry_delivery(
        self, delivery_id: int, owner: str, *, next_attempt_at: float, error: str
    ) -> bool:
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.deliveries)
                .where(
                    and_(
                        t.deliveries.c.id == delivery_id,
                        t.deliveries.c.lease_owner == owner,
                        t.deliveries.c.state == "leased",
                    )
                )
                .values(
                    state="pending",
                    next_attempt_at=next_attempt_at,
                    last_error=error[:2000],
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
        return bool(result.rowcount)

    async def fail_delivery(
        self, delivery_id: int, owner: str, *, error: str, state: str = "dead"
    ) -> bool:
        """End a delivery for good: ``dead`` (listed, replayable) or ``dropped`` (typing)."""
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.deliveries)
                .where(
                    and_(
                        t.deliveries.c.id == delivery_id,
                        t.deliveries.c.lease_owner == owner,
                        t.deliveries.c.state == "leased",
                    )
                )
                .values(
                    state=state,
                    last_error=error[:2000],
                    done_at=time.time(),
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
        return bool(result.rowcount)

    async def list_dead_letters(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        dd, cc = t.deliveries, t.conversations
        async with self._tx() as conn:
            rows = (
                await conn.execute(
                    select(dd, cc.c.channel, cc.c.channel_key)
                    .select_from(dd.join(cc, cc.c.id == dd.c.conversation_id))
                    .where(dd.c.state == "dead")
                    .order_by(dd.c.id)
                    .limit(limit)
                    .offset(offset)
                )
            ).all()
        return [
            DeadLetter(
                id=r.id,
                conversation_id=r.conversation_id,
                channel=r.channel,
                channel_key=r.channel_key,
                kind=r.kind,
                text=r.text,
                attempts=r.attempts,
                last_error=r.last_error,
                created_at=r.created_at,
                turn_id=r.turn_id,
            )
            for r in rows
        ]

    async def replay_dead_letter(self, delivery_id: int) -> bool:
        """Send a dead delivery again from scratch (same idempotency key)."""
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.deliveries)
                .where(and_(t.deliveries.c.id == delivery_id, t.deliveries.c.state == "dead"))
                .values(state="pending", attempts=0, next_attempt_at=time.time(), done_at=None)
            )
        return bool(result.rowcount)

    async def counts(self) -> dict[str, dict[str, int]]:
        """Rows by state, for /ready and tests."""
        out: dict[str, dict[str, int]] = {}
        async with self._tx() as conn:
            for name, table in (("turns", t.turns), ("deliveries", t.deliveries)):
                rows = (
                    await conn.execute(select(table.c.state, func.count()).group_by(table.c.state))
                ).all()
                out[name] = {r[0]: int(r[1]) for r in rows}
        return out


def _upgrade_head(sync_conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")
