"""``LinkedTransport``: an agent reached over WebSocket links, whichever side dialed.

The two WebSocket transports differ only in how a connection opens (``dial_out``: the bridge
keeps dialing the agent; ``dial_in``: the agent connects to ``GET /api/ws/agent``). Either way
the open connection becomes a ``Link`` (``links``) and runs the same loop here: read frames,
answer pings, send a ping every heartbeat, drop the link after ``DEAD_AFTER_INTERVALS`` silent
intervals.

An agent may have several links here at once (a dial-in agent's connections, each named by
its ``link_id``; a newer connection with the same id, or an unnamed one replacing an unnamed
one, closes the older). A turn is sent on one of them and waits for its ending frame. If that
link dies first, the same frame (same ``message_id``) goes out again on another or the next
link, until the deadline; the agent treats the repeat as the same turn (``turns.drive``).

``cancel_turn`` ends a waiting turn at once (``TurnCancelled``) and, if the turn went out,
sends the agent a ``cancel`` frame (protocol 1.1) on the link it went out on, else the newest;
an answer that still comes for it is dropped like any answer to an ended turn.

Frames that are not the answer to a turn go to the context's callbacks (proactive messages,
typing, streamed chunks; since protocol 1.3 live frames, placed in the conversation of the turn
they name, and notices). They are awaited in the read loop, which keeps their order; they
should be quick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Awaitable
from typing import TypeVar

from chatbridge.errors import AgentError, AgentUnavailable, TurnCancelled
from chatbridge.models import JsonObject
from chatbridge.protocol import (
    Ack,
    AgentComplete,
    AgentHandoff,
    AgentMessage,
    AgentStreaming,
    ErrorMessage,
    FileComplete,
    FileError,
    FileProcessing,
    Handoff,
    Hello,
    NoReply,
    Ping,
    Pong,
    ProgressUpdate,
    ProtocolError,
    StatusUpdate,
    SystemMessage,
    Typing,
    WarningMessage,
    error_frame,
    parse_agent_frame,
    utc_now_iso,
)
from chatbridge.transports import links
from chatbridge.transports.base import AgentOutcome, AgentTransport, TurnRequest
from chatbridge.transports.context import TransportContext
from chatbridge.transports.links import Link, LinkClosed, frame_too_large
from chatbridge.transports.log import log_event
from chatbridge.transports.turns import (
    PendingTurn,
    consume_exception,
    drive,
    open_turn,
    outcome_of,
    placed,
    resume_on,
    settle,
)

_T = TypeVar("_T")

SHUTDOWN = "bridge shutting down"
"""``aclose()``'s default reason; links closed for it get 1001 (going away), others 1000."""
STOP_TIMEOUT = 5.0
"""Seconds ``aclose()`` waits for links to finish closing before cancelling."""


