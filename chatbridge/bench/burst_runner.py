"""One ``burst`` run: customers typing bursts, each waiting for the bot before the next.

``chatbridge bench burst`` runs the same customers twice — on a route without debounce (each
fragment its own turn, one model call per message) and on a route with ``debounce_ms`` — so
the report shows what the debounce saves in model calls and what it adds in latency.

Each of N customers (one Chatwoot conversation each) types a burst of 3 to 5 fragments (the
size drawn from a generator seeded per conversation, so both runs type the same bursts),
``gap`` seconds apart send to send, each one a signed ``message_created`` webhook; then waits
until every fragment of the burst is answered (at most ``reply_timeout``), reads for about
``read_pause`` seconds, and types the next burst, until the run's duration is up. The
customers start spread over the first second, so the bursts do not all line up.

What a run measures, over the load and its last replies: the figures of
``burst_accounting.tally_bursts``, the CPU seconds of every process (``ResourceMonitor``) and
what the bridge's store counted (its ``/metrics``), per customer message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from chatbridge.bench.accounting import MessageKey, Reply, parse_markers
from chatbridge.bench.burst_accounting import (
    Burst,
    BurstTally,
    Fragment,
    ModelCall,
    burst_gaps,
    model_calls,
    tally_bursts,
)
from chatbridge.bench.burst_agent import read_turn_log
from chatbridge.bench.costs import StoreTotals, is_bridge, scrape_store_totals, store_difference
from chatbridge.bench.databases import fresh_database
from chatbridge.bench.loadgen import ReplyFeed
from chatbridge.bench.processes import ProcessStats, ResourceMonitor
from chatbridge.bench.runner import LOADGEN, server_processes
from chatbridge.bench.scenarios.base import StackContext
from chatbridge.bench.scenarios.burst import BurstStack

GAP = 0.3
"""Seconds between a burst's fragments, send to send: a customer typing quickly."""
FRAGMENTS = (3, 5)
"""Fragments per burst, smallest and largest."""
READ_PAUSE = 1.0
"""About how long (± half) a customer reads the reply before typing the next burst."""
START_SPREAD = 1.0
"""The customers start at random moments within this many seconds."""
SEND_ATTEMPTS = 3
"""Tries per fragment (Chatwoot retries a webhook too; the bridge takes a retry as a
duplicate of the same message)."""


@dataclass(frozen=True)
class BurstLoad:
    """What the customers do."""

    conversations: int
    duration: float
    gap: float = GAP
    jitter: float = 0.0
    """Each gap is ``gap`` plus or minus up to this many seconds."""
    fragments: tuple[int, int] = FRAGMENTS
    read_pause: float = READ_PAUSE
    seed: int = 14
    reply_timeout: float = 15.0
    """How long a customer waits for a burst's answer before counting it unanswered."""


@dataclass(frozen=True)
class BurstSpec:
    """One run: a load, a database and the route's debounce (0: none)."""

    label: str
    load: BurstLoad
    database: str = "sqlite"
    debounce_ms: int = 0
    max_wait_ms: int = 5000
    think_seconds: float = 0.0

    def policies(self) -> dict[str, Any] | None:
        """The route's policies: ``None`` (the defaults) without debounce."""
        if self.debounce_ms <= 0:
            return None
        return {"debounce_ms": self.debounce_ms, "max_wait_ms": self.max_wait_ms}


