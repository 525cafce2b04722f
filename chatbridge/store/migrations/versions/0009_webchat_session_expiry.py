"""webchat_sessions.expired_at: sessions announced expired (protocol 1.3 session frames)

The bridge sweeps for sessions idle past the timeout that it has not yet announced expired,
marks them (``expired_at``) and sends ``session_expired`` once; the index on
``(expired_at, last_active)`` makes that sweep one range read.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webchat_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expired_at", sa.Float(), nullable=True))
        batch_op.create_index(
            "ix_webchat_sessions_expired_at_last_active", ["expired_at", "last_active"]
        )


def downgrade() -> None:
    with op.batch_alter_table("webchat_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_webchat_sessions_expired_at_last_active")
        batch_op.drop_column("expired_at")
