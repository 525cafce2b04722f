"""Show results: rich tables on the terminal, raw JSON, a matplotlib PNG.

Tables: one row per run (delivery counts, latencies, throughput and its ratio to the no-op
baseline), the processes' CPU seconds and peak memory, what a message cost each run with a
bridge (bridge CPU, store statements, transactions and server round trips per reply, the
PostgreSQL server's CPU beside it), then the scaling curve and the stored-history comparison
when the suite ran them, and, for runs with several bridge replicas, each replica's CPU, peak
memory and share of the work with their totals.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from chatbridge.bench.costs import POSTGRES, cost_of, outside_processes
from chatbridge.bench.processes import ProcessStats
from chatbridge.bench.runner import LOADGEN, RunResult

WEBHOOK_SCENARIOS = ("chatwoot", "pull")
"""Scenarios loaded with the same Chatwoot webhooks as the no-op baseline."""

GENERATOR_SATURATED = 0.85
"""Share of one core above which the load generator may itself limit a run."""


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import psutil

    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f}" if value < 0.01 else f"{value * 1000:.0f}"


def _triple(latency: dict[str, float]) -> str:
    if not latency:
        return "-"
    return "/".join(_ms(latency.get(k)) for k in ("p50", "p95", "p99"))


def _rate(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def baseline_of(results: Sequence[RunResult]) -> RunResult | None:
    return next((r for r in results if r.spec.scenario == "baseline"), None)


def capacity_of(results: Sequence[RunResult]) -> RunResult | None:
    return next((r for r in results if r.spec.scenario == "channel-capacity"), None)


def generator_busy(result: RunResult) -> float | None:
    """The load generator's CPU as a share of one core over the run."""
    gen = next((p for p in result.processes if p.name == LOADGEN), None)
    if gen is None or result.load_seconds <= 0:
        return None
    return gen.cpu_seconds / result.load_seconds


def results_table(results: Sequence[RunResult]) -> Table:
    base = baseline_of(results)
    table = Table(title="Runs (latencies in ms: p50/p95/p99)", title_justify="left")
    for name, justify in [
        ("run", "left"), ("db", "left"), ("load", "left"), ("conv", "right"),
        ("sent", "right"), ("acked", "right"), ("replied", "right"), ("lost", "right"),
        ("dup", "right"), ("ooo", "right"), ("ack ms", "right"), ("end-to-end ms", "right"),
        ("msg/s", "right"), ("x baseline", "right"), ("counts", "left"),
    ]:  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in results:
        t = r.tally
        reference = r.spec.scenario in ("baseline", "channel-capacity")
        ratio = (
            f"{r.throughput / base.throughput:.3f}"
            if base is not None and base.throughput > 0 and not reference
            else "-"
        )
        used = len({m.conversation for m in r.sent})
        conv = (
            f"{used:,}"
            if used == r.spec.load.conversations
            else f"{used:,}/{r.spec.load.conversations:,}"
        )
        replies = r.expects_replies
        table.add_row(
            r.spec.label,
            r.spec.database if not reference else "-",
            r.spec.load.describe(),
            conv,
            f"{t.sent:,}",
            f"{t.acknowledged:,}",
            f"{t.replied:,}" if replies else "-",
            str(t.lost) if replies else "-",
            str(t.duplicated) if replies else "-",
            str(t.out_of_order) if replies else "-",
            _triple(r.ack_latency),
            _triple(r.e2e_latency),
            _rate(r.throughput),
            ratio,
            ("[green]yes[/green]" if r.valid else "[red]NO[/red]")
            if replies
            else ("[green]ref[/green]" if r.valid else "[red]NO[/red]"),
        )
    return table


def process_table(results: Sequence[RunResult]) -> Table:
    names: list[str] = []
    for r in results:
        for p in r.processes:
            if p.name not in names:
                names.append(p.name)
    table = Table(
        title="Processes: CPU seconds over the run (load + drain) · peak RSS MB",
        title_justify="left",
    )
    table.add_column("run")
    for name in names:
        table.add_column(name, justify="right")
    for r in results:
        by_name = {p.name: p for p in r.processes}
        cells = []
        for name in names:
            stats = by_name.get(name)
            cells.append(
                "-" if stats is None else f"{stats.cpu_seconds:.1f} s · {stats.peak_rss_mb:.0f} MB"
            )
        table.add_row(r.spec.label, *cells)
    return table


def _bridges(result: RunResult) -> list[ProcessStats]:
    """The bridge replicas' process figures of a run with several (``bridge-1`` …)."""
    return [p for p in result.processes if p.name.startswith("bridge-")]


