"""``chatbridge broadcast …``: create, list, follow and steer broadcasts from a terminal.

A client of the running bridge's API (``/api/comms/broadcasts``), so a broadcast made here is
checked exactly as one made in the console and is sent by the bridge's own worker:

    chatbridge broadcast create --template tp_… --name "Kettles" --param 1={person.first_name} \\
        --tag-any vip --rate 5 --follow
    chatbridge broadcast list
    chatbridge broadcast status bc_… --follow      # a progress bar until it ends
    chatbridge broadcast pause|resume|cancel bc_…

``--url`` (env ``CHATBRIDGE_URL``, default ``http://127.0.0.1:8000``) and ``--admin-key``
(env ``CHATBRIDGE_ADMIN_KEY``) say which bridge and how to authenticate.

It imports no other ``chatbridge`` module (only typer, rich and httpx), so the ``chatbridge``
command does not pay for loading the app to offer it.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

broadcast_app = typer.Typer(help="Template broadcasts to CRM segments.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
FINAL = ("done", "cancelled", "failed", "paused")

Url = Annotated[str, typer.Option(envvar="CHATBRIDGE_URL", help="The bridge's base URL")]
AdminKey = Annotated[
    str | None, typer.Option(envvar="CHATBRIDGE_ADMIN_KEY", help="The bridge's admin key")
]


def _client(url: str, admin_key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30)


def _call(http: httpx.Client, method: str, path: str, **kw: Any) -> dict[str, Any]:
    """One API call; a refusal is printed with its reason and ends the command (exit 1)."""
    try:
        r = http.request(method, f"/api/comms{path}", **kw)
    except httpx.HTTPError as exc:
        err.print(f"[red]cannot reach the bridge at {http.base_url}: {exc}[/red]")
        raise typer.Exit(2) from None
    if r.status_code >= 400:
        try:
            problem = r.json().get("error", {})
            message = problem.get("message") or r.text
        except ValueError:
            message = r.text
        err.print(f"[red]{r.status_code}: {message}[/red]", markup=True, highlight=False)
        raise typer.Exit(1)
    body: dict[str, Any] = r.json()
    return body


def _when(raw: str | None, option: str) -> float | None:
    """A date (``2026-01-31``, ISO time) or unix seconds → unix seconds."""
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        err.print(f"[red]{option}: not a date or unix time: {raw!r}[/red]")
        raise typer.Exit(2) from None


def _params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        slot, sep, value = pair.partition("=")
        if not sep or not slot:
            err.print(f"[red]--param wants SLOT=VALUE, got {pair!r}[/red]")
            raise typer.Exit(2)
        params[slot] = value
    return params


def _counts(b: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in b["counts"].items() if v)


def follow(http: httpx.Client, broadcast_id: str, *, interval: float = 0.5) -> dict[str, Any]:
    """A progress bar of the broadcast's settled recipients until it is done, cancelled,
    failed or paused; returns its last state."""
    b: dict[str, Any] = _call(http, "GET", f"/broadcasts/{broadcast_id}")["broadcast"]
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task(b["name"], total=b["total"], counts="")
        while True:
            settled = b["total"] - b["counts"]["queued"] - b["counts"]["sending"]
            progress.update(task, completed=settled, counts=f"{b['state']}: {_counts(b)}")
            if b["state"] in FINAL:
                return b
            time.sleep(interval)
            b = _call(http, "GET", f"/broadcasts/{broadcast_id}")["broadcast"]


@broadcast_app.command("create")
def create(
    template: Annotated[str, typer.Option(help="The template's id (see /api/comms/templates)")],
    name: Annotated[str, typer.Option(help="What the broadcast is called")],
    param: Annotated[
        list[str] | None,
        typer.Option(help="SLOT=VALUE; VALUE may name {person.name}, {person.first_name}, …"),
    ] = None,
    tag_any: Annotated[list[str] | None, typer.Option(help="People with any of these")] = None,
    tag_all: Annotated[list[str] | None, typer.Option(help="People with all of these")] = None,
    channel: Annotated[str | None, typer.Option(help="People with a thread here")] = None,
    after: Annotated[str | None, typer.Option(help="Last contact at or after (date)")] = None,
    before: Annotated[str | None, typer.Option(help="Last contact before (date)")] = None,
    rate: Annotated[float | None, typer.Option(help="Messages per second")] = None,
    preview: Annotated[bool, typer.Option("--preview", help="Only count; send nothing")] = False,
    follow_it: Annotated[bool, typer.Option("--follow", help="Show progress until done")] = False,
    url: Url = "http://127.0.0.1:8000",
    admin_key: AdminKey = None,
) -> None:
    """Create a broadcast (or ``--preview`` whom it would reach)."""
    segment: dict[str, Any] = {}
    if tag_any:
        segment["tags_any"] = tag_any
    if tag_all:
        segment["tags_all"] = tag_all
    if channel:
        segment["channel"] = channel
    if (t := _when(after, "--after")) is not None:
        segment["last_contact_after"] = t
    if (t := _when(before, "--before")) is not None:
        segment["last_contact_before"] = t
    draft: dict[str, Any] = {
        "template_id": template,
        "parameters": _params(param or []),
        "segment": segment,
    }
    with _client(url, admin_key) as http:
        if preview:
            found = _call(http, "POST", "/broadcasts/preview", json=draft)
            out.print(
                f"{found['sendable']} to send, {found['skipped']} skipped "
                f"{json.dumps(found['skipped_reasons'])}",
                highlight=False,
            )
            return
        body = {**draft, "name": name}
        if rate is not None:
            body["rate_per_second"] = rate
        b = _call(http, "POST", "/broadcasts", json=body)["broadcast"]
        out.print(f"created {b['id']}: {b['total']} recipients ({_counts(b)})", highlight=False)
        if follow_it:
            last = follow(http, b["id"])
            out.print(f"{last['state']}: {_counts(last)}", highlight=False)


@broadcast_app.command("list")
def list_broadcasts(url: Url = "http://127.0.0.1:8000", admin_key: AdminKey = None) -> None:
    """The broadcasts, newest first."""
    with _client(url, admin_key) as http:
        found = _call(http, "GET", "/broadcasts", params={"limit": 100})
    table = Table("name", "state", "progress", "counts")
    table.add_column("id", no_wrap=True, min_width=30)  # whole: it is what the others take
    for b in found["broadcasts"]:
        table.add_row(b["name"], b["state"], f"{b['progress']:.0%}", _counts(b), b["id"])
    out.print(table)


@broadcast_app.command("status")
def status(
    broadcast_id: str,
    follow_it: Annotated[bool, typer.Option("--follow", help="Progress bar until it ends")] = False,
    url: Url = "http://127.0.0.1:8000",
    admin_key: AdminKey = None,
) -> None:
    """One broadcast's state and counts (``--follow``: a live progress bar)."""
    with _client(url, admin_key) as http:
        b = (
            follow(http, broadcast_id)
            if follow_it
            else _call(http, "GET", f"/broadcasts/{broadcast_id}")["broadcast"]
        )
    out.print(
        f"{b['id']} {b['name']!r}: {b['state']}, {b['progress']:.0%} ({_counts(b)})",
        highlight=False,
    )


def _action(action: str) -> Any:
    def run(
        broadcast_id: str, url: Url = "http://127.0.0.1:8000", admin_key: AdminKey = None
    ) -> None:
        with _client(url, admin_key) as http:
            b = _call(http, "POST", f"/broadcasts/{broadcast_id}/{action}")["broadcast"]
        out.print(f"{b['id']}: {b['state']}", highlight=False)

    run.__doc__ = f"{action.capitalize()} a broadcast."
    return run


for _name in ("pause", "resume", "cancel"):
    broadcast_app.command(_name)(_action(_name))
