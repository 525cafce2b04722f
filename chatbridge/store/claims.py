"""The claim statements for turns and deliveries, built once at import.

Both queues are claimed the same way (see ``turns`` for why and how): lease the oldest due
rows, at most one open row per conversation. The statements are constructed once with bound
parameters (``b_now``, ``b_owner``, ``b_expires``, ``b_limit``) because building and hashing a
fresh SQLAlchemy statement for every claim cost more than running it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, and_, bindparam, exists, func, or_, select, update

from chatbridge.store import tables as t
from chatbridge.store.base import _OPEN_STATES as OPEN_STATES


def _claim(table: Table, due: str, *, skip_agents: bool = False, **extra: Any) -> Any:
    older = table.alias("older")
    now: Any = bindparam("b_now")
    conditions: list[Any] = [
        or_(
            and_(table.c.state == "pending", table.c[due] <= now),
            and_(table.c.state == "leased", table.c.lease_expires_at < now),
        ),
        ~exists().where(
            and_(
                older.c.conversation_id == table.c.conversation_id,
                older.c.id < table.c.id,
                older.c.state.in_(OPEN_STATES),
            )
        ),
    ]
    if skip_agents:
        # Turns of agents another replica holds are that replica's (``cluster``).
        conditions.append(table.c.agent_id.not_in(bindparam("b_skip", expanding=True)))
    candidates = (
        select(table.c.id)
        .where(*conditions)
        .order_by(table.c.id)
        .limit(bindparam("b_limit"))
        .with_for_update(skip_locked=True)
    )
    return (
        update(table)
        .where(table.c.id.in_(candidates.scalar_subquery()))
        .values(
            state="leased",
            lease_owner=bindparam("b_owner"),
            lease_expires_at=bindparam("b_expires"),
            attempts=table.c.attempts + 1,
            **extra,
        )
        .returning(*table.c)
    )


_TURN_START: dict[str, Any] = {
    "started_at": func.coalesce(t.turns.c.started_at, bindparam("b_now"))
}
CLAIM_TURNS = _claim(t.turns, "available_at", **_TURN_START)
CLAIM_TURNS_SKIPPING = _claim(t.turns, "available_at", skip_agents=True, **_TURN_START)
# SET expressions see the *old* row: was it leased by a process that died after its send had
# started (``send_started_at``, written just before the channel call)? Then the far side may
# already have it. A lease that expired before its send began is not uncertain.
CLAIM_DELIVERIES = _claim(
    t.deliveries,
    "next_attempt_at",
    uncertain=and_(t.deliveries.c.state == "leased", t.deliveries.c.send_started_at.is_not(None)),
)


def claim_params(owner: str, now: float, lease_seconds: float, limit: int) -> dict[str, Any]:
    return {"b_now": now, "b_owner": owner, "b_expires": now + lease_seconds, "b_limit": limit}
