"""Measuring the processes of a benchmark run: CPU seconds and peak memory.

The children themselves (bridge, mock agent, mock channel, baseline, ``redis-server``) are
``chatbridge.testing.processes.ChildProcess`` objects, started and stopped by the scenarios.

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
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import psutil


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
