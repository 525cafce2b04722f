"""The schema, as SQLAlchemy Core tables (one metadata for SQLite and PostgreSQL).

Times are float Unix seconds: comparable in SQL on both databases, cheap to write, and free of
time-zone surprises. Turns and deliveries use integer keys because their order *is* the queue
order (per conversation, oldest first).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

contacts = Table(
    "contacts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("channel", String(40), nullable=False),
    Column("external_id", String(200), nullable=True),
    Column("name", String(300)),
    Column("email", String(300)),
    Column("phone", String(40)),
    Column("meta", Json, nullable=False, default=dict),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("channel", "external_id"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("channel", String(40), nullable=False),
    Column("channel_key", String(200), nullable=False),
    Column("inbox_id", Integer, nullable=False),
    Column("contact_id", String(40), ForeignKey("contacts.id"), nullable=True),
    Column("owner", String(10), nullable=False, default="bot"),
    Column("status", String(10), nullable=False, default="open"),
    Column("external_status", String(20), nullable=True),
    Column("meta", Json, nullable=False, default=dict),
    Column("created_at", Float, nullable=False),
    Column("last_activity_at", Float, nullable=False),
    # migration 0006: the customer's latest message, and the one before it (bot expiry:
    # other events move last_activity_at, these only a customer's message)
    Column("customer_at", Float, nullable=True),
    Column("prev_customer_at", Float, nullable=True),
    UniqueConstraint("channel", "channel_key"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("conversation_id", String(40), ForeignKey("conversations.id"), nullable=False),
    Column("direction", String(4), nullable=False),  # in | out | note
    Column("author", String(10), nullable=False),  # contact | agent | human | system
    Column("text", Text, nullable=False, default=""),
    Column("content_type", String(40), nullable=False, default="text"),
    Column("attachments", Json, nullable=False, default=list),
    # channel + external id, unique: the inbound dedupe key (null for our own messages)
    Column("dedupe_key", String(300), nullable=True, unique=True),
    Column("external_id", String(200), nullable=True),
    Column("turn_id", BigId, nullable=True),
    Column("meta", Json, nullable=False, default=dict),
    Column("created_at", Float, nullable=False),
    Index(None, "conversation_id", "created_at"),
)

inbound_receipts = Table(
    "inbound_receipts",
    metadata,
    # e.g. "chatwoot:<X-Chatwoot-Delivery uuid>": the per-delivery dedupe key
    Column("key", String(300), primary_key=True),
    Column("created_at", Float, nullable=False),
)

routes = Table(
    "routes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("channel", String(40), nullable=False),
    Column("inbox_id", Integer, nullable=False),
    Column("agent_id", String(200), ForeignKey("agents.id"), nullable=False),
    Column("reply_mode", String(10), nullable=False, default="async"),
    Column("timeout_seconds", Float, nullable=False),
    Column("fallback_text", Text, nullable=True),
    Column("on_failure", String(10), nullable=False, default="fallback"),
    Column("agent_bot_mode", Boolean, nullable=False, default=False),
    # migration 0006: the route's conversation policies (``RoutePolicies``); null: defaults
    Column("policies", Json, nullable=True),
    # migration 0008: the route's named agents ``[{"agent_id", "role", "default"}]``; empty:
    # ``agent_id`` alone answers (see ``records.RouteAgent``)
    Column("agents", Json, nullable=False, default=list),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("channel", "inbox_id"),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("transport", String(20), nullable=False),
    Column("url", Text, nullable=True),
    Column("token_hash", String(200), nullable=True),
    Column("timeout_seconds", Float, nullable=False),
    # transport settings beyond the URL (http-webhook secret; openai model, key, prompt …)
    Column("options", Json, nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("last_seen_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

turns = Table(
    "turns",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("conversation_id", String(40), ForeignKey("conversations.id"), nullable=False),
    Column("agent_id", String(200), nullable=False),
    Column("route_id", BigId, nullable=True),
    Column("kind", String(10), nullable=False, default="message"),
    # pending → leased → done | failed | dead ; "cancelled" when a human took over first
    Column("state", String(10), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("available_at", Float, nullable=False),
    Column("response_mode", String(10), nullable=False, default="async"),
    Column("message_ids", Json, nullable=False, default=list),
    # migration 0006: the agent starts a new session for this turn (the bot session expired)
    Column("fresh", Boolean, nullable=False, default=False),
    Column("outcome", String(20), nullable=True),
    Column("reply_message_id", String(40), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Index(None, "state", "available_at"),
    Index(None, "conversation_id", "state"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("conversation_id", String(40), ForeignKey("conversations.id"), nullable=False),
    Column("turn_id", BigId, nullable=True),
    Column("message_id", String(40), nullable=True),
    Column("kind", String(20), nullable=False),  # message | typing_on | typing_off | handoff | note
    Column("text", Text, nullable=True),
    Column("payload", Json, nullable=False, default=dict),
    # pending → leased → done | dead ; typing that keeps failing ends "dropped"
    Column("state", String(10), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("idempotency_key", String(100), nullable=False, unique=True),
    # set on claim from the old row: the previous attempt died mid-send, outcome unknown
    Column("uncertain", Boolean, nullable=False, default=False),
    Column("external_id", String(200), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("done_at", Float, nullable=True),
    # migration 0005: when the latest send began, and the channel's receipt of our message
    # (its echo); after a crash only a started send without a receipt is uncertain
    Column("send_started_at", Float, nullable=True),
    Column("receipt_at", Float, nullable=True),
    Column("receipt_external_id", String(200), nullable=True),
    Index(None, "state", "next_attempt_at"),
    Index(None, "conversation_id", "state"),
    # a provider's status event names its message id (added in migration 0003)
    Index(None, "external_id"),
)

webchat_sessions = Table(
    "webchat_sessions",
    metadata,
    # the session id the widget (or the action API's caller) chose: ^[A-Za-z0-9_-]{1,64}$
    Column("id", String(64), primary_key=True),
    # 16 hex chars, one per session row: the conversation's channel key and the contact's id,
    # so a session that expired and starts again is a new conversation with a new visitor id
    Column("uid", String(16), nullable=False, unique=True),
    Column("inbox_id", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_active", Float, nullable=False),
    Column("ip_address", String(64), nullable=True),
    Column("meta", Json, nullable=False, default=dict),
    # migration 0009: when the session was announced expired (``session_expired``); null while
    # it is active, or idle but not yet announced (the sweep looks for those by this index)
    Column("expired_at", Float, nullable=True),
    Index(None, "last_active"),
    Index(None, "expired_at", "last_active"),
)

# --- comms: people (the CRM side), identities, notes, tasks, call logs, settings -------------

people = Table(
    "people",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(300), nullable=False),
    # E.164 (``+919876543210``); the key a WhatsApp thread is linked by
    Column("phone", String(40), nullable=True, index=True),
    Column("email", String(300), nullable=True),
    Column("company", String(300), nullable=True),
    Column("external_ref", String(200), nullable=True),  # the id in the user's own CRM
    Column("tags", Json, nullable=False, default=list),  # broadcast segments filter on these
    Column("opted_out_at", Float, nullable=True),  # no broadcasts (marketing) after this
    Column("meta", Json, nullable=False, default=dict),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

contact_identities = Table(
    "contact_identities",
    metadata,
    # every address a contact is known by: phone (E.164), jid (@c.us), lid (@lid), bsuid (Meta)
    Column("kind", String(10), primary_key=True),
    Column("value", String(200), primary_key=True),
    Column("contact_id", String(40), ForeignKey("contacts.id"), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
)

thread_links = Table(
    "thread_links",
    metadata,
    # which person a conversation is linked to (auto by phone, or by an operator)
    Column("conversation_id", String(40), ForeignKey("conversations.id"), primary_key=True),
    Column("person_id", String(40), ForeignKey("people.id"), nullable=True, index=True),
    Column("linked_by", String(10), nullable=False),  # auto | operator | unlinked
    Column("last_read_at", Float, nullable=True),  # the console's unread marker
    Column("updated_at", Float, nullable=False),
)

notes = Table(
    "notes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column(
        "conversation_id", String(40), ForeignKey("conversations.id"), nullable=True, index=True
    ),
    Column("person_id", String(40), ForeignKey("people.id"), nullable=True, index=True),
    Column("text", Text, nullable=False),
    Column("author", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column(
        "conversation_id", String(40), ForeignKey("conversations.id"), nullable=True, index=True
    ),
    Column("person_id", String(40), ForeignKey("people.id"), nullable=True, index=True),
    Column("title", String(500), nullable=False),
    Column("due_at", Float, nullable=True),
    Column("done", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

call_logs = Table(
    "call_logs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column(
        "conversation_id", String(40), ForeignKey("conversations.id"), nullable=True, index=True
    ),
    Column("person_id", String(40), ForeignKey("people.id"), nullable=True, index=True),
    Column("phone", String(40), nullable=True),
    Column("direction", String(10), nullable=False),  # inbound | outbound
    Column("duration_seconds", Float, nullable=True),
    Column("started_at", Float, nullable=True),
    Column("recording_url", Text, nullable=True),
    Column("recording_path", Text, nullable=True),  # an uploaded recording, on local disk
    # the transcription job, queued durably on the row: none | queued | running | done | failed
    Column("transcript_status", String(10), nullable=False, default="none"),
    Column("transcript", Text, nullable=True),
    Column("transcript_error", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index(None, "transcript_status", "lease_expires_at"),
)

comms_settings = Table(
    "comms_settings",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Json, nullable=True),
    Column("updated_at", Float, nullable=False),
)

# Outbound message status from the provider (sent | delivered | read | failed), and the lookup
# a status event needs: provider message id → delivery → message.
message_status = Table(
    "message_status",
    metadata,
    Column("message_id", String(40), ForeignKey("messages.id"), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("external_id", String(200), nullable=True, unique=True),
    Column("updated_at", Float, nullable=False),
)

# --------------------------------------------------------------------------------------------
# WhatsApp complete (issue 15): the media store, templates, broadcasts.

# One stored file: inbound media downloaded from the provider (a durable job, leased like the
# others: ``state`` queued | running | done | failed, ``available_at`` = not before), or a file
# uploaded to the bridge by an operator or an agent (``origin`` upload, done at once). Bytes
# live in the media folder under ``path``; a voice note's transcript lives on the row.
media = Table(
    "media",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("conversation_id", String(40), nullable=True, index=True),
    Column("message_id", String(40), nullable=True, index=True),
    Column("origin", String(10), nullable=False),  # inbound | upload
    Column(
        "kind", String(20), nullable=False
    ),  # image | audio | voice | video | document | sticker
    Column("provider", String(20), nullable=True),
    Column("source", Json, nullable=True),  # what the provider needs to fetch it
    Column("mime", String(200), nullable=True),
    Column("name", String(300), nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("path", Text, nullable=True),
    Column("state", String(10), nullable=False, default="queued"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("available_at", Float, nullable=False),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    # voice notes: none | queued | done | failed | skipped
    Column("transcript_status", String(10), nullable=False, default="none"),
    Column("transcript", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index(None, "state", "available_at"),
)

# Message templates (WhatsApp): synced from Meta's WhatsApp Business Account, or kept locally.
templates = Table(
    "templates",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("language", String(20), nullable=False),
    Column("category", String(20), nullable=False),  # marketing | utility | authentication
    Column("status", String(20), nullable=False),  # approved | pending | rejected | paused | local
    Column("components", Json, nullable=False, default=list),
    Column("source", String(10), nullable=False),  # meta | local
    Column("external_id", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("name", "language"),
)

# A template sent to a segment of CRM people: a durable job, leased by one worker at a time.
broadcasts = Table(
    "broadcasts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(300), nullable=False),
    Column("template_id", String(40), ForeignKey("templates.id"), nullable=False),
    Column("parameters", Json, nullable=False, default=dict),
    Column("segment", Json, nullable=False, default=dict),
    Column("rate_per_second", Float, nullable=False),
    # queued | running | paused | done | cancelled | failed
    Column("state", String(10), nullable=False, default="queued"),
    Column("total", Integer, nullable=False, default=0),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    Index(None, "state", "lease_expires_at"),
)

# One person of a broadcast. ``state``: queued | sending (claimed for a send whose outcome is
# not recorded yet) | sent | delivered | read | failed | skipped | uncertain.
broadcast_recipients = Table(
    "broadcast_recipients",
    metadata,
    Column("broadcast_id", String(40), ForeignKey("broadcasts.id"), primary_key=True),
    Column("person_id", String(40), ForeignKey("people.id"), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("address", String(200), nullable=True),  # the chat key the template goes to
    Column("state", String(10), nullable=False, default="queued"),
    Column("reason", Text, nullable=True),
    Column("external_id", String(200), nullable=True, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("sent_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    Index(None, "broadcast_id", "state", "seq"),
)

# --------------------------------------------------------------------------------------------
# Operators (issue 17, migration 0010): accounts, conversation assignment, canned replies and
# the audit log. Private notes are messages (``direction`` note, ``author`` human) and every
# human message names its operator in ``meta`` (``operator_id``, ``operator_name``).

operators = Table(
    "operators",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(300), nullable=False, unique=True),  # lower case
    Column("name", String(200), nullable=False),
    Column("role", String(10), nullable=False),  # admin | agent
    # argon2id; null while an invited operator has not chosen a password
    Column("password_hash", String(200), nullable=True),
    Column("invite_hash", String(64), nullable=True, unique=True),  # sha256 of the token
    Column("invite_expires_at", Float, nullable=True),
    Column("active", Boolean, nullable=False, default=True),
    # in the session cookie: a new password or a disabled account ends the old sessions
    Column("session_version", Integer, nullable=False, default=1),
    Column("last_login_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

conversation_assignments = Table(
    "conversation_assignments",
    metadata,
    Column("conversation_id", String(40), ForeignKey("conversations.id"), primary_key=True),
    Column("operator_id", String(40), ForeignKey("operators.id"), nullable=False, index=True),
    Column("assigned_by", String(40), nullable=True),  # an operator id; null: the admin key
    Column("assigned_at", Float, nullable=False),
)

canned_replies = Table(
    "canned_replies",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("shortcut", String(40), nullable=False),  # typed after "/" in the composer
    Column("text", Text, nullable=False),
    # the operator who owns it; null: the team's (made with the admin key)
    Column("owner_id", String(40), ForeignKey("operators.id"), nullable=True, index=True),
    Column("shared", Boolean, nullable=False, default=False),  # every operator sees it
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("actor_id", String(40), nullable=True, index=True),  # null: the admin key
    Column("actor", String(600), nullable=False),
    Column("action", String(60), nullable=False),
    Column("target", String(300), nullable=True),
    Column("details", Json, nullable=False, default=dict),
    Column("ip", String(64), nullable=True),
)
