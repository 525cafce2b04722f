"""web chat sessions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webchat_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("uid", sa.String(length=16), nullable=False),
        sa.Column("inbox_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_active", sa.Float(), nullable=False),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column(
            "meta",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webchat_sessions")),
        sa.UniqueConstraint("uid", name=op.f("uq_webchat_sessions_uid")),
    )
    with op.batch_alter_table("webchat_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webchat_sessions_last_active"), ["last_active"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webchat_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webchat_sessions_last_active"))
    op.drop_table("webchat_sessions")
