"""The Alembic migrations build exactly the schema ``tables.py`` describes."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from chatbridge.store import Store
from chatbridge.store import tables as t


async def test_migrations_match_the_table_definitions(database_url: str) -> None:
    store = Store(database_url)
    await store.migrate()
    try:

        def diff(sync_conn: Any) -> list[Any]:
            context = MigrationContext.configure(sync_conn)
            return list(compare_metadata(context, t.metadata))

        async with store.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await store.close()
