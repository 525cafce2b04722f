"""One benchmark run: fresh database → start the stack → load → grace → count → stop.

``run_one(spec)`` returns a ``RunResult``; it always stops the processes it started, whether
the run ends, fails or is cancelled (Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import aiohttp

from chatbridge.bench.accounting import (
    Bucket,
    Reply,
    Sent,
    Tally,
    parse_marker,
    percentiles,
    rate,
    tally,
    time_series,
)
from chatbridge.bench.costs import (
    POSTGRES,
    StoreTotals,
    cost_of,
    scrape_store_totals,
    store_difference,
)
from chatbridge.bench.databases import fresh_database
from chatbridge.bench.loadgen import Load, LoadGenerator, ReplyFeed
from chatbridge.bench.prefill import prefill_store
from chatbridge.bench.processes import ProcessStats, ResourceMonitor
from chatbridge.bench.scenarios import Stack, StackContext, load_scenario

LOADGEN = "loadgen"
"""The name of the benchmark's own process (the load generator) in ``RunResult.processes``."""


@dataclass(frozen=True)
class RunSpec:
    """What to run."""

    label: str
    scenario: str
    load: Load
    database: str = "sqlite"
    stored: int = 0
    grace: float = 15.0
    think_seconds: float = 0.0
    group: str = "main"
    replicas: int = 1
    """Bridge processes sharing the database and Redis (``--replicas``)."""
    redis_url: str | None = None
    """The Redis they share; ``None`` with several replicas: a private ``redis-server``."""


@dataclass
class RunResult:
    """What a run measured. Latencies in seconds; ``series`` has one bucket per second."""

    spec: RunSpec
    tally: Tally
    load_seconds: float
    acked_per_second: float
    replied_per_second: float
    ack_latency: dict[str, float]
    e2e_latency: dict[str, float]
    processes: list[ProcessStats]
    series: list[Bucket]
    settings: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    backlog: int = 0
    drain_seconds: float | None = None
    prefill_seconds: float | None = None
    expects_replies: bool = True
    measures: dict[str, Any] = field(default_factory=dict)
    """Figures the scenario's own processes measured (e.g. latency at the web chat widget)."""
    machine_cpu_seconds: float | None = None
    """CPU seconds the whole machine was busy while ``processes`` were measured: the rest is
    the PostgreSQL server's, or other work's on the machine."""
    store_counts: dict[str, StoreTotals] | None = None
    """Per bridge process, what its store counted (statements, transactions, server round
    trips) from the start of the load to after the drain; ``None``: no bridge, or its
    ``/metrics`` could not be read (see the notes)."""
    sent: list[Sent] = field(default_factory=list, repr=False)
    replies: list[Reply] = field(default_factory=list, repr=False)

    @property
    def valid(self) -> bool:
        return self.tally.valid

    @property
    def throughput(self) -> float:
        """Messages per second through the whole path: replies for a scenario that replies,
        acknowledgements for one that does not (the baseline)."""
        return self.replied_per_second if self.expects_replies else self.acked_per_second

    def to_json(self, *, raw: bool = True) -> dict[str, Any]:
        """The result as plain JSON data; ``raw`` adds every message and reply."""
        t = self.tally
        data: dict[str, Any] = {
            "label": self.spec.label,
            "scenario": self.spec.scenario,
            "group": self.spec.group,
            "database": self.spec.database,
            "replicas": self.spec.replicas,
            "load": asdict(self.spec.load) | {"mode": self.spec.load.mode},
            "stored_before": self.spec.stored,
            "think_seconds": self.spec.think_seconds,
            "grace_seconds": self.spec.grace,
            "valid": self.valid,
            "counts": {
                "sent": t.sent,
                "acknowledged": t.acknowledged,
                "replied": t.replied,
                "lost": t.lost,
                "duplicated": t.duplicated,
                "out_of_order": t.out_of_order,
                "unexpected": t.unexpected,
                "replied_unacknowledged": t.replied_unacknowledged,
                "errors": t.errors,
                "backlog": self.backlog,
            },
            "examples": {
                "lost": t.lost_examples,
                "duplicated": t.duplicated_examples,
                "out_of_order": t.out_of_order_examples,
            },
            "load_seconds": self.load_seconds,
            "throughput_per_second": self.throughput,
            "acked_per_second": self.acked_per_second,
            "replied_per_second": self.replied_per_second,
            "ack_latency_seconds": self.ack_latency,
            "e2e_latency_seconds": self.e2e_latency,
            "drain_seconds": self.drain_seconds,
            "prefill_seconds": self.prefill_seconds,
            "processes": [asdict(p) for p in self.processes],
            "machine_cpu_seconds": self.machine_cpu_seconds,
            "store_counts": self.store_counts,
            "cost": None if (cost := cost_of(self)) is None else cost.to_json(),
            "settings": self.settings,
            "measures": self.measures,
            "notes": self.notes,
            "series": [asdict(b) for b in self.series],
        }
        if raw:
            data["messages"] = {
                "columns": ["conversation", "seq", "sent_at", "intended_at", "acked_at",
                            "ack_latency", "ack_order", "attempts", "error"],
                "rows": [
                    [m.conversation, m.seq, m.sent_at, m.intended_at, m.acked_at,
                     m.ack_latency, m.ack_order, m.attempts, m.error]
                    for m in self.sent
                ],
            }  # fmt: skip
            data["replies"] = {
                "columns": ["conversation", "content", "received_at"],
                "rows": [[r.conversation, r.content, r.received_at] for r in self.replies],
            }
        return data


