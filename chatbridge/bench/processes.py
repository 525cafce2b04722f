"""Child processes of a benchmark: start, wait until they answer, measure, stop.

Each child (bridge, mock agent, mock channel, baseline; ``redis-server`` for a run with
several bridge replicas) is its own process on loopback, started in a session of its own so a
Ctrl-C in the terminal reaches only the benchmark, which then stops its children in order.
On Linux a child also gets SIGTERM from the kernel if the benchmark itself dies
(``PR_SET_PDEATHSIG``), so nothing outlives a crash.

``ResourceMonitor`` samples each process with psutil: CPU seconds (user + system) over the
measured window and peak resident memory (the kernel's high-water mark ``VmHWM`` where there
is one, else the highest sample; for the benchmark's own process, which outlives a run, the
highest sample of this run). It also counts the CPU seconds the whole machine was busy over
the same window (``machine_cpu_seconds``): what the measured processes do not account for is
the PostgreSQL server's share, and anything else running on the machine.
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
    """The benchmark's environment without Chatbridge/Chatwoot settings, plus ``extra``.

    A developer's own ``CHATBRIDGE_*`` variables must not leak into a measured bridge.
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


@dataclass
class ProcessStats:
    """CPU seconds over the measured window and peak resident memory of one process (or of a
    group of processes, ``pid`` 0: see ``ResourceMonitor``'s ``groups``)."""

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


def machine_busy_seconds() -> float:
    """CPU seconds the machine has been busy since boot, over all CPUs (not idle, not I/O
    wait, not stolen by the hypervisor; guest time is already inside user time)."""
    times = psutil.cpu_times()
    busy = times.user + times.system
    for extra in ("nice", "irq", "softirq"):
        busy += getattr(times, extra, 0.0)
    return float(busy)


class ResourceMonitor:
    """Samples CPU time and memory of named processes while a run goes on."""

    def __init__(
        self,
        pids: Mapping[str, int],
        interval: float = 0.25,
        *,
        sampled_only: Collection[str] = (),
        groups: Mapping[str, str] | None = None,
    ) -> None:
        """Watch ``pids`` by name.

        Args:
            pids: the processes, by the name they are reported under.
            interval: seconds between samples.
            sampled_only: processes that lived before the run (the benchmark itself): their
                kernel high-water mark covers earlier runs, so only this run's samples count.
            groups: name → a text in the command line of processes that are not ours but
                work for the run (the PostgreSQL backends of its database, whose titles name
                it). Each group is reported as one process: the CPU seconds of its members
                over the window (members that come later count from their start), and the
                peak of their resident memory *minus shared pages* added up (a backend's RSS
                includes the shared buffers it touched, which belong to the server).
        """
        self.interval = interval
        self._sampled_only = set(sampled_only)
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._cpu_start: dict[str, float] = {}
        self._cpu_last: dict[str, float] = {}
        self._peak: dict[str, int] = dict.fromkeys(pids, 0)
        self._groups = dict(groups or {})
        self._members: dict[str, dict[int, psutil.Process]] = {g: {} for g in self._groups}
        self._looked_at: set[int] = set()
        for group in self._groups:
            self._peak[group] = 0
        self._task: asyncio.Task[None] | None = None
        self._machine_start: float | None = None
        self.machine_cpu_seconds: float | None = None
        """CPU seconds the whole machine was busy over the window (set by ``stop()``)."""

    def _cpu(self, name: str) -> float | None:
        try:
            times = self._procs[name].cpu_times()
        except psutil.Error:
            return None
        return float(times.user + times.system)

    def _discover(self, *, counting_from_now: bool) -> None:
        """Find new members of the groups (each pid is looked at once)."""
        for pid in psutil.pids():
            if pid in self._looked_at:
                continue
            self._looked_at.add(pid)
            try:
                proc = psutil.Process(pid)
                command = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            for group, needle in self._groups.items():
                if needle in command:
                    key = f"{group}/{pid}"
                    self._members[group][pid] = proc
                    try:
                        times = proc.cpu_times()
                        cpu = float(times.user + times.system)
                    except psutil.Error:
                        cpu = 0.0
                    self._cpu_start[key] = cpu if counting_from_now else 0.0
                    self._cpu_last[key] = cpu

    def _sample_groups(self) -> None:
        self._discover(counting_from_now=False)
        for group, members in self._members.items():
            private = 0
            for pid, proc in members.items():
                try:
                    times = proc.cpu_times()
                    memory = proc.memory_info()
                except psutil.Error:
                    continue  # gone: its last CPU figure stays
                self._cpu_last[f"{group}/{pid}"] = float(times.user + times.system)
                private += memory.rss - getattr(memory, "shared", 0)
            self._peak[group] = max(self._peak[group], private)

    def _group_cpu(self, group: str) -> float:
        return sum(
            self._cpu_last[f"{group}/{pid}"] - self._cpu_start[f"{group}/{pid}"]
            for pid in self._members[group]
        )

    def _sample(self) -> None:
        if self._groups:
            self._sample_groups()
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
        if self._groups:
            self._discover(counting_from_now=True)
        self._machine_start = machine_busy_seconds()
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
        if self._machine_start is not None:
            self.machine_cpu_seconds = round(machine_busy_seconds() - self._machine_start, 3)
        return [
            ProcessStats(
                name=name,
                pid=proc.pid,
                cpu_seconds=round(self._cpu_last[name] - self._cpu_start.get(name, 0.0), 3),
                peak_rss_mb=round(self._peak[name] / 2**20, 1),
            )
            for name, proc in self._procs.items()
        ] + [
            ProcessStats(
                name=group,
                pid=0,
                cpu_seconds=round(self._group_cpu(group), 3),
                peak_rss_mb=round(self._peak[group] / 2**20, 1),
            )
            for group in self._groups
        ]
