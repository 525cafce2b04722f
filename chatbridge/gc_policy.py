"""The serving process's garbage-collector policy: long-lived objects frozen out of the way.

Why. CPython frees most objects by reference counting; its cyclic collector exists for
reference cycles. It keeps three generations, and a *full* (generation 2) collection walks
every tracked object in the process while the event loop waits. A bridge holding 10,000 widget
sockets holds over 2 M such objects (about 200 per socket: tasks, coroutines, futures, queues,
the protocol objects), and a full collection of them stopped the loop for 1.5 to 1.9 s about every
20 s: every reply in flight waited that long (``docs/benchmarks.md``, "Web chat").

What this does, once the server has started (``GcPolicy.start``):

1. **Freeze once warm.** One full collection, then ``gc.freeze()``: modules, classes, routes,
   settings and everything else alive after start-up move to the *permanent* generation, which
   no collection walks. A second, nearly free collection resets CPython's count of old
   objects, so its next full collection comes as soon as a few new objects have aged.
2. **Freeze the survivors of every full collection.** CPython still decides when to collect,
   young generations and full collections alike. Right after each full collection, whatever
   survived it (the live objects: sockets opened meanwhile, sessions, caches) is frozen too.
   So a full collection only ever walks the objects that grew old since the previous one; its
   pause follows the process's recent allocation, not its size.
3. **Compact rarely, at a quiet moment.** Reference counting still frees frozen objects, but
   a frozen object that later becomes *cyclic* garbage (a closed socket's task and coroutine
   referring to each other, say) is out of the collector's reach while frozen. So every
   ``interval`` (an hour), and sooner when the process's resident memory has grown ``growth``
   times (2x) since the last time but not before ``min_interval`` (10 min), the policy
   unfreezes and runs one complete collection, which frees that garbage and freezes the rest
   again. Once due, it waits for a quiet tick, one in which the collector ran at most
   ``quiet_collections`` times (young collections follow the allocation rate), for up to
   ``max_defer`` (5 min), then compacts anyway. Frozen garbage is thereby at most what leaks in
   an ``interval`` (plus ``max_defer``), and never more than about doubles the memory; the cost
   is one pause over the whole heap (about 1.5 s with 10,000 sockets) once an hour, at a quiet
   moment.

The policy never counts the frozen objects while serving: ``gc.get_freeze_count()`` walks the
whole permanent generation (40 ms for 2 M objects), so the growth it watches is the resident
memory (``/proc/self/statm``, microseconds). Freezing itself moves the collector's lists, not
objects: ``gc.freeze``/``gc.unfreeze`` are O(1). ``CompactionSchedule`` holds the decisions
(no I/O, no clock of its own); ``GcPolicy`` applies them to the ``gc`` module from a one-second
tick on the event loop. ``Settings.gc_freeze`` (``CHATBRIDGE_GC_FREEZE``, default on) turns it
off: the process then runs CPython's collector unchanged.

Observed at ``GET /metrics`` (``GcMetrics``): ``chatbridge_gc_full_collections_total`` and
``…_seconds_total``, ``chatbridge_gc_longest_full_collection_seconds``,
``chatbridge_gc_freezes_total``, ``chatbridge_gc_compactions_total`` and ``…_seconds_total``.
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
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("chatbridge.gc")

TICK_SECONDS = 1.0


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
    """A tick in which the collector ran at most this many times is a quiet moment."""
    max_defer: float = 300.0
    """Seconds a due compaction waits for a quiet tick before it runs anyway."""


class CompactionSchedule:
    """Decides when to compact. Times and memory are the caller's (seconds, bytes); no I/O."""

    def __init__(self, rule: CompactionRule, *, now: float, memory: int) -> None:
        self.rule = rule
        self.baseline = memory
        """Resident memory right after the start or the last compaction."""
        self.last = now
        self.due_since: float | None = None

    def due(self, *, now: float, memory: int, collections: int) -> bool:
        """Whether to compact now, given the resident memory and how many collections ran
        since the previous tick (how busy the process is)."""
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
class GcStats:
    """What the policy saw and did, since ``start`` (read by ``GcMetrics`` and the log)."""

    full_collections: int = 0
    """CPython's own full collections (compactions not counted)."""
    full_seconds: float = 0.0
    longest_full_seconds: float = 0.0
    young_collections: int = 0
    freezes: int = 0
    compactions: int = 0
    compaction_seconds: float = 0.0
    compacted_garbage: int = 0
    """Unreachable objects the compactions found (the frozen garbage they freed, mostly)."""