def _figure(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def cost_table(results: Sequence[RunResult]) -> Table | None:
    """Per run with a bridge: what one message (a reply: a full round trip) cost."""
    rows = [(r, cost) for r in results if (cost := cost_of(r)) is not None]
    if not rows:
        return None
    table = Table(
        title="Cost per message (per reply; load + drain; all bridges together; store counts "
        "from their /metrics)",
        title_justify="left",
    )
    for name in (
        "run", "replies", "bridge CPU ms", "statements", "transactions",
        "server round trips", "PostgreSQL backends CPU ms", "rest of machine CPU ms",
    ):  # fmt: skip
        table.add_column(name, justify="left" if name == "run" else "right")
    for r, cost in rows:
        round_trips = cost.per_message("round_trips")
        table.add_row(
            r.spec.label,
            f"{cost.replies:,}",
            _figure(cost.bridge_cpu_ms, 2),
            _figure(cost.per_message("statements"), 1),
            _figure(cost.per_message("transactions"), 1),
            "in-process"
            if r.spec.database == "sqlite" and round_trips in (0, None)
            else _figure(round_trips, 1),
            _figure(cost.postgres_cpu_ms, 2),
            _figure(cost.rest_cpu_ms, 2),
        )
    return table


def cost_lines(results: Sequence[RunResult]) -> list[str]:
    """What to know when reading the cost table: figures not measured, and why."""
    lines = []
    uncounted = [
        r.spec.label
        for r in results
        if (cost := cost_of(r)) is not None
        and cost.replies
        and cost.store is not None
        and not cost.store.get("statements")
    ]
    if uncounted:
        lines.append(
            f"{', '.join(uncounted)}: the bridges' stores counted 0 statements: this build "
            "does not count them yet, so statements, transactions and server round trips per "
            "message read 0 until it does."
        )
    if any(cost_of(r) is not None for r in results):
        lines.append(
            "Cost: PostgreSQL backends CPU = the server processes serving the run's own "
            "database; rest of machine = all other CPU the machine used in the window "
            "(PostgreSQL's WAL writer and checkpointer, and any other work on the machine)."
        )
    return lines


def replicas_table(results: Sequence[RunResult]) -> Table | None:
    """Per replica: CPU, peak RSS and what its ``/metrics`` counted; then the totals."""
    rows = [r for r in results if r.spec.replicas > 1]
    if not rows:
        return None
    table = Table(
        title="Replicas: CPU seconds over the run (load + drain), peak RSS, work done "
        "(from each replica's /metrics)",
        title_justify="left",
    )
    for name, justify in [
        ("run", "left"), ("process", "left"), ("instance id", "left"), ("CPU s", "right"),
        ("CPU ms/msg", "right"), ("peak RSS MB", "right"), ("webhooks", "right"),
        ("turns", "right"), ("deliveries", "right"), ("agent linked", "left"),
    ]:  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        replied = max(r.tally.replied, 1)
        counted = {c["name"]: c for c in r.measures.get("replicas", [])}
        bridges = _bridges(r)
        totals = dict.fromkeys(("webhooks", "turns", "deliveries"), 0)
        for i, p in enumerate(bridges):
            c = counted.get(p.name, {})
            for key in totals:
                totals[key] += c.get(key, 0)
            table.add_row(
                r.spec.label if i == 0 else "",
                p.name,
                c.get("instance_id") or "-",
                f"{p.cpu_seconds:.1f}",
                f"{p.cpu_seconds * 1000 / replied:.2f}",
                f"{p.peak_rss_mb:.0f}",
                *(f"{c[key]:,}" if key in c else "-" for key in totals),
                ("yes" if c["agent_connected"] else "no") if "agent_connected" in c else "-",
            )
        cpu = sum(p.cpu_seconds for p in bridges)
        table.add_row(
            "",
            f"[bold]all {len(bridges)} bridges[/bold]",
            "",
            f"[bold]{cpu:.1f}[/bold]",
            f"[bold]{cpu * 1000 / replied:.2f}[/bold]",
            f"[bold]{sum(p.peak_rss_mb for p in bridges):.0f}[/bold]",
            *(f"{v:,}" if counted else "-" for v in totals.values()),
            "",
        )
        for server, shown in (("redis", "redis-server"), (POSTGRES, "PostgreSQL backends")):
            stats = next((p for p in r.processes if p.name == server), None)
            if stats is not None:
                table.add_row(
                    "", shown, "", f"{stats.cpu_seconds:.1f}",
                    f"{stats.cpu_seconds * 1000 / replied:.2f}", f"{stats.peak_rss_mb:.0f}",
                    "", "", "", "",
                )  # fmt: skip
        rest = outside_processes(r)
        if rest is not None:
            table.add_row(
                "", "rest of the machine", "(other PostgreSQL work, other tasks)", f"{rest:.1f}",
                f"{rest * 1000 / replied:.2f}", "", "", "", "", "",
            )  # fmt: skip
    return table


def scaling_table(results: Sequence[RunResult]) -> Table | None:
    rows = [r for r in results if r.spec.group == "scaling"]
    if not rows:
        return None
    table = Table(title="Scaling: active conversations", title_justify="left")
    for name in ("conversations", "with a message", "msg/s", "e2e p99 ms", "counts"):
        table.add_column(name, justify="right")
    for r in sorted(rows, key=lambda r: r.spec.load.conversations):
        table.add_row(
            f"{r.spec.load.conversations:,}",
            f"{len({m.conversation for m in r.sent}):,}",
            _rate(r.throughput),
            _ms(r.e2e_latency.get("p99")),
            "[green]yes[/green]" if r.valid else "[red]NO[/red]",
        )
    return table


def store_table(results: Sequence[RunResult]) -> Table | None:
    stored = [r for r in results if r.spec.group == "store"]
    if not stored:
        return None
    table = Table(title="Stored history: same load, empty store vs prefilled", title_justify="left")
    for name in ("messages stored before", "prefill s", "msg/s", "e2e p99 ms", "x empty", "counts"):
        table.add_column(name, justify="right")
    first = stored[0].spec
    empty = next(
        (
            r
            for r in results
            if r.spec.stored == 0
            and r.spec.scenario == first.scenario
            and r.spec.load == first.load
            and r.spec.database == first.database
        ),
        None,
    )
    for r in ([empty] if empty else []) + stored:
        ratio = (
            f"{r.throughput / empty.throughput:.2f}"
            if empty is not None and empty.throughput > 0
            else "-"
        )
        table.add_row(
            f"{r.spec.stored:,}",
            "-" if r.prefill_seconds is None else f"{r.prefill_seconds:.0f}",
            _rate(r.throughput),
            _ms(r.e2e_latency.get("p99")),
            ratio,
            "[green]yes[/green]" if r.valid else "[red]NO[/red]",
        )
    return table


def summary_lines(results: Sequence[RunResult]) -> list[str]:
    """The sentences under the tables: ratio to baseline, bottlenecks, settings, failures."""
    lines: list[str] = []
    base = baseline_of(results)
    capacity = capacity_of(results)
    main = next((r for r in results if r.spec.group == "main" and r.expects_replies), None)
    if main is not None and base is not None and base.throughput > 0:
        webhooks = main.spec.scenario in WEBHOOK_SCENARIOS
        lines.append(
            f"Chatbridge ({main.spec.label}): {_rate(main.throughput)} msg/s end to end "
            f"= {main.throughput / base.throughput:.3f} x the no-op FastAPI endpoint's "
            f"{_rate(base.throughput)} acks/s "
            + (
                "(same generator, same payloads); webhooks"
                if webhooks
                else "(same generator; the endpoint gets Chatwoot webhooks, the bridge widget "
                "frames); messages"
            )
            + f" acknowledged: {_rate(main.acked_per_second)}/s "
            f"= {main.acked_per_second / base.throughput:.3f} x."
        )
    if capacity is not None:
        lines.append(
            f"Mock Chatwoot alone absorbs {_rate(capacity.throughput)} API posts/s; the bridge "
            f"makes 3 per message (typing on, reply, typing off), so the mock caps the "
            f"chatwoot scenario near {_rate(capacity.throughput / 3)} msg/s."
        )
    for r in results:
        busy = generator_busy(r)
        if busy is not None and busy >= GENERATOR_SATURATED:
            lines.append(
                f"{r.spec.label}: the load generator used {busy:.0%} of a core; on this "
                f"{os.cpu_count()}-CPU machine it may itself limit the figure."
            )
        if r.backlog:
            lines.append(
                f"{r.spec.label}: {r.backlog:,} scheduled messages were never sent (the target "
                "acknowledged too slowly for the open-loop rate)."
            )
        t = r.tally
        if r.expects_replies and not r.valid:
            lines.append(
                f"[red]{r.spec.label}: DOES NOT COUNT[/red] — lost {t.lost} "
                f"{t.lost_examples[:3]}, duplicated {t.duplicated} {t.duplicated_examples[:3]}, "
                f"out of order {t.out_of_order} {t.out_of_order_examples[:3]}, "
                f"acknowledged {t.acknowledged}, errors {t.errors}"
            )
        elif not r.valid:
            lines.append(f"[red]{r.spec.label}: nothing acknowledged (errors {t.errors})[/red]")
        if t.unexpected or t.replied_unacknowledged:
            lines.append(
                f"{r.spec.label}: {t.unexpected} replies naming no message of the run, "
                f"{t.replied_unacknowledged} replies to messages never acknowledged."
            )
        bridges = _bridges(r)
        if r.spec.replicas > 1 and bridges and t.replied:
            cpu = sum(p.cpu_seconds for p in bridges)
            lines.append(
                f"{r.spec.label}: the {len(bridges)} bridges used {cpu:.1f} CPU-s together "
                f"for {t.replied:,} replies = {cpu * 1000 / t.replied:.2f} ms of bridge CPU per "
                f"message; peak RSS {sum(p.peak_rss_mb for p in bridges):.0f} MB together "
                f"({min(p.peak_rss_mb for p in bridges):.0f} to "
                f"{max(p.peak_rss_mb for p in bridges):.0f} MB each)."
            )
        for note in r.notes:
            lines.append(f"{r.spec.label}: {note}")
    return lines + cost_lines(results)


def settings_lines(results: Sequence[RunResult]) -> list[str]:
    """The bridge's configuration, once per database (everything not listed is default)."""
    lines: list[str] = []
    seen: set[str] = set()
    for r in results:
        if r.spec.scenario in ("baseline", "channel-capacity") or r.spec.database in seen:
            continue
        seen.add(r.spec.database)
        lines.append(f"Bridge settings ({r.spec.database}; every other setting is its default):")
        lines.extend(f"  {key}={value}" for key, value in r.settings.items())
    return lines


def print_report(results: Sequence[RunResult], console: Console | None = None) -> None:
    """Print every table and the summary to ``console`` (stdout by default)."""
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=180)
    console.print(results_table(results))
    console.print(process_table(results))
    for extra in (
        cost_table(results),
        scaling_table(results),
        store_table(results),
        replicas_table(results),
    ):
        if extra is not None:
            console.print(extra)
    for line in summary_lines(results):
        console.print(line, highlight=False)
    info = machine()
    console.print(
        f"Machine: {info['cpu_count']} CPU ({info['cpu_model']}), {info['memory_gb']} GB, "
        f"{info['platform']}, Python {info['python']}",
        highlight=False,
    )
    for line in settings_lines(results):
        console.print(line, highlight=False, markup=False)


