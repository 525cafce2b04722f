"""The serving process's garbage-collector policy: what lives longer than a moment is frozen.

Why. CPython frees most objects by reference counting; its cyclic collector exists for
reference cycles. A collection of a generation walks every object in it (and in the younger
ones) while the event loop waits. A bridge with 10,000 open widget sockets holds over 2 M
tracked objects (about 175 per socket: tasks, coroutines, futures, the protocol objects), and
with CPython's defaults that costs it twice:

* a *full* collection walks all of them: 1.5 to 1.9 s, about every 20 s under load;
* *young* collections grow too. CPython starts one when allocations *minus deallocations* of
  tracked objects pass a threshold, and a process whose old objects die about as fast as new
  ones are made (10,000 sockets renewing their waits as frames come and go) seldom gets
  there: its youngest generation grew to 26,000 objects, and collections of the young
  generations took 13 to 50 ms (the first) and up to 250 ms (the second).

What this policy does, once the server has started (``GcPolicy.start``):

1. **Freeze once warm.** One full collection, then ``gc.freeze()``: modules, classes, routes,
   settings and everything else alive after start-up move to the *permanent* generation,
   which no collection walks.
2. **Sweep every 100 ms.** A collection of the two young generations, which now hold only what
   was made since the previous sweep, then ``gc.freeze()`` again: whatever is still alive
   then (an open socket's objects, a session, a cached statement) leaves the collector's way
   for good. Every object is walked about once, young; garbage cycles that die young are
   freed by that walk as before. A sweep takes a few milliseconds under load. CPython's own
   collections still run as they would; they find little to walk.
3. **Compact rarely, at a quiet moment.** Reference counting still frees frozen objects, but a
   frozen object that later becomes *cyclic* garbage (a closed socket's task and coroutine
   referring to each other, say) is out of the collector's reach while frozen. So every
   ``interval`` (an hour), and sooner when the process's resident memory has grown ``growth``
   times (2x) since the last time but not before ``min_interval`` (10 min), the policy
   unfreezes and runs one complete collection, which frees that garbage and freezes the rest
   again. Once due, it waits for a quiet second, one in which CPython's collector ran at most
   ``quiet_collections`` times (its collections follow the allocation rate), for up to
   ``max_defer`` (5 min), then compacts anyway. Frozen garbage is thereby at most what leaks in
   an ``interval`` (plus ``max_defer``); the cost is one pause over the whole heap (about
   1.5 s with 10,000 sockets), once an hour, at a quiet moment.

The policy never counts the frozen objects while serving: ``gc.get_freeze_count()`` walks the
whole permanent generation (40 ms for 2 M objects), so the growth it watches is the resident
memory (``/proc/self/statm``, microseconds). Freezing moves the collector's lists, not
objects: ``gc.freeze``/``gc.unfreeze`` are O(1). ``CompactionSchedule`` holds the decisions
(no I/O, no clock of its own); ``GcPolicy`` applies them to the ``gc`` module from a task on
the event loop. ``Settings.gc_freeze`` (``CHATBRIDGE_GC_FREEZE``, default on) turns it off:
the process then runs CPython's collector unchanged.

Observed at ``GET /metrics`` (``GcMetrics``): ``chatbridge_gc_collections_total``,
``chatbridge_gc_collection_seconds_total`` and ``chatbridge_gc_longest_collection_seconds``,
each by ``kind``: ``young`` and ``full`` (CPython's own), ``sweep``, ``compaction``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("chatbridge.gc")

SWEEP_SECONDS = 0.1
TICK_SECONDS = 1.0
KINDS = ("young", "full", "sweep", "compaction")


def resident_bytes() -> int:
    """This process's resident memory now (Linux), else the most it has had."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024


@dataclass(frozen=True, slots=True)
class CompactionRule:
    """When frozen garbage is worth a complete collection (see the module docstring)."""

    interval: float = 3600.0
    """Seconds between compactions: frozen garbage is at most what leaks in this time."""
    growth: float = 2.0
    """Sooner (after ``min_interval``) when resident memory is this many times what it was."""
    min_interval: float = 600.0
    """Seconds from the start or the previous compaction before a growth-driven one."""
    quiet_collections: int = 2
    """A second in which CPython collected at most this many times is a quiet moment."""
    max_defer: float = 300.0
    """Seconds a due compaction waits for a quiet second before it runs anyway."""


