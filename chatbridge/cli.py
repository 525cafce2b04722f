"""The ``chatbridge`` command: serve · demo · migrate · mock-agent · mock-chatwoot · routes."""

from __future__ import annotations

import asyncio
import json
import sys
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


if __name__ == "__main__":  # pragma: no cover
    app()