class LinkedTransport(AgentTransport):
    """The WebSocket side both ``DialOutTransport`` and ``DialInTransport`` share."""

    def __init__(
        self,
        agent_id: str,
        url: str | None,
        options: JsonObject | None,
        context: TransportContext,
    ) -> None:
        super().__init__(agent_id, url, options)
        self.context = context
        self.links: list[Link] = []  # open links here, oldest first
        self.last_ack: int | None = None
        self._turns: dict[str, PendingTurn] = {}
        self._background: set[asyncio.Task[object]] = set()

    # -- the AgentTransport side ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return not self.closed and self.newest_link() is not None

    def in_flight(self) -> int:
        return len(self._turns)

    def newest_link(self) -> Link | None:
        """The most recent link that is still open, if any."""
        for link in reversed(self.links):
            if not link.closed.is_set():
                return link
        return None

    async def run_turn(self, req: TurnRequest) -> AgentOutcome:
        """Send the turn on a link (again on the next one if that one drops) and wait for the
        answer (see the module docstring). A second call with a turn key already in flight
        waits for the first call's result instead of sending again."""
        if self.closed:
            raise AgentUnavailable(f"agent {self.agent_id!r} transport is closed")
        existing = self._turns.get(req.turn_key)
        if existing is not None:
            log_event(
                logging.INFO, "turn already in flight, joining it", req.agent_id, req.turn_key
            )
            return await asyncio.shield(existing.result)
        result: asyncio.Future[AgentOutcome] = asyncio.get_running_loop().create_future()
        result.add_done_callback(consume_exception)
        turn = PendingTurn(req, result)
        self._turns[req.turn_key] = turn
        try:
            outcome = await drive(turn, self.context.slots, self._link_for)
        except AgentError as exc:
            settle(result, exc)
            raise
        except BaseException:
            settle(result, AgentUnavailable("turn abandoned by its caller"))
            raise
        finally:
            if self._turns.get(req.turn_key) is turn:
                del self._turns[req.turn_key]
        settle(result, outcome)
        return outcome

    def cancel_turn(self, turn_key: str, conversation_id: str, reason: str = "superseded") -> bool:
        turn = open_turn(self._turns, self.agent_id, turn_key)
        if turn is None or not turn.fail(TurnCancelled(turn_key, reason)):
            return False
        log_event(logging.INFO, "turn cancelled", self.agent_id, turn_key, reason=reason)
        if turn.sent_at is not None:  # the agent has it (or may): tell it to stop
            link = self._link_for(turn)
            if link is not None:
                frame: JsonObject = {
                    "type": "cancel",
                    "message_id": turn_key,
                    "conversation_id": conversation_id,
                    "reason": reason,
                    "timestamp": utc_now_iso(),
                }
                self._spawn(self._send_quietly(link, frame))
        return True

    @staticmethod
    async def _send_quietly(link: Link, frame: JsonObject) -> None:
        try:
            await link.send(frame)
        except LinkClosed:
            pass  # gone with the link: the agent's turn goes with it (not sent again)

    async def send_event(self, frame: JsonObject) -> bool:
        link = self.newest_link()
        if link is None:
            return False
        try:
            await link.send(frame)
        except LinkClosed:
            return False
        return True

    def close_link(self, link_id: str) -> None:
        for link in list(self.links):
            if link.link_id == link_id:
                log_event(
                    logging.INFO,
                    "agent re-opened this connection on another replica",
                    self.agent_id,
                )
                self._spawn(link.close(1000, "replaced by a newer connection"))

    async def aclose(self, reason: str = SHUTDOWN) -> None:
        """Fail waiting turns, close every link (1001 on shutdown), wait for them, bounded."""
        self.closed = True
        for turn in list(self._turns.values()):
            turn.fail(AgentUnavailable(f"agent {self.agent_id!r}: {reason}"))
        self.close_links(1001 if reason == SHUTDOWN else 1000, reason)
        pending = {t for t in self._background if not t.done()}
        if pending:
            _, still = await asyncio.wait(pending, timeout=STOP_TIMEOUT)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)

    def close_links(self, code: int, reason: str) -> None:
        """Start closing every link (in the background)."""
        for link in self.links:
            self._spawn(link.close(code, reason))

    # -- links ---------------------------------------------------------------------------------

    async def serve_link(
        self, link: Link, frames: AsyncIterable[str | bytes], resume_from: int | None
    ) -> None:
        """Run the protocol on one open link until it closes, then forget it."""
        if self.closed:
            await link.close(1001, "agent not configured")
            return
        self._attach(link, resume_from)
        settings = self.context.settings
        heartbeat = asyncio.create_task(
            links.heartbeat(link, self.agent_id, settings.heartbeat_interval)
        )
        reader = asyncio.create_task(self._read(link, frames))
        closed = asyncio.create_task(link.closed.wait())
        try:
            await asyncio.wait({reader, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (heartbeat, reader, closed):
                task.cancel()
            await asyncio.gather(heartbeat, reader, closed, return_exceptions=True)
            self._detach(link)
            await link.close(1000, "")

    def _link_for(self, turn: PendingTurn) -> Link | None:
        """The link ``turn`` goes out on: the one it was sent on while that stays open here,
        else the agent's newest open link."""
        sent_on = turn.sent_on
        if sent_on is not None and not sent_on.closed.is_set() and sent_on in self.links:
            return sent_on
        return self.newest_link()

    def _attach(self, link: Link, resume_from: int | None) -> None:
        for old in self.links:
            # The same connection opened again (same link id; or, unnamed, the agent's one
            # connection here): the old one is dead or about to be.
            if old is not link and old.link_id == link.link_id:
                log_event(logging.INFO, "new connection replaces the old one", self.agent_id)
                self._spawn(old.close(1000, "replaced by a newer connection"))
        if resume_from is not None:
            trust_mark = self.last_ack is None
            resume_on(link, self._turns.values(), self.agent_id, resume_from, trust_mark)
        self.links.append(link)
        self.stats.last_seen = time.time()
        self.context.metrics.agent_connected.labels(self.agent_id).set(1)
        self._wake_turns()
        self.context.link_changed(self.agent_id, True, link.link_id)

    def _detach(self, link: Link) -> None:
        if link not in self.links:
            return
        self.links.remove(link)
        if self.newest_link() is None:
            self.context.metrics.agent_connected.labels(self.agent_id).set(0)
            log_event(logging.INFO, "agent disconnected", self.agent_id)
        self._wake_turns()
        self.context.link_changed(self.agent_id, False, link.link_id)

    def _wake_turns(self) -> None:
        for turn in self._turns.values():
            turn.wake.set()

    async def _read(self, link: Link, frames: AsyncIterable[str | bytes]) -> None:
        limit = self.context.settings.ws_max_frame_bytes
        try:
            async for data in frames:
                link.last_rx = time.monotonic()
                self.stats.last_seen = time.time()
                if frame_too_large(data, limit):
                    log_event(
                        logging.WARNING, "frame too large, closing", self.agent_id, limit=limit
                    )
                    await link.close(1009, "frame too large")
                    return
                try:
                    await self._on_frame(link, data)
                except LinkClosed:
                    return
                except Exception:
                    log_event(
                        logging.ERROR, "failed to handle agent frame", self.agent_id, exc_info=True
                    )
        except Exception as exc:  # the connection broke (ConnectionClosedError and friends)
            log_event(
                logging.INFO, "agent connection lost", self.agent_id, error=type(exc).__name__
            )

    # -- frames from the agent -----------------------------------------------------------------

    async def _on_frame(self, link: Link, data: str | bytes) -> None:
        aid = self.agent_id
        ctx = self.context
        try:
            frame = parse_agent_frame(data)
        except ProtocolError as exc:
            log_event(logging.INFO, "bad frame from agent", aid, code=exc.code)
            details: JsonObject = {"message": exc.message}
            if exc.details is not None:
                details["errors"] = exc.details
            await link.send(error_frame(exc.code, details=details))
            return
        match frame:
            case (
                AgentMessage(message_id=str())
                | Handoff(message_id=str())
                | AgentHandoff(message_id=str())
                | ErrorMessage(message_id=str())
                | AgentComplete()
                | NoReply()
            ):
                self._answer(frame)
            case AgentMessage() | Handoff() | AgentHandoff():
                if frame.conversation_id is None:
                    problem = f"{frame.type} needs message_id or conversation_id"
                    await link.send(error_frame("invalid_message", details={"message": problem}))
                    return
                proactive = frame.model_dump(mode="json", exclude_none=True)
                await self._callback(ctx.on_proactive(aid, proactive))
            case AgentStreaming():
                await self._on_stream_chunk(frame)
            case ErrorMessage(error_code="unknown_type") if "cancel" in str(frame.error_details):
                pass  # an agent older than protocol 1.1 does not know ``cancel``: fine
            case ErrorMessage():
                log_event(logging.WARNING, "agent reported an error", aid, code=frame.error_code)
            case Typing():
                await self._callback(ctx.on_typing(aid, frame.conversation_id, frame.on))
            case (
                StatusUpdate() | ProgressUpdate() | FileProcessing() | FileComplete() | FileError()
            ):
                await self._on_live(frame)
            case SystemMessage() | WarningMessage():
                notice = frame.model_dump(mode="json", exclude_none=True)
                await self._callback(ctx.on_notice(aid, notice))
            case Ping():
                await link.send({"type": "pong", "timestamp": utc_now_iso()})
            case Ack():
                if self.last_ack is None or frame.seq > self.last_ack:
                    self.last_ack = frame.seq
                for turn in self._turns.values():
                    if turn.req.seq == frame.seq:
                        turn.acked = True
            case Pong() | Hello():
                pass

    async def _on_live(
        self, frame: StatusUpdate | ProgressUpdate | FileProcessing | FileComplete | FileError
    ) -> None:
        key = frame.message_id
        turn = open_turn(self._turns, self.agent_id, key) if key is not None else None
        live = placed(
            frame.model_dump(mode="json", exclude_none=True),
            turn.req.conversation_id if turn is not None else None,
        )
        if live is None:
            log_event(logging.DEBUG, f"{frame.type} for no open turn ignored", self.agent_id, key)
            return
        await self._callback(self.context.on_live(self.agent_id, live))

    def _answer(
        self,
        frame: AgentMessage | AgentComplete | Handoff | AgentHandoff | NoReply | ErrorMessage,
    ) -> None:
        key = frame.message_id
        turn = open_turn(self._turns, self.agent_id, key) if key is not None else None
        if turn is None or key is None:
            self.context.metrics.agent_replies_dropped.labels(self.agent_id).inc()
            log_event(
                logging.INFO, "reply for an unknown or answered turn dropped", self.agent_id, key
            )
            return
        outcome = outcome_of(frame, turn.chunks)
        if outcome.error_code == "stream_gap":
            log_event(logging.WARNING, "streamed reply has gaps", self.agent_id, key)
        self._finish(turn, outcome)

    def _finish(self, turn: PendingTurn, outcome: AgentOutcome) -> None:
        turn.outcome = outcome
        turn.wake.set()
        if turn.sent_at is not None:
            elapsed = time.monotonic() - turn.sent_at
            self.stats.record(elapsed)
            self.context.metrics.turn_seconds.labels(self.agent_id).observe(elapsed)
        else:
            self.stats.answered += 1
        log_event(
            logging.DEBUG,
            "turn answered",
            self.agent_id,
            turn.req.turn_key,
            outcome=outcome.kind,
            conversation_id=turn.req.conversation_id,
        )

    async def _on_stream_chunk(self, frame: AgentStreaming) -> None:
        turn = open_turn(self._turns, self.agent_id, frame.message_id)
        if turn is None:
            log_event(
                logging.DEBUG, "chunk for no open turn ignored", self.agent_id, frame.message_id
            )
            return
        if frame.stream_index in turn.chunks:
            return  # a repeat after a resend: same chunk, already seen
        turn.chunks[frame.stream_index] = frame.content
        on_chunk = self.context.on_chunk
        if on_chunk is not None:
            req = turn.req
            await self._callback(
                on_chunk(req.turn_key, req.conversation_id, frame.stream_index, frame.content)
            )

    async def _callback(self, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception:
            log_event(logging.ERROR, "agent callback failed", self.agent_id, exc_info=True)

    def _spawn(self, coro: Awaitable[_T]) -> asyncio.Task[_T]:
        task: asyncio.Task[_T] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
