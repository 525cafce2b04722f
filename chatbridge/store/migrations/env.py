"""Alembic environment: runs on the connection the store hands over (see Store.migrate)."""

from __future__ import annotations

from alembic import context

from chatbridge.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only used through Store.migrate / chatbridge migrate
    raise RuntimeError("run migrations with `chatbridge migrate`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