class GcPolicy:
    """Applies the policy to this process's collector (one per process; see the module
    docstring). ``start`` on the event loop once the server is up, ``stop`` on shutdown.

    Args:
        rule: when to compact.
        tick_seconds: how often to look whether a compaction is due.
        clock: monotonic seconds; ``memory``: resident bytes (tests pass fakes of both and
            call ``tick`` themselves).
    """

    def __init__(
        self,
        rule: CompactionRule | None = None,
        *,
        tick_seconds: float = TICK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        memory: Callable[[], int] = resident_bytes,
    ) -> None:
        self.rule = rule or CompactionRule()
        self.tick_seconds = tick_seconds
        self.clock = clock
        self.memory = memory
        self.stats = GcStats()
        self.schedule: CompactionSchedule | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self._collections_seen = 0
        self._compacting = False

    @property
    def running(self) -> bool:
        return self.schedule is not None

    def start(self, *, tick: bool = True) -> None:
        """Freeze what start-up left alive and follow the collector from now on. Call it on
        the running event loop; ``tick=False`` leaves the ticking to the caller (tests)."""
        if self.schedule is not None:
            return
        self._loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self._freeze_all()
        self.schedule = CompactionSchedule(self.rule, now=self.clock(), memory=self.memory())
        gc.callbacks.append(self._on_collection)
        if tick:
            self._task = self._loop.create_task(self._run(), name="gc-policy")
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
        s = self.stats
        log.info(
            "garbage collector: %d full collections (%.3f s in all, longest %.3f s), "
            "%d compactions (%.3f s, %d objects freed)",
            s.full_collections,
            s.full_seconds,
            s.longest_full_seconds,
            s.compactions,
            s.compaction_seconds,
            s.compacted_garbage,
        )

    def tick(self) -> bool:
        """Compact if it is due; returns whether it did."""
        schedule = self.schedule
        if schedule is None:
            return False
        seen = self.stats.young_collections + self.stats.full_collections
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
        garbage = self._freeze_all(unfreeze=True)
        elapsed = time.perf_counter() - started
        s = self.stats
        s.compactions += 1
        s.compaction_seconds += elapsed
        s.compacted_garbage += garbage
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

    def _freeze_all(self, *, unfreeze: bool = False) -> int:
        """One complete collection, freeze the survivors, then an (almost free) collection of
        the empty old generation: CPython sizes its next full collection by what the last one
        left, and this makes that nothing. Returns the unreachable objects found."""
        self._compacting = True
        try:
            if unfreeze:
                gc.unfreeze()
            garbage = gc.collect()
            gc.freeze()
            gc.collect()
            self.stats.freezes += 1
            return garbage
        finally:
            self._compacting = False

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        # In ``gc.callbacks``: runs inside every collection, on whichever thread triggered
        # it. Only counts and schedules here: no locks (a metric's lock could be held by the
        # code the collection interrupted), no logging.
        if self._compacting:
            return
        if phase == "start":
            self._started_at = time.perf_counter()
            return
        s = self.stats
        if info.get("generation") != 2:
            s.young_collections += 1
            return
        elapsed = time.perf_counter() - self._started_at
        s.full_collections += 1
        s.full_seconds += elapsed
        s.longest_full_seconds = max(s.longest_full_seconds, elapsed)
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to freeze for
                loop.call_soon_threadsafe(self._freeze_survivors)

    def _freeze_survivors(self) -> None:
        """Right after a full collection: what it left alive moves out of the next one's way."""
        if self.schedule is None:
            return
        gc.freeze()
        self.stats.freezes += 1

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                self.tick()
            except Exception:  # pragma: no cover - the policy must never take the server down
                log.exception("garbage collector policy tick failed")


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
        s = self.policy.stats

        def value(v: float) -> float | None:
            return v if read else None

        yield CounterMetricFamily(
            "chatbridge_gc_full_collections",
            "Full (generation 2) collections CPython ran, compactions not counted",
            value=value(s.full_collections),
        )
        yield CounterMetricFamily(
            "chatbridge_gc_full_collection_seconds",
            "Time the event loop stood still in those full collections",
            value=value(s.full_seconds),
        )
        yield GaugeMetricFamily(
            "chatbridge_gc_longest_full_collection_seconds",
            "The longest of those full collections",
            value=value(s.longest_full_seconds),
        )
        yield CounterMetricFamily(
            "chatbridge_gc_freezes",
            "Times the survivors of a full collection were frozen",
            value=value(s.freezes),
        )
        yield CounterMetricFamily(
            "chatbridge_gc_compactions",
            "Complete collections with everything unfrozen (frees frozen cyclic garbage)",
            value=value(s.compactions),
        )
        yield CounterMetricFamily(
            "chatbridge_gc_compaction_seconds",
            "Time the event loop stood still in compactions",
            value=value(s.compaction_seconds),
        )
