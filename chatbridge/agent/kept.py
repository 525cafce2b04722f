"""Answers a connected agent keeps, to send again after a reconnect (decisions, no I/O).

A WebSocket can die without either side noticing for a while, so an answer sent on it may
never reach the bridge. The agent keeps the last answers (by ``agent.identity.turn_key``) and
decides, when a named connection says ``hello`` again, which of them to send again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from chatbridge.agent.identity import TurnKey
from chatbridge.agent.peer import Peer
from chatbridge.models import JsonObject
from chatbridge.protocol import DEAD_AFTER_INTERVALS


@dataclass(eq=False, slots=True)
class KeptAnswer:
    """The frames that answered a turn, kept to answer a repeated turn without re-running."""

    frames: list[JsonObject]
    peer: Peer
    delivered: bool = False
    sent_at: float = 0.0

    def sent_on(self, peer: Peer) -> None:
        """Record that every frame went out on ``peer`` now."""
        self.peer, self.delivered, self.sent_at = peer, True, time.monotonic()


class KeptAnswers:
    """The last ``size`` answers, oldest dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._by_turn: OrderedDict[TurnKey, KeptAnswer] = OrderedDict()

    def get(self, key: TurnKey) -> KeptAnswer | None:
        """The kept answer of turn ``key`` (now the most recently used), if any."""
        answer = self._by_turn.get(key)
        if answer is not None:
            self._by_turn.move_to_end(key)
        return answer

    def keep(self, key: TurnKey, frames: list[JsonObject], peer: Peer) -> KeptAnswer:
        """Keep the answer of turn ``key``, which came on ``peer``."""
        answer = self._by_turn[key] = KeptAnswer(frames, peer)
        while len(self._by_turn) > self.size:
            self._by_turn.popitem(last=False)
        return answer

    def to_resend(self, peer: Peer, previous: Peer | None) -> list[KeptAnswer]:
        """The answers to send again on ``peer``, a named connection that just said ``hello``.

        The bridge does not re-send turns at or below ``resume_from``, so the agent covers the
        answers that could have been lost: those never sent, and those sent on the previous
        connection (``previous``) in the window a dying connection can stay unnoticed. Answers
        the bridge already had are dropped there. Only the answers to turns that came on this
        named connection: another one may lead to another replica.
        """
        window = DEAD_AFTER_INTERVALS * peer.heartbeat_interval
        chosen = []
        for answer in self._by_turn.values():
            if not answer.peer.dial_in or answer.peer.link_id != peer.link_id:
                continue
            recent = (
                answer.peer is previous
                and previous.closed_at is not None
                and answer.sent_at >= previous.closed_at - window
            )
            if not answer.delivered or recent:
                chosen.append(answer)
        return chosen