@runtime_checkable
class SelfMeasuring(Protocol):
    """A stack whose processes measure figures of their own, complete once it has stopped."""

    measures: dict[str, Any]


Status = Callable[[str, float], None]
"""Progress callback: (what is happening, seconds of load done)."""


async def run_one(
    spec: RunSpec, *, workroot: Path | None = None, status: Status | None = None
) -> RunResult:
    """Run ``spec`` from a fresh database to a counted result.

    Raises:
        ScenarioUnavailable: the scenario is planned or unknown.
        RuntimeError: a process did not start (the message has its log's tail).
    """
    stack_cls = load_scenario(spec.scenario)
    say: Status = status or (lambda _text, _done: None)
    with tempfile.TemporaryDirectory(prefix="chatbridge-bench-", dir=workroot) as tmp:
        workdir = Path(tmp)
        async with AsyncExitStack() as exits:
            database_url = None
            prefill_seconds = None
            if stack_cls.needs_database:
                say(f"creating a {spec.database} database", 0)
                database_url = await exits.enter_async_context(
                    fresh_database(spec.database, workdir)
                )
                if spec.stored:
                    prefill_seconds = await prefill_store(
                        database_url,
                        spec.stored,
                        conversations=spec.load.conversations,
                        on_progress=lambda n: say(f"storing history: {n:,}/{spec.stored:,}", 0),
                    )
            say("starting processes", 0)
            stack = stack_cls(
                StackContext(
                    workdir=workdir,
                    conversations=spec.load.conversations,
                    database_url=database_url,
                    think_seconds=spec.think_seconds,
                    replicas=spec.replicas,
                    redis_url=spec.redis_url,
                )
            )
            exits.push_async_callback(stack.stop)
            await stack.start()
            connector = aiohttp.TCPConnector(limit=spec.load.connection_limit(), force_close=False)
            http = await exits.enter_async_context(
                aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))
            )
            feed_http = await exits.enter_async_context(
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
            )
            generator = LoadGenerator(stack, spec.load, http)
            feed = ReplyFeed(stack, feed_http, generator) if stack.expects_replies else None
            pids = {name: child.pid for name, child in stack.processes.items()}
            monitor = ResourceMonitor(
                {**pids, LOADGEN: os.getpid()},
                sampled_only={LOADGEN},
                groups=server_processes(database_url),
            )

            started = time.time()
            deadline = started + spec.load.duration

            def counts() -> str:
                replied = f" · replied {len(feed.replies):,}" if feed is not None else ""
                return f"sent {len(generator.sent):,} · acked {generator.acknowledged:,}{replied}"

            async def report_progress() -> None:
                while True:
                    now = time.time()
                    phase = "load" if now < deadline else "draining"
                    say(f"{phase}: {counts()}", min(now, deadline) - started)
                    await asyncio.sleep(0.25)

            store_start = await _store_totals(stack, feed_http)
            monitor.start()
            if feed is not None:
                feed.start()
            ticker = asyncio.get_running_loop().create_task(report_progress())
            try:
                await generator.run()
                stopped = min(time.time(), deadline)
                if feed is not None:
                    await _wait_for_replies(generator, feed, spec.grace)
                    await asyncio.sleep(0.3)  # a late duplicate would show up here
                    await feed.stop()
            finally:
                if feed is not None:
                    await feed.stop(last_look=False)  # no-op when it stopped already
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
                processes = await monitor.stop()
            store_end = await _store_totals(stack, feed_http)
            say(f"done: {counts()}", spec.load.duration)

        replies = feed.replies if feed is not None else []
        counted = tally(generator.sent, replies, expects_replies=stack.expects_replies)
        window = max(stopped - started, 1e-9)
        last_reply = max((r.received_at for r in replies), default=None)
        result = RunResult(
            spec=spec,
            tally=counted,
            load_seconds=round(window, 3),
            acked_per_second=rate(
                (m.acked_at for m in generator.sent if m.acked_at), started, stopped
            ),
            replied_per_second=_reply_rate(replies, started, stopped),
            ack_latency=percentiles(counted.ack_latencies),
            e2e_latency=percentiles(counted.e2e_latencies),
            processes=processes,
            series=time_series(generator.sent, replies, start=started, end=stopped),
            settings=stack.info.settings,
            notes=list(stack.info.notes),
            backlog=generator.backlog,
            drain_seconds=(
                round(last_reply - stopped, 3)
                if last_reply is not None and last_reply > stopped
                else None
            ),
            prefill_seconds=round(prefill_seconds, 1) if prefill_seconds is not None else None,
            expects_replies=stack.expects_replies,
            measures=dict(stack.measures) if isinstance(stack, SelfMeasuring) else {},
            machine_cpu_seconds=monitor.machine_cpu_seconds,
            store_counts=(
                store_difference(store_start, store_end)
                if store_start is not None and store_end is not None
                else None
            ),
            sent=generator.sent,
            replies=replies,
        )
        if spec.think_seconds > 0 and counted.e2e_latencies:
            # the agent's think time is the agent's, not the bridge's: report it apart
            raw = result.e2e_latency
            result.e2e_latency = {k: v - spec.think_seconds for k, v in raw.items()}
            result.notes.append(
                f"end-to-end latencies exclude the agent's {spec.think_seconds * 1000:g} ms think "
                "time; with it: " + " / ".join(f"{k} {v * 1000:.1f} ms" for k, v in raw.items())
            )
        if feed is not None and feed.failures:
            result.notes.append(f"reply feed: {feed.failures} failed polls (retried)")
        return result


