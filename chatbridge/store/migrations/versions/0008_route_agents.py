"""routes.agents: several named agents in one route (protocol 1.3 multi-agent routes)

Each item is ``{"agent_id", "role", "default"}``; an empty list is today's route with one agent
(``routes.agent_id``, which stays the default agent).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json = sa.JSON().with_variant(JSONB(), "postgresql")
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("agents", json, nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.drop_column("agents")
