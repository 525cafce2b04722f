"""What ``chatbridge bench`` runs: the full suite, ``--quick``, or one scenario.

* **one scenario** (``chatbridge bench chatwoot …``): the no-op baseline, then the scenario
  with the given load.
* **quick** (``--quick``, well under 2 minutes, for CI): a short baseline and 10 s of the
  scenario at a modest open-loop rate. Fails on any lost, duplicated or reordered message,
  never on speed.
* **full** (``chatbridge bench``, under 10 minutes): mock Chatwoot capacity, baseline, the
  ``chatwoot`` scenario in closed loop, then in open loop at half that throughput (latency
  under moderate load), the scaling curve at 10 / 100 / 1,000 / 10,000 conversations, and
  1,000,000 stored messages versus an empty store.

The baseline is always measured in closed loop (its capacity): the report gives the bridge's
throughput as a ratio of it. Every run must count (nothing lost, doubled or out of order) for
the exit code to be 0.

``burst`` (``chatbridge bench burst``) is a plan of its own (``burst_specs``): customers typing
bursts of fragments and waiting for the reply, once on a route without debounce and once with
``--debounce-ms``; run by ``burst_runner``, reported by ``burst_report``.

``--replicas N`` (N > 1) runs every bridge run of the plan as N ``chatbridge serve`` processes
on one PostgreSQL database and one Redis (``--redis-url``, else ``CHATBRIDGE_REDIS_URL``, else a
private ``redis-server`` per run), the webhooks round-robin over them; the reference points
stay single processes. See ``replicas``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from chatbridge.bench.burst_report import print_burst_report, write_burst_json
from chatbridge.bench.burst_runner import BurstLoad, BurstResult, BurstSpec, run_burst
from chatbridge.bench.databases import DATABASES, postgresql_available
from chatbridge.bench.loadgen import Load
from chatbridge.bench.redis_server import display_url, redis_available, redis_server_program
from chatbridge.bench.report import print_report, write_json, write_plot
from chatbridge.bench.runner import RunResult, RunSpec, run_one
from chatbridge.bench.scenarios import ScenarioUnavailable, load_scenario

SCALING_CONVERSATIONS = (10, 100, 1_000, 10_000)
STORED_MESSAGES = 1_000_000
DEFAULT_MAX_IN_FLIGHT = 50
DEFAULT_CONVERSATIONS = 100
QUICK_RATE = 20.0
QUICK_CONVERSATIONS = {"stream": 40}
"""Conversations of a quick run where 10 would not keep up with ``QUICK_RATE``: a streamed
reply lasts about a second and a conversation's turns run one at a time."""


@dataclass(frozen=True)
class Options:
    """The command line, as given (``None`` = the plan's default)."""

    scenario: str | None = None
    rate: float | None = None
    max_in_flight: int | None = None
    conversations: int | None = None
    duration: float | None = None
    database: str = "sqlite"
    quick: bool = False
    baseline: bool = True
    grace: float | None = None
    think_ms: float = 0.0
    stored: int = STORED_MESSAGES
    replicas: int = 1
    redis_url: str | None = None
    """``--redis-url``; with several replicas ``run_bench`` falls back to
    ``CHATBRIDGE_REDIS_URL``, then to a private ``redis-server`` (``None``)."""
    debounce_ms: int | None = None
    """``burst``: the debounced run's window (``None``: ``BURST_DEBOUNCE_MS``; 0: no
    debounced run)."""
    jitter_ms: float = 0.0
    """``burst``: each gap between fragments is 300 ms plus or minus up to this."""
    seed: int = 14
    """``burst``: seeds each customer's burst sizes and pauses (both runs type the same)."""

    def load(self, *, conversations: int, duration: float, rate: float | None = None) -> Load:
        """A ``Load`` in the mode asked for (closed loop unless ``--rate``)."""
        chosen_rate = self.rate if self.rate is not None else rate
        if chosen_rate is not None and self.max_in_flight is None:
            return Load(conversations=conversations, duration=duration, rate=chosen_rate)
        return Load(
            conversations=conversations,
            duration=duration,
            max_in_flight=self.max_in_flight or DEFAULT_MAX_IN_FLIGHT,
        )

    def bridge_label(self, label: str) -> str:
        """``label`` of a bridge run, naming the replicas when there are several."""
        return label if self.replicas == 1 else f"{label} ({self.replicas} replicas)"


