"""Debounce windows and in-flight policies, decided as a pure function.

Why our own: the window must live in the database so a crash, or a burst spread over
several replicas, still yields one turn. It is simply a pending turn whose ``available_at``
lies in the future: the claim never takes it before then, and a message arriving meanwhile
is added to it (``message_ids``) and pushes ``available_at`` on — up to the cap. The
ingest transaction holds the conversation's row (its upsert locks it on PostgreSQL; SQLite
has one writer), so two messages of one conversation are planned one after the other,
whichever replica took them. ``plan_window`` is that planning, without I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from chatbridge.policies.model import RoutePolicies


@dataclass(frozen=True, slots=True)
class OpenTurn:
    """A conversation's turn that is not finished: ``pending`` or ``leased``."""

    id: int
    state: str  # pending | leased
    attempts: int
    created_at: float
    available_at: float
    message_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """What an inbound message does to its conversation's turns.

    - ``new``: insert a turn for it, claimable at ``available_at``;
    - ``merge``: add it to unstarted turn ``turn_id`` and make that claimable at
      ``available_at``;
    - ``supersede``: cancel turn ``turn_id`` — leased, or waiting to be retried — (its reply
      will be discarded) and insert one turn carrying ``carried`` (the cancelled turn's
      messages) before this one.
    """

    action: Literal["new", "merge", "supersede"]
    available_at: float
    turn_id: int | None = None
    carried: tuple[str, ...] = field(default=())


def plan_window(
    open_turns: list[OpenTurn], *, now: float, policies: RoutePolicies, closes: bool
) -> WindowPlan:
    """Plan one inbound message of a conversation (``open_turns``: its unfinished turns).

    ``closes``: the message ends a debounce window at once (an attachment, a close keyword).
    """
    debounce = policies.debounce_ms / 1000
    cap = policies.max_wait_ms / 1000
    # the turn being answered: leased, or given back to be retried (a supersede takes both)
    leased = next((t for t in open_turns if t.state == "leased" or t.attempts > 0), None)
    # the newest turn no worker has started yet (a retried turn is not reopened)
    waiting = next(
        (t for t in reversed(open_turns) if t.state == "pending" and t.attempts == 0), None
    )

    def merged_until(turn: OpenTurn) -> float:
        if closes or not debounce:
            return min(turn.available_at, now)
        return min(max(turn.available_at, now + debounce), turn.created_at + cap)

    if waiting is not None:
        window_open = debounce > 0 and waiting.available_at > now
        holding = policies.in_flight != "queue"  # merge_next and supersede take any unstarted
        if window_open or holding:
            return WindowPlan("merge", merged_until(waiting), turn_id=waiting.id)
    fresh_until = now if closes or not debounce else now + min(debounce, cap)
    if leased is not None and policies.in_flight == "supersede" and waiting is None:
        return WindowPlan("supersede", fresh_until, turn_id=leased.id, carried=leased.message_ids)
    return WindowPlan("new", fresh_until)
