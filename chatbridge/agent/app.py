"""``Agent``: registers handlers and speaks protocol ``chatbridge/1`` with one or more bridges.

Two ways to meet a bridge:

- ``dial_in(url, token)``: the agent connects to the bridge's ``/api/ws/agent``, says ``hello``
  (with ``resume_from`` = the last ``seq`` it saw) and reconnects with backoff when the
  connection drops. No inbound port needed on the agent's side. With ``connections=n`` it
  keeps n connections, which a load balancer spreads over the bridge's replicas (each runs
  turns on its own); each is named in its ``hello`` (``metadata.link_id``), so a replica
  still holding the old connection of a re-opened one closes it. The names are the agent's
  for its lifetime (``dial_in`` called again reuses those no running call holds), so an
  answer kept across a stop and a new ``dial_in`` goes out on the connection that resumes.
- ``serve(host, port)`` / ``serving(...)``: the agent is a WebSocket server the bridge dials
  (ws-dial-out).

A dialing-in agent's ``hello`` names the revision it speaks (1.3) and the features it wants
(protocol 1.3: ``status``, ``progress``, ``files``, ``file_events``, ``rich_data``,
``agent_handoff``, plus ``sessions`` / ``notices`` when it has an ``on_session`` /
``on_notice`` handler); a bridge from before 1.3 gets no live frames from it.

Each turn runs in its own task, so one slow answer never holds up the others. A ``cancel``
from the bridge (protocol 1.1: a newer customer message superseded the turn) marks the turn
cancelled (``Turn.cancelled``), cancels its task unless ``cancel_handlers=False``, and nothing
is sent for it. Answers are kept
(the last ``answer_cache_size``) so that a turn the bridge sends again after a reconnect is
answered from the cache instead of running the handler twice. They are remembered by the
turn's identity across bridges (``agent.identity.turn_key``), never by ``message_id`` alone,
so two bridges (or one whose database was reset) counting ``t_1, t_2, …`` from the same place
never get each other's answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from chatbridge.agent.answers import WholeAnswers
from chatbridge.agent.frames import (
    call_handler,
    chunk_frame,
    complete_frame,
    failure_frame,
    metadata,
    reply_frame,
)
from chatbridge.agent.identity import TurnKey, turn_key
from chatbridge.agent.kept import KeptAnswer, KeptAnswers
from chatbridge.agent.live import SDK_FEATURES, bridge_takes_live_frames
from chatbridge.agent.peer import Peer
from chatbridge.agent.turn import (
    Event,
    EventHandler,
    Handlers,
    MessageHandler,
    Notice,
    NoticeHandler,
    Session,
    SessionHandler,
    Turn,
)
from chatbridge.errors import ChatbridgeError
from chatbridge.models import JsonObject
from chatbridge.protocol import (
    DEAD_AFTER_INTERVALS,
    LEGACY_REVISION,
    LIVE_TYPES,
    NOTICE_TYPES,
    PROTOCOL,
    PROTOCOL_REVISION,
    Cancel,
    ConversationEvent,
    ErrorMessage,
    HelloError,
    HelloOk,
    Ping,
    ProtocolError,
    SessionCreated,
    SessionExpired,
    SessionUpdated,
    SystemMessage,
    UserMessage,
    WarningMessage,
    decode_frame,
    dumps,
    error_frame,
    parse_bridge_frame,
    reconnect_delay,
)

log = logging.getLogger("chatbridge.agent")

HELLO_TIMEOUT = 10.0
OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
_WEBHOOK_EXTRA = (
    "an http-webhook agent needs Starlette and uvicorn: pip install 'chatbridge[webhook]'"
)

H = TypeVar("H", bound=MessageHandler)
E = TypeVar("E", bound=EventHandler)
S = TypeVar("S", bound=SessionHandler)
N = TypeVar("N", bound=NoticeHandler)


class HelloRejected(ChatbridgeError):
    """The bridge refused the agent: ``hello_error`` (wrong token or unknown agent), a close
    with a policy code during the handshake, or an HTTP refusal of the WebSocket upgrade
    (401/403: the token; 404: the URL's path is not the bridge's agent endpoint).

    Reconnecting would not help, so ``dial_in()`` stops and raises this; its message is one
    line saying what to fix (``Agent.run`` prints it and exits with status 1).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"bridge refused the agent ({code}): {message}")
        self.code = code
        self.message = message


