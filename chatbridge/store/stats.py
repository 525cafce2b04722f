"""What the store did, counted cheaply: statements, transactions and server round trips.

Plain integer attributes, bumped on the hot path (an attribute increment costs nothing next to
a statement) and exported by ``chatbridge.metrics`` as counters, so ``chatbridge bench`` can
report statements and round trips per message and every later change can be judged by them.
"""

from __future__ import annotations


class StoreStats:
    """Running totals since the store was opened."""

    __slots__ = ("round_trips", "statements", "transactions")

    def __init__(self) -> None:
        self.statements = 0  # SQL statements executed (a multi-row statement counts once)
        self.transactions = 0  # transactions committed or rolled back
        self.round_trips = 0  # waits on the database server (0 on SQLite: it is in-process)
