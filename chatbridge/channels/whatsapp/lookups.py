"""The two store reads the WhatsApp channel needs, as small queries on the bridge's store.

* ``last_inbound``: when the customer last wrote in a conversation, and that message's
  provider id: Meta's 24-hour window and its typing indicator depend on it.
* ``sent_by_bridge``: whether a provider message id is one a delivery of ours got back from
  the gateway, so its echo (``fromMe``) is not taken for a human on the phone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import and_, select

from chatbridge.store import tables as t

if TYPE_CHECKING:
    from chatbridge.store import Store


async def last_inbound(store: Store, conversation_id: str) -> tuple[float, str | None] | None:
    """(received at, provider message id) of the newest customer message, or ``None``."""
    query = (
        select(t.messages.c.created_at, t.messages.c.external_id)
        .where(
            and_(t.messages.c.conversation_id == conversation_id, t.messages.c.direction == "in")
        )
        .order_by(t.messages.c.created_at.desc())
        .limit(1)
    )
    async with store._tx() as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else (float(row.created_at), row.external_id)


async def sent_by_bridge(store: Store, external_ids: list[str]) -> bool:
    """Whether any of ``external_ids`` is the id a gateway gave one of our deliveries."""
    ids = [i for i in external_ids if i]
    if not ids:
        return False
    query = select(t.deliveries.c.id).where(t.deliveries.c.external_id.in_(ids)).limit(1)
    async with store._tx() as conn:
        return (await conn.execute(query)).first() is not None
