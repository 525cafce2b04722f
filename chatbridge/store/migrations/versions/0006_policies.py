"""routes.policies, turns.fresh, conversations.customer_at/prev_customer_at: policies

``routes.policies`` holds a route's ``RoutePolicies`` (only what differs from the defaults;
null for none). ``turns.fresh`` tells the agent to start a new session (the bot's session
expired). ``conversations.customer_at`` is the customer's latest message and
``prev_customer_at`` the one before it, kept by the ingest upsert so expiry costs no extra
statement (``last_activity_at`` moves with every event, not only the customer's).

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
        batch_op.add_column(sa.Column("customer_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("prev_customer_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("prev_customer_at")
        batch_op.drop_column("customer_at")
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.drop_column("fresh")
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.drop_column("policies")