class CompactionSchedule:
    """Decides when to compact. Times and memory are the caller's (seconds, bytes); no I/O."""

    def __init__(self, rule: CompactionRule, *, now: float, memory: int) -> None:
        self.rule = rule
        self.baseline = memory
        """Resident memory right after the start or the last compaction."""
        self.last = now
        self.due_since: float | None = None

    def due(self, *, now: float, memory: int, collections: int) -> bool:
        """Whether to compact now, given the resident memory and how many collections CPython
        ran since the previous look (how busy the process is)."""
        rule = self.rule
        age = now - self.last
        grown = age >= rule.min_interval and memory >= self.baseline * rule.growth
        if age < rule.interval and not grown:
            self.due_since = None
            return False
        if self.due_since is None:
            self.due_since = now
        return collections <= rule.quiet_collections or now - self.due_since >= rule.max_defer

    def compacted(self, *, now: float, memory: int) -> None:
        """A compaction ran; ``memory`` is the resident memory after it."""
        self.baseline = memory
        self.last = now
        self.due_since = None


@dataclass(slots=True)
class Pauses:
    """How often the loop stood still for one kind of collection, and how long."""

    count: int = 0
    seconds: float = 0.0
    longest: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        self.longest = max(self.longest, seconds)


@dataclass(slots=True)
class GcStats:
    """What the policy saw and did since ``start`` (read by ``GcMetrics`` and the log)."""

    pauses: dict[str, Pauses] = field(default_factory=lambda: {k: Pauses() for k in KINDS})
    compacted_garbage: int = 0
    """Unreachable objects the compactions found (the frozen garbage they freed, mostly)."""


