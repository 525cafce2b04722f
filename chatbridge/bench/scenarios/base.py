"""What a scenario is: a stack of processes to start, and the requests that load it.

A scenario (``Stack`` subclass) starts its processes on loopback, builds the HTTP request for
message ``seq`` of conversation ``conversation`` (cheaply: the load generator must not be the
bottleneck), says whether a response is an acknowledgement, and, if the target answers
through a channel, returns the replies that arrived since the last call.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import aiohttp
from yarl import URL

from chatbridge.bench.accounting import Reply
from chatbridge.bench.processes import ChildProcess, child_env


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

    def __init__(self, ctx: StackContext) -> None:
        self.ctx = ctx
        self.processes: dict[str, ChildProcess] = {}
        self.info = StackInfo()

    def spawn(
        self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None
    ) -> ChildProcess:
        """Register a child process (started by the caller, stopped by ``stop()``)."""
        child = ChildProcess(
            name,
            args,
            env=child_env(env or {}),
            cwd=self.ctx.workdir,
            log_path=self.ctx.workdir / f"{name}.log",
        )
        self.processes[name] = child
        return child

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
