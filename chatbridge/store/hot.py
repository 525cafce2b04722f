"""The hot path's direct line to the database drivers, and group commit.

Why our own thin layer instead of SQLAlchemy for these few statements: every message runs
about a dozen of them (ingest, claim, completion, claim of its deliveries, their finish), and
profiles of the bridge under load put most of its CPU in SQLAlchemy's per-execute machinery
(compiled-cache lookup, parameter processing, result rows, and on PostgreSQL its async
adaptation of asyncpg), not in the databases. Here each statement is a fixed SQL text run
straight through ``sqlite3`` (inline, under the store's lock) or ``asyncpg`` (prepared once per
connection by asyncpg's statement cache). SQLAlchemy keeps the schema, Alembic and every other
query.

The interface is four methods (``fetch``, ``fetchrow``, ``run``, ``many``) on a transaction
object, the same for both databases; SQL is written once with ``$1``-style parameters and
turned into SQLite's ``?1`` form at import. Lists are passed as one parameter: a PostgreSQL
array (``= ANY($n)``) or, on SQLite, a JSON array read back with ``json_each`` (see ``in_list``).

``GroupCommit`` batches many callers' units of work into one transaction, as databases do
with their own log: a caller's work waits at most for the transaction in flight, and a batch
commits before any of its callers is answered, so nothing is acknowledged before it is
durable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from chatbridge.store.stats import StoreStats

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("chatbridge.store")

I = TypeVar("I")  # noqa: E741 - a batch item
R = TypeVar("R")

_PARAM = re.compile(r"\$(\d+)")


def sqlite_sql(sql: str) -> str:
    """``$1`` → ``?1``: SQLite's numbered parameters (a number may appear more than once)."""
    return _PARAM.sub(r"?\1", sql)


def in_list(dialect: str, column: str, n: int, *, negate: bool = False) -> str:
    """``column`` is (not) one of list parameter ``$n`` (see ``list_param``)."""
    if dialect == "postgresql":
        return f"{column} <> ALL(${n})" if negate else f"{column} = ANY(${n})"
    op = "NOT IN" if negate else "IN"
    return f"{column} {op} (SELECT value FROM json_each(${n}))"


def list_param(dialect: str, values: Sequence[object]) -> list[object] | str:
    return list(values) if dialect == "postgresql" else json.dumps(list(values))


def dumps(value: object) -> str:
    """A JSON column's value as both drivers take it (text)."""
    return json.dumps(value, separators=(",", ":"))


def loads(value: Any) -> Any:
    """A JSON column read back (text from both drivers; ``None`` stays ``None``)."""
    if value is None or not isinstance(value, str | bytes):
        return value
    return json.loads(value)


class Row(Protocol):
    """A result row as both drivers give it (``sqlite3.Row``, ``asyncpg.Record``): a column
    by position or by name. Its values are whatever the column holds."""

    def __getitem__(self, key: int | str, /) -> Any: ...


class HotTx(Protocol):
    """One transaction on the hot path (``SqliteHot`` or ``PgHot``)."""

    dialect: str

    async def fetch(self, sql: str, args: Sequence[object] = ()) -> list[Row]: ...

    async def fetchrow(self, sql: str, args: Sequence[object] = ()) -> Row | None: ...

    async def run(self, sql: str, args: Sequence[object] = ()) -> int: ...

    async def many(self, sql: str, rows: Sequence[Sequence[object]]) -> None: ...


