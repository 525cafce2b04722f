"""``Store``: async access to the database — the queue *is* the database.

See ``turns`` for why Chatbridge keeps its own outbox and leases, and how claiming works.
"""

from __future__ import annotations

from chatbridge.store.broadcasts import BroadcastStore
from chatbridge.store.canned_replies import CannedReplyStore
from chatbridge.store.conversations import ConversationStore
from chatbridge.store.crm import CrmStore
from chatbridge.store.hot import GroupCommit
from chatbridge.store.media import MediaStore
from chatbridge.store.operators import OperatorStore
from chatbridge.store.outage import is_outage
from chatbridge.store.outbox import OutboxStore
from chatbridge.store.routing import RoutingStore
from chatbridge.store.templates import TemplateStore
from chatbridge.store.transcriptions import TranscriptionStore
from chatbridge.store.turns import TurnStore
from chatbridge.store.webchat import WebchatStore


class Store(
    RoutingStore,
    ConversationStore,
    TurnStore,
    OutboxStore,
    WebchatStore,
    CrmStore,
    TranscriptionStore,
    MediaStore,
    TemplateStore,
    BroadcastStore,
    OperatorStore,
    CannedReplyStore,
):
    """Async access to the database. One instance per process; ``migrate()`` before use."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        super().__init__(url, echo=echo)
        # The per-message writes, each group-committed (see ``hot.GroupCommit``).
        n = 1 if self.is_sqlite else 3
        self._ingests = GroupCommit(
            self._hot_tx,
            self._ingest_one,
            many=self._ingest_many,
            is_outage=is_outage,
            concurrency=n,
        )
        self._completions = GroupCommit(
            self._hot_tx,
            self._complete_one,
            many=self._complete_many,
            is_outage=is_outage,
            concurrency=n,
        )
        self._finishes = GroupCommit(
            self._hot_tx,
            self._finish_one,
            many=self._finish_many,
            is_outage=is_outage,
            concurrency=n,
        )
