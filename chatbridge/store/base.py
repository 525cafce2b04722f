"""The store's foundation: engine set-up, transactions, row converters, shared helpers.

The ``Store`` class (``chatbridge.store.store``) is assembled from one mixin per concern —
routes and agents, conversations and inbound messages, turns, the outbox — all built on
``StoreBase`` here.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, TypeVar, cast

from sqlalchemy import Table, and_, case, create_engine, event, func, make_url, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from chatbridge import clock
from chatbridge.errors import StoreError
from chatbridge.ids import new_id
from chatbridge.policies.model import DEFAULT_POLICIES, RoutePolicies
from chatbridge.store import hot_sql
from chatbridge.store import tables as t
from chatbridge.store.hot import HotTx, PgPool, Row, SqliteHot, dumps
from chatbridge.store.records import (
    AgentRecord,
    ConversationRecord,
    DeliverySpec,
    MessageRecord,
    Route,
    RouteAgent,
    TurnDecision,
)
from chatbridge.store.statements import build as build_statements
from chatbridge.store.statements import dialect_insert
from chatbridge.store.stats import StoreStats

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

log = logging.getLogger("chatbridge.store")
# pg_advisory_lock key held while a replica migrates and seeds (any constant of our own)
STARTUP_LOCK_KEY = 0x43_42_52_44

_OPEN_STATES = ("pending", "leased")

Decide = Callable[[ConversationRecord], TurnDecision]
T = TypeVar("T")


class _Duplicate(Exception):
    """Raised inside a transaction to roll it back when the input was seen before."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


DeliveryRow = tuple[str, int | None, str | None, str, str | None, str, int, str]
"""``delivery_row``'s columns; the last is the idempotency key."""


class DeliveryValues(TypedDict):
    """One outbox row as ``Statements.deliveries_insert`` takes it (``_delivery_values``)."""

    conversation_id: str
    turn_id: int | None
    message_id: str | None
    kind: str
    text: str | None
    payload: dict[str, Any]
    state: str
    attempts: int
    max_attempts: int
    next_attempt_at: float
    idempotency_key: str
    uncertain: bool
    created_at: float


def delivery_row(
    conversation_id: str, turn_id: int | None, message_id: str | None, spec: DeliverySpec
) -> DeliveryRow:
    """An outbox row as the hot statements take it (``delivery_insert``, ``PG_BATCH``): the
    conversation, turn, message, kind, text, payload, attempts allowed, idempotency key."""
    return (
        conversation_id,
        turn_id,
        message_id,
        spec.kind,
        spec.text,
        dumps(spec.payload),
        spec.max_attempts,
        new_id("d"),
    )


def delivers(spec: DeliverySpec, *, to_bot: bool, no_typing: bool) -> bool:
    """Whether a finished turn writes ``spec``: in a human's conversation only the slow
    agent's typing indicator is switched off, and not even that when it never showed.

    A paced reply's typing pairs (payload ``part``, ``pipeline.decisions.paced_parts``) go
    with their parts: all written in a bot's conversation, none in a human's — whether the
    slow agent's indicator showed has nothing to do with them.
    """
    if spec.kind == "typing_off" and "part" not in spec.payload:
        return not no_typing
    return to_bot


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
        customer_at=row.customer_at,
        prev_customer_at=row.prev_customer_at,
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
        policies=RoutePolicies.model_validate(row.policies) if row.policies else DEFAULT_POLICIES,
        agents=tuple(RouteAgent(**a) for a in row.agents) if row.agents else (),
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
        options=dict(row.options or {}),
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
        turn_id=getattr(row, "turn_id", None),
    )


class Conn(Protocol):
    """What the store needs of a connection: ``AsyncConnection`` or ``InlineConnection``."""

    async def execute(self, statement: Any, parameters: Any = None) -> Any: ...

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T: ...