class BenchError(Exception):
    """A usage error the CLI reports with exit code 2."""


Run = Callable[[RunSpec], Awaitable[RunResult]]


def _baseline(opts: Options, conversations: int, duration: float) -> RunSpec:
    load = Load(
        conversations=conversations,
        duration=duration,
        max_in_flight=opts.max_in_flight or DEFAULT_MAX_IN_FLIGHT,
    )
    return RunSpec("baseline (no-op FastAPI)", "baseline", load, group="reference")


async def plan_quick(opts: Options, run: Run) -> None:
    scenario = opts.scenario or "chatwoot"
    conversations = opts.conversations or QUICK_CONVERSATIONS.get(scenario, 10)
    if opts.baseline:
        await run(_baseline(opts, conversations, 3.0))
    load = opts.load(conversations=conversations, duration=opts.duration or 10.0, rate=QUICK_RATE)
    await run(
        RunSpec(
            opts.bridge_label(f"{scenario} quick"),
            scenario,
            load,
            database=opts.database,
            grace=opts.grace or 20.0,
            think_seconds=opts.think_ms / 1000,
            replicas=opts.replicas,
            redis_url=opts.redis_url,
        )
    )


async def plan_single(opts: Options, run: Run) -> None:
    assert opts.scenario is not None
    conversations = opts.conversations or DEFAULT_CONVERSATIONS
    duration = opts.duration or 30.0
    if opts.baseline:
        await run(_baseline(opts, conversations, min(duration, 10.0)))
    await run(
        RunSpec(
            opts.bridge_label(opts.scenario),
            opts.scenario,
            opts.load(conversations=conversations, duration=duration),
            database=opts.database,
            grace=opts.grace or 15.0,
            think_seconds=opts.think_ms / 1000,
            replicas=opts.replicas,
            redis_url=opts.redis_url,
        )
    )


async def plan_full(opts: Options, run: Run) -> None:
    conversations = opts.conversations or DEFAULT_CONVERSATIONS
    duration = opts.duration or 30.0
    grace = opts.grace or 15.0
    think = opts.think_ms / 1000
    await run(
        RunSpec(
            "mock Chatwoot capacity",
            "channel-capacity",
            Load(conversations=conversations, duration=5.0, max_in_flight=DEFAULT_MAX_IN_FLIGHT),
            group="reference",
        )
    )
    if opts.baseline:
        await run(_baseline(opts, conversations, 10.0))
    spec = RunSpec(
        opts.bridge_label("chatwoot"),
        "chatwoot",
        opts.load(conversations=conversations, duration=duration),
        database=opts.database,
        grace=grace,
        think_seconds=think,
        replicas=opts.replicas,
        redis_url=opts.redis_url,
    )
    main = await run(spec)
    if spec.load.mode == "closed" and main.throughput > 0:
        half = round(main.throughput / 2, 1)
        await run(
            replace(
                spec,
                label=opts.bridge_label(f"chatwoot open {half:g}/s"),
                load=Load(conversations=conversations, duration=min(duration, 20.0), rate=half),
                group="latency",
            )
        )
    scaling: dict[int, RunSpec] = {}
    for count in SCALING_CONVERSATIONS:
        scaling[count] = replace(
            spec,
            label=opts.bridge_label(f"chatwoot {count:,} conv"),
            load=opts.load(conversations=count, duration=min(duration, 15.0)),
            group="scaling",
        )
        await run(scaling[count])
    # same load as the scaling point at DEFAULT_CONVERSATIONS, which is the empty-store figure
    reference = scaling[min(SCALING_CONVERSATIONS, key=lambda c: abs(c - DEFAULT_CONVERSATIONS))]
    await run(
        replace(
            reference,
            label=opts.bridge_label(f"chatwoot {opts.stored:,} stored"),
            stored=opts.stored,
            group="store",
        )
    )


