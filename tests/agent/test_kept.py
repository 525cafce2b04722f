"""Which kept answers a dialing-in agent sends again after a new ``hello_ok`` (no sockets)."""

from __future__ import annotations

from typing import Any, cast

from chatbridge.agent.kept import KeptAnswers
from chatbridge.agent.peer import Peer
from chatbridge.protocol import DEAD_AFTER_INTERVALS

HEARTBEAT = 10.0
WINDOW = DEAD_AFTER_INTERVALS * HEARTBEAT


def peer(
    link_id: str | None = "a-0", *, dial_in: bool = True, closed_at: float | None = None
) -> Peer:
    p = Peer(cast(Any, None), dial_in=dial_in, heartbeat_interval=HEARTBEAT, link_id=link_id)
    if closed_at is not None:
        p.open, p.closed_at = False, closed_at
    return p


def key(n: int) -> tuple[str, str, str]:
    return ("c_1", f"t_{n}", "")


def frames(n: int) -> list[dict[str, Any]]:
    return [{"type": "agent_message", "message_id": f"t_{n}", "content": str(n)}]


def test_an_answer_never_sent_goes_out_on_the_new_connection() -> None:
    kept = KeptAnswers(10)
    old = peer(closed_at=1000.0)
    unsent = kept.keep(key(1), frames(1), old)
    assert kept.to_resend(peer(), old) == [unsent]


def test_an_answer_sent_just_before_the_connection_died_goes_out_again() -> None:
    kept = KeptAnswers(10)
    old = peer(closed_at=1000.0)
    late = kept.keep(key(1), frames(1), old)
    late.delivered, late.sent_at = True, 1000.0 - WINDOW + 1
    early = kept.keep(key(2), frames(2), old)
    early.delivered, early.sent_at = True, 1000.0 - WINDOW - 1
    assert kept.to_resend(peer(), old) == [late]


def test_answers_of_other_connections_stay_where_they_are() -> None:
    kept = KeptAnswers(10)
    kept.keep(key(1), frames(1), peer("a-1"))  # another named connection: maybe another replica
    kept.keep(key(2), frames(2), peer(None, dial_in=False))  # a connection the bridge dialed
    assert kept.to_resend(peer("a-0"), None) == []


def test_an_answer_delivered_on_a_connection_still_counted_alive_is_not_sent_again() -> None:
    kept = KeptAnswers(10)
    other = peer()
    answer = kept.keep(key(1), frames(1), other)
    answer.sent_on(other)
    assert kept.to_resend(peer(), None) == []


def test_the_oldest_answer_is_dropped_and_a_lookup_keeps_one_young() -> None:
    kept = KeptAnswers(2)
    link = peer()
    kept.keep(key(1), frames(1), link)
    kept.keep(key(2), frames(2), link)
    assert kept.get(key(1)) is not None  # now the most recently used
    kept.keep(key(3), frames(3), link)
    assert kept.get(key(2)) is None
    assert [a.frames for a in kept.to_resend(link, None)] == [frames(1), frames(3)]
