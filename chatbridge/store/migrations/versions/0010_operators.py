"""operators, conversation_assignments, canned_replies, audit_log (issue 17)

Named operator accounts (admin / agent, argon2id password hashes, invitations), who a
conversation is assigned to, canned replies, and the audit log of admin actions. Private
notes and the attribution of human messages live in ``messages`` (``direction`` note,
``meta.operator_id``): no new column there.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 13:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json = sa.JSON().with_variant(JSONB(), "postgresql")
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "operators",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("email", sa.String(300), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("invite_hash", sa.String(64), nullable=True),
        sa.Column("invite_expires_at", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("session_version", sa.Integer(), nullable=False),
        sa.Column("last_login_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_operators"),
        sa.UniqueConstraint("email", name="uq_operators_email"),
        sa.UniqueConstraint("invite_hash", name="uq_operators_invite_hash"),
    )
    op.create_table(
        "conversation_assignments",
        sa.Column("conversation_id", sa.String(40), nullable=False),
        sa.Column("operator_id", sa.String(40), nullable=False),
        sa.Column("assigned_by", sa.String(40), nullable=True),
        sa.Column("assigned_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_conversation_assignments_conversation_id_conversations",
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name="fk_conversation_assignments_operator_id_operators",
        ),
        sa.PrimaryKeyConstraint("conversation_id", name="pk_conversation_assignments"),
    )
    op.create_index(
        "ix_conversation_assignments_operator_id", "conversation_assignments", ["operator_id"]
    )
    op.create_table(
        "canned_replies",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("shortcut", sa.String(40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.String(40), nullable=True),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["operators.id"], name="fk_canned_replies_owner_id_operators"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_canned_replies"),
    )
    op.create_index("ix_canned_replies_owner_id", "canned_replies", ["owner_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor_id", sa.String(40), nullable=True),
        sa.Column("actor", sa.String(600), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("target", sa.String(300), nullable=True),
        sa.Column("details", json, nullable=False),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor_id", "audit_log", ["actor_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_actor_id", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_canned_replies_owner_id", table_name="canned_replies")
    op.drop_table("canned_replies")
    op.drop_index("ix_conversation_assignments_operator_id", table_name="conversation_assignments")
    op.drop_table("conversation_assignments")
    op.drop_table("operators")
