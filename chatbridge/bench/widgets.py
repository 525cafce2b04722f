"""Web chat visitors as a benchmark runs them: ``python -m chatbridge.bench.widgets``.

One process plays N browser widgets. At start it opens N sessions
(``POST /api/webchat/sessions``) and keeps a live socket (``WS /api/ws/chat/{id}``) open for
each, doing what ``widget.js`` does on the wire: a ``ping`` every 20 s, ``pong`` to the
bridge's ``ping``, each message shown once (by message id), ``resume`` after a reconnect.

The load generator drives it over a small HTTP API on loopback, as it drives the mock
Chatwoot in the ``chatwoot`` scenario:

* ``GET /bench/status`` — sessions connected / failed, and how long opening them took;
* ``POST /bench/send`` ``{"conversation": c, "seq": s}`` — widget ``c`` sends
  ``user_message`` ``b:c:s`` on its socket and the call returns when the bridge's ``ack``
  frame comes (200 ``{"status": "accepted"|"duplicate"}``; 429 rate limited, 503 socket down,
  504 no ack). A retry sends the same ``client_message_id``, so the bridge stores it once;
* ``GET /bench/replies?after=N&wait=S`` — the agent messages the widgets received, in arrival
  order, as ``[conversation, text, received_at, latency]`` rows, where ``latency`` is measured
  here: first ``user_message`` frame written → agent ``message`` frame read;
* ``GET /bench/stats`` — streaming (first chunk and every chunk: agent's stamp → frame read
  here, chunks missing / doubled / out of order), messages repeated by id, dropped sockets.

Every time is ``time.time()``: the bridge, the agent and this process share one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from chatbridge.bench.accounting import MessageKey, marker, parse_marker, percentiles
from chatbridge.bench.stream_agent import read_stamp

log = logging.getLogger("chatbridge.bench.widgets")

PING_SECONDS = 20.0
"""The widget's heartbeat (``widget.js`` pings every 20 s)."""
ACK_TIMEOUT = 10.0
RECONNECT_DELAY = 0.5


