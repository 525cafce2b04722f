"""Several bridge processes on one machine: replicas, a private Redis and a TCP balancer.

The pieces a multi-replica test or benchmark needs, each started and stopped explicitly and
usable as an async context manager:

- ``RedisServer``: a private ``redis-server`` on a free loopback port (no persistence), that
  can be stopped, SIGKILLed and started again on the same port.
- ``TcpBalancer``: an asyncio TCP proxy in front of a list of backends, ``round_robin`` or
  ``failover`` (the first backend that accepts). It pipes bytes both ways, so HTTP and
  WebSocket go through it alike; a backend that refuses the connection is skipped.
- ``Replica`` / ``ReplicaSet``: ``python -m chatbridge serve`` children sharing one database
  (and Redis), each with its own port, ``CHATBRIDGE_INSTANCE_ID`` (``replica-<i>``) and log
  file; ready when ``GET /ready`` answers 200; ``kill(i)`` is SIGKILL, ``start(i)`` brings the
  same replica back on the same port under the same instance id.

Ports that must survive a restart come from ``restartable_ports``: below the kernel's
ephemeral range, so no outgoing connection takes one while its server is down.

Children are ``chatbridge.bench.processes.ChildProcess`` objects: their own session (a Ctrl-C in
the terminal reaches only the parent) and, on Linux, SIGTERM from the kernel when the parent
dies, so nothing outlives a crashed test run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

import httpx

import chatbridge
from chatbridge.bench.processes import ChildProcess, child_env, free_port
from chatbridge.testing.servers import bind_socket

__all__ = [
    "BalancerMode",
    "RedisServer",
    "Replica",
    "ReplicaSet",
    "TcpBalancer",
    "restartable_ports",
]

Backend = tuple[str, int]
BalancerMode = Literal["round_robin", "failover"]

KILL_WAIT = 10.0
"""Seconds to wait for a SIGKILLed child to be reaped."""


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def restartable_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports outside the kernel's ephemeral range.

    A server restarted on its old port must find it free. A port the OS picked (``bind(0)``)
    lies in the ephemeral range, where any outgoing connection may take it as its local port
    while the server is down; ports below that range are never handed out that way.
    Falls back to OS-picked ports where the range is unknown (not Linux).
    """
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    chosen: list[int] = []
    rng = random.Random()
    for _ in range(200 * count):
        if len(chosen) == count:
            return chosen
        port = rng.randrange(10_000, low) if low > 11_000 else free_port(host)
        if port in chosen:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        chosen.append(port)
    raise RuntimeError(f"no {count} free ports found on {host}")


def _source_root() -> str:
    """The folder holding the ``chatbridge`` package this process runs: children get it first
    on ``PYTHONPATH``, so they run the same code even from another working directory."""
    return str(Path(chatbridge.__file__).resolve().parent.parent)


async def _sigkill(child: ChildProcess) -> None:
    """SIGKILL ``child`` (if it runs) and reap it."""
    proc = child.proc
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), KILL_WAIT)


# ----------------------------------------------------------------------------------- Redis


class RedisServer:
    """A private ``redis-server`` child on ``127.0.0.1`` (no RDB snapshots, no AOF).

    Args:
        port: the port to listen on; a free one (``restartable_ports``) by default. It stays
            the same across ``restart()``, so clients configured with ``url`` reconnect to
            the new server.
        workdir: where its log (``redis-<port>.log``) goes and its working directory; the
            system's temporary folder by default.
        executable: the server binary, looked up on ``PATH``.
        start_timeout: seconds to wait for the first ``PING`` answer.

    Raises (from ``start()``):
        FileNotFoundError: ``redis-server`` is not installed.
        RuntimeError: it exited or did not answer ``PING`` in time (the log's tail says why).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        workdir: Path | None = None,
        executable: str = "redis-server",
        start_timeout: float = 10.0,
    ) -> None:
        self.port = port or restartable_ports(1)[0]
        self.workdir = workdir or Path(tempfile.gettempdir())
        self.executable = executable
        self.start_timeout = start_timeout
        self.starts = 0
        self._child: ChildProcess | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    @property
    def log_path(self) -> Path:
        return self.workdir / f"redis-{self.port}.log"

    async def start(self) -> None:
        """Start the server (no-op if it runs) and wait until it answers ``PING``."""
        if self.running:
            return
        binary = shutil.which(self.executable)
        if binary is None:
            raise FileNotFoundError(f"{self.executable} is not installed (not on PATH)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        child = ChildProcess(
            "redis-server", [], env=child_env({}), cwd=self.workdir, log_path=self.log_path
        )
        child.argv = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        self._child = child
        self.starts += 1
        await child.start()
        try:
            await child.wait_until(self.ping, timeout=self.start_timeout, what="PING")
        except BaseException:
            await _sigkill(child)
            raise

    async def ping(self) -> bool:
        """Whether the server answers ``PING`` now."""
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=0.5, socket_timeout=0.5, retry_on_timeout=False
        )
        try:
            return bool(await client.ping())
        except Exception:
            return False
        finally:
            await client.aclose()

    async def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (then SIGKILL after 5 s), or SIGKILL at once with ``kill``."""
        if self._child is None:
            return
        if kill:
            await _sigkill(self._child)
        else:
            await self._child.stop(timeout=5.0)

    async def kill(self) -> None:
        """SIGKILL the server (a crash: every client connection breaks at once)."""
        await self.stop(kill=True)

    async def restart(self, down_for: float = 0.0, *, kill: bool = True) -> None:
        """Take the server down (SIGKILL by default), stay down ``down_for`` seconds, start
        it again on the same port and wait until it answers. The new server is empty."""
        await self.stop(kill=kill)
        if down_for > 0:
            await asyncio.sleep(down_for)
        await self.start()

    def tail(self, lines: int = 30) -> str:
        return self._child.tail(lines) if self._child is not None else "(not started)"

    async def __aenter__(self) -> RedisServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


