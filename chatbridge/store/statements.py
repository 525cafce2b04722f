"""The hot-path statements, built once per dialect and executed with parameter dicts.

Why: profiling the bridge under load showed two thirds of its CPU in SQLAlchemy *building*
statements (``.values(...)`` coercion, cache-key generation) rather than running them. A
statement built once and executed with plain dicts goes straight to SQLAlchemy's compiled
cache. Names of bound parameters start with ``b_`` where they would clash with a column name
in a SET clause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, update

from chatbridge.store import tables as t


@dataclass(frozen=True, slots=True)
class Statements:
    receipt: Any
    contact_upsert: Any
    conversation_upsert: Any
    turn_insert: Any
    message_insert_new: Any
    message_insert: Any
    turn_fence: Any
    conversation_owner: Any
    typing_skip: Any
    deliveries_insert: Any
    delivery_finish: Any
    message_external_id: Any
    conversation_head: Any
    delivery_lease_next: Any
    deliveries_send_started: Any
    delivery_receipt: Any
    conversations_by_id: Any
    messages_by_id: Any
    contacts_by_id: Any


def dialect_insert(dialect: str) -> Any:
    """The dialect's ``insert`` (the one with ``ON CONFLICT``); same API on both."""
    from sqlalchemy.dialects import postgresql, sqlite

    return sqlite.insert if dialect == "sqlite" else postgresql.insert


def build(dialect: str) -> Statements:
    upsert = dialect_insert(dialect)

    contacts: Any = upsert(t.contacts)
    contacts = contacts.on_conflict_do_update(
        index_elements=["channel", "external_id"],
        set_={
            "name": func.coalesce(contacts.excluded.name, t.contacts.c.name),
            "email": func.coalesce(contacts.excluded.email, t.contacts.c.email),
            "phone": func.coalesce(contacts.excluded.phone, t.contacts.c.phone),
            "updated_at": contacts.excluded.updated_at,
        },
    ).returning(t.contacts.c.id)

    convs: Any = upsert(t.conversations)
    cc = t.conversations.c
    convs = convs.on_conflict_do_update(
        index_elements=["channel", "channel_key"],
        set_={
            "last_activity_at": convs.excluded.last_activity_at,
            "external_status": func.coalesce(convs.excluded.external_status, cc.external_status),
            "contact_id": func.coalesce(convs.excluded.contact_id, cc.contact_id),
        },
    ).returning(*t.conversations.c)

    tt, dd, mm = t.turns, t.deliveries, t.messages
    return Statements(
        receipt=upsert(t.inbound_receipts).on_conflict_do_nothing(),
        contact_upsert=contacts,
        conversation_upsert=convs,
        turn_insert=insert(tt).returning(tt.c.id),
        message_insert_new=upsert(mm).on_conflict_do_nothing(index_elements=["dedupe_key"]),
        message_insert=insert(mm),
        turn_fence=update(tt)
        .where(
            and_(
                tt.c.id == bindparam("b_id"),
                tt.c.state == "leased",
                tt.c.lease_owner == bindparam("b_owner"),
            )
        )
        .values(
            state=bindparam("b_state"),
            outcome=bindparam("b_outcome"),
            finished_at=bindparam("b_now"),
            lease_owner=None,
            lease_expires_at=None,
            last_error=bindparam("b_error"),
            reply_message_id=bindparam("b_reply"),
        )
        .returning(tt.c.conversation_id),
        conversation_owner=select(cc.owner).where(cc.id == bindparam("b_id")),
        typing_skip=update(dd)
        .where(
            and_(
                dd.c.turn_id == bindparam("b_turn"),
                dd.c.kind == "typing_on",
                dd.c.state == "pending",
                dd.c.attempts == 0,
            )
        )
        .values(state="skipped", done_at=bindparam("b_now")),
        deliveries_insert=insert(dd).returning(dd.c.id, sort_by_parameter_order=True),
        delivery_finish=update(dd)
        .where(
            and_(
                dd.c.id == bindparam("b_id"),
                dd.c.lease_owner == bindparam("b_owner"),
                dd.c.state == "leased",
            )
        )
        .values(
            state="done",
            done_at=bindparam("b_now"),
            external_id=bindparam("b_external"),
            lease_owner=None,
            lease_expires_at=None,
        )
        .returning(dd.c.message_id),
        message_external_id=update(mm)
        .where(mm.c.id == bindparam("b_id"))
        .values(external_id=bindparam("b_external")),
        conversation_head=select(dd.c.id, dd.c.state, dd.c.next_attempt_at)
        .where(
            and_(
                dd.c.conversation_id == bindparam("b_conversation"),
                dd.c.state.in_(("pending", "leased")),
            )
        )
        .order_by(dd.c.id)
        .limit(1),
        delivery_lease_next=update(dd)
        .where(and_(dd.c.id == bindparam("b_id"), dd.c.state == "pending"))
        .values(
            state="leased",
            lease_owner=bindparam("b_owner"),
            lease_expires_at=bindparam("b_expires"),
            attempts=dd.c.attempts + 1,
            uncertain=False,
        )
        .returning(*dd.c),
        deliveries_send_started=update(dd)
        .where(
            and_(
                dd.c.id.in_(bindparam("b_ids", expanding=True)),
                dd.c.lease_owner == bindparam("b_owner"),
                dd.c.state == "leased",
            )
        )
        .values(send_started_at=bindparam("b_now"))
        .returning(dd.c.id),
        delivery_receipt=update(dd)
        .where(dd.c.idempotency_key == bindparam("b_key"))
        .values(
            receipt_at=func.coalesce(dd.c.receipt_at, bindparam("b_now")),
            receipt_external_id=func.coalesce(dd.c.receipt_external_id, bindparam("b_external")),
        ),
        conversations_by_id=select(t.conversations).where(
            cc.id.in_(bindparam("b_ids", expanding=True))
        ),
        messages_by_id=select(mm).where(mm.c.id.in_(bindparam("b_ids", expanding=True))),
        contacts_by_id=select(t.contacts).where(
            t.contacts.c.id.in_(bindparam("b_ids", expanding=True))
        ),
    )
