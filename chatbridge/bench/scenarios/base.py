"""What a scenario is: a stack of processes to start, and the requests that load it.

A scenario (``Stack`` subclass) starts its processes on loopback, builds the HTTP request for
message ``seq`` of conversation ``conversation`` (cheaply: the load generator must not be the
bottleneck), says whether a response is an acknowledgement, and, if the target answers
through a channel, returns the replies that arrived since the last call.

A stack that can run several bridge replicas (``supports_replicas``) starts
``StackContext.replicas`` bridges on one database and one Redis (``redis_url``, or a private
``redis-server`` from ``start_redis()``), each with its own port and instance id.

A stack with a bridge lists it (or its replicas) in ``replicas`` and sets ``admin_key``: the
runner reads each bridge's ``/metrics`` when the load starts and after the drain, for what
its store did per message (``chatbridge.bench.costs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import aiohttp
from yarl import URL

from chatbridge.bench.accounting import Reply
from chatbridge.bench.redis_server import redis_ping, redis_server_args, redis_server_program
from chatbridge.bench.replicas import Replica
from chatbridge.testing.processes import ChildProcess, child_env, free_port, port_open


def stored_or_duplicate(status: int, body: bytes) -> bool:
    """Whether the bridge's answer acknowledges a message: 200 with ``status`` accepted or
    duplicate (the webhook and the web chat API answer alike)."""
    if status != 200:
        return False
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("status") in ("accepted", "duplicate")


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP POST of the load."""

    url: URL
    body: bytes
    headers: Mapping[str, str]


@dataclass
class StackContext:
    """What a stack is started with."""

    workdir: Path
    conversations: int
    database_url: str | None = None
    think_seconds: float = 0.0
    replicas: int = 1
    """Bridge processes sharing the database and Redis (> 1 only where ``supports_replicas``)."""
    redis_url: str | None = None
    """The Redis the replicas share; ``None``: a private ``redis-server`` when replicas > 1."""


@dataclass
class StackInfo:
    """What a started stack reports: its settings (printed with the results)."""

    settings: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Stack(ABC):
    """Processes of one scenario; ``start()``, load it with ``request()``, ``stop()``."""

    name: ClassVar[str]
    description: ClassVar[str]
    expects_replies: ClassVar[bool] = True
    needs_database: ClassVar[bool] = True
    supports_replicas: ClassVar[bool] = False
    """Whether the stack can run ``StackContext.replicas`` > 1 bridges."""
    admin_key: ClassVar[str | None] = None
    """The bridges' ``CHATBRIDGE_ADMIN_KEY``, which ``/metrics`` asks for."""

    def __init__(self, ctx: StackContext) -> None:
        self.ctx = ctx
        self.processes: dict[str, ChildProcess] = {}
        self.info = StackInfo()
        self.replicas: list[Replica] = []
        """The bridge processes, set by ``start()``: one, or the replicas (none: no bridge)."""

    def spawn(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        program: str | None = None,
    ) -> ChildProcess:
        """Register a child process (started by the caller, stopped by ``stop()``).

        ``program`` is the executable (default: this Python, so ``args`` start with ``-m``).
        """
        child = ChildProcess(
            name,
            args,
            env=child_env(env or {}),
            cwd=self.ctx.workdir,
            log_path=self.ctx.workdir / f"{name}.log",
            program=program,
        )
        self.processes[name] = child
        return child

    async def start_redis(self) -> str:
        """Start a private ``redis-server`` (process ``redis``); returns its URL once it answers.

        Register it before the bridges: ``stop()`` stops children last started first, so the
        bridges shut down while their Redis is still there.

        Raises:
            RuntimeError: ``redis-server`` is not on ``PATH``, or did not answer in time.
        """
        program = redis_server_program()
        if program is None:
            raise RuntimeError("redis-server is not on PATH (or give --redis-url)")
        port = free_port()
        server = self.spawn("redis", redis_server_args(port), program=program)
        url = f"redis://127.0.0.1:{port}/0"
        await server.start()
        await server.wait_until(lambda: port_open("127.0.0.1", port), timeout=15, what="listening")
        await server.wait_until(lambda: redis_ping(url), timeout=15, what="PING answered")
        return url

    @abstractmethod
    async def start(self) -> None:
        """Start every process and return once the target takes load."""

    async def stop(self) -> None:
        """Stop the processes, last started first; never raises."""
        for child in reversed(list(self.processes.values())):
            with contextlib.suppress(Exception):
                await child.stop()

    @abstractmethod
    def request(self, conversation: int, seq: int) -> Request:
        """The request that sends message ``seq`` (0, 1, …) of ``conversation`` (1…N)."""

    def acknowledged(self, status: int, body: bytes) -> bool:
        """Whether a response acknowledges the message (default: HTTP 200)."""
        return status == 200

    async def replies_after(
        self, http: aiohttp.ClientSession, after: int, wait: float = 0.0
    ) -> list[Reply]:
        """Replies from the ``after``-th on, in arrival order (none for a reply-less target).

        With ``wait``, the channel may hold the call up to that long until there is one.
        """
        if wait:
            await asyncio.sleep(wait)
        return []