async def _check_database(opts: Options) -> None:
    """Raises:
    BenchError: ``--database`` is unknown, or the PostgreSQL server does not answer."""
    if opts.database not in DATABASES:
        raise BenchError(f"--database must be one of {', '.join(DATABASES)}")
    if opts.database == "postgresql":
        problem = await postgresql_available()
        if problem is not None:
            raise BenchError(f"PostgreSQL is not reachable ({problem})")


async def _with_redis(opts: Options) -> Options:
    """``opts`` with the Redis its replicas will share, checked.

    Several replicas: ``--redis-url``, else ``CHATBRIDGE_REDIS_URL``, else (``None``) a
    private ``redis-server`` per run, which must be on ``PATH``. One replica: Redis only if
    ``--redis-url`` asks for it.

    Raises:
        BenchError: the Redis does not answer, or there is no ``redis-server`` to start.
    """
    url = opts.redis_url
    if url is None and opts.replicas > 1:
        url = os.environ.get("CHATBRIDGE_REDIS_URL") or None
    if url is not None:
        problem = await redis_available(url)
        if problem is not None:
            raise BenchError(f"Redis at {display_url(url)} is not reachable ({problem})")
    elif opts.replicas > 1 and redis_server_program() is None:
        raise BenchError(
            f"--replicas {opts.replicas} needs Redis: redis-server is not on PATH; install it "
            "or give --redis-url (or CHATBRIDGE_REDIS_URL)"
        )
    return replace(opts, redis_url=url)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.fields[label]}[/bold]"),
        BarColumn(bar_width=30),
        TextColumn("{task.completed:>5.1f}/{task.total:g} s"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    )


async def run_bench(
    opts: Options,
    results: list[RunResult],
    *,
    console: Console | None = None,
    show_progress: bool = True,
) -> None:
    """Run the plan ``opts`` asks for, appending each result to ``results`` as it finishes.

    Raises:
        BenchError: the scenario, database or Redis is not available, or ``--replicas`` does
            not fit the scenario or database.
    """
    if opts.scenario is not None:
        try:
            stack = load_scenario(opts.scenario)
        except ScenarioUnavailable as exc:
            raise BenchError(str(exc)) from None
        if opts.replicas > 1 and not stack.supports_replicas:
            raise BenchError(
                f"--replicas {opts.replicas}: the {opts.scenario} scenario runs one bridge "
                "process only (several replicas: chatwoot)"
            )
    await _check_database(opts)
    if opts.replicas < 1:
        raise BenchError("--replicas must be 1 or more")
    if opts.replicas > 1 and opts.database != "postgresql":
        raise BenchError(
            f"--replicas {opts.replicas} needs --database postgresql: the replicas share one "
            f"database, and a {opts.database} file belongs to one process"
        )
    opts = await _with_redis(opts)
    console = console or Console(stderr=True)
    progress = _progress(console)

    async def run(spec: RunSpec) -> RunResult:
        task = progress.add_task("", total=spec.load.duration, label=spec.label)

        def status(text: str, done: float) -> None:
            progress.update(task, description=text, completed=done)

        result = await run_one(spec, status=status)
        results.append(result)
        return result

    plan = plan_quick if opts.quick else plan_single if opts.scenario else plan_full
    with progress if show_progress else contextlib.nullcontext():
        await plan(opts, run)