# ------------------------------------------------------------------------------- balancer


@dataclass(eq=False)
class _Piped:
    """One client connection and the backend connection it is piped to."""

    backend: Backend
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # the client sent bytes that got no answer yet (HTTP/1.1 without pipelining: a request
    # in flight); used by ``when_down`` when the backend dies before answering
    awaiting: bool = False

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class TcpBalancer:
    """A TCP proxy on ``127.0.0.1`` in front of ``backends``.

    Each accepted connection is connected to one backend and the bytes are piped both ways
    (half-closes passed on), so HTTP, long-polls and WebSockets work through it unchanged.
    Which backend:

    - ``round_robin``: the next one in turn, skipping those that refuse the connection;
    - ``failover``: the first one, in list order, that accepts the connection (so clients
      land on the first backend while it is up, and on the next one while it is down).

    A connection no backend accepts is closed at once. When a backend dies, the connections
    piped to it are closed on the client side too (a SIGKILLed replica looks the same through
    the balancer as without it).

    Args:
        backends: ``(host, port)`` pairs; ``backends`` may be changed while running.
        mode: ``"round_robin"`` or ``"failover"``.
        host / port: where to listen (``port=0``: a free port, known after ``start()``).
        connect_timeout: seconds to wait for one backend before trying the next.
        when_down: an HTTP status to answer (after reading the request's head) when no
            backend accepts, instead of closing the connection — what a reverse proxy
            configured to answer e.g. 500 for an unreachable upstream does. Chatwoot's
            agent-bot job retries 429 and 500 (not a refused connection), so such a proxy
            keeps its webhooks coming while a single bridge restarts.
    """

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        mode: BalancerMode = "round_robin",
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 2.0,
        when_down: int | None = None,
    ) -> None:
        if mode not in ("round_robin", "failover"):
            raise ValueError(f"unknown balancer mode {mode!r}")
        self.backends: list[Backend] = list(backends)
        self.mode: BalancerMode = mode
        self.host = host
        self.connect_timeout = connect_timeout
        self.when_down = when_down
        self.connections: Counter[Backend] = Counter()
        """How many client connections each backend got, over the balancer's life."""
        self.refused = 0
        """Client connections closed because no backend accepted them."""
        self._port = port
        self._next = 0
        self._server: asyncio.Server | None = None
        self._open: set[_Piped] = set()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` (use ``ws://`` with the same address for WebSockets)."""
        return f"http://{self.host}:{self._port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self._port}"

    def active(self) -> list[Backend]:
        """The backend of every connection open now (one entry per connection)."""
        return [p.backend for p in self._open]

    def drop(self, backend: Backend | None = None) -> int:
        """Abort the open connections (to ``backend`` only, if given): a network cut.
        Returns how many."""
        doomed = [p for p in self._open if backend is None or p.backend == backend]
        for piped in doomed:
            piped.abort()
        return len(doomed)

    def _candidates(self) -> list[Backend]:
        backends = list(self.backends)
        if self.mode == "failover" or not backends:
            return backends
        start = self._next % len(backends)
        self._next = start + 1
        return backends[start:] + backends[:start]

    async def start(self) -> None:
        """Listen; ``port`` is the bound port afterwards."""
        if self._server is not None:
            return
        sock = bind_socket(self.host, self._port)
        self._port = int(sock.getsockname()[1])
        self._server = await asyncio.start_server(self._accept, sock=sock)

    async def stop(self) -> None:
        """Stop listening and abort every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = [task for piped in self._open for task in piped.tasks]
        self.drop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)

    async def _connect(self) -> tuple[Backend, asyncio.StreamReader, asyncio.StreamWriter] | None:
        for backend in self._candidates():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(*backend), self.connect_timeout
                )
            except (OSError, TimeoutError):
                continue
            return backend, reader, writer
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connected = await self._connect() if self._server is not None else None
        if connected is None:
            self.refused += 1
            if self.when_down is not None and self._server is not None:
                await self._answer_down(reader, writer, self.when_down)
            else:
                writer.transport.abort()
            return
        backend, up_reader, up_writer = connected
        if self._server is None:  # stopped while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.connections[backend] += 1
        piped = _Piped(backend, writer, up_writer)
        piped.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, piped, upward=True)),
            asyncio.create_task(self._pipe(up_reader, writer, piped, upward=False)),
        ]
        self._open.add(piped)
        try:
            await asyncio.gather(*piped.tasks, return_exceptions=True)
        finally:
            self._open.discard(piped)
            for w in (writer, up_writer):
                w.close()
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    await w.wait_closed()

    @staticmethod
    async def _answer_down(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int
    ) -> None:
        """Answer one request with ``status`` and close, as a proxy whose upstream is down."""
        with contextlib.suppress(Exception):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            if 0 < length <= 10 * 1024 * 1024:
                await asyncio.wait_for(reader.readexactly(length), 5)
            body = b'{"error":"upstream_unavailable"}'
            writer.write(
                b"HTTP/1.1 %d Upstream Unavailable\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, len(body), body)
            )
            await writer.drain()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        piped: _Piped,
        *,
        upward: bool,
    ) -> None:
        """Copy ``source`` to ``sink`` until EOF, then pass the EOF on (half-close). A broken
        side aborts both, so a reset reaches the other peer as a reset — except that with
        ``when_down``, a backend that dies while a request waits for its answer gets that
        status sent to the client instead (as a proxy answers for a dead upstream)."""
        try:
            while data := await source.read(65536):
                piped.awaiting = upward
                sink.write(data)
                await sink.drain()
            if not upward and piped.awaiting and self.when_down is not None:
                await self._answer_for_dead_upstream(piped)
                return
            if sink.can_write_eof() and not sink.is_closing():
                sink.write_eof()
        except (OSError, RuntimeError):  # ConnectionResetError, BrokenPipe, closed transport
            if self.when_down is not None and piped.awaiting:
                if not upward:
                    await self._answer_for_dead_upstream(piped)
                # upward: the backend died under a request; the other direction answers
                return
            piped.abort()

    async def _answer_for_dead_upstream(self, piped: _Piped) -> None:
        assert self.when_down is not None
        piped.upstream.transport.abort()
        body = b'{"error":"upstream_unavailable"}'
        with contextlib.suppress(Exception):
            piped.client.write(
                b"HTTP/1.1 %d Upstream Unavailable\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (self.when_down, len(body), body)
            )
            await piped.client.drain()
        piped.client.close()
        for task in piped.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def __aenter__(self) -> TcpBalancer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


# ------------------------------------------------------------------------------- replicas


class Replica:
    """One ``python -m chatbridge serve --port <port>`` child, ``replica-<index>``.

    Args:
        index: its number; the instance id is ``replica-<index>``.
        port: its port, the same across restarts.
        env: the complete environment of the child (``CHATBRIDGE_INSTANCE_ID`` is added).
        workdir: its working directory; the log is ``replica-<index>.log`` there (appended
            to across restarts, with a marker line per start).
        ready_timeout: seconds to wait for ``GET /ready`` to answer 200.
    """

    def __init__(
        self,
        index: int,
        *,
        port: int,
        env: Mapping[str, str],
        workdir: Path,
        ready_timeout: float = 60.0,
    ) -> None:
        self.index = index
        self.port = port
        self.instance_id = f"replica-{index}"
        self.ready_timeout = ready_timeout
        self.starts = 0
        self.log_path = workdir / f"replica-{index}.log"
        self.child = ChildProcess(
            self.instance_id,
            ["-m", "chatbridge", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, "CHATBRIDGE_INSTANCE_ID": self.instance_id},
            cwd=workdir,
            log_path=self.log_path,
        )

    def __repr__(self) -> str:
        state = f"pid {self.child.pid}" if self.running else "down"
        return f"<Replica {self.instance_id} :{self.port} {state}>"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>``."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def backend(self) -> Backend:
        return ("127.0.0.1", self.port)

    @property
    def running(self) -> bool:
        return self.child.running

    async def ready(self) -> bool:
        """Whether ``GET /ready`` answers 200 now."""
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                r = await http.get(f"{self.url}/ready")
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def start(self) -> None:
        """Start the process (no-op if it runs) and wait until it is ready.

        Raises:
            RuntimeError: it exited, or was not ready within ``ready_timeout`` (with the
                log's tail).
        """
        if self.running:
            return
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            log.write(f"--- {self.instance_id} start #{self.starts} at {time.time():.3f} ---\n")
        await self.child.start()
        await self.child.wait_until(self.ready, timeout=self.ready_timeout, what="GET /ready 200")

    async def kill(self) -> None:
        """SIGKILL the process and reap it (no shutdown code runs: a crash)."""
        await _sigkill(self.child)

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL after ``timeout`` seconds."""
        await self.child.stop(timeout)

    def tail(self, lines: int = 30) -> str:
        """The last lines of its log."""
        return self.child.tail(lines)


class ReplicaSet:
    """``count`` replicas of one bridge: same database, same Redis, different ports.

    Args:
        count: how many replicas.
        database_url: ``CHATBRIDGE_DATABASE_URL`` of every replica (PostgreSQL to share it).
        workdir: working directory and log folder of the replicas.
        redis_url: ``CHATBRIDGE_REDIS_URL`` of every replica, if any.
        env: more environment for every replica (routes, tokens, timings …). The parent's own
            ``CHATBRIDGE_*``/``CHATWOOT_*`` variables are not passed on (``child_env``).
        ports: their ports; free ones (``restartable_ports``) by default.
        ready_timeout: seconds each replica has to become ready.
    """

    def __init__(
        self,
        count: int,
        *,
        database_url: str,
        workdir: Path,
        redis_url: str | None = None,
        env: Mapping[str, str] | None = None,
        ports: Sequence[int] | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        if count < 1:
            raise ValueError("a replica set needs at least one replica")
        if ports is not None and len(ports) != count:
            raise ValueError(f"{count} replicas need {count} ports, got {len(ports)}")
        extra = {"CHATBRIDGE_DATABASE_URL": database_url}
        if redis_url is not None:
            extra["CHATBRIDGE_REDIS_URL"] = redis_url
        extra.update(env or {})
        base = child_env(extra)
        path = base.get("PYTHONPATH")
        base["PYTHONPATH"] = _source_root() + (os.pathsep + path if path else "")
        self.env = base
        self.workdir = workdir
        chosen = list(ports) if ports is not None else restartable_ports(count)
        self.replicas = [
            Replica(i, port=chosen[i], env=base, workdir=workdir, ready_timeout=ready_timeout)
            for i in range(count)
        ]

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]

    def __len__(self) -> int:
        return len(self.replicas)

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas)

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    @property
    def ports(self) -> list[int]:
        return [r.port for r in self.replicas]

    def backends(self, order: Sequence[int] | None = None) -> list[Backend]:
        """``(host, port)`` of the replicas, in ``order`` (indices) if given: a
        ``TcpBalancer``'s backends."""
        indices = range(len(self.replicas)) if order is None else order
        return [self.replicas[i].backend for i in indices]

    def running(self) -> list[int]:
        """The indices of the replicas whose process runs."""
        return [r.index for r in self.replicas if r.running]

    async def start(self, index: int | None = None) -> None:
        """Start replica ``index``, or all of them.

        All: the first one alone, then the others together. The first start migrates the
        schema and seeds the routes from the environment; the others then find both done
        (first-time migrations and route seeding are not written to run concurrently).
        """
        if index is not None:
            await self.replicas[index].start()
            return
        first, *others = self.replicas
        await first.start()
        await asyncio.gather(*(r.start() for r in others))

    async def kill(self, index: int) -> None:
        """SIGKILL replica ``index`` and reap it."""
        await self.replicas[index].kill()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop every replica (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        await asyncio.gather(*(r.stop(timeout) for r in self.replicas), return_exceptions=True)
        # whatever survived a failed stop must not outlive us
        for r in self.replicas:
            with contextlib.suppress(Exception):
                await r.kill()

    def tails(self, lines: int = 20) -> str:
        """The last lines of every replica's log, for a failure message."""
        return "\n".join(f"== {r.instance_id} ==\n{r.tail(lines)}" for r in self.replicas)

    async def __aenter__(self) -> ReplicaSet:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
