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

Each piece has its module (``redis_server.py``, ``balancer.py``, ports and SIGKILL in
``processes.py``); this one holds the replicas and imports the rest, so tests import all
of them from here. Ports that must survive a restart come from ``restartable_ports``.

Children are ``chatbridge.testing.processes.ChildProcess`` objects: their own session (a
Ctrl-C in the terminal reaches only the parent) and, on Linux, SIGTERM from the kernel when
the parent dies, so nothing outlives a crashed test run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

import chatbridge
from chatbridge.testing.balancer import Backend, BalancerMode, TcpBalancer
from chatbridge.testing.processes import ChildProcess, child_env, restartable_ports, sigkill
from chatbridge.testing.redis_server import RedisServer

__all__ = [
    "BalancerMode",
    "RedisServer",
    "Replica",
    "ReplicaSet",
    "TcpBalancer",
    "restartable_ports",
]


def _source_root() -> str:
    """The folder holding the ``chatbridge`` package this process runs: children get it first
    on ``PYTHONPATH``, so they run the same code even from another working directory."""
    return str(Path(chatbridge.__file__).resolve().parent.parent)


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
        await sigkill(self.child)

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
