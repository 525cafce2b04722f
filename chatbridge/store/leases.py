"""Fenced leases: the one condition every write to leased work is made under.

A worker claims a row (a turn, a delivery) by leasing it: ``state = 'leased'``,
``lease_owner`` = its instance id, ``lease_expires_at`` = when another process may take it
over (see ``turns`` for the claim). Every later write about that work — its outcome, a retry,
a dead letter, a renewal, a hand-back — is *fenced*: it applies only while the lease is still
the writer's. A worker whose lease ran out (it stalled, the database was away) and whose
work another process has since claimed writes nothing; its ``UPDATE`` matches no row, and
the caller sees that in the row count (or an empty ``RETURNING``).

The fence is written here once, for both ways the store writes:

- SQLAlchemy statements (``fenced_update``, ``held_by``, ``RELEASED``) for the per-item
  paths (``turns``, ``outbox``);
- raw SQL fragments (``held_by_sql``, ``RELEASED_SQL``) that the hot path's statements
  (``hot_sql``) are built from once at start-up, so the hot path pays nothing per call.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, Update, and_, update

LEASED = "leased"

#: The values that end a lease (with a new ``state``): nobody holds the row any more.
RELEASED: dict[str, None] = {"lease_owner": None, "lease_expires_at": None}

#: ``RELEASED`` in raw SQL, for a ``SET`` list.
RELEASED_SQL = "lease_owner = NULL, lease_expires_at = NULL"


def held_by(
    table: Table, owner: str, *, status: str = "state", leased: str = LEASED
) -> ColumnElement[bool]:
    """The fence: rows of ``table`` that are leased, to ``owner``.

    ``status`` / ``leased``: the column that says a row is leased and its value there, for a
    queue that names them otherwise (``call_logs``: ``transcript_status = 'running'``).
    """
    return and_(table.c.lease_owner == owner, table.c[status] == leased)


def fenced_update(
    table: Table,
    row_id: int | str,
    owner: str,
    *,
    status: str = "state",
    leased: str = LEASED,
) -> Update:
    """``UPDATE table … WHERE id = row_id`` and the row is leased to ``owner``.

    The caller adds ``.values(...)`` (``**RELEASED`` when the write ends the lease) and reads
    the row count: 0 means the lease is no longer ours and nothing was written.
    """
    fence = held_by(table, owner, status=status, leased=leased)
    return update(table).where(and_(table.c.id == row_id, fence))


def held_by_sql(owner: str, *, alias: str | None = None) -> str:
    """The fence as a raw SQL condition, for statements built once (``hot_sql``).

    ``owner`` is what the owner is compared with: a parameter (``"$2"``) or a column of a
    set-wise update (``"u.owner"``); ``alias`` qualifies the leased table's columns.
    """
    p = f"{alias}." if alias else ""
    return f"{p}lease_owner = {owner} AND {p}state = '{LEASED}'"