async def _store_totals(stack: Stack, http: aiohttp.ClientSession) -> dict[str, StoreTotals] | None:
    """What the stack's bridges' stores have counted so far; ``None`` (and a note) when a
    ``/metrics`` could not be read, or the stack has no bridge."""
    if not stack.replicas or stack.admin_key is None:
        return None
    try:
        return await scrape_store_totals(http, stack.replicas, stack.admin_key)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        stack.info.notes.append(f"store counters not read from /metrics: {exc!r}")
        return None


def server_processes(database_url: str | None) -> dict[str, str]:
    """The ``ResourceMonitor`` groups of a run: on PostgreSQL, the backends of its database
    (their process titles name it; the run's database is its own, so they are its)."""
    if database_url is None or not database_url.startswith("postgresql"):
        return {}
    name = database_url.rsplit("/", 1)[1].split("?", 1)[0]
    return {POSTGRES: f" {name} "}


def _reply_rate(replies: list[Reply], start: float, end: float) -> float:
    """First replies per second that arrived in ``[start, end]``."""
    seen: set[tuple[int, int]] = set()
    times = []
    for reply in replies:
        key = parse_marker(reply.content)
        if key is None or key in seen:
            continue
        seen.add(key)
        times.append(reply.received_at)
    return rate(times, start, end)


async def _wait_for_replies(generator: LoadGenerator, feed: ReplyFeed, grace: float) -> None:
    """Wait until every acknowledged message has a reply, at most ``grace`` seconds."""
    give_up = time.monotonic() + grace
    while time.monotonic() < give_up:
        replied = {parse_marker(r.content) for r in feed.replies}
        if all(m.key in replied for m in generator.sent if m.acknowledged):
            return
        await asyncio.sleep(0.1)
