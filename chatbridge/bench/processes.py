"""Child processes of a benchmark: start, wait until they answer, measure, stop.

Each child (bridge, mock agent, mock channel, baseline) is its own Python process on
loopback, started in a session of its own so a Ctrl-C in the terminal reaches only the
benchmark, which then stops its children in order. On Linux a child also gets SIGTERM from the
kernel if the benchmark itself dies (``PR_SET_PDEATHSIG``), so nothing outlives a crash.

``ResourceMonitor`` samples each process with psutil: CPU seconds (user + system) over the
measured window and peak resident memory (the kernel's high-water mark ``VmHWM`` where there
is one, else the highest sample; for the benchmark's own process, which outlives a run, the
highest sample of this run).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The benchmark's environment without Chatbridge/Chatwoot settings, plus ``extra``.

    A developer's own ``CHATBRIDGE_*`` variables must not leak into a measured bridge.
    """
    prefixes = ("CHATBRIDGE_", "CHATWOOT_", "INBOX_AGENT_MAPPINGS", "DEFAULT_RESPONSE_TIMEOUT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(extra)
    return env


class ChildProcess:
    """One child: ``python -m …`` with its output in a log file."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
    ) -> None:
        self.name = name
        self.argv = [sys.executable, *args]
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


@dataclass
class ProcessStats:
    """CPU seconds over the measured window and peak resident memory of one process."""

    name: str
    pid: int
    cpu_seconds: float
    peak_rss_mb: float


def _peak_rss_kernel(pid: int) -> int | None:
    """``VmHWM`` (peak RSS) in bytes from ``/proc``, where the kernel keeps it."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class ResourceMonitor:
    """Samples CPU time and memory of named processes while a run goes on."""

    def __init__(
        self,
        pids: Mapping[str, int],
        interval: float = 0.25,
        *,
        sampled_only: Collection[str] = (),
    ) -> None:
        """Watch ``pids`` by name.

        Args:
            pids: the processes, by the name they are reported under.
            interval: seconds between samples.
            sampled_only: processes that lived before the run (the benchmark itself): their
                kernel high-water mark covers earlier runs, so only this run's samples count.
        """
        self.interval = interval
        self._sampled_only = set(sampled_only)
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._cpu_start: dict[str, float] = {}
        self._cpu_last: dict[str, float] = {}
        self._peak: dict[str, int] = dict.fromkeys(pids, 0)
        self._task: asyncio.Task[None] | None = None

    def _cpu(self, name: str) -> float | None:
        try:
            times = self._procs[name].cpu_times()
        except psutil.Error:
            return None
        return float(times.user + times.system)

    def _sample(self) -> None:
        for name, proc in self._procs.items():
            cpu = self._cpu(name)
            if cpu is not None:
                self._cpu_last[name] = cpu
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            kernel_peak = 0 if name in self._sampled_only else _peak_rss_kernel(proc.pid) or 0
            self._peak[name] = max(self._peak[name], rss, kernel_peak)

    def start(self) -> None:
        """Begin the measured window (CPU seconds count from here) and sampling."""
        for name in self._procs:
            cpu = self._cpu(name)
            self._cpu_start[name] = cpu or 0.0
            self._cpu_last[name] = cpu or 0.0
        self._sample()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._sample()

    async def stop(self) -> list[ProcessStats]:
        """End the window; returns one ``ProcessStats`` per process."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample()
        return [
            ProcessStats(
                name=name,
                pid=proc.pid,
                cpu_seconds=round(self._cpu_last[name] - self._cpu_start.get(name, 0.0), 3),
                peak_rss_mb=round(self._peak[name] / 2**20, 1),
            )
            for name, proc in self._procs.items()
        ]