class GcPolicy:
    """Applies the policy to this process's collector (one per process; see the module
    docstring). ``start`` on the event loop once the server is up, ``stop`` on shutdown.

    Args:
        rule: when to compact.
        sweep_seconds: how often to sweep (collect the young generations, freeze the rest).
        tick_seconds: how often to look whether a compaction is due.
        clock: monotonic seconds; ``memory``: resident bytes (tests pass fakes of both and
            call ``sweep`` and ``tick`` themselves).
    """

    def __init__(
        self,
        rule: CompactionRule | None = None,
        *,
        sweep_seconds: float = SWEEP_SECONDS,
        tick_seconds: float = TICK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        memory: Callable[[], int] = resident_bytes,
    ) -> None:
        self.rule = rule or CompactionRule()
        self.sweep_seconds = sweep_seconds
        self.tick_seconds = tick_seconds
        self.clock = clock
        self.memory = memory
        self.stats = GcStats()
        self.schedule: CompactionSchedule | None = None
        self._task: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self._collections_seen = 0
        self._ours = False

    def start(self, *, run: bool = True) -> None:
        """Freeze what start-up left alive and follow the collector from now on. Call it on
        the running event loop; ``run=False`` leaves sweeps and ticks to the caller (tests)."""
        if self.schedule is not None:
            return
        started = time.perf_counter()
        self._collect(2, unfreeze=False)
        self.schedule = CompactionSchedule(self.rule, now=self.clock(), memory=self.memory())
        gc.callbacks.append(self._on_collection)
        if run:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gc-policy")
        log.info(
            "garbage collector: what start-up left alive frozen in %.3f s",
            time.perf_counter() - started,
        )

    async def stop(self) -> None:
        """Stop following the collector and unfreeze: the process is CPython's default again."""
        if self.schedule is None:
            return
        self.schedule = None
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_collection)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        gc.unfreeze()
        log.info(
            "garbage collector: %s; %d objects freed by compactions",
            ", ".join(
                f"{p.count} {kind} ({p.seconds:.3f} s, longest {p.longest * 1000:.1f} ms)"
                for kind, p in self.stats.pauses.items()
            ),
            self.stats.compacted_garbage,
        )

    def sweep(self) -> None:
        """Collect the young generations, then freeze whatever is alive."""
        started = time.perf_counter()
        self._collect(1, unfreeze=False)
        self.stats.pauses["sweep"].add(time.perf_counter() - started)

    def tick(self) -> bool:
        """Compact if it is due; returns whether it did."""
        schedule = self.schedule
        if schedule is None:
            return False
        p = self.stats.pauses
        seen = p["young"].count + p["full"].count
        busy, self._collections_seen = seen - self._collections_seen, seen
        if not schedule.due(now=self.clock(), memory=self.memory(), collections=busy):
            return False
        self.compact()
        return True

    def compact(self) -> None:
        """Unfreeze, collect everything, freeze again: frees the frozen cyclic garbage. One
        pause over the whole heap."""
        before = self.memory()
        started = time.perf_counter()
        garbage = self._collect(2, unfreeze=True)
        elapsed = time.perf_counter() - started
        self.stats.pauses["compaction"].add(elapsed)
        self.stats.compacted_garbage += garbage
        after = self.memory()
        if self.schedule is not None:
            self.schedule.compacted(now=self.clock(), memory=after)
        log.info(
            "garbage collector compacted in %.3f s: %d unreachable objects freed, "
            "resident memory %.0f MB before, %.0f MB after",
            elapsed,
            garbage,
            before / 2**20,
            after / 2**20,
        )

    # -- the collector's side ---------------------------------------------------------------

    def _collect(self, generation: int, *, unfreeze: bool) -> int:
        """Collect up to ``generation`` and freeze what is left. After a complete collection,
        another of the (then empty) old generation: CPython sizes its next full collection by
        what the last one left, and this makes that nothing. Returns the unreachable
        objects found."""
        self._ours = True
        try:
            if unfreeze:
                gc.unfreeze()
            garbage = gc.collect(generation)
            gc.freeze()
            if generation == 2:
                gc.collect()
            return garbage
        finally:
            self._ours = False

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        # In ``gc.callbacks``: runs inside every collection, on whichever thread triggered it.
        # Only counts here: no locks (a metric's lock may be held by the code the collection
        # interrupted), no logging.
        if self._ours:
            return
        if phase == "start":
            self._started_at = time.perf_counter()
            return
        kind = "full" if info.get("generation") == 2 else "young"
        self.stats.pauses[kind].add(time.perf_counter() - self._started_at)

    async def _run(self) -> None:
        every = max(1, round(self.tick_seconds / self.sweep_seconds))
        n = 0
        while True:
            await asyncio.sleep(self.sweep_seconds)
            n += 1
            try:
                if n % every == 0 and self.tick():
                    continue  # the compaction froze everything
                self.sweep()
            except Exception:  # pragma: no cover - the policy must never take the server down
                log.exception("garbage collector policy failed")


class GcMetrics(Collector):
    """The policy's figures at ``GET /metrics``, read at scrape time (never a count of the
    frozen objects: that walks them all)."""

    def __init__(self, policy: GcPolicy) -> None:
        self.policy = policy

    def describe(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield from self._families(read=False)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield from self._families(read=True)

    def _families(self, *, read: bool) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        count = CounterMetricFamily(
            "chatbridge_gc_collections",
            "Garbage collections by kind: young and full (CPython's own), sweep (the policy's "
            "every 100 ms), compaction (everything unfrozen, rare)",
            labels=["kind"],
        )
        seconds = CounterMetricFamily(
            "chatbridge_gc_collection_seconds",
            "Time the event loop stood still in garbage collections, by kind",
            labels=["kind"],
        )
        longest = GaugeMetricFamily(
            "chatbridge_gc_longest_collection_seconds",
            "The longest garbage collection of each kind since start",
            labels=["kind"],
        )
        if read:
            for kind, p in self.policy.stats.pauses.items():
                count.add_metric([kind], p.count)
                seconds.add_metric([kind], p.seconds)
                longest.add_metric([kind], p.longest)
        yield count
        yield seconds
        yield longest
