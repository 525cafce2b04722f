"""media, templates, broadcasts, broadcast_recipients; people.tags and people.opted_out_at

WhatsApp complete: ``media`` is the media store's index and its durable download jobs (and a
voice note's transcript); ``templates`` the message templates (synced from Meta or local);
``broadcasts`` / ``broadcast_recipients`` a template sent to a CRM segment, one row per person
with its own status. ``people.tags`` is what segments filter on, ``people.opted_out_at`` who
no broadcast may reach.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 03:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json = sa.JSON().with_variant(JSONB(), "postgresql")
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tags", json, nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column("opted_out_at", sa.Float(), nullable=True))
    op.create_table(
        "media",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("conversation_id", sa.String(40), nullable=True),
        sa.Column("message_id", sa.String(40), nullable=True),
        sa.Column("origin", sa.String(10), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("provider", sa.String(20), nullable=True),
        sa.Column("source", json, nullable=True),
        sa.Column("mime", sa.String(200), nullable=True),
        sa.Column("name", sa.String(300), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", sa.Float(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("transcript_status", sa.String(10), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media")),
    )
    op.create_index(op.f("ix_media_conversation_id"), "media", ["conversation_id"])
    op.create_index(op.f("ix_media_message_id"), "media", ["message_id"])
    op.create_index(op.f("ix_media_state_available_at"), "media", ["state", "available_at"])
    op.create_table(
        "templates",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("language", sa.String(20), nullable=False),
        sa.Column("category", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("components", json, nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_templates")),
        sa.UniqueConstraint("name", "language", name=op.f("uq_templates_name_language")),
    )
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("template_id", sa.String(40), nullable=False),
        sa.Column("parameters", json, nullable=False),
        sa.Column("segment", json, nullable=False),
        sa.Column("rate_per_second", sa.Float(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"], ["templates.id"], name=op.f("fk_broadcasts_template_id_templates")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcasts")),
    )
    op.create_index(
        op.f("ix_broadcasts_state_lease_expires_at"), "broadcasts", ["state", "lease_expires_at"]
    )
    op.create_table(
        "broadcast_recipients",
        sa.Column("broadcast_id", sa.String(40), nullable=False),
        sa.Column("person_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(200), nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_broadcast_recipients_broadcast_id_broadcasts"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_broadcast_recipients_person_id_people")
        ),
        sa.PrimaryKeyConstraint("broadcast_id", "person_id", name=op.f("pk_broadcast_recipients")),
    )
    op.create_index(
        op.f("ix_broadcast_recipients_external_id"), "broadcast_recipients", ["external_id"]
    )
    op.create_index(
        op.f("ix_broadcast_recipients_broadcast_id_state_seq"),
        "broadcast_recipients",
        ["broadcast_id", "state", "seq"],
    )


def downgrade() -> None:
    op.drop_table("broadcast_recipients")
    op.drop_table("broadcasts")
    op.drop_table("templates")
    op.drop_table("media")
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_column("opted_out_at")
        batch_op.drop_column("tags")
