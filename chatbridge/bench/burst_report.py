"""The ``burst`` scenario's report: a table of the runs, what the debounce changed, JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from chatbridge.bench.burst_runner import BurstResult
from chatbridge.bench.report import machine


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _figure(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _check(result: BurstResult) -> str:
    if result.valid:
        return "[green]ok[/green]"
    wrong = {k: v for k, v in result.tally.problems().items() if v}
    return "[red]" + ", ".join(f"{k} {v}" for k, v in wrong.items()) + "[/red]" if wrong else "-"


def burst_table(results: Sequence[BurstResult]) -> Table:
    """One row per run: model calls and replies per customer message, latency, cost."""
    table = Table(
        title="Burst: customers typing 3 to 5 fragments, then waiting for the reply "
        "(msgs: customer messages; latency: last fragment sent → burst answered)"
    )
    for column in (
        "run", "db", "msgs", "bursts", "msgs/burst", "model calls", "calls/msg",
        "replies/burst", "latency p50/p95/p99 ms", "bridge CPU ms/msg", "statements/msg",
        "check",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column in ("run", "check") else "right")
    for r in results:
        t = r.tally
        latency = t.latency
        table.add_row(
            r.spec.label,
            r.spec.database,
            f"{t.acknowledged:,}",
            f"{t.bursts:,}",
            _figure(t.fragments_per_burst),
            f"{t.model_calls:,}",
            _figure(t.calls_per_message),
            _figure(t.replies_per_burst),
            "/".join(_ms(latency.get(k)) for k in ("p50", "p95", "p99")) if latency else "-",
            _figure(r.bridge_cpu_ms_per_message),
            _figure(r.store_per_message("statements"), 1),
            _check(r),
        )
    return table


def comparison_lines(results: Sequence[BurstResult]) -> list[str]:
    """What each debounced run changed against the run without debounce."""
    reference = next((r for r in results if r.spec.debounce_ms == 0), None)
    if reference is None:
        return []
    lines = []
    for r in results:
        if r is reference or r.spec.database != reference.spec.database:
            continue
        before, after = reference.tally, r.tally
        line = (
            f"debounce {r.spec.debounce_ms} ms (max wait {r.spec.max_wait_ms} ms) on "
            f"{r.spec.database}: model calls per customer message "
            f"{_figure(before.calls_per_message)} → {_figure(after.calls_per_message)}"
        )
        if before.calls_per_message and after.calls_per_message:
            line += f" ({before.calls_per_message / after.calls_per_message:.1f}x fewer)"
        line += (
            f"; replies per burst {_figure(before.replies_per_burst)} → "
            f"{_figure(after.replies_per_burst)}"
        )
        if before.latency and after.latency:
            added = [
                f"{k} +{(after.latency[k] - before.latency[k]) * 1000:.0f} ms"
                for k in ("p50", "p95", "p99")
            ]
            line += "; added latency after the last fragment: " + " / ".join(added)
        cpu_before, cpu_after = reference.bridge_cpu_ms_per_message, r.bridge_cpu_ms_per_message
        if cpu_before is not None and cpu_after is not None:
            line += f"; bridge CPU ms per customer message {cpu_before:.2f} → {cpu_after:.2f}"
        lines.append(line)
    return lines


def print_burst_report(results: Sequence[BurstResult], console: Console | None = None) -> None:
    """Print the table, the comparison, the machine and the settings (stdout by default)."""
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=180)
    console.print(burst_table(results))
    for line in comparison_lines(results):
        console.print(line, highlight=False)
    for r in results:
        cpu = ", ".join(f"{p.name} {p.cpu_seconds:.2f} s" for p in r.processes)
        console.print(
            f"{r.spec.label}: {r.load_seconds:.1f} s of load; CPU: {cpu}",
            highlight=False,
            markup=False,
        )
        for note in r.notes:
            console.print(f"  note: {note}", highlight=False, markup=False)
    info = machine()
    console.print(
        f"Machine: {info['cpu_count']} CPU ({info['cpu_model']}), {info['memory_gb']} GB, "
        f"{info['platform']}, Python {info['python']}",
        highlight=False,
    )
    for r in results:
        console.print(
            f"Settings of {r.spec.label}: policies={r.spec.policies()}, "
            f"agent={r.settings.get('agent')}",
            highlight=False,
            markup=False,
        )


def write_burst_json(results: Sequence[BurstResult], path: Path, *, command: list[str]) -> None:
    """Write the raw results (every fragment, turn and reply) to ``path``."""
    data = {
        "command": command,
        "machine": machine(),
        "summary": comparison_lines(results),
        "runs": [r.to_json(raw=True) for r in results],
    }
    path.write_text(json.dumps(data, separators=(",", ":")))