class SqliteHot:
    """A transaction on the store's one SQLite connection. The calls are synchronous and
    microseconds long; they are ``async`` only to share ``PgHot``'s interface."""

    __slots__ = ("_db", "_stats")
    dialect = "sqlite"

    def __init__(self, db: sqlite3.Connection, stats: StoreStats) -> None:
        self._db = db
        self._stats = stats

    async def fetch(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        self._stats.statements += 1
        rows: list[Row] = self._db.execute(sql, args).fetchall()
        return rows

    async def fetchrow(self, sql: str, args: Sequence[object] = ()) -> Row | None:
        self._stats.statements += 1
        rows = self._db.execute(sql, args).fetchall()  # to the end: RETURNING rows included
        return rows[0] if rows else None

    async def run(self, sql: str, args: Sequence[object] = ()) -> int:
        self._stats.statements += 1
        count: int = self._db.execute(sql, args).rowcount
        return count

    async def many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._stats.statements += 1
        self._db.executemany(sql, rows)


class PgHot:
    """A transaction on one pooled asyncpg connection; every call is one server round trip."""

    __slots__ = ("_conn", "_stats")
    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection, stats: StoreStats) -> None:
        self._conn = conn
        self._stats = stats

    async def fetch(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        self._stats.statements += 1
        self._stats.round_trips += 1
        rows: list[Row] = await self._conn.fetch(sql, *args)
        return rows

    async def fetchrow(self, sql: str, args: Sequence[object] = ()) -> Row | None:
        self._stats.statements += 1
        self._stats.round_trips += 1
        row: Row | None = await self._conn.fetchrow(sql, *args)
        return row

    async def run(self, sql: str, args: Sequence[object] = ()) -> int:
        self._stats.statements += 1
        self._stats.round_trips += 1
        status: str = await self._conn.execute(sql, *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._stats.statements += 1
        self._stats.round_trips += 1  # asyncpg pipelines an executemany
        await self._conn.executemany(sql, rows)


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Instead of asyncpg's reset query on every release (``RESET ALL``, ``UNLISTEN *``,
    advisory unlocks …: a server round trip per transaction): the hot path's connections only
    ever run whole transactions, never ``SET``, ``LISTEN`` or locks that could outlive one."""


class PgPool:
    """The hot path's own asyncpg pool, opened on first use (inside the running loop).

    Separate from SQLAlchemy's pool so a hot transaction is asyncpg's own ``BEGIN`` …
    ``COMMIT`` with nothing in between but our statements. A connection broken by a server
    restart fails its transaction (an outage, retried by the workers) and is replaced by
    the pool on the next acquire.
    """

    def __init__(self, dsn: str, *, size: int, connect_timeout: float) -> None:
        self._dsn = dsn
        self._size = size
        self._timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def _get(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                import asyncpg

                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=self._size,
                    timeout=self._timeout,
                    max_inactive_connection_lifetime=300,
                    reset=_no_reset,
                )
        return self._pool

    @asynccontextmanager
    async def transaction(self, stats: StoreStats) -> AsyncIterator[PgHot]:
        pool = await self._get()
        async with pool.acquire(timeout=self._timeout) as conn:
            stats.transactions += 1
            stats.round_trips += 2  # BEGIN, COMMIT
            async with conn.transaction():
                yield PgHot(conn, stats)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), 5)
        except Exception:  # a server gone away: drop the connections instead
            pool.terminate()


Tx = Callable[[], AbstractAsyncContextManager[HotTx]]


class GroupCommit(Generic[I, R]):
    """Group commit: the units of work of many callers in one transaction.

    ``submit(item)`` queues the item and waits for its result. A flusher task takes what is
    queued — everything submitted in the same turn of the event loop, or while the previous
    batch was being written — and runs ``many(tx, items)`` (by default ``one(tx, item)`` for
    each) inside one transaction, then answers every caller once it has committed.

    One item at fault must not cost the others their work: if the batch fails, it is rolled
    back and each item runs again in a transaction of its own, so only the faulty one gets
    the error (a duplicate that aborts its own transaction, a value the database refuses).
    An outage fails every caller at once instead (each retries by its own rules). A caller
    that gave up (cancelled) before its batch began is skipped; once begun, its work is
    written like the rest.

    ``concurrency``: how many batches may be in flight at once. One on SQLite (one writer).
    On PostgreSQL a commit waits for the server's log flush: with more than one flusher the
    next batch starts while the last one commits, instead of queueing behind it.
    """

    def __init__(
        self,
        tx: Tx,
        one: Callable[[HotTx, I], Awaitable[R]],
        *,
        is_outage: Callable[[BaseException], bool],
        many: Callable[[HotTx, list[I]], Awaitable[list[R]]] | None = None,
        max_batch: int = 256,
        concurrency: int = 1,
    ) -> None:
        self._tx = tx
        self._one = one
        self._many = many
        self._is_outage = is_outage
        self._max = max_batch
        self._queue: list[tuple[I, asyncio.Future[R]]] = []
        self._concurrency = concurrency
        self._flushers: set[asyncio.Task[None]] = set()
        self._starting = 0  # flushers created that have not taken their first batch yet
        self.batches = 0
        self.items = 0

    async def submit(self, item: I) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._starting == 0 and len(self._flushers) < self._concurrency:
            # a new flusher takes its batch on the next turn of the event loop: whatever is
            # submitted until then goes with this item
            self._starting += 1
            self._flushers.add(asyncio.ensure_future(self._flush()))
        return await future

    async def _flush(self) -> None:
        self._starting -= 1
        me = asyncio.current_task()
        try:
            while self._queue:
                batch = [(i, f) for i, f in self._queue[: self._max] if not f.done()]
                del self._queue[: self._max]
                if batch:
                    await self._write(batch)
        except asyncio.CancelledError:
            # the store is closing: nobody will write what is left
            for _, future in self._queue:
                if not future.done():
                    future.set_exception(ConnectionError("store closed before the write"))
            self._queue.clear()
            raise
        finally:
            # at once, not in a done callback: an item submitted between this flusher's last
            # look at the queue and such a callback would find no flusher starting for it
            if me is not None:
                self._flushers.discard(me)

    async def _write(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            async with self._tx() as tx:
                if self._many is not None and len(batch) > 1:
                    results = await self._many(tx, [item for item, _ in batch])
                else:
                    results = [await self._one(tx, item) for item, _ in batch]
        except Exception as exc:
            if len(batch) == 1 or self._is_outage(exc):
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            for item, future in batch:
                try:
                    async with self._tx() as tx:
                        result = await self._one(tx, item)
                except Exception as alone:
                    if not future.done():
                        future.set_exception(alone)
                else:
                    if not future.done():
                        future.set_result(result)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