@dataclass
class BurstResult:
    """What a burst run measured."""

    spec: BurstSpec
    tally: BurstTally
    load_seconds: float
    processes: list[ProcessStats]
    machine_cpu_seconds: float | None = None
    store_counts: dict[str, StoreTotals] | None = None
    settings: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fragments: list[Fragment] = field(default_factory=list, repr=False)
    bursts: list[Burst] = field(default_factory=list, repr=False)
    calls: list[ModelCall] = field(default_factory=list, repr=False)
    replies: list[Reply] = field(default_factory=list, repr=False)

    @property
    def valid(self) -> bool:
        return self.tally.valid

    def _per_message(self, value: float | None, scale: float = 1.0) -> float | None:
        if value is None or not self.tally.acknowledged:
            return None
        return value * scale / self.tally.acknowledged

    @property
    def bridge_cpu_ms_per_message(self) -> float | None:
        """Bridge CPU milliseconds per customer message (fragment acknowledged)."""
        bridges = [p.cpu_seconds for p in self.processes if is_bridge(p)]
        return self._per_message(sum(bridges), 1000) if bridges else None

    def store_per_message(self, key: str) -> float | None:
        """``statements``, ``transactions`` or ``round_trips`` per customer message."""
        if self.store_counts is None:
            return None
        return self._per_message(sum(c.get(key, 0) for c in self.store_counts.values()))

    def to_json(self, *, raw: bool = True) -> dict[str, Any]:
        """The result as plain JSON data; ``raw`` adds every fragment, turn and reply."""
        data: dict[str, Any] = {
            "label": self.spec.label,
            "scenario": "burst",
            "database": self.spec.database,
            "load": asdict(self.spec.load),
            "policies": self.spec.policies(),
            "think_seconds": self.spec.think_seconds,
            "valid": self.valid,
            "counts": self.tally.to_json(),
            "load_seconds": self.load_seconds,
            "bridge_cpu_ms_per_customer_message": self.bridge_cpu_ms_per_message,
            "statements_per_customer_message": self.store_per_message("statements"),
            "transactions_per_customer_message": self.store_per_message("transactions"),
            "server_round_trips_per_customer_message": self.store_per_message("round_trips"),
            "processes": [asdict(p) for p in self.processes],
            "machine_cpu_seconds": self.machine_cpu_seconds,
            "store_counts": self.store_counts,
            "settings": self.settings,
            "notes": self.notes,
        }
        if raw:
            data["fragments"] = {
                "columns": ["conversation", "seq", "burst", "sent_at", "acked_at", "error"],
                "rows": [
                    [f.conversation, f.seq, f.burst, f.sent_at, f.acked_at, f.error]
                    for f in self.fragments
                ],
            }
            data["model_calls"] = [
                {"at": c.at, "fragments": [None if k is None else list(k) for k in c.keys]}
                for c in self.calls
            ]
            data["replies"] = {
                "columns": ["conversation", "content", "received_at"],
                "rows": [[r.conversation, r.content, r.received_at] for r in self.replies],
            }
        return data


class ReplyWatch:
    """Which fragments have been answered, and when; wakes the customer waiting for them."""

    def __init__(self) -> None:
        self.answered: dict[MessageKey, float] = {}
        self._arrived: dict[int, asyncio.Event] = {}

    def _event(self, conversation: int) -> asyncio.Event:
        return self._arrived.setdefault(conversation, asyncio.Event())

    def on_reply(self, reply: Reply) -> None:
        for key in parse_markers(reply.content):
            self.answered.setdefault(key, reply.received_at)
        self._event(reply.conversation).set()

    async def wait_answered(
        self, conversation: int, keys: list[MessageKey], timeout: float
    ) -> bool:
        """Wait until every one of ``keys`` is answered; ``False`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        arrived = self._event(conversation)
        while not all(k in self.answered for k in keys):
            remaining = give_up - loop.time()
            if remaining <= 0:
                return False
            arrived.clear()  # no await since the check: a reply cannot slip in between
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), remaining)
        return True


class BurstReplyFeed(ReplyFeed):
    """The runs' ``ReplyFeed``, telling a ``ReplyWatch`` about each reply as it arrives."""

    def __init__(self, stack: BurstStack, http: aiohttp.ClientSession, watch: ReplyWatch) -> None:
        super().__init__(stack, http)
        self.watch = watch

    async def poll(self, wait: float = 0.0) -> int:
        before = len(self.replies)
        count = await super().poll(wait)
        for reply in self.replies[before:]:
            self.watch.on_reply(reply)
        return count


class Customers:
    """The customers of a run, typing bursts until ``deadline`` (``time.time()``)."""

    def __init__(
        self, stack: BurstStack, load: BurstLoad, http: aiohttp.ClientSession, watch: ReplyWatch
    ) -> None:
        self.stack = stack
        self.load = load
        self.http = http
        self.watch = watch
        self.fragments: list[Fragment] = []
        self.bursts: list[Burst] = []

    async def run(self, deadline: float) -> None:
        async with asyncio.TaskGroup() as group:
            for conversation in range(1, self.load.conversations + 1):
                group.create_task(self._customer(conversation, deadline))

    async def _customer(self, conversation: int, deadline: float) -> None:
        load = self.load
        rng = random.Random(f"{load.seed}:{conversation}")
        await asyncio.sleep(rng.uniform(0, START_SPREAD))
        seq = 0
        index = 0
        while time.time() < deadline:
            size = rng.randint(*load.fragments)
            gaps = burst_gaps(rng, size, load.gap, load.jitter)
            sent: list[Fragment] = []
            for i in range(size):
                if i:
                    # paced send to send, whatever the acknowledgement took
                    await asyncio.sleep(max(0.0, sent[-1].sent_at + gaps[i - 1] - time.time()))
                fragment = Fragment(conversation, seq, index, sent_at=time.time())
                seq += 1
                self.fragments.append(fragment)
                sent.append(fragment)
                await self._send(fragment)
            self.bursts.append(
                Burst(conversation, index, tuple(f.seq for f in sent), sent[-1].sent_at)
            )
            index += 1
            keys = [f.key for f in sent if f.acked_at is not None]
            await self.watch.wait_answered(conversation, keys, load.reply_timeout)
            await asyncio.sleep(load.read_pause * rng.uniform(0.5, 1.5))

    async def _send(self, fragment: Fragment) -> None:
        request = self.stack.request(fragment.conversation, fragment.seq)
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                async with self.http.post(
                    request.url, data=request.body, headers=request.headers
                ) as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                fragment.error = f"{type(exc).__name__}: {exc}"
            else:
                if self.stack.acknowledged(status, body):
                    fragment.acked_at = time.time()
                    fragment.error = None
                    return
                fragment.error = f"HTTP {status}: {body[:200].decode(errors='replace')}"
                if 400 <= status < 500 and status not in (408, 429):
                    return
            if attempt < SEND_ATTEMPTS:
                await asyncio.sleep(0.05 * attempt)


