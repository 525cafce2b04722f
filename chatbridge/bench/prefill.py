"""Fill a store with N messages of history, fast, in the shape the bridge writes them.

For the "1,000,000 messages stored" run. Each prefilled exchange is what one answered
customer message leaves behind: the inbound message and its delivery receipt, a finished turn,
the agent's reply, and its three deliveries (typing on, the reply, typing off), all done. The
history is spread over ``max(conversations, 1000)`` conversations whose keys are the ones the
benchmark then writes to, so its conversations carry history too.

The bridge's own migration creates the schema; rows for the same tables
(``chatbridge.store.tables``, columns in their order) go in by the driver's bulk path in
batches: ``COPY`` on PostgreSQL, ``executemany`` on SQLite.
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from chatbridge.bench.channel import INBOX_ID
from chatbridge.bench.scenarios.chatwoot import AGENT_ID
from chatbridge.store import Store
from chatbridge.store import tables as t

ACCOUNT_ID = 1
BATCH = 5000


def _conversation_id(display_id: int) -> str:
    return f"c_bench{display_id:019d}"


def prefill_rows(
    start: int, count: int, conversations: int, now: float
) -> dict[str, list[dict[str, Any]]]:
    """Rows for exchanges ``start .. start+count-1`` (two messages each), by table name.

    JSON columns hold their JSON text already (the bulk paths take it as is).
    """
    rows: dict[str, list[dict[str, Any]]] = {
        "inbound_receipts": [],
        "messages": [],
        "turns": [],
        "deliveries": [],
    }
    for i in range(start, start + count):
        display = i % conversations + 1
        conversation_id = _conversation_id(display)
        at = now - 86_400 + i * 0.001
        turn_id = i + 1
        inbound, reply = f"m_pfi{i:020d}", f"m_pfo{i:020d}"
        content = f"prefilled message {i}"
        rows["inbound_receipts"].append({"key": f"chatwoot:prefill-{i}", "created_at": at})
        common = {"conversation_id": conversation_id, "content_type": "text", "attachments": "[]"}
        rows["messages"].append(
            {
                **common,
                "id": inbound,
                "direction": "in",
                "author": "contact",
                "text": content,
                "dedupe_key": f"chatwoot:prefill-{i}",
                "external_id": f"prefill-{i}",
                "turn_id": turn_id,
                "meta": "{}",
                "created_at": at,
            }
        )
        rows["messages"].append(
            {
                **common,
                "id": reply,
                "direction": "out",
                "author": "agent",
                "text": f"Echo: {content}",
                "dedupe_key": None,
                "external_id": None,
                "turn_id": turn_id,
                "meta": "{}",
                "created_at": at + 0.0005,
            }
        )
        rows["turns"].append(
            {
                "id": turn_id,
                "conversation_id": conversation_id,
                "agent_id": AGENT_ID,
                "route_id": None,
                "kind": "message",
                "state": "done",
                "attempts": 1,
                "lease_owner": None,
                "lease_expires_at": None,
                "available_at": at,
                "response_mode": "async",
                "message_ids": f'["{inbound}"]',
                "fresh": False,
                "outcome": "reply",
                "reply_message_id": reply,
                "last_error": None,
                "created_at": at,
                "started_at": at,
                "finished_at": at + 0.0005,
            }
        )
        for n, kind in enumerate(("typing_on", "message", "typing_off")):
            rows["deliveries"].append(
                {
                    "id": 3 * i + n + 1,
                    "conversation_id": conversation_id,
                    "turn_id": turn_id,
                    "message_id": reply if kind == "message" else None,
                    "kind": kind,
                    "text": f"Echo: {content}" if kind == "message" else None,
                    "payload": "{}",
                    "state": "done",
                    "attempts": 1,
                    "max_attempts": 8 if kind == "message" else 3,
                    "next_attempt_at": at,
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "idempotency_key": f"prefill-{i}-{kind}",
                    "uncertain": False,
                    "external_id": str(i) if kind == "message" else None,
                    "last_error": None,
                    "created_at": at,
                    "done_at": at + 0.0005,
                    "send_started_at": at if kind == "message" else None,
                    "receipt_at": None,
                    "receipt_external_id": None,
                }
            )
    return rows


def _as_tuples(table_name: str, rows: list[dict[str, Any]]) -> tuple[list[str], list[Any]]:
    """Rows as tuples in the table's column order."""
    columns = [c.name for c in t.metadata.tables[table_name].columns]
    pick = operator.itemgetter(*columns)
    return columns, [pick(row) for row in rows]


async def _bulk_insert(conn: AsyncConnection, table_name: str, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` the fastest way the driver has: COPY on PostgreSQL, executemany on
    SQLite (SQLAlchemy's per-row bind processing would take minutes for a million rows)."""
    columns, records = _as_tuples(table_name, rows)
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table(table_name, records=records, columns=columns)
        return
    marks = ", ".join("?" for _ in columns)
    await conn.exec_driver_sql(
        f"INSERT INTO {table_name} ({', '.join(columns)}) VALUES ({marks})", records
    )


async def prefill_store(
    database_url: str,
    messages: int,
    *,
    conversations: int,
    on_progress: Callable[[int], None] | None = None,
) -> float:
    """Create the schema and store ``messages`` messages of history; returns the seconds taken.

    Args:
        database_url: an empty database (SQLAlchemy async URL).
        messages: how many messages to store (rounded down to an even number: exchanges).
        conversations: the benchmark's conversation count; history goes to
            ``max(conversations, 1000)`` conversations, the benchmark's among them.
        on_progress: called with the number of messages stored so far.
    """
    started = time.perf_counter()
    store = Store(database_url)
    try:
        await store.migrate()
    finally:
        await store.close()
    spread = max(conversations, 1000)
    exchanges = messages // 2
    now = time.time()
    engine = create_async_engine(database_url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _fast(dbapi_connection: Any, _record: Any) -> None:
            # set-up, not what is measured: no fsync per batch
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.close()

    try:
        async with engine.begin() as conn:
            await _bulk_insert(
                conn,
                "conversations",
                [
                    {
                        "id": _conversation_id(display),
                        "channel": "chatwoot",
                        "channel_key": f"{ACCOUNT_ID}:{display}",
                        "inbox_id": INBOX_ID,
                        "contact_id": None,
                        "owner": "bot",
                        "status": "open",
                        "external_status": "pending",
                        "meta": "{}",
                        "created_at": now - 86_400,
                        "last_activity_at": now - 86_400,
                        "customer_at": now - 86_400,
                        "prev_customer_at": None,
                    }
                    for display in range(1, spread + 1)
                ],
            )

        async def insert(rows: dict[str, list[dict[str, Any]]], done: int) -> None:
            async with engine.begin() as conn:
                for name in ("inbound_receipts", "turns", "messages", "deliveries"):
                    await _bulk_insert(conn, name, rows[name])
            if on_progress is not None:
                on_progress(2 * done)

        # Build the next batch while the database writes the previous one.
        writing: asyncio.Task[None] | None = None
        try:
            for start in range(0, exchanges, BATCH):
                count = min(BATCH, exchanges - start)
                rows = prefill_rows(start, count, spread, now)
                if writing is not None:
                    await writing
                writing = asyncio.create_task(insert(rows, start + count))
                await asyncio.sleep(0)
            if writing is not None:
                await writing
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
        if engine.dialect.name == "postgresql":
            # explicit ids do not move the sequences: start them after the prefilled rows
            async with engine.begin() as conn:
                for table in ("turns", "deliveries"):
                    await conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
                        )
                    )
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()
    return time.perf_counter() - started