def raise_open_files_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; returns the new soft
    limit. Children started afterwards inherit it (10,000 sockets need more than the usual
    1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


@dataclass(slots=True)
class Stream:
    """The chunks of one streamed reply, as this widget saw them."""

    indices: list[int] = field(default_factory=list)
    parts: dict[int, str] = field(default_factory=dict)
    done: bool = False


@dataclass
class StreamStats:
    """Counts over every streamed reply (see ``Widgets.stats``)."""

    streams: int = 0
    chunks: int = 0
    missing: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    late: int = 0
    mismatched: int = 0
    replies_without_chunks: int = 0
    first_chunk: list[float] = field(default_factory=list)
    every_chunk: list[float] = field(default_factory=list)
    first_chunk_after_message: list[float] = field(default_factory=list)


class Widget:
    """One visitor's session and live socket."""

    def __init__(self, owner: Widgets, conversation: int) -> None:
        self.owner = owner
        self.conversation = conversation
        self.session_id: str | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.cursor: str | None = None
        self.seen: set[str] = set()
        self.pending: dict[str, asyncio.Future[tuple[int, dict[str, Any]]]] = {}
        self.streams: dict[str, Stream] = {}
        self.connected = asyncio.Event()

    @property
    def up(self) -> bool:
        return self.ws is not None and not self.ws.closed and self.connected.is_set()

    async def open(self) -> None:
        """Create the session and connect its socket (the first ``session`` frame read)."""
        owner = self.owner
        async with owner.http.post(
            f"{owner.bridge}/api/webchat/sessions", json={"inbox_id": owner.inbox}
        ) as response:
            if response.status != 200:
                text = await response.text()
                raise RuntimeError(f"session not created: HTTP {response.status}: {text[:200]}")
            self.session_id = (await response.json())["session_id"]
        await self._connect()

    async def _connect(self) -> None:
        owner = self.owner
        ws = await owner.http.ws_connect(
            f"{owner.ws_base}/api/ws/chat/{self.session_id}", autoping=True, heartbeat=None
        )
        first = await ws.receive_json(timeout=30)
        if first.get("type") != "session":
            await ws.close()
            raise RuntimeError(f"first frame was not 'session': {first}")
        self.ws = ws
        if self.cursor is not None:  # a reconnect: fetch what was missed meanwhile
            await ws.send_str(json.dumps({"type": "resume", "after": self.cursor}))
        self.connected.set()

    async def run(self) -> None:
        """Read frames until the process stops; reconnect (and resume) when the socket drops."""
        while True:
            ws = self.ws
            if ws is not None:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        self._on_frame(json.loads(msg.data))
                    elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                        break
            if self.owner.stopping:
                return
            self.connected.clear()
            self.owner.drops += 1
            self._fail_pending(503, "socket closed")
            while not self.owner.stopping:
                await asyncio.sleep(RECONNECT_DELAY)
                try:
                    await self._connect()
                    break
                except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
                    log.warning("widget %d: reconnect failed: %s", self.conversation, exc)

    def _fail_pending(self, status: int, reason: str) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_result((status, {"status": "error", "reason": reason}))
        self.pending.clear()

    async def send_frame(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(frame))

    async def say(self, seq: int) -> tuple[int, dict[str, Any]]:
        """Send message ``seq`` as a ``user_message`` and wait for its ``ack``."""
        if not self.up:
            return 503, {"status": "error", "reason": "socket down"}
        key = (self.conversation, seq)
        cmid = f"b{self.conversation}_{seq}"
        future = self.pending.get(cmid)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self.pending[cmid] = future
        self.owner.frame_sent.setdefault(key, time.time())
        frame = {"type": "user_message", "client_message_id": cmid, "content": marker(*key)}
        try:
            await self.send_frame(frame)
            async with asyncio.timeout(ACK_TIMEOUT):
                return await asyncio.shield(future)
        except TimeoutError:
            return 504, {"status": "error", "reason": "no ack"}
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            return 503, {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
        finally:
            if future.done():
                self.pending.pop(cmid, None)

    # --- frames from the bridge ---------------------------------------------------------

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            self._on_message(frame.get("message") or {})
        elif kind == "agent_streaming":
            self._on_chunk(frame)
        elif kind == "ack":
            future = self.pending.get(frame.get("client_message_id") or "")
            if future is not None and not future.done():
                future.set_result(
                    (200, {"status": frame.get("status"), "id": frame.get("message_id")})
                )
        elif kind == "error":
            future = self.pending.get(frame.get("client_message_id") or "")
            status = 429 if frame.get("code") == "rate_limited" else 400
            if future is not None and not future.done():
                future.set_result((status, {"status": "error", "reason": frame.get("message")}))
            else:
                self.owner.errors += 1
        elif kind == "history":
            for message in frame.get("messages") or []:
                self._on_message(message)
        elif kind == "ping":
            self.owner.spawn(self.send_frame({"type": "pong"}))
        elif kind == "typing":
            self.owner.typing += 1

    def _on_message(self, message: dict[str, Any]) -> None:
        now = time.time()
        message_id = message.get("id")
        if not isinstance(message_id, str):
            return
        if message_id in self.seen:  # the widget shows a message once
            self.owner.repeats += 1
            return
        self.seen.add(message_id)
        self.cursor = message_id
        if message.get("role") != "agent":
            return
        text = message.get("text")
        key = parse_marker(text)
        sent = self.owner.frame_sent.get(key) if key is not None else None
        self.owner.record_reply(self.conversation, text, now, None if sent is None else now - sent)
        turn_id = message.get("turn_id")
        stream = self.streams.pop(turn_id, None) if isinstance(turn_id, str) else None
        self.owner.close_stream(stream, text)

    def _on_chunk(self, frame: dict[str, Any]) -> None:
        now = time.time()
        turn_id = frame.get("turn_id")
        index = frame.get("stream_index")
        content = frame.get("content")
        if (
            not isinstance(turn_id, str)
            or not isinstance(index, int)
            or not isinstance(content, str)
        ):
            return
        stats = self.owner.stream_stats
        stamp = read_stamp(content)
        stream = self.streams.get(turn_id)
        if stream is None:  # the first chunk of this turn to arrive
            stream = self.streams[turn_id] = Stream()
            stats.streams += 1
            if stamp is not None:
                stats.first_chunk.append(now - stamp)
            key = parse_marker(content)
            sent = self.owner.frame_sent.get(key) if key is not None else None
            if sent is not None:
                stats.first_chunk_after_message.append(now - sent)
        stats.chunks += 1
        if stream.done:
            stats.late += 1
            return
        if stamp is not None:
            stats.every_chunk.append(now - stamp)
        if index in stream.parts:
            stats.duplicated += 1
        elif stream.indices and index < max(stream.indices):
            stats.out_of_order += 1
        stream.indices.append(index)
        stream.parts[index] = content


class Widgets:
    """N widgets against one bridge, and what they saw."""

    def __init__(
        self, bridge: str, *, inbox: int, sessions: int, concurrency: int, chunks: int
    ) -> None:
        self.bridge = bridge.rstrip("/")
        self.ws_base = "ws" + self.bridge.removeprefix("http")
        self.inbox = inbox
        self.chunks = chunks
        self.concurrency = concurrency
        self.widgets = [Widget(self, c) for c in range(1, sessions + 1)]
        self.http: aiohttp.ClientSession
        self.stopping = False
        self.opened = 0
        self.failed = 0
        self.failure: str | None = None
        self.open_seconds: float | None = None
        self.frame_sent: dict[MessageKey, float] = {}
        self.replies: list[list[Any]] = []
        self.latencies: list[float] = []
        self.arrived = asyncio.Event()
        self.repeats = 0
        self.drops = 0
        self.errors = 0
        self.typing = 0
        self.stream_stats = StreamStats()
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def record_reply(
        self, conversation: int, text: str | None, at: float, latency: float | None
    ) -> None:
        self.replies.append([conversation, text, at, latency])
        if latency is not None:
            self.latencies.append(latency)
        self.arrived.set()

    def close_stream(self, stream: Stream | None, text: str | None) -> None:
        """Check a streamed reply's chunks against its final message."""
        stats = self.stream_stats
        if stream is None:
            if self.chunks:
                stats.replies_without_chunks += 1
            return
        stream.done = True
        expected = set(range(max(self.chunks, max(stream.parts, default=-1) + 1)))
        stats.missing += len(expected - set(stream.parts))
        if not expected - set(stream.parts):
            joined = "".join(stream.parts[i] for i in sorted(stream.parts))
            if joined != text:
                stats.mismatched += 1

    async def open_all(self) -> None:
        """Open every session and socket, ``concurrency`` at a time."""
        started = time.monotonic()
        gate = asyncio.Semaphore(self.concurrency)

        async def one(widget: Widget) -> None:
            async with gate:
                if self.failure is not None:
                    return
                try:
                    await widget.open()
                except (aiohttp.ClientError, TimeoutError, RuntimeError, KeyError) as exc:
                    self.failed += 1
                    self.failure = f"widget {widget.conversation}: {type(exc).__name__}: {exc}"
                    log.error("%s", self.failure)
                    return
                self.opened += 1
                self.spawn(widget.run())

        await asyncio.gather(*(one(w) for w in self.widgets))
        self.open_seconds = round(time.monotonic() - started, 2)
        log.info("%d sessions open in %.1f s", self.opened, self.open_seconds)

    async def heartbeat(self) -> None:
        """A ``ping`` from every widget every ``PING_SECONDS``, spread evenly."""
        step = 0.1
        per_step = max(1, round(len(self.widgets) * step / PING_SECONDS))
        index = 0
        while True:
            await asyncio.sleep(step)
            for _ in range(per_step):
                widget = self.widgets[index % len(self.widgets)]
                index += 1
                if widget.up:
                    with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
                        await widget.send_frame({"type": "ping"})

    def stats(self) -> dict[str, Any]:
        s = self.stream_stats
        return {
            "sessions": len(self.widgets),
            "connected": sum(1 for w in self.widgets if w.up),
            "opened": self.opened,
            "failed": self.failed,
            "failure": self.failure,
            "open_seconds": self.open_seconds,
            "replies": len(self.replies),
            "reply_latency": percentiles(self.latencies),
            "repeats": self.repeats,
            "drops": self.drops,
            "errors": self.errors,
            "typing_frames": self.typing,
            "stream": {
                "streams": s.streams,
                "chunks": s.chunks,
                "missing": s.missing,
                "duplicated": s.duplicated,
                "out_of_order": s.out_of_order,
                "late": s.late,
                "mismatched": s.mismatched,
                "replies_without_chunks": s.replies_without_chunks,
                "first_chunk_latency": percentiles(s.first_chunk),
                "chunk_latency": percentiles(s.every_chunk),
                "first_chunk_after_message": percentiles(s.first_chunk_after_message),
            },
        }

    async def close(self) -> None:
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(
            *(w.ws.close() for w in self.widgets if w.ws is not None and not w.ws.closed),
            return_exceptions=True,
        )


def create_control_app(widgets: Widgets) -> web.Application:
    """The loopback API the load generator drives the widgets with."""
    app = web.Application()

    async def status(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "sessions": len(widgets.widgets),
                "opened": widgets.opened,
                "failed": widgets.failed,
                "failure": widgets.failure,
                "open_seconds": widgets.open_seconds,
            }
        )

    async def send(request: web.Request) -> web.Response:
        body = await request.json()
        conversation, seq = int(body["conversation"]), int(body["seq"])
        if not 1 <= conversation <= len(widgets.widgets):
            return web.json_response({"status": "error", "reason": "no such widget"}, status=404)
        status, answer = await widgets.widgets[conversation - 1].say(seq)
        return web.json_response(answer, status=status)

    async def replies(request: web.Request) -> web.Response:
        after = max(int(request.query.get("after", 0)), 0)
        wait = float(request.query.get("wait", 0))
        if wait > 0 and len(widgets.replies) <= after:
            widgets.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(widgets.arrived.wait(), min(wait, 10.0))
        return web.json_response(widgets.replies[after:])

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(widgets.stats())

    app.router.add_get("/bench/status", status)
    app.router.add_post("/bench/send", send)
    app.router.add_get("/bench/replies", replies)
    app.router.add_get("/bench/stats", stats)
    return app


async def serve(args: argparse.Namespace) -> None:
    widgets = Widgets(
        args.bridge,
        inbox=args.inbox,
        sessions=args.sessions,
        concurrency=args.concurrency,
        chunks=args.chunks,
    )
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None, connect=30)
    ) as http:
        widgets.http = http
        runner = web.AppRunner(create_control_app(widgets), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port, backlog=2048).start()
        try:
            widgets.spawn(widgets.heartbeat())  # the first widgets are up long before the last
            await widgets.open_all()
            # 10,000 sockets are millions of long-lived objects: without this, each full
            # collection here stops the widgets for 0.3 s and more, which would show up as
            # the bridge's latency. (The bridge gets no such help: its pauses are measured.)
            gc.collect()
            gc.freeze()
            await asyncio.Event().wait()
        finally:
            await widgets.close()
            await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="the control API's port")
    parser.add_argument("--bridge", required=True, help="the bridge's base URL (http://…)")
    parser.add_argument("--inbox", type=int, default=1, help="the web chat inbox id")
    parser.add_argument("--sessions", type=int, default=1, help="widgets (sessions) to open")
    parser.add_argument("--concurrency", type=int, default=32, help="sessions opened at a time")
    parser.add_argument("--chunks", type=int, default=0, help="chunks per streamed reply")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    raise_open_files_limit()
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory) as r:
        r.run(serve(args))


if __name__ == "__main__":  # pragma: no cover
    main()