def write_json(results: Sequence[RunResult], path: Path, *, command: list[str]) -> None:
    """Write the raw results (every message and reply included) to ``path``."""
    data = {
        "command": command,
        "machine": machine(),
        "summary": [line for line in summary_lines(results)],
        "runs": [r.to_json(raw=True) for r in results],
    }
    path.write_text(json.dumps(data, separators=(",", ":")))


def write_plot(results: Sequence[RunResult], path: Path) -> None:
    """A PNG: per run, throughput and latency percentiles over time; then the scaling curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in results if r.series]
    scaling = sorted(
        (r for r in results if r.spec.group == "scaling"), key=lambda r: r.spec.load.conversations
    )
    rows = len(timed) + (1 if scaling else 0)
    fig, axes = plt.subplots(rows, 2, figsize=(13, 2.8 * max(rows, 1)), squeeze=False)
    for row, r in enumerate(timed):
        left, right = axes[row]
        ts = [b.t for b in r.series]
        left.plot(ts, [b.acknowledged for b in r.series], label="acknowledged/s")
        if r.expects_replies:
            left.plot(ts, [b.replied for b in r.series], label="replied/s")
        left.set_title(f"{r.spec.label}: throughput", fontsize=9)
        left.set_xlabel("s")
        left.legend(fontsize=7)
        if r.expects_replies:
            for attr, label in (
                ("e2e_p50", "e2e p50"),
                ("e2e_p95", "e2e p95"),
                ("e2e_p99", "e2e p99"),
            ):
                right.plot(ts, [_ms_value(getattr(b, attr)) for b in r.series], label=label)
        right.plot(ts, [_ms_value(b.ack_p99) for b in r.series], label="ack p99", linestyle="--")
        left.set_ylim(bottom=0)
        right.set_ylim(bottom=0)
        right.set_title(f"{r.spec.label}: latency (ms)", fontsize=9)
        right.set_xlabel("s")
        right.legend(fontsize=7)
    if scaling:
        left, right = axes[rows - 1]
        xs = [r.spec.load.conversations for r in scaling]
        left.plot(xs, [r.throughput for r in scaling], marker="o")
        left.set_xscale("log")
        left.set_ylim(bottom=0)
        left.set_title("throughput (msg/s) by active conversations", fontsize=9)
        right.plot(xs, [_ms_value(r.e2e_latency.get("p99")) for r in scaling], marker="o")
        right.set_xscale("log")
        right.set_ylim(bottom=0)
        right.set_title("end-to-end p99 (ms) by active conversations", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _ms_value(value: float | None) -> float:
    return float("nan") if value is None else value * 1000