@dataclass(eq=False, slots=True)
class _Running:
    """A turn whose handler is still running; ``peer`` is where the bridge last sent it."""

    peer: Peer
    turn: Turn | None = None
    task: asyncio.Task[object] | None = None


class Agent:
    """A Chatbridge agent.

    Args:
        agent_id: the id the bridge knows this agent by.
        heartbeat_interval: seconds between pings when serving (a dialing-in agent uses the
            interval the bridge announces in ``hello_ok``).
        max_frame_bytes: larger incoming frames close the connection (1009).
        reconnect_initial_delay / reconnect_max_delay: dial-in backoff bounds.
        answer_cache_size: how many answered turns are remembered for resends.
        capabilities: announced in ``hello``.
        features: the protocol 1.3 features announced in ``hello``; by default all the SDK
            handles (see the module docstring).
        cancel_handlers: cancel a handler's task when the bridge cancels its turn (default);
            False lets it run to the end (its answer is dropped all the same).
    """

    def __init__(
        self,
        agent_id: str,
        *,
        heartbeat_interval: float = 20.0,
        max_frame_bytes: int = 1024 * 1024,
        reconnect_initial_delay: float = 0.5,
        reconnect_max_delay: float = 30.0,
        answer_cache_size: int = 1000,
        capabilities: Sequence[str] = ("streaming",),
        features: Sequence[str] | None = None,
        cancel_handlers: bool = True,
    ) -> None:
        self.agent_id = agent_id
        self.cancel_handlers = cancel_handlers
        self.heartbeat_interval = heartbeat_interval
        self.max_frame_bytes = max_frame_bytes
        self.reconnect_initial_delay = reconnect_initial_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.answer_cache_size = answer_cache_size
        self.capabilities = list(capabilities)
        self._features = list(features) if features is not None else None
        self.handlers = Handlers()
        self.answers = WholeAnswers(agent_id, self.handlers, answer_cache_size)
        """Turns answered whole (http-webhook), kept for repeats."""
        self._running: dict[TurnKey, _Running] = {}
        self._kept = KeptAnswers(answer_cache_size)
        self._tasks: set[asyncio.Task[object]] = set()
        self._peers: set[Peer] = set()
        self._dial_peers: dict[str, Peer] = {}  # link id -> its current (or last) connection
        self._link_prefix = os.urandom(6).hex()
        self._link_slots: set[int] = set()  # numbers of the names running dial-ins hold
        self._modes = 0
        self.last_seq: int | None = None
        """Highest ``seq`` seen; sent as ``resume_from`` when dialing in again."""

    # -- handlers ------------------------------------------------------------------------------

    def on_message(self, handler: H) -> H:
        """Register the turn handler (decorator). See ``chatbridge.agent.turn`` for results."""
        self.handlers.message = handler
        return handler

    def on_event(self, handler: E) -> E:
        """Register a ``conversation_event`` handler (decorator); returned text is sent to the
        conversation as a proactive ``agent_message``."""
        self.handlers.event = handler
        return handler

    def on_session(self, handler: S) -> S:
        """Register a handler for web chat sessions starting, changing and ending (decorator;
        protocol 1.3, feature ``sessions``). It gets a ``Session``; what it returns is
        ignored."""
        self.handlers.session = handler
        return handler

    def on_notice(self, handler: N) -> N:
        """Register a handler for notices the bridge puts into conversations (decorator;
        protocol 1.3, feature ``notices``). It gets a ``Notice``; what it returns is
        ignored."""
        self.handlers.notice = handler
        return handler

    @property
    def features(self) -> list[str]:
        """The protocol 1.3 features this agent announces (see the module docstring)."""
        if self._features is not None:
            return list(self._features)
        wanted = set(SDK_FEATURES)
        if self.handlers.session is not None:
            wanted.add("sessions")
        if self.handlers.notice is not None:
            wanted.add("notices")
        return sorted(wanted)

    # -- running -------------------------------------------------------------------------------

    def run(
        self,
        *,
        dial_in: str | None = None,
        token: str | None = None,
        serve: tuple[str, int] | None = None,
        webhook: tuple[str, int] | None = None,
        secret: str | None = None,
        connections: int = 1,
    ) -> None:
        """Run the agent until interrupted (Ctrl-C): dial in to a bridge (``connections``
        at once), serve a WebSocket the bridge dials, answer http-webhook POSTs
        (``webhook``, signed with ``secret``), or several of these."""
        if dial_in is None and serve is None and webhook is None:
            raise ValueError(
                "give dial_in=<bridge url> and token=..., serve=(host, port) "
                "or webhook=(host, port)"
            )
        if dial_in is not None and not token:
            raise ValueError("dial_in needs a token")

        async def main() -> None:
            try:
                async with asyncio.TaskGroup() as group:
                    if dial_in is not None and token is not None:
                        group.create_task(self.dial_in(dial_in, token, connections=connections))
                    if serve is not None:
                        group.create_task(self.serve(*serve))
                    if webhook is not None:
                        group.create_task(self.serve_webhook(*webhook, secret=secret))
            except ExceptionGroup as group:
                raise group.exceptions[0] from None  # the first failure, not a group of one

        _log_to_stderr()
        try:
            with suppress(KeyboardInterrupt):
                asyncio.run(main())
        except (HelloRejected, OSError) as exc:
            # one line saying what to fix, not a traceback (OSError: the port is taken)
            raise SystemExit(f"agent {self.agent_id}: {exc}") from None

    async def dial_in(
        self,
        url: str,
        token: str,
        *,
        stop: asyncio.Event | None = None,
        connections: int = 1,
    ) -> None:
        """Connect to a bridge's ``/api/ws/agent`` and stay connected until ``stop`` is set.

        Reconnects with exponential backoff and full jitter; after each ``hello_ok`` it sends
        again any answer that may not have reached the bridge.

        Args:
            connections: how many connections to keep. Behind a load balancer they spread
                over the bridge's replicas, and each replica runs turns on its own.

        Raises:
            HelloRejected: the bridge refused the token or the agent id.
        """
        if connections < 1:
            raise ValueError("connections must be at least 1")
        stop = stop or asyncio.Event()
        if connections == 1:
            await self._dial_in_link(url, token, stop)
            return
        tasks = [
            asyncio.create_task(self._dial_in_link(url, token, stop)) for _ in range(connections)
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                failure = task.exception()
                if failure is not None:
                    raise failure
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _dial_in_link(self, url: str, token: str, stop: asyncio.Event) -> None:
        """Keep one named connection to the bridge until ``stop`` is set (see ``dial_in``)."""
        slot = self._take_link_slot()
        link_id = f"{self._link_prefix}-{slot}"
        attempt = 0
        self._modes += 1
        try:
            while not stop.is_set():
                up_for = 0.0
                try:
                    async with connect(
                        url,
                        additional_headers={"Authorization": f"Bearer {token}"},
                        max_size=self.max_frame_bytes,
                        open_timeout=OPEN_TIMEOUT,
                        close_timeout=CLOSE_TIMEOUT,
                    ) as ws:
                        ok = await self._hello(ws, token, link_id, url)
                        peer = Peer(
                            ws,
                            dial_in=True,
                            heartbeat_interval=ok.heartbeat_interval,
                            link_id=link_id,
                            bridge_version=ok.version or LEGACY_REVISION,
                        )
                        started = time.monotonic()
                        await self._dial_in_session(peer, stop)
                        up_for = time.monotonic() - started
                        if up_for >= ok.heartbeat_interval:
                            attempt = 0
                except InvalidStatus as exc:
                    refusal = _refusal(url, exc.response.status_code)
                    if refusal is not None:
                        raise refusal from None
                    log.warning("connection to bridge failed: %s", exc)
                except (OSError, TimeoutError, WebSocketException, ProtocolError) as exc:
                    log.warning("connection to bridge failed: %s: %s", type(exc).__name__, exc)
                if stop.is_set():
                    break
                delay = reconnect_delay(
                    attempt, self.reconnect_initial_delay, self.reconnect_max_delay
                )
                attempt += 1
                with suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
        finally:
            self._modes -= 1
            self._link_slots.discard(slot)
            await self._cancel_turns_if_idle()

    def _take_link_slot(self) -> int:
        """The lowest connection number no running ``dial_in`` holds, now held.

        A connection's name is this agent's prefix and that number, so a later ``dial_in``
        resumes the connections of an earlier one under the same names: the bridge counts
        the turns that went out on them as the agent's, and the agent sends the answers it
        kept for them (``_resend_unconfirmed``). The last connection of each name stays in
        ``_dial_peers`` for that.
        """
        slot = 0
        while slot in self._link_slots:
            slot += 1
        self._link_slots.add(slot)
        return slot

    async def serve(
        self, host: str = "127.0.0.1", port: int = 8765, *, stop: asyncio.Event | None = None
    ) -> None:
        """Be a WebSocket server the bridge dials (ws-dial-out) until ``stop`` is set."""
        async with self.serving(host, port) as bound:
            log.info("listening on ws://%s:%d as agent %s", host, bound, self.agent_id)
            await (stop or asyncio.Event()).wait()

    @asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[int]:
        """Serve while the block runs; yields the bound port (``port=0`` picks a free one)."""
        async with ws_serve(
            self._on_connection,
            host,
            port,
            max_size=self.max_frame_bytes,
            close_timeout=CLOSE_TIMEOUT,
        ) as server:
            bound = int(next(iter(server.sockets)).getsockname()[1])
            self._modes += 1
            try:
                yield bound
            finally:
                self._modes -= 1
        await self._cancel_turns_if_idle()

    async def close_connections(self, code: int = 1001, reason: str = "agent going away") -> None:
        """Close every open bridge connection now (a dialing-in agent then reconnects)."""
        await asyncio.gather(*(peer.close(code, reason) for peer in list(self._peers)))

    # -- connections ---------------------------------------------------------------------------

    async def _hello(
        self, ws: ClientConnection, token: str, link_id: str, url: str = "the bridge"
    ) -> HelloOk:
        hello: JsonObject = {
            "type": "hello",
            "agent_id": self.agent_id,
            "token": token,
            "protocol": PROTOCOL,
            "capabilities": self.capabilities,
            "version": PROTOCOL_REVISION,
            "features": self.features,
            "metadata": {"link_id": link_id},
        }
        if self.last_seq is not None:
            hello["resume_from"] = self.last_seq
        await ws.send(dumps(hello))
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                data = await ws.recv()
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            if code == 1008 or (code is not None and 4000 <= code < 5000):
                reason = exc.rcvd.reason if exc.rcvd is not None else ""
                raise HelloRejected(f"closed {code}", reason or "refused") from None
            raise
        answer = parse_bridge_frame(data)
        if isinstance(answer, HelloError):
            raise HelloRejected(answer.error_code, answer.message)
        if not isinstance(answer, HelloOk):
            raise ProtocolError("bad_hello", f"expected hello_ok, got {answer.type}")
        log.info(
            "connected to %s as agent %s (heartbeat %gs, revision %s, features %s)",
            url,
            self.agent_id,
            answer.heartbeat_interval,
            answer.version or LEGACY_REVISION,
            ",".join(answer.features) or "none",
        )
        return answer

    async def _dial_in_session(self, peer: Peer, stop: asyncio.Event) -> None:
        assert peer.link_id is not None
        previous = self._dial_peers.get(peer.link_id)
        self._dial_peers[peer.link_id] = peer
        await self._resend_unconfirmed(peer, previous)
        reader = asyncio.create_task(self._run_peer(peer))
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not reader.done():
                await peer.close(1000, "agent stopping")
            await asyncio.gather(reader, stopper, return_exceptions=True)

    async def _resend_unconfirmed(self, peer: Peer, previous: Peer | None) -> None:
        """After a new ``hello_ok``, send again the answers the bridge may not have
        (``KeptAnswers.to_resend``)."""
        for answer in self._kept.to_resend(peer, previous):
            await self._send_answer(peer, answer)

    async def _on_connection(self, ws: ServerConnection) -> None:
        await self._run_peer(Peer(ws, dial_in=False, heartbeat_interval=self.heartbeat_interval))

    async def _run_peer(self, peer: Peer) -> None:
        """Read frames until the connection ends, with a heartbeat beside it."""
        self._peers.add(peer)
        heartbeat = asyncio.create_task(self._heartbeat(peer))
        try:
            async for data in peer.ws:
                peer.last_rx = time.monotonic()
                try:
                    await self._on_frame(peer, data)
                except Exception:
                    log.exception("failed to handle a bridge frame")
        except ConnectionClosed as exc:
            log.info("bridge connection closed: %s", exc)
        finally:
            peer.mark_closed()
            self._peers.discard(peer)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)

    async def _heartbeat(self, peer: Peer) -> None:
        interval = peer.heartbeat_interval
        while peer.open:
            await asyncio.sleep(interval)
            if time.monotonic() - peer.last_rx > DEAD_AFTER_INTERVALS * interval:
                log.warning("no traffic for %d heartbeats, closing", DEAD_AFTER_INTERVALS)
                await peer.close(1011, "heartbeat timeout")
                return
            if not await peer.send({"type": "ping"}):
                return

    # -- frames --------------------------------------------------------------------------------

    async def _on_frame(self, peer: Peer, data: str | bytes) -> None:
        try:
            obj = decode_frame(data)
            frame = parse_bridge_frame(obj)
        except ProtocolError as exc:
            log.warning("bad frame from bridge: %s", exc.message)
            if not _is_error_message(data):  # never answer an error with an error
                await peer.send(error_frame(exc.code, details={"message": exc.message}))
            return
        match frame:
            case UserMessage():
                await self._on_user_message(peer, frame, obj)
            case Cancel():
                self.cancel_turn(frame.message_id, frame.conversation_id, frame.reason)
            case Ping():
                await peer.send({"type": "pong"})
            case ConversationEvent():
                if self.handlers.event is not None:
                    self._spawn(self._run_event(peer, Event.from_message(frame, obj)))
            case SessionCreated() | SessionUpdated() | SessionExpired():
                if self.handlers.session is not None:
                    session = Session.from_message(frame, obj)
                    self._spawn(self._run_quietly(self.handlers.session, session, frame.type))
            case SystemMessage() | WarningMessage():
                if self.handlers.notice is not None:
                    notice = Notice.from_message(frame, obj)
                    self._spawn(self._run_quietly(self.handlers.notice, notice, frame.type))
            case ErrorMessage() if _refused_live_frame(frame):
                # A bridge before 1.3 that dialed us: it does not read live frames; stop
                # sending them on this connection.
                peer.bridge_version = LEGACY_REVISION
                log.info("the bridge does not read live frames (before protocol 1.3)")
            case ErrorMessage():
                log.warning("bridge reported error %s: %s", frame.error_code, frame.error_details)
            case _:
                pass  # pong; hello_ok / hello_error only matter during the handshake

    async def _on_user_message(self, peer: Peer, message: UserMessage, raw: JsonObject) -> None:
        if message.seq is not None:
            await peer.send({"type": "ack", "seq": message.seq})
            if self.last_seq is None or message.seq > self.last_seq:
                self.last_seq = message.seq
        key = turn_key(message)
        ids = (message.message_id, message.conversation_id)
        answer = self._kept.get(key)
        if answer is not None:
            log.info("turn %s (conversation %s) received again, sending the kept answer", *ids)
            await self._send_answer(peer, answer)
            return
        running = self._running.get(key)
        if running is not None:
            log.info("turn %s (conversation %s) received again while running", *ids)
            running.peer = peer  # answer where the bridge asked last
            return
        if self.handlers.message is None:
            details = {"message": "this agent has no on_message handler"}
            await peer.send(error_frame("no_handler", message_id=ids[0], details=details))
            return
        running = self._running[key] = _Running(peer)

        async def send_live(frame: JsonObject) -> bool:
            target = self._target(running)
            if target is None or not bridge_takes_live_frames(target.bridge_version):
                return False
            return await target.send(frame)

        turn = running.turn = Turn.from_message(message, raw, live=send_live)
        running.task = self._spawn(self._run_turn(turn, key, running))

    def cancel_turn(
        self, message_id: str, conversation_id: str | None, reason: str = "superseded"
    ) -> bool:
        """The bridge withdrew a turn (``cancel``): mark it cancelled and, with
        ``cancel_handlers``, cancel its handler. Turns answered whole (http-webhook) are
        cancelled in ``agent.answers``. Returns whether a running turn matched."""
        found = self.answers.cancel(message_id, conversation_id, reason)
        for (cid, mid, _), running in list(self._running.items()):
            if mid != message_id or conversation_id not in (None, cid):
                continue
            found = True
            if running.turn is not None:
                running.turn.cancellation.set(reason)
            if self.cancel_handlers and running.task is not None:
                running.task.cancel()
        if found:
            log.info("turn %s (conversation %s) cancelled: %s", message_id, conversation_id, reason)
        return found

    # -- turns ---------------------------------------------------------------------------------

    async def _run_turn(self, turn: Turn, key: TurnKey, running: _Running) -> None:
        started = time.monotonic()
        handler = self.handlers.message
        assert handler is not None
        try:
            result = await call_handler(handler, turn)
            if isinstance(result, AsyncIterator):
                live, kept = await self._stream(turn, running, result, started)
            else:
                live = kept = [reply_frame(turn, result, metadata(self.agent_id, started))]
        except asyncio.CancelledError:
            self._running.pop(key, None)
            task = asyncio.current_task()
            if turn.cancelled and task is not None and task.uncancel() == 0:
                return  # the bridge withdrew the turn: nothing to send
            raise
        except Exception as exc:
            live = kept = [failure_frame(turn, exc)]
        self._running.pop(key, None)
        if turn.cancelled:
            return  # the bridge withdrew the turn meanwhile and would discard the answer
        answer = self._kept.keep(key, kept, running.peer)
        target = self._target(running)
        if target is not None and await self._send_frames(target, live):
            answer.sent_on(target)
        # Otherwise the answer waits: a dialing-in agent sends it after its next hello_ok; a
        # served agent sends it when the bridge reconnects and sends the turn again.

    async def _stream(
        self, turn: Turn, running: _Running, chunks: AsyncIterator[Any], started: float
    ) -> tuple[list[JsonObject], list[JsonObject]]:
        """Send chunks as they come; return the live and the kept closing frames.

        The kept ``agent_complete`` carries the full text, so a resend needs no chunks. The live
        one leaves it out (the bridge joins the chunks) unless a chunk may have been lost.
        """
        parts: list[str] = []
        whole = True
        first = running.peer
        async for chunk in chunks:
            frame = chunk_frame(turn, len(parts), chunk)
            parts.append(frame["content"])
            target = self._target(running)
            sent = target is not None and await target.send(frame)
            if not sent or target is not first:
                whole = False
        meta = metadata(self.agent_id, started)
        kept = [complete_frame(turn, meta, "".join(parts))]
        return ([complete_frame(turn, meta, None)] if whole else kept), kept

    def _target(self, running: _Running) -> Peer | None:
        """Where the answer goes now: the connection the turn came on, else that named
        connection's current one (a dialing-in agent's turns survive reconnects)."""
        if running.peer.open:
            return running.peer
        link_id = running.peer.link_id
        current = self._dial_peers.get(link_id) if link_id is not None else None
        if running.peer.dial_in and current is not None and current.open:
            return current
        return None

    async def _send_answer(self, peer: Peer, answer: KeptAnswer) -> None:
        if await self._send_frames(peer, answer.frames):
            answer.sent_on(peer)

    @staticmethod
    async def _send_frames(peer: Peer, frames: list[JsonObject]) -> bool:
        for frame in frames:
            if not await peer.send(frame):
                return False
        return True

    # -- without a connection (http-webhook: ``chatbridge.agent.webhook``) -----------------------

    async def serve_webhook(
        self, host: str, port: int, *, secret: str | None, path: str = "/"
    ) -> None:
        """Answer http-webhook turns at ``http://host:port{path}`` until cancelled (needs
        ``pip install 'chatbridge[webhook]'``)."""
        try:
            import uvicorn
        except ImportError as exc:
            raise ImportError(_WEBHOOK_EXTRA) from exc

        config = uvicorn.Config(
            self.webhook_app(secret, path=path), host=host, port=port, log_config=None
        )
        log.info(
            "listening on http://%s:%d%s as agent %s (http-webhook)",
            host,
            port,
            path,
            self.agent_id,
        )
        await uvicorn.Server(config).serve()

    def webhook_app(self, secret: str | None, *, path: str = "/") -> Any:
        """An ASGI app answering the bridge's http-webhook turns (see ``agent.webhook``)."""
        try:
            from chatbridge.agent.webhook import webhook_app
        except ImportError as exc:
            raise ImportError(_WEBHOOK_EXTRA) from exc
        return webhook_app(self.answers, secret, path=path, cancel_handlers=self.cancel_handlers)

    async def answer(self, message: UserMessage, raw: JsonObject) -> list[JsonObject]:
        """Run one turn and return all the frames that answer it (``agent.answers``)."""
        return await self.answers.answer(message, raw)

    async def handle_event_quietly(self, message: ConversationEvent, raw: JsonObject) -> None:
        """Run the ``on_event`` handler where no connection can carry its answer back."""
        await self.answers.handle_event(message, raw)

    async def _run_event(self, peer: Peer, event: Event) -> None:
        handler = self.handlers.event
        if handler is None:
            return
        try:
            result = await call_handler(handler, event)
        except Exception:
            log.exception("event handler failed on %s", event.event)
            return
        if isinstance(result, str) and result:
            if event.conversation_id is None:
                log.warning("event %s names no conversation; its answer is dropped", event.event)
                return
            target = self._target(_Running(peer))
            if target is not None:
                await target.send(
                    {
                        "type": "agent_message",
                        "conversation_id": event.conversation_id,
                        "content": result,
                        "metadata": {"agent_id": self.agent_id},
                    }
                )

    @staticmethod
    async def _run_quietly(handler: Any, argument: Any, what: str) -> None:
        """Run a handler whose result goes nowhere (``on_session``, ``on_notice``)."""
        try:
            await call_handler(handler, argument)
        except Exception:
            log.exception("%s handler failed", what)

    # -- tasks ---------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[object]:
        task: asyncio.Task[object] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _cancel_turns_if_idle(self) -> None:
        """Once no connection mode runs any more, running handlers have nobody to answer."""
        if self._modes > 0 or not self._tasks:
            return
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _refusal(url: str, status: int) -> HelloRejected | None:
    """The permanent refusal an HTTP answer to the WebSocket upgrade means (None: retry)."""
    if status == 401:
        return HelloRejected("unauthorized", f"{url} answered HTTP 401: check the token")
    if status == 403:  # what the bridge answers an upgrade to a path it has no socket at
        return HelloRejected(
            "forbidden",
            f"{url} answered HTTP 403: is it the bridge's agent endpoint (/api/ws/agent)?",
        )
    if status == 404:
        return HelloRejected(
            "not_found",
            f"{url} answered HTTP 404: no agent endpoint there (the bridge's is /api/ws/agent)",
        )
    return None


def _log_to_stderr() -> None:
    """Show the SDK's log lines (the start-up line, refusals, reconnects) when the program
    configured no logging: ``Agent.run`` is an application's entry point."""
    if logging.getLogger().handlers or log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


def _refused_live_frame(frame: ErrorMessage) -> bool:
    """Whether the bridge answered one of our live frames or notices with ``unknown_type``."""
    details = frame.error_details
    errors = details.get("errors") if isinstance(details, dict) else None
    kind = errors.get("type") if isinstance(errors, dict) else None
    return frame.error_code == "unknown_type" and kind in LIVE_TYPES | NOTICE_TYPES


def _is_error_message(data: str | bytes) -> bool:
    try:
        return decode_frame(data).get("type") == "error_message"
    except ProtocolError:
        return False
