"""A turn from the moment it is sent until it is answered, and the decisions about its answer.

- ``PendingTurn`` is the hub's record of one turn in flight: the request, the future its
  callers wait on (``settle()``), where and when it was sent, the streamed chunks so far.
  ``open_turn()`` finds the one an agent's frame answers; ``resume_on()`` decides which ones
  an agent that reconnects with ``resume_from`` already has.
- ``drive()`` sends it on the agent's current link, sends the same frame again on each new
  link after a reconnect, and waits for the answer until the turn's deadline.
- ``ConversationSlots`` keeps one turn per conversation on the wire at a time.
- Without I/O: ``assemble_stream()`` joins streamed chunks, ``outcome_of()`` maps a
  turn-ending frame to an ``AgentOutcome``, ``placed()`` puts a live frame (protocol 1.3) in
  its conversation, ``percentile()`` summarises answer latencies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from chatbridge.errors import AgentError, AgentTimeout, AgentUnavailable
from chatbridge.models import JsonObject
from chatbridge.protocol import (
    AgentComplete,
    AgentHandoff,
    AgentMessage,
    ErrorMessage,
    Handoff,
    NoReply,
)
from chatbridge.richdata import dump_rich_data
from chatbridge.transports.base import AgentOutcome, TurnRequest
from chatbridge.transports.links import Link, LinkClosed
from chatbridge.transports.log import log_event

# ----------------------------------------------------------------------------------------------
# decisions without I/O


class StreamGap(ValueError):
    """Streamed chunks do not count 0, 1, 2 … without a hole."""

    def __init__(self, missing: list[int]) -> None:
        super().__init__(f"missing stream chunks {missing}")
        self.missing = missing


def assemble_stream(chunks: Mapping[int, str]) -> str:
    """Join streamed chunks in ``stream_index`` order.

    Raises:
        StreamGap: an index between 0 and the highest one received is missing.
    """
    if not chunks:
        return ""
    highest = max(chunks)
    if len(chunks) != highest + 1:
        missing = [i for i in range(highest + 1) if i not in chunks][:20]
        raise StreamGap(missing)
    return "".join(chunks[i] for i in range(highest + 1))


def _with_extras(outcome: AgentOutcome, frame: AgentMessage | AgentComplete) -> AgentOutcome:
    """``outcome`` with the reply's template and choices (protocol 1.2) and rich data (1.3),
    as plain JSON."""
    if frame.template is not None:
        outcome.template = frame.template.model_dump(mode="json", exclude_none=True)
    if frame.interactive is not None:
        outcome.interactive = frame.interactive.model_dump(mode="json", exclude_none=True)
    if frame.data is not None:
        outcome.data = dump_rich_data(frame.data)
    return outcome


def placed(frame: JsonObject, turn_conversation: str | None) -> JsonObject | None:
    """A live frame (``status_update``, ``progress_update``, ``file_*``) with the conversation
    it belongs to, ready for ``on_live``.

    Args:
        frame: the frame as JSON.
        turn_conversation: the conversation of the open turn its ``message_id`` names, if any;
            it wins over a ``conversation_id`` the agent sent along.

    Returns:
        The frame with ``conversation_id`` set; None when it names a turn that is not open
        (answered already: a late status would outlive the reply it announces) or names
        neither a turn nor a conversation (nowhere to show it). Such frames are dropped.
    """
    if turn_conversation is not None:
        return {**frame, "conversation_id": turn_conversation}
    if frame.get("message_id") is not None:
        return None
    if isinstance(frame.get("conversation_id"), str) and frame["conversation_id"]:
        return frame
    return None


def outcome_of(
    frame: AgentMessage | AgentComplete | Handoff | AgentHandoff | NoReply | ErrorMessage,
    chunks: Mapping[int, str],
) -> AgentOutcome:
    """How a turn-ending frame ends its turn; ``chunks`` are the turn's streamed pieces.

    ``agent_complete`` without ``content`` is the chunks joined in order; a hole in them makes
    the outcome an error (``stream_gap``) rather than a reply with text missing.
    """
    meta = frame.metadata or {}
    count = len(chunks)
    match frame:
        case AgentMessage():
            return _with_extras(
                AgentOutcome(
                    "reply", frame.content, frame.attachments, meta, streamed_chunks=count
                ),
                frame,
            )
        case AgentComplete(content=str(text)):
            return _with_extras(
                AgentOutcome("reply", text, frame.attachments, meta, streamed_chunks=count), frame
            )
        case AgentComplete():
            try:
                text = assemble_stream(chunks)
            except StreamGap as gap:
                return AgentOutcome(
                    "error",
                    metadata=meta,
                    error_code="stream_gap",
                    error_details={"missing": gap.missing},
                    streamed_chunks=count,
                )
            return _with_extras(
                AgentOutcome("reply", text, frame.attachments, meta, streamed_chunks=count), frame
            )
        case Handoff():
            return AgentOutcome(
                "handoff",
                frame.content,
                metadata=meta,
                reason=frame.reason,
                streamed_chunks=count,
                summary=frame.summary,
            )
        case AgentHandoff():
            return AgentOutcome(
                "agent_handoff",
                frame.content,
                metadata=meta,
                reason=frame.reason,
                streamed_chunks=count,
                to_agent=frame.to_agent,
                to_role=frame.to_role,
            )
        case NoReply():
            return AgentOutcome("no_reply", metadata=meta, streamed_chunks=count)
        case ErrorMessage():
            return AgentOutcome(
                "error",
                metadata=meta,
                error_code=frame.error_code,
                error_details=frame.error_details,
                streamed_chunks=count,
            )


# ----------------------------------------------------------------------------------------------
# turns in flight


@dataclass(eq=False, slots=True)
class PendingTurn:
    """One turn in flight: sent (or waiting to be sent) and not yet answered."""

    req: TurnRequest
    result: asyncio.Future[AgentOutcome]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sent_on: Link | None = None
    sent_at: float | None = None
    outcome: AgentOutcome | None = None
    error: AgentError | None = None
    chunks: dict[int, str] = field(default_factory=dict)
    acked: bool = False  # the agent sent ``ack`` for this turn's seq: it has the turn
    failed: asyncio.Event = field(default_factory=asyncio.Event)  # set with ``error``

    def fail(self, error: AgentError) -> bool:
        """End the turn with ``error`` (``drive()`` raises it, even while the turn still
        queues for its conversation's slot), unless it has ended already.

        Returns:
            Whether this ended it.
        """
        if self.outcome is None and self.error is None:
            self.error = error
            self.wake.set()
            self.failed.set()
            return True
        return False


def open_turn(turns: Mapping[str, PendingTurn], agent_id: str, key: str) -> PendingTurn | None:
    """The agent's in-flight, not yet answered turn with this key."""
    turn = turns.get(key)
    if turn is None or turn.req.agent_id != agent_id:
        return None
    if turn.outcome is not None or turn.error is not None:
        return None
    return turn


def resume_on(
    link: Link, turns: Iterable[PendingTurn], agent_id: str, resume_from: int, trust_mark: bool
) -> None:
    """Count the turns the agent already has as sent on ``link``, its new connection.

    The agent answers those on the new link, so ``drive()`` does not send them again. Only
    turns that went out on a connection of the same name (``link_id``; None for an unnamed
    one) are resumed: the agent sends again the answers kept for that connection, not for
    its others, which may lead to another replica or have been given up. A turn that went
    out under another name is sent again (``drive()``, once its link is closed), which the
    agent answers from the answer it kept.

    Args:
        resume_from: the highest seq the agent saw (its ``hello``).
        trust_mark: the agent never acked, so ``resume_from`` is all we know.
    """
    # ``resume_from`` is the highest seq the agent saw, but seq (the turn id) does not go out
    # in order: a conversation's next turn waits for its previous one while later turns of
    # other conversations are sent. So a lower seq sent last may have died with the old link.
    # An agent that acks tells us per turn; only for agents that never ack is the high-water
    # mark all we know. (A resend is harmless: the agent treats a repeated message_id as the
    # same turn.)
    for turn in turns:
        if (
            turn.req.agent_id == agent_id
            and turn.sent_at is not None
            and turn.sent_on is not None
            and turn.sent_on.link_id == link.link_id
            and turn.req.seq <= resume_from
            and (turn.acked or trust_mark)
        ):
            turn.sent_on = link


def settle(result: asyncio.Future[AgentOutcome], value: AgentOutcome | AgentError) -> None:
    """Give a turn's callers ``value`` (an outcome or the error to raise), unless they have one."""
    if result.done():
        return
    if isinstance(value, AgentOutcome):
        result.set_result(value)
    else:
        result.set_exception(value)


def consume_exception(result: asyncio.Future[AgentOutcome]) -> None:
    """Done-callback of a turn's result future: its exception counts as retrieved."""
    # Joined callers may not exist; mark the exception retrieved so asyncio does not complain.
    if not result.cancelled():
        result.exception()


@dataclass(eq=False, slots=True)
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class ConversationSlots:
    """One turn per conversation on the wire at a time; later turns of it wait for the slot."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    @asynccontextmanager
    async def hold(self, turn: PendingTurn) -> AsyncIterator[None]:
        """Hold the conversation's slot: one turn per conversation on the wire at a time."""
        cid = turn.req.conversation_id
        slot = self._slots.get(cid)
        if slot is None:
            slot = self._slots[cid] = _Slot()
        slot.users += 1
        try:
            if slot.lock.locked():
                log_event(
                    logging.WARNING,
                    "turn queued behind another turn of its conversation",
                    turn.req.agent_id,
                    turn.req.turn_key,
                    conversation_id=cid,
                )
            if not await _acquire(slot.lock, turn, alone=slot.users == 1):
                if turn.error is not None:
                    raise turn.error
                raise AgentUnavailable(
                    f"conversation {cid!r} still busy with another turn at the deadline"
                )
            try:
                yield
            finally:
                slot.lock.release()
        finally:
            slot.users -= 1
            if slot.users == 0 and self._slots.get(cid) is slot:
                del self._slots[cid]


async def _acquire(lock: asyncio.Lock, turn: PendingTurn, *, alone: bool) -> bool:
    """Take ``lock`` for ``turn`` unless the turn fails (is cancelled) or its deadline passes
    first; False then, with the lock not taken. ``alone``: nobody else holds or waits for
    the lock, so it is taken at once (the common case, without the race below)."""
    if turn.error is not None:
        return False
    if alone:
        await lock.acquire()
        return True
    acquiring = asyncio.ensure_future(lock.acquire())
    failing = asyncio.ensure_future(turn.failed.wait())
    got = False
    try:
        await asyncio.wait(
            {acquiring, failing},
            timeout=max(0.0, turn.req.deadline - time.time()),
            return_when=asyncio.FIRST_COMPLETED,
        )
        got = acquiring.done() and not acquiring.cancelled() and turn.error is None
    finally:
        failing.cancel()
        if not acquiring.done():
            acquiring.cancel()  # a cancelled acquire passes the lock on to the next waiter
        elif not got and not acquiring.cancelled():
            lock.release()  # taken just as the turn ended or our caller was cancelled
    return got


async def drive(
    turn: PendingTurn,
    slots: ConversationSlots,
    link_for: Callable[[PendingTurn], Link | None],
) -> AgentOutcome:
    """Send ``turn`` to its agent and wait until it is answered or its deadline passes.

    Holds the conversation's slot throughout. Whenever ``link_for(turn)`` is a link the turn
    was not sent on yet (the first one, or another after the one it went out on closed),
    ``req.frame`` goes out on it. In between it sleeps on ``turn.wake``, which is set by the
    answer, by a failure and by every connect and disconnect of the agent.

    Returns:
        ``turn.outcome`` once the answer has set it.

    Raises:
        AgentError: ``turn.error``, once something (hub stopping, agent removed) has set it.
        AgentUnavailable: the frame could not be sent before the deadline.
        AgentTimeout: it was sent but not answered in time.
    """
    req = turn.req
    async with slots.hold(turn):
        while True:
            turn.wake.clear()
            if turn.error is not None:
                raise turn.error
            if turn.outcome is not None:
                return turn.outcome
            remaining = req.deadline - time.time()
            if remaining <= 0:
                if turn.sent_at is None:
                    raise AgentUnavailable(
                        f"agent {req.agent_id!r} not reachable before the deadline"
                    )
                raise AgentTimeout(f"agent {req.agent_id!r} did not answer in time")
            link = link_for(turn)
            if link is not None and turn.sent_on is not link:
                turn.sent_on = link
                try:
                    async with asyncio.timeout(remaining):
                        await link.send(req.frame)
                except (LinkClosed, TimeoutError):
                    continue
                if turn.sent_at is None:
                    turn.sent_at = time.monotonic()
                    log_event(
                        logging.DEBUG,
                        "turn sent",
                        req.agent_id,
                        req.turn_key,
                        conversation_id=req.conversation_id,
                    )
                else:
                    log_event(
                        logging.INFO,
                        "turn re-sent on a new connection",
                        req.agent_id,
                        req.turn_key,
                    )
                continue
            with suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await turn.wake.wait()
