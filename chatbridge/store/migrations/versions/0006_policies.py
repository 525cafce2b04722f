"""routes.policies, turns.fresh, conversations.prev_activity_at: conversation policies

``routes.policies`` holds a route's ``RoutePolicies`` (only what differs from the defaults;
null for none). ``turns.fresh`` tells the agent to start a new session (the bot's session
expired). ``conversations.prev_activity_at`` is the customer's activity before the latest
message, kept by the ingest upsert so expiry costs no extra statement.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json = sa.JSON().with_variant(JSONB(), "postgresql")
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policies", json, nullable=True))
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fresh", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prev_activity_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("prev_activity_at")
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.drop_column("fresh")
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.drop_column("policies")