Status = Callable[[str, float], None]
"""Progress callback: (what is happening, seconds of load done)."""


async def run_burst(
    spec: BurstSpec, *, workroot: Path | None = None, status: Status | None = None
) -> BurstResult:
    """Run ``spec`` from a fresh database to a counted result; the processes it started are
    stopped however it ends.

    Raises:
        RuntimeError: a process did not start (the message has its log's tail).
    """
    say: Status = status or (lambda _text, _done: None)
    load = spec.load
    with tempfile.TemporaryDirectory(prefix="chatbridge-bench-", dir=workroot) as tmp:
        workdir = Path(tmp)
        async with AsyncExitStack() as exits:
            say(f"creating a {spec.database} database", 0)
            database_url = await exits.enter_async_context(fresh_database(spec.database, workdir))
            say("starting processes", 0)
            stack = BurstStack(
                StackContext(
                    workdir=workdir,
                    conversations=load.conversations,
                    database_url=database_url,
                    think_seconds=spec.think_seconds,
                ),
                policies=spec.policies(),
            )
            exits.push_async_callback(stack.stop)
            await stack.start()
            connector = aiohttp.TCPConnector(limit=load.conversations + 10)
            http = await exits.enter_async_context(
                aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))
            )
            feed_http = await exits.enter_async_context(
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
            )
            watch = ReplyWatch()
            feed = BurstReplyFeed(stack, feed_http, watch)
            customers = Customers(stack, load, http, watch)
            pids = {name: child.pid for name, child in stack.processes.items()}
            monitor = ResourceMonitor(
                {**pids, LOADGEN: os.getpid()},
                sampled_only={LOADGEN},
                groups=server_processes(database_url),
            )

            async def report_progress(started: float) -> None:
                while True:
                    now = time.time()
                    phase = "load" if now < started + load.duration else "last replies"
                    say(
                        f"{phase}: fragments {len(customers.fragments):,} · bursts "
                        f"{len(customers.bursts):,} · replies {len(feed.replies):,}",
                        min(now - started, load.duration),
                    )
                    await asyncio.sleep(0.25)

            store_start = await _store_totals(stack, feed_http)
            monitor.start()
            feed.start()
            started = time.time()
            ticker = asyncio.get_running_loop().create_task(report_progress(started))
            try:
                await customers.run(deadline=started + load.duration)
                stopped = time.time()
                await asyncio.sleep(0.3)  # a late duplicate reply or turn would show up here
                await feed.stop()
            finally:
                await feed.stop(last_look=False)  # no-op when it stopped already
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
                processes = await monitor.stop()
            store_end = await _store_totals(stack, feed_http)
            calls = model_calls(read_turn_log(stack.turn_log))
            say("done", load.duration)

    result = BurstResult(
        spec=spec,
        tally=tally_bursts(customers.fragments, customers.bursts, calls, feed.replies),
        load_seconds=round(stopped - started, 3),
        processes=processes,
        machine_cpu_seconds=monitor.machine_cpu_seconds,
        store_counts=(
            store_difference(store_start, store_end)
            if store_start is not None and store_end is not None
            else None
        ),
        settings=stack.info.settings,
        notes=list(stack.info.notes),
        fragments=customers.fragments,
        bursts=customers.bursts,
        calls=calls,
        replies=feed.replies,
    )
    if feed.failures:
        result.notes.append(f"reply feed: {feed.failures} failed polls (retried)")
    return result


async def _store_totals(
    stack: BurstStack, http: aiohttp.ClientSession
) -> dict[str, StoreTotals] | None:
    try:
        return await scrape_store_totals(http, stack.replicas, stack.admin_key or "")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        stack.info.notes.append(f"store counters not read from /metrics: {exc!r}")
        return None
