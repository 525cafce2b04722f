"""The hot path's SQL, written once with ``$n`` parameters and built per dialect at start-up.

Each statement names its columns; the readers at the end take rows by position in the same
order, so a column list and its reader change together. See ``hot`` for why these
statements bypass SQLAlchemy, and ``turns`` for how claiming works.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any

from chatbridge.store.hot import in_list, loads, sqlite_sql
from chatbridge.store.leases import RELEASED_SQL, held_by_sql
from chatbridge.store.records import (
    ClaimedDelivery,
    ContactRecord,
    ConversationRecord,
    MessageRecord,
)

CONV_COLS = (
    "id, channel, channel_key, inbox_id, contact_id, owner, status, external_status, meta,"
    " customer_at, prev_customer_at"
)
TURN_COLS = (
    "id, conversation_id, agent_id, route_id, kind, attempts, response_mode, created_at,"
    " message_ids, fresh"
)
DELIVERY_COLS = (
    "id, conversation_id, turn_id, message_id, kind, text, payload, attempts, max_attempts,"
    " idempotency_key, uncertain, send_started_at, receipt_at, receipt_external_id"
)
MESSAGE_COLS = (
    "id, conversation_id, direction, author, text, content_type, attachments, external_id,"
    " created_at, meta, turn_id"
)
CONTACT_COLS = "id, channel, external_id, name, email, phone"

_OPEN = "('pending', 'leased')"
# A delivery being leased is uncertain when a send of it began and its outcome is unknown:
# a lease that ran out mid-send, or a pending one given back so (``retry_delivery``).
_STILL_UNCERTAIN = "(uncertain AND send_started_at IS NOT NULL)"
_UNCERTAIN = "(send_started_at IS NOT NULL AND (state = 'leased' OR uncertain))"
EMPTY_JSON = "'{}'"


@dataclass(frozen=True, slots=True)
class HotSql:
    dedupe_seen: str
    receipt: str
    contact_upsert: str
    conversation_upsert: str
    set_owner: str
    cancel_pending_turns: str
    turn_insert: str
    turn_insert_at: str
    open_turns: str
    turn_merge: str
    turn_supersede: str
    typing_unsent: str
    typing_shown: str
    recent_exchange: str
    message_insert_new: str
    message_insert: str
    delivery_insert: str
    claim_turns: str
    claim_turns_skipping: str
    conversations_by_id: str
    contacts_by_id: str
    messages_by_id: str
    turn_fence: str
    typing_skip: str
    claim_deliveries: str
    sends_started: str
    delivery_finish: str
    message_external_id: str
    lease_next: str
    typing_start: str


def _claim(dialect: str, table: str, due: str, cols: str, extra: str, skip: bool) -> str:
    """Lease the oldest due rows, at most one open row per conversation ($1 owner, $2 lease
    expiry, $3 now, $4 limit, $5 agents to skip)."""
    lock = " FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""
    skipping = f" AND {in_list(dialect, 'c.agent_id', 5, negate=True)}" if skip else ""
    return (
        f"UPDATE {table} SET state = 'leased', lease_owner = $1, lease_expires_at = $2,"
        f" attempts = attempts + 1{extra}"
        f" WHERE id IN (SELECT c.id FROM {table} c"
        f" WHERE ((c.state = 'pending' AND c.{due} <= $3)"
        f" OR (c.state = 'leased' AND c.lease_expires_at < $3))"
        f" AND NOT EXISTS (SELECT 1 FROM {table} o WHERE o.conversation_id = c.conversation_id"
        f" AND o.id < c.id AND o.state IN {_OPEN}){skipping}"
        f" ORDER BY c.id LIMIT $4{lock})"
        f" RETURNING {cols}"
    )


def build(dialect: str) -> HotSql:
    def cast(value: str, to: str) -> str:
        """A parameter or literal in a SELECT list: PostgreSQL needs its type spelt out."""
        return f"{value}::{to}" if dialect == "postgresql" else value

    sql = HotSql(
        dedupe_seen="SELECT 1 FROM messages WHERE dedupe_key = $1",
        receipt=(
            "INSERT INTO inbound_receipts (key, created_at) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING RETURNING key"
        ),
        contact_upsert=(
            "INSERT INTO contacts (id, channel, external_id, name, email, phone, meta,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)"
            " ON CONFLICT (channel, external_id) DO UPDATE SET"
            " name = COALESCE(excluded.name, contacts.name),"
            " email = COALESCE(excluded.email, contacts.email),"
            " phone = COALESCE(excluded.phone, contacts.phone),"
            " updated_at = excluded.updated_at RETURNING id"
        ),
        conversation_upsert=(
            "INSERT INTO conversations (id, channel, channel_key, inbox_id, contact_id, owner,"
            " status, external_status, meta, created_at, last_activity_at, customer_at)"
            " VALUES ($1, $2, $3, $4, $5, 'bot', 'open', $6, '{}', $7, $7, $7)"
            " ON CONFLICT (channel, channel_key) DO UPDATE SET"
            " prev_customer_at = conversations.customer_at,"
            " customer_at = excluded.customer_at,"
            " last_activity_at = excluded.last_activity_at,"
            " external_status = COALESCE(excluded.external_status,"
            " conversations.external_status),"
            " contact_id = COALESCE(excluded.contact_id, conversations.contact_id)"
            f" RETURNING {CONV_COLS}"
        ),
        set_owner="UPDATE conversations SET owner = $2 WHERE id = $1",
        cancel_pending_turns=(
            "UPDATE turns SET state = 'cancelled', outcome = 'human_owner', finished_at = $2"
            " WHERE conversation_id = $1 AND state = 'pending'"
        ),
        turn_insert=(
            "INSERT INTO turns (conversation_id, agent_id, route_id, kind, state, attempts,"
            " available_at, response_mode, message_ids, created_at, fresh)"
            " VALUES ($1, $2, $3, 'message', 'pending', 0, $4, $5, $6, $4, $7) RETURNING id"
        ),
        turn_insert_at=(
            "INSERT INTO turns (conversation_id, agent_id, route_id, kind, state, attempts,"
            " available_at, response_mode, message_ids, created_at, fresh)"
            " VALUES ($1, $2, $3, 'message', 'pending', 0, $8, $5, $6, $4, $7) RETURNING id"
        ),
        open_turns=(
            "SELECT id, state, attempts, created_at, available_at, message_ids FROM turns"
            f" WHERE conversation_id = $1 AND state IN {_OPEN} ORDER BY id"
        ),
        turn_merge=(
            "UPDATE turns SET message_ids = $2, available_at = $3, fresh = (fresh OR $4)"
            " WHERE id = $1 AND state = 'pending' AND attempts = 0 RETURNING id"
        ),
        turn_supersede=(
            "UPDATE turns SET state = 'cancelled', outcome = 'superseded', finished_at = $2,"
            f" {RELEASED_SQL} WHERE id = $1 AND (state = 'leased' OR (state = 'pending'"
            " AND attempts > 0)) RETURNING message_ids, fresh"
        ),
        # a superseded turn's typing: an unsent typing_on is dropped; one that went out (or
        # may have) gets its typing_off ($3 a new idempotency key)
        typing_unsent=(
            "UPDATE deliveries SET state = 'skipped', done_at = $2 WHERE turn_id = $1"
            " AND kind = 'typing_on' AND state = 'pending' AND attempts = 0 RETURNING id"
        ),
        # the last messages the customer and the bot exchanged, newest first (summaries)
        recent_exchange=(
            "SELECT author, text FROM messages WHERE conversation_id = $1"
            " AND direction IN ('in', 'out') ORDER BY created_at DESC, id DESC LIMIT $2"
        ),
        typing_shown=(
            "SELECT 1 FROM deliveries WHERE turn_id = $1 AND kind = 'typing_on'"
            " AND state <> 'skipped'"
        ),
        message_insert_new=(
            "INSERT INTO messages (id, conversation_id, direction, author, text, content_type,"
            " attachments, dedupe_key, external_id, turn_id, meta, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
        ),
        message_insert=(
            "INSERT INTO messages (id, conversation_id, direction, author, text, content_type,"
            " attachments, dedupe_key, external_id, turn_id, meta, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ),
        delivery_insert=(
            "INSERT INTO deliveries (conversation_id, turn_id, message_id, kind, text, payload,"
            " state, attempts, max_attempts, next_attempt_at, idempotency_key, uncertain,"
            " created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $9, $8, FALSE, $9)"
            " RETURNING id"
        ),
        claim_turns=_claim(
            dialect,
            "turns",
            "available_at",
            TURN_COLS,
            ", started_at = COALESCE(started_at, $3)",
            False,
        ),
        claim_turns_skipping=_claim(
            dialect,
            "turns",
            "available_at",
            TURN_COLS,
            ", started_at = COALESCE(started_at, $3)",
            True,
        ),
        conversations_by_id=(
            f"SELECT {CONV_COLS} FROM conversations WHERE {in_list(dialect, 'id', 1)}"
        ),
        contacts_by_id=f"SELECT {CONTACT_COLS} FROM contacts WHERE {in_list(dialect, 'id', 1)}",
        messages_by_id=f"SELECT {MESSAGE_COLS} FROM messages WHERE {in_list(dialect, 'id', 1)}",
        turn_fence=(
            f"UPDATE turns SET state = $3, outcome = $4, finished_at = $5, {RELEASED_SQL},"
            " last_error = $6, reply_message_id = $7"
            f" WHERE id = $1 AND {held_by_sql('$2')}"
            " RETURNING conversation_id,"
            " (SELECT owner FROM conversations c WHERE c.id = turns.conversation_id)"
        ),
        typing_skip=(
            "UPDATE deliveries SET state = 'skipped', done_at = $2 WHERE turn_id = $1"
            " AND kind = 'typing_on' AND state = 'pending' AND attempts = 0"
        ),
        # SET expressions see the old row: was it leased by a process that died after its
        # send had started, or given back after a send that got no answer (``uncertain``,
        # ``retry_delivery``)? Then the far side may have it already (see ``claims``).
        claim_deliveries=_claim(
            dialect,
            "deliveries",
            "next_attempt_at",
            DELIVERY_COLS,
            f", uncertain = {_UNCERTAIN}",
            False,
        ),
        sends_started=(
            "UPDATE deliveries SET send_started_at = $3"
            f" WHERE {in_list(dialect, 'id', 1)} AND {held_by_sql('$2')}"
            " RETURNING id"
        ),
        delivery_finish=(
            f"UPDATE deliveries SET state = 'done', done_at = $3, external_id = $4, {RELEASED_SQL}"
            f" WHERE id = $1 AND {held_by_sql('$2')} RETURNING message_id"
        ),
        message_external_id="UPDATE messages SET external_id = $2 WHERE id = $1",
        # the conversation's oldest open delivery, if it is pending and due ($4 = now)
        lease_next=(
            "UPDATE deliveries SET state = 'leased', lease_owner = $2, lease_expires_at = $3,"
            f" attempts = attempts + 1, uncertain = {_STILL_UNCERTAIN}"
            " WHERE id = (SELECT id FROM deliveries WHERE conversation_id = $1"
            f" AND state IN {_OPEN} ORDER BY id LIMIT 1)"
            " AND state = 'pending' AND next_attempt_at <= $4"
            f" RETURNING {DELIVERY_COLS}"
        ),
        # a turn's typing_on, while the turn is still ours and a bot owns the conversation
        typing_start=(
            "INSERT INTO deliveries (conversation_id, turn_id, message_id, kind, text, payload,"
            " state, attempts, max_attempts, next_attempt_at, idempotency_key, uncertain,"
            f" created_at) SELECT {cast('$1', 'text')}, {cast('$2', 'bigint')}, NULL,"
            f" 'typing_on', NULL, {cast(EMPTY_JSON, 'jsonb')}, 'pending', 0, {cast('$6', 'int')},"
            f" {cast('$4', 'float8')}, {cast('$5', 'text')}, FALSE, {cast('$4', 'float8')}"
            f" WHERE EXISTS (SELECT 1 FROM turns WHERE id = $2 AND {held_by_sql('$3')})"
            " AND EXISTS (SELECT 1 FROM conversations WHERE id = $1 AND owner = 'bot')"
            " RETURNING id"
        ),
    )
    if dialect == "sqlite":
        return HotSql(**{f.name: sqlite_sql(getattr(sql, f.name)) for f in fields(sql)})
    return sql


# ---------------------------------------------------------------- rows → records
def conversation(r: Any) -> ConversationRecord:
    return ConversationRecord(
        id=r[0],
        channel=r[1],
        channel_key=r[2],
        inbox_id=r[3],
        contact_id=r[4],
        owner=r[5],
        status=r[6],
        external_status=r[7],
        meta=loads(r[8]) or {},
        customer_at=r[9],
        prev_customer_at=r[10],
    )


def message(r: Any) -> MessageRecord:
    return MessageRecord(
        id=r[0],
        conversation_id=r[1],
        direction=r[2],
        author=r[3],
        text=r[4],
        content_type=r[5],
        attachments=loads(r[6]) or [],
        external_id=r[7],
        created_at=r[8],
        meta=loads(r[9]) or {},
        turn_id=r[10],
    )


def contact(r: Any) -> ContactRecord:
    return ContactRecord(id=r[0], channel=r[1], external_id=r[2], name=r[3], email=r[4], phone=r[5])


def delivery(r: Any, conv: ConversationRecord) -> ClaimedDelivery:
    return ClaimedDelivery(
        id=r[0],
        conversation_id=r[1],
        turn_id=r[2],
        message_id=r[3],
        kind=r[4],
        text=r[5],
        payload=loads(r[6]) or {},
        attempts=r[7],
        max_attempts=r[8],
        idempotency_key=r[9],
        uncertain=bool(r[10]),
        conversation=conv,
        send_started_at=r[11],
        receipt_at=r[12],
        receipt_external_id=r[13],
    )


# ---------------------------------------------------------------- PostgreSQL: whole batches
# On PostgreSQL every statement is a server round trip, so a group commit's batch is written
# set-wise: one statement per step for all of its items, arrays in, ``unnest`` inside. (On
# SQLite a statement is a function call; the per-item statements above are as cheap.)
@dataclass(frozen=True, slots=True)
class PgBatchSql:
    receipts: str = (
        "INSERT INTO inbound_receipts (key, created_at) SELECT k, $2::float8"
        " FROM unnest($1::text[]) AS k ON CONFLICT DO NOTHING RETURNING key"
    )
    contacts: str = (
        "INSERT INTO contacts (id, channel, external_id, name, email, phone, meta,"
        " created_at, updated_at)"
        " SELECT u.id, u.channel, u.ext, u.name, u.email, u.phone, u.meta::jsonb,"
        " $8::float8, $8::float8"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::text[]) AS u(id, channel, ext, name, email, phone, meta)"
        " ON CONFLICT (channel, external_id) DO UPDATE SET"
        " name = COALESCE(excluded.name, contacts.name),"
        " email = COALESCE(excluded.email, contacts.email),"
        " phone = COALESCE(excluded.phone, contacts.phone),"
        " updated_at = excluded.updated_at RETURNING id, channel, external_id"
    )
    conversations: str = (
        "INSERT INTO conversations (id, channel, channel_key, inbox_id, contact_id, owner,"
        " status, external_status, meta, created_at, last_activity_at, customer_at)"
        " SELECT u.id, u.channel, u.key, u.inbox, u.contact, 'bot', 'open', u.status,"
        " '{}'::jsonb, $7::float8, $7::float8, $7::float8"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[])"
        " AS u(id, channel, key, inbox, contact, status)"
        " ON CONFLICT (channel, channel_key) DO UPDATE SET"
        " prev_customer_at = conversations.customer_at,"
        " customer_at = excluded.customer_at,"
        " last_activity_at = excluded.last_activity_at,"
        " external_status = COALESCE(excluded.external_status, conversations.external_status),"
        " contact_id = COALESCE(excluded.contact_id, conversations.contact_id)"
        f" RETURNING {CONV_COLS}"
    )
    turns: str = (
        "INSERT INTO turns (conversation_id, agent_id, route_id, kind, state, attempts,"
        " available_at, response_mode, message_ids, created_at)"
        " SELECT u.conv, u.agent, u.route, 'message', 'pending', 0, $6::float8, u.mode,"
        " u.ids::jsonb, $6::float8"
        " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[])"
        " WITH ORDINALITY AS u(conv, agent, route, mode, ids, ord) ORDER BY u.ord"
        " RETURNING id, conversation_id"
    )
    messages: str = (
        "INSERT INTO messages (id, conversation_id, direction, author, text, content_type,"
        " attachments, dedupe_key, external_id, turn_id, meta, created_at)"
        " SELECT u.id, u.conv, u.dir, u.author, u.text, u.ctype, u.att::jsonb, u.dedupe,"
        " u.ext, u.turn, u.meta::jsonb, u.at"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::float8[])"
        " WITH ORDINALITY AS u(id, conv, dir, author, text, ctype, att, dedupe, ext, turn,"
        " meta, at, ord) ORDER BY u.ord"
        " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
    )
    fences: str = (
        "UPDATE turns t SET state = u.state, outcome = u.outcome, finished_at = $7::float8,"
        f" {RELEASED_SQL}, last_error = u.error, reply_message_id = u.reply"
        " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])"
        " AS u(id, owner, state, outcome, error, reply)"
        f" WHERE t.id = u.id AND {held_by_sql('u.owner', alias='t')}"
        " RETURNING t.id, t.conversation_id,"
        " (SELECT owner FROM conversations c WHERE c.id = t.conversation_id)"
    )
    typing_skips: str = (
        "UPDATE deliveries SET state = 'skipped', done_at = $2::float8"
        " WHERE turn_id = ANY($1::bigint[]) AND kind = 'typing_on' AND state = 'pending'"
        " AND attempts = 0 RETURNING turn_id"
    )
    deliveries: str = (
        "INSERT INTO deliveries (conversation_id, turn_id, message_id, kind, text, payload,"
        " state, attempts, max_attempts, next_attempt_at, idempotency_key, uncertain,"
        " created_at)"
        " SELECT u.conv, u.turn, u.msg, u.kind, u.text, u.payload::jsonb, 'pending', 0, u.max,"
        " $9::float8, u.key, FALSE, $9::float8"
        " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::int[], $8::text[]) WITH ORDINALITY"
        " AS u(conv, turn, msg, kind, text, payload, max, key, ord) ORDER BY u.ord"
        " RETURNING id, idempotency_key"
    )
    finishes: str = (
        "UPDATE deliveries d SET state = 'done', done_at = $4::float8, external_id = u.ext,"
        f" {RELEASED_SQL}"
        " FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, owner, ext)"
        f" WHERE d.id = u.id AND {held_by_sql('u.owner', alias='d')}"
        " RETURNING d.id, d.message_id"
    )
    message_external_ids: str = (
        "UPDATE messages m SET external_id = u.ext"
        " FROM unnest($1::text[], $2::text[]) AS u(id, ext) WHERE m.id = u.id"
    )
    # each conversation's oldest open delivery, leased when it is pending and due
    lease_heads: str = (
        "WITH h AS (SELECT DISTINCT ON (conversation_id) id, state, next_attempt_at"
        " FROM deliveries WHERE conversation_id = ANY($1::text[])"
        f" AND state IN {_OPEN} ORDER BY conversation_id, id)"
        " UPDATE deliveries d SET state = 'leased', lease_owner = $2,"
        " lease_expires_at = $3::float8, attempts = d.attempts + 1,"
        " uncertain = (d.uncertain AND d.send_started_at IS NOT NULL)"
        " FROM h WHERE d.id = h.id AND h.state = 'pending' AND h.next_attempt_at <= $4::float8"
        " AND d.state = 'pending'"
        f" RETURNING {', '.join('d.' + c.strip() for c in DELIVERY_COLS.split(','))}"
    )


PG_BATCH = PgBatchSql()


# ---------------------------------------------------------------- web chat history
_WEBCHAT_CONV = "(SELECT id FROM conversations WHERE channel = 'webchat' AND channel_key = $1)"
WEBCHAT_ANCHOR = (
    f"SELECT created_at, id FROM messages WHERE id = $2 AND conversation_id = {_WEBCHAT_CONV}"
)


@functools.cache
def webchat_history(dialect: str, since: bool, anchor: bool) -> str:
    """A web chat session's messages, oldest first ($1 the session's uid, $2 the limit; then
    $3 ``since``; then the anchor's time minus the lookback, its time and its id)."""
    where = [f"conversation_id = {_WEBCHAT_CONV}", "direction IN ('in', 'out')"]
    n = 2
    if since:
        n += 1
        where.append(f"created_at > ${n}")
    if anchor:
        where.append(
            f"(created_at > ${n + 1} OR created_at > ${n + 2}"
            f" OR (created_at = ${n + 2} AND id > ${n + 3}))"
        )
    sql = (
        f"SELECT {MESSAGE_COLS} FROM messages WHERE {' AND '.join(where)}"
        " ORDER BY created_at, id LIMIT $2"
    )
    return sqlite_sql(sql) if dialect == "sqlite" else sql


def webchat_anchor(dialect: str) -> str:
    return sqlite_sql(WEBCHAT_ANCHOR) if dialect == "sqlite" else WEBCHAT_ANCHOR
