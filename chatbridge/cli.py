"""The ``chatbridge`` command: serve · demo · migrate · mock-agent · mock-chatwoot · routes ·
bench."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from chatbridge.config import Settings

app = typer.Typer(
    help="Chatbridge: connect Chatwoot (and other channels) to AI agents.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def load_settings(**overrides: Any) -> Settings:
    """Settings from env/.env plus CLI overrides; a clear message instead of a traceback."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        console.print("[red]Invalid configuration:[/red]")
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            console.print(f"  {where}: {err['msg']}")
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [env CHATBRIDGE_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env CHATBRIDGE_PORT]")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Database URL [env CHATBRIDGE_DATABASE_URL]")
    ] = None,
) -> None:
    """Run the bridge (HTTP API, webhooks, agent connections, workers)."""
    import uvicorn

    from chatbridge.api import create_app
    from chatbridge.logs import configure_logging

    settings = load_settings(host=host, port=port, database_url=database_url)
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        ws_max_size=settings.ws_max_frame_bytes + 1024,
        timeout_graceful_shutdown=int(settings.drain_seconds) + 1,
    )


@app.command()
def migrate(
    database_url: Annotated[
        str | None, typer.Option(help="Database URL [env CHATBRIDGE_DATABASE_URL]")
    ] = None,
) -> None:
    """Create or upgrade the database schema (serve does this too unless auto_migrate=false)."""
    from chatbridge.store import Store

    settings = load_settings(database_url=database_url)

    async def run() -> None:
        store = Store(settings.database_url)
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(run())
    console.print(f"[green]schema up to date[/green] at {settings.database_url}")


@app.command("mock-agent")
def mock_agent(
    behaviour: Annotated[
        str, typer.Option(help="echo | test | delay | error | stream | handoff | auto")
    ] = "auto",
    agent_id: Annotated[str, typer.Option(help="Agent id")] = "mock-agent",
    host: Annotated[str, typer.Option(help="Serve for dial-out on this address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Serve for dial-out on this port")] = 8765,
    dial_in: Annotated[
        str | None, typer.Option(help="Dial in to this bridge URL instead (ws://…/api/ws/agent)")
    ] = None,
    token: Annotated[str | None, typer.Option(help="Dial-in token")] = None,
    delay: Annotated[float, typer.Option(help="Seconds for the delay behaviour")] = 1.0,
) -> None:
    """Run the mock agent: serve a WebSocket the bridge dials, or dial in to a bridge."""
    from chatbridge.logs import configure_logging
    from chatbridge.testing.mock_agent import run_mock_agent

    configure_logging()
    try:
        asyncio.run(
            run_mock_agent(
                behaviour,
                agent_id=agent_id,
                serve_host=None if dial_in else host,
                serve_port=None if dial_in else port,
                dial_in_url=dial_in,
                token=token,
                delay=delay,
            )
        )
    except KeyboardInterrupt:
        pass


@app.command("mock-chatwoot")
def mock_chatwoot(
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 3000,
    webhook_url: Annotated[
        str | None, typer.Option(help="Where to send webhooks (the bridge's /webhook/chatwoot)")
    ] = "http://127.0.0.1:8000/webhook/chatwoot",
    secret: Annotated[str | None, typer.Option(help="Sign webhooks with this secret")] = None,
) -> None:
    """Run the Chatwoot imitation (webhook triggers + the API the bridge replies to)."""
    from chatbridge.logs import configure_logging
    from chatbridge.testing.mock_chatwoot import run_mock_chatwoot

    configure_logging()
    try:
        asyncio.run(run_mock_chatwoot(host, port, webhook_url=webhook_url, secret=secret))
    except KeyboardInterrupt:
        pass


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Bridge port")] = 8000,
    chatwoot_port: Annotated[int, typer.Option(help="Mock Chatwoot port")] = 3000,
    agent_port: Annotated[int, typer.Option(help="Mock agent port")] = 8765,
    database: Annotated[
        str, typer.Option(help="SQLite file for the demo (recreated each run)")
    ] = "chatbridge-demo.db",
    exit_after: Annotated[
        bool, typer.Option("--exit", help="Stop after the scripted conversation")
    ] = False,
) -> None:
    """Bridge + mock agent + mock Chatwoot on SQLite; play a scripted conversation."""
    from chatbridge.demo import run_demo

    code = asyncio.run(
        run_demo(
            port=port,
            chatwoot_port=chatwoot_port,
            agent_port=agent_port,
            database=database,
            keep_running=not exit_after,
        )
    )
    raise typer.Exit(code)


@app.command()
def routes(
    database_url: Annotated[str | None, typer.Option(help="Database URL")] = None,
) -> None:
    """Print the routes (inbox → agent mappings) stored in the database."""
    from chatbridge.store import Store

    settings = load_settings(database_url=database_url)

    async def run() -> list[dict[str, Any]]:
        store = Store(settings.database_url)
        try:
            await store.migrate()
            return [
                {
                    "channel": r.channel,
                    "inbox_id": r.inbox_id,
                    "agent_id": r.agent_id,
                    "reply_mode": r.reply_mode,
                    "on_failure": r.on_failure,
                }
                for r in await store.list_routes()
            ]
        finally:
            await store.close()

    json.dump(asyncio.run(run()), sys.stdout, indent=2)
    sys.stdout.write("\n")


@app.command()
def bench(
    scenario: Annotated[
        str | None,
        typer.Argument(
            help="chatwoot (webchat, pull, stream: not available yet); omit for the full suite"
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", help="Open loop: messages per second in total")
    ] = None,
    max_in_flight: Annotated[
        int | None,
        typer.Option("--max", help="Closed loop: at most this many messages not yet replied"),
    ] = None,
    conversations: Annotated[
        int | None, typer.Option(help="Conversations the load is spread over")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds of load per run")] = None,
    database: Annotated[str, typer.Option(help="sqlite | postgresql (a fresh one per run)")] = (
        "sqlite"
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="Short smoke run for CI (< 2 min); fails on loss")
    ] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the raw results to this file")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG of throughput and latency")
    ] = None,
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="Also measure the no-op endpoint")
    ] = True,
    grace: Annotated[
        float | None, typer.Option(help="Seconds to wait for replies after the load stops")
    ] = None,
    think_ms: Annotated[
        float, typer.Option(help="Agent think time per message (reported apart from e2e)")
    ] = 0.0,
    stored: Annotated[
        int, typer.Option(help="Messages stored before the full suite's stored-history run")
    ] = 1_000_000,
) -> None:
    """Benchmark: bridge, mock agent and mock channel as processes on loopback; prints a table.

    With no SCENARIO, the full suite (under 10 minutes). Exits 1 if any message was lost,
    duplicated or answered out of order.
    """
    if rate is not None and max_in_flight is not None:
        console.print("[red]give --rate (open loop) or --max (closed loop), not both[/red]")
        raise typer.Exit(2)
    try:
        from chatbridge.bench.suite import Options, main
    except ImportError as exc:  # pragma: no cover - the optional dependencies are missing
        console.print(f"[red]{exc}[/red]: install the bench extra: pip install 'chatbridge[bench]'")
        raise typer.Exit(2) from None

    code = main(
        Options(
            scenario=scenario,
            rate=rate,
            max_in_flight=max_in_flight,
            conversations=conversations,
            duration=duration,
            database=database,
            quick=quick,
            baseline=baseline,
            grace=grace,
            think_ms=think_ms,
            stored=stored,
        ),
        json_path=json_path,
        plot_path=plot,
    )
    raise typer.Exit(code)


if __name__ == "__main__":  # pragma: no cover
    app()