def _execute(run: Callable[[], Awaitable[None]], console: Console) -> int:
    """Run ``run`` to the end on an event loop (uvloop when installed), SIGTERM cancelling it
    like Ctrl-C; returns 0, 2 (usage error), 130 (interrupted) or 1 (failed)."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        current = asyncio.current_task()
        assert current is not None
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, current.cancel)
        await run()

    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(body())
    except BenchError as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print("[yellow]interrupted: child processes stopped[/yellow]")
        return 130
    except Exception as exc:
        console.print(f"[red]benchmark failed: {type(exc).__name__}: {exc}[/red]")
        return 1
    return 0


def main(opts: Options, *, json_path: Path | None = None, plot_path: Path | None = None) -> int:
    """Run the benchmark, print the report, write the files; returns the exit code.

    0: every run counts. 1: a run lost, doubled or reordered a message, acknowledged nothing,
    or failed. 2: usage error. 130: interrupted (the child processes are stopped first).
    """
    if opts.scenario == "burst":
        return burst_main(opts, json_path=json_path)
    console = Console(stderr=True)
    results: list[RunResult] = []
    code = _execute(lambda: run_bench(opts, results, console=console), console)
    if code == 2:
        return code
    if results:
        print_report(results)
        if json_path is not None:
            write_json(results, json_path, command=sys.argv)
            console.print(f"raw results written to {json_path}")
        if plot_path is not None:
            write_plot(results, plot_path)
            console.print(f"plot written to {plot_path}")
    if code == 0 and not all(r.valid for r in results):
        code = 1
    return code


# --- the burst scenario -------------------------------------------------------------------

BURST_CONVERSATIONS = 50
BURST_DURATION = 20.0
BURST_DEBOUNCE_MS = 800
BURST_MAX_WAIT_MS = 5000
QUICK_BURST_CONVERSATIONS = 5
QUICK_BURST_DURATION = 6.0


def burst_specs(opts: Options) -> list[BurstSpec]:
    """The runs of ``chatbridge bench burst``: the customers without debounce, then the same
    customers on a route with ``debounce_ms`` (unless it is 0)."""
    quick = opts.quick
    load = BurstLoad(
        conversations=opts.conversations
        or (QUICK_BURST_CONVERSATIONS if quick else BURST_CONVERSATIONS),
        duration=opts.duration or (QUICK_BURST_DURATION if quick else BURST_DURATION),
        jitter=opts.jitter_ms / 1000,
        seed=opts.seed,
        reply_timeout=opts.grace or 15.0,
    )
    think = opts.think_ms / 1000
    specs = [BurstSpec("no debounce", load, opts.database, think_seconds=think)]
    debounce = BURST_DEBOUNCE_MS if opts.debounce_ms is None else opts.debounce_ms
    if debounce > 0:
        specs.append(
            BurstSpec(
                f"debounce {debounce} ms",
                load,
                opts.database,
                debounce_ms=debounce,
                max_wait_ms=max(BURST_MAX_WAIT_MS, debounce),
                think_seconds=think,
            )
        )
    return specs


async def run_bursts(
    opts: Options, results: list[BurstResult], *, console: Console, show_progress: bool = True
) -> None:
    """Run ``burst_specs(opts)``, appending each result to ``results`` as it finishes.

    Raises:
        BenchError: the database is not available, or the options do not fit the scenario.
    """
    if opts.replicas != 1:
        raise BenchError("--replicas: the burst scenario runs one bridge process")
    if opts.debounce_ms is not None and not 0 <= opts.debounce_ms <= 60_000:
        raise BenchError("--debounce-ms must be between 0 and 60000 (a route's limit)")
    if not 0 <= opts.jitter_ms < 300:
        raise BenchError("--jitter-ms must be at least 0 and below the 300 ms gap")
    await _check_database(opts)
    progress = _progress(console)
    with progress if show_progress else contextlib.nullcontext():
        for spec in burst_specs(opts):
            task = progress.add_task("", total=spec.load.duration, label=spec.label)

            def status(text: str, done: float, task: TaskID = task) -> None:
                progress.update(task, description=text, completed=done)

            results.append(await run_burst(spec, status=status))


def burst_main(opts: Options, *, json_path: Path | None = None) -> int:
    """``chatbridge bench burst``: run, print the report, write the JSON; the exit code as
    ``main``'s (1: a fragment lost, doubled, or not given to the model exactly once)."""
    console = Console(stderr=True)
    results: list[BurstResult] = []
    code = _execute(lambda: run_bursts(opts, results, console=console), console)
    if code == 2:
        return code
    if results:
        print_burst_report(results)
        if json_path is not None:
            write_burst_json(results, json_path, command=sys.argv)
            console.print(f"raw results written to {json_path}")
    if code == 0 and not (results and all(r.valid for r in results)):
        code = 1
    return code
