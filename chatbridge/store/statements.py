"""The SQLAlchemy statements the store's other paths share (owner signals, outbound messages,
receipts), built once per dialect and executed with parameter dicts (the per-message ones are
raw SQL: ``hot_sql``).

Why: profiling the bridge under load showed two thirds of its CPU in SQLAlchemy *building*
statements (``.values(...)`` coercion, cache-key generation) rather than running them. A
statement built once and executed with plain dicts goes straight to SQLAlchemy's compiled
cache. Names of bound parameters start with ``b_`` where they would clash with a column name
in a SET clause.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.sql import Executable

from chatbridge.store import tables as t

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite


@dataclass(frozen=True, slots=True)
class Statements:
    receipt: Executable
    conversation_upsert: Executable
    message_insert_new: Executable
    conversation_owner: Executable
    deliveries_insert: Executable
    delivery_receipt: Executable


Upsert = Callable[[Table], "sqlite.Insert | postgresql.Insert"]
"""A dialect's ``insert``: both have ``on_conflict_do_nothing``/``on_conflict_do_update``."""


def dialect_insert(dialect: str) -> Upsert:
    """The dialect's ``insert`` (the one with ``ON CONFLICT``); same API on both."""
    from sqlalchemy.dialects import postgresql, sqlite

    return sqlite.insert if dialect == "sqlite" else postgresql.insert


def build(dialect: str) -> Statements:
    upsert = dialect_insert(dialect)

    convs = upsert(t.conversations)
    cc = t.conversations.c
    conversation_upsert = convs.on_conflict_do_update(
        index_elements=["channel", "channel_key"],
        set_={
            "last_activity_at": convs.excluded.last_activity_at,
            "external_status": func.coalesce(convs.excluded.external_status, cc.external_status),
            "contact_id": func.coalesce(convs.excluded.contact_id, cc.contact_id),
        },
    ).returning(*t.conversations.c)

    dd, mm = t.deliveries, t.messages
    return Statements(
        receipt=upsert(t.inbound_receipts).on_conflict_do_nothing(),
        conversation_upsert=conversation_upsert,
        message_insert_new=upsert(mm).on_conflict_do_nothing(index_elements=["dedupe_key"]),
        conversation_owner=select(cc.owner).where(cc.id == bindparam("b_id")),
        deliveries_insert=insert(dd).returning(dd.c.id, sort_by_parameter_order=True),
        delivery_receipt=update(dd)
        .where(dd.c.idempotency_key == bindparam("b_key"))
        .values(
            receipt_at=func.coalesce(dd.c.receipt_at, bindparam("b_now")),
            receipt_external_id=func.coalesce(dd.c.receipt_external_id, bindparam("b_external")),
        ),
    )
