"""``Store``: async access to the database — the queue *is* the database.

See ``turns`` for why Chatbridge keeps its own outbox and leases, and how claiming works.
"""

from __future__ import annotations

from chatbridge.store.conversations import ConversationStore
from chatbridge.store.outbox import OutboxStore
from chatbridge.store.routing import RoutingStore
from chatbridge.store.turns import TurnStore


class Store(RoutingStore, ConversationStore, TurnStore, OutboxStore):
    """Async access to the database. One instance per process; ``migrate()`` before use."""
