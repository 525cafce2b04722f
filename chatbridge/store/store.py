"""``Store``: async access to the database — the queue *is* the database.

See ``turns`` for why Chatbridge keeps its own outbox and leases, and how claiming works.
"""

from __future__ import annotations

from chatbridge.store.comms import CommsStore
from chatbridge.store.conversations import ConversationStore
from chatbridge.store.outbox import OutboxStore
from chatbridge.store.routing import RoutingStore
from chatbridge.store.turns import TurnStore
from chatbridge.store.webchat import WebchatStore


class Store(RoutingStore, ConversationStore, TurnStore, OutboxStore, WebchatStore, CommsStore):
    """Async access to the database. One instance per process; ``migrate()`` before use."""
