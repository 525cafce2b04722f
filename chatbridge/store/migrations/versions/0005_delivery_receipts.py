"""deliveries: when a send started and the channel's receipt for it

A delivery is "uncertain" after a crash only if its send had started (``send_started_at``)
and no receipt came back for it (``receipt_at``: the channel echoed our own message, e.g.
Chatwoot's ``message_created`` webhook carrying our ``source_id``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("send_started_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("receipt_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("receipt_external_id", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("receipt_external_id")
        batch_op.drop_column("receipt_at")
        batch_op.drop_column("send_started_at")