class InlineConnection:
    """A synchronous SQLite connection behind ``AsyncConnection``'s two methods we use, plus
    ``hot``: the same transaction through the raw driver (see ``hot``).

    Why inline: through aiosqlite every statement is a round trip to a worker thread (queue,
    wake-up, future), which costs far more than the statement itself — SQLite answers in
    microseconds from the page cache, and a WAL commit with ``synchronous=NORMAL`` does not
    fsync. Running them on the event loop, one transaction at a time under the store's lock,
    removes that overhead; the loop is blocked only for those microseconds.
    """

    __slots__ = ("_conn", "hot")

    def __init__(self, conn: Connection, hot: SqliteHot) -> None:
        self._conn = conn
        self.hot = hot

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        if parameters is None:
            return self._conn.execute(statement)
        return self._conn.execute(statement, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self._conn, *args)


class StoreBase:
    """Engine, transactions and helpers shared by every part of the store."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        self._inline: Engine | None = None
        self._inline_conn: Connection | None = None
        self._pg: PgPool | None = None
        try:
            if self.is_sqlite:
                # Either driver name is accepted; the store itself runs SQLite inline.
                path = url.split("://", 1)[1]
                url = f"sqlite+aiosqlite://{path}"
                self._inline = create_engine(
                    f"sqlite+pysqlite://{path}", echo=echo, poolclass=StaticPool
                )
                kwargs["pool_size"] = 1
                kwargs["max_overflow"] = 0
            else:
                kwargs["pool_size"] = 10
                kwargs["max_overflow"] = 10
                # No pre-ping: it costs a round trip per transaction; recycle instead, and a
                # dead connection fails one transaction, which the workers retry.
                kwargs["pool_recycle"] = 300
                # An unreachable server must fail a connect in seconds, not asyncpg's 60, so
                # workers back off and /ready reports it while the database is away.
                kwargs["connect_args"] = {"timeout": 10}
            # On SQLite this async engine serves only outside readers (tests, tools).
            self.engine: AsyncEngine = create_async_engine(url, **kwargs)
            if not self.is_sqlite:
                dsn = make_url(url).set(drivername="postgresql")
                self._pg = PgPool(
                    dsn.render_as_string(hide_password=False), size=10, connect_timeout=10
                )
        except Exception as exc:  # bad URL, driver missing
            raise StoreError(f"cannot use database URL: {exc}") from exc
        self.url = url
        self.stats = StoreStats()
        self.dialect = "sqlite" if self.is_sqlite else "postgresql"
        self._stmts = build_statements(self.dialect)
        self._sql = hot_sql.build(self.dialect)
        self._lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None
        if self._inline is not None:
            self._setup_sqlite(self._inline, writer=True)
            # Readers only: a deferred BEGIN, so they never hold the write lock that the
            # inline writer would then wait for on the event loop.
            self._setup_sqlite(self.engine.sync_engine, writer=False)

    @staticmethod
    def _setup_sqlite(sync_engine: Engine, *, writer: bool) -> None:
        @event.listens_for(sync_engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
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

        if writer:
            return  # the writer's transactions are begun and ended by ``_tx`` itself

        @event.listens_for(sync_engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN")

    # ------------------------------------------------------------------ lifecycle
    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        async with self._tx() as conn:
            await conn.run_sync(_upgrade_head)

    @asynccontextmanager
    async def startup_lock(self) -> AsyncIterator[None]:
        """Hold the deployment-wide start-up lock (PostgreSQL advisory lock) while the block
        runs: replicas starting together migrate and seed routes one after the other
        instead of racing on ``CREATE TABLE``. A no-op on SQLite (one process)."""
        if self.is_sqlite:
            yield
            return
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": STARTUP_LOCK_KEY})
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": STARTUP_LOCK_KEY})
                await conn.commit()

    async def ping(self) -> bool:
        try:
            async with self._tx() as conn:
                await conn.execute(select(1))
            return True
        except Exception as exc:
            # one line: during an outage every probe fails, and tracebacks would flood the log
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            log.warning("store ping failed: %s: %s", type(exc).__name__, first)
            return False

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
        await self.engine.dispose()
        if self._inline_conn is not None:
            self._inline_conn.close()
            self._inline_conn = None
        if self._inline is not None:
            self._inline.dispose()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Conn]:
        """One transaction. On SQLite it runs inline on the event loop (see ``InlineConnection``),
        one at a time; on PostgreSQL it is an asyncpg transaction from SQLAlchemy's pool."""
        if self._inline is not None and self._lock is not None:
            async with self._lock:
                # One connection for the life of the store: a pool checkout per
                # transaction showed up in profiles; the lock already serialises its use.
                if self._inline_conn is None:
                    self._inline_conn = self._inline.connect()
                conn = self._inline_conn
                raw = cast("sqlite3.Connection | None", conn.connection.dbapi_connection)
                if raw is None:  # pragma: no cover - SQLAlchemy invalidated it
                    conn.close()
                    self._inline_conn = conn = self._inline.connect()
                    raw = cast("sqlite3.Connection", conn.connection.dbapi_connection)
                self._begin_sqlite(raw)
                try:
                    yield InlineConnection(conn, SqliteHot(raw, self.stats))
                except BaseException:
                    self._end_sqlite(conn, raw, commit=False)
                    raise
                self._end_sqlite(conn, raw, commit=True)
        else:
            self.stats.transactions += 1
            async with self.engine.begin() as pooled:
                yield pooled

    def _begin_sqlite(self, raw: sqlite3.Connection) -> None:
        if raw.in_transaction:  # left open by a failed COMMIT: start clean
            raw.execute("ROLLBACK")
        raw.execute("BEGIN IMMEDIATE")
        self.stats.transactions += 1

    @staticmethod
    def _end_sqlite(conn: Connection, raw: sqlite3.Connection, *, commit: bool) -> None:
        """End the transaction ``_tx`` began. If SQLAlchemy ran a statement in it, its own
        (logical) transaction is ended too; its DBAPI commit ends ours."""
        try:
            if conn.in_transaction():
                if commit:
                    conn.commit()
                else:
                    conn.rollback()
            if raw.in_transaction:
                raw.execute("COMMIT" if commit else "ROLLBACK")
        except BaseException:
            if conn.in_transaction():
                try:
                    conn.rollback()
                except Exception:  # pragma: no cover - already broken; the raw rollback below
                    log.debug("SQLAlchemy rollback after a failed end failed", exc_info=True)
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise

    @asynccontextmanager
    async def _hot_tx(self) -> AsyncIterator[HotTx]:
        """A transaction for the hot path's raw statements (see ``hot``). On SQLite it is
        ``_tx``'s, so everything that wraps ``_tx`` sees it too."""
        if self._pg is None:
            async with self._tx() as conn:
                yield conn.hot  # type: ignore[attr-defined]
        else:
            async with self._pg.transaction(self.stats) as tx:
                yield tx

    def _insert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        """INSERT with the dialect's ``ON CONFLICT`` support."""
        return dialect_insert("sqlite" if self.is_sqlite else "postgresql")(table)

    async def _set_owner(self, conn: Conn, conversation_id: str, owner: str) -> None:
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
                .values(state="cancelled", outcome="human_owner", finished_at=clock.now())
            )

    async def _set_owner_hot(self, tx: HotTx, conversation_id: str, owner: str, now: float) -> None:
        """``_set_owner`` on the hot path."""
        await tx.run(self._sql.set_owner, (conversation_id, owner))
        if owner == "human":
            await tx.run(self._sql.cancel_pending_turns, (conversation_id, now))

    async def _bot_message_hot(
        self,
        tx: HotTx,
        conversation_id: str,
        turn_id: int | None,
        spec: DeliverySpec,
        now: float,
        *,
        direction: str = "out",
        author: str = "system",
        meta: dict[str, Any] | None = None,
    ) -> str:
        """A message we send (or a note we leave) without an agent's turn, and its delivery:
        an away text, a handoff summary. Returns the message id."""
        message_id = new_id("m")
        await tx.run(
            self._sql.message_insert,
            (
                message_id,
                conversation_id,
                direction,
                author,
                spec.text or "",
                "text",
                "[]",
                None,
                None,
                turn_id,
                dumps(meta or {}),
                now,
            ),
        )
        await self._insert_delivery_hot(tx, conversation_id, turn_id, message_id, spec, now)
        return message_id

    async def _handoff_note_hot(
        self,
        tx: HotTx,
        conversation_id: str,
        turn_id: int | None,
        *,
        summary: str | None,
        last: int,
        why: str,
        now: float,
    ) -> None:
        """Leave the human who takes over a private note: ``summary`` (the agent's own), or
        else the last ``last`` messages of the conversation. Stored as a ``note`` message
        (the console shows it) and queued as a ``note`` delivery (channels that show private
        notes, such as Chatwoot, get it; others finish it without a send)."""
        if summary is None or not summary.strip():
            rows = await tx.fetch(self._sql.recent_exchange, (conversation_id, last))
            who = {"contact": "Customer", "agent": "Bot", "human": "Agent", "system": "Bot"}
            lines = [f"{who.get(r[0], r[0])}: {r[1]}" for r in reversed(rows) if r[1]]
            summary = "\n".join(lines) or "(no messages)"
            title = f"Handoff ({why}). The last {len(lines)} messages:"
        else:
            title = f"Handoff ({why}). The agent's summary:"
        text = f"{title}\n{summary}"[:4000]
        await self._bot_message_hot(
            tx,
            conversation_id,
            turn_id,
            DeliverySpec("note", 5, text=text),
            now,
            direction="note",
            meta={"kind": "handoff_summary", "reason": why},
        )

    async def _insert_delivery_hot(
        self,
        tx: HotTx,
        conversation_id: str,
        turn_id: int | None,
        message_id: str | None,
        spec: DeliverySpec,
        now: float,
    ) -> int:
        """One outbox row on the hot path; its id (ids rise in the order rows are written,
        which is the order they leave in)."""
        row = await tx.fetchrow(
            self._sql.delivery_insert,
            (*delivery_row(conversation_id, turn_id, message_id, spec), now),
        )
        return int(cast(Row, row)[0])  # INSERT … RETURNING: always one row

    @staticmethod
    def _delivery_values(
        conversation_id: str,
        turn_id: int | None,
        message_id: str | None,
        spec: DeliverySpec,
        now: float,
    ) -> DeliveryValues:
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

    async def _insert_deliveries(self, conn: Conn, rows: list[DeliveryValues]) -> list[int]:
        """Insert deliveries (one multi-row INSERT under the hood); ids come back in list order,
        which is the order they leave in."""
        if not rows:
            return []
        result = await conn.execute(self._stmts.deliveries_insert, rows)
        return list(result.scalars().all())

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

    async def backlog(self) -> dict[str, dict[str, float]]:
        """How far behind the queues are, for ``/ready`` and ``/metrics``.

        Per queue (``turns``, ``deliveries``): ``oldest_due`` — seconds the oldest pending row
        has been due (0 when none); ``oldest_expired`` — seconds since the oldest lease ran out
        without the row being claimed again (0 when none). Two small aggregate queries.
        """
        now = clock.now()
        out: dict[str, dict[str, float]] = {}
        async with self._tx() as conn:
            for name, table, due in (
                ("turns", t.turns, t.turns.c.available_at),
                ("deliveries", t.deliveries, t.deliveries.c.next_attempt_at),
            ):
                row = (
                    await conn.execute(
                        select(
                            func.min(case((table.c.state == "pending", due))),
                            func.min(case((table.c.state == "leased", table.c.lease_expires_at))),
                        ).where(table.c.state.in_(_OPEN_STATES))
                    )
                ).one()
                oldest_due, oldest_lease = row[0], row[1]
                out[name] = {
                    "oldest_due": max(0.0, now - oldest_due) if oldest_due is not None else 0.0,
                    "oldest_expired": (
                        max(0.0, now - oldest_lease) if oldest_lease is not None else 0.0
                    ),
                }
        return out


def _upgrade_head(sync_conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")
