"""Child processes of a test, a demo or a benchmark: start, wait until they answer, stop.

Each child (a bridge replica, a mock agent or channel, ``redis-server``) is its own process on
loopback, started in a session of its own so a Ctrl-C in the terminal reaches only the parent,
which then stops its children in order. On Linux a child also gets SIGTERM from the kernel if
the parent itself dies (``PR_SET_PDEATHSIG``), so nothing outlives a crash.

A child that a test kills and restarts keeps its port: ``restartable_ports`` picks ports
below the kernel's ephemeral range, so no outgoing connection takes one while its server is
down; ``sigkill`` kills and reaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1

KILL_WAIT = 10.0
"""Seconds to wait for a SIGKILLed child to be reaped."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago (held together while picked)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without Chatbridge/Chatwoot settings, plus ``extra``.

    A developer's own ``CHATBRIDGE_*`` variables must not leak into a child bridge.
    """
    prefixes = ("CHATBRIDGE_", "CHATWOOT_", "INBOX_AGENT_MAPPINGS", "DEFAULT_RESPONSE_TIMEOUT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(extra)
    return env


class ChildProcess:
    """One child: ``python -m …`` (or another ``program``) with its output in a log file."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        program: str | None = None,
    ) -> None:
        """Describe the child; ``start()`` launches it.

        Args:
            name: what the child is reported as.
            args: its arguments, after the program.
            env: its whole environment.
            cwd: its working directory.
            log_path: where its stdout and stderr go.
            program: the executable; by default this Python (``sys.executable``).
        """
        self.name = name
        self.argv = [program or sys.executable, *args]
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    async def wait_until(
        self, check: Callable[[], Awaitable[bool]], *, timeout: float, what: str
    ) -> None:
        """Poll ``check`` until it is true; fail with the log's tail if the child dies or stalls.

        Raises:
            RuntimeError: the process exited, or ``check`` stayed false for ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise RuntimeError(f"{self.name} exited while starting:\n{self.tail()}")
            with contextlib.suppress(Exception):
                if await check():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {what} not within {timeout:g}s:\n{self.tail()}")
            await asyncio.sleep(0.05)

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL after ``timeout`` seconds."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the child's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


async def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


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


async def sigkill(child: ChildProcess) -> None:
    """SIGKILL ``child`` (if it runs) and reap it."""
    proc = child.proc
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), KILL_WAIT)
