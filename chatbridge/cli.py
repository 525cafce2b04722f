"""The ``chatbridge`` command: serve · check · demo · migrate · mock-agent · mock-chatwoot ·
routes · bench · broadcast · docs; ``chatbridge --version``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

try:
    import typer
    from pydantic import ValidationError
    from rich.console import Console

    from chatbridge.config import Settings
except ImportError as exc:  # installed without the server extra: the agent SDK alone
    raise SystemExit(
        f"chatbridge: the command needs the bridge's dependencies ({exc.name} is missing).\n"
        "Install them with: pip install 'chatbridge[server]'"
    ) from None

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from chatbridge.gc_policy import GcPolicy

app = typer.Typer(
    help="Chatbridge: connect Chatwoot (and other channels) to AI agents.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _add_broadcast_commands() -> None:
    """``chatbridge broadcast …`` (an API client: ``chatbridge.broadcast_cli``)."""
    from chatbridge.broadcast_cli import broadcast_app

    app.add_typer(broadcast_app, name="broadcast")


_add_broadcast_commands()


def _add_docs_commands() -> None:
    """``chatbridge docs …``: the reference documents generated from the code."""
    from chatbridge.docs_gen import docs_app

    app.add_typer(docs_app, name="docs")


_add_docs_commands()


def load_settings(**overrides: Any) -> Settings:
    """Settings from env/.env plus CLI overrides, each channel's own and the comms settings
    checked too. A bad one is told in one line per setting (``chatbridge.config_errors``) on
    stderr, and the command exits 2: no traceback. Settings given empty (treated as unset)
    get a warning line."""
    import os

    from pydantic_settings import SettingsError

    from chatbridge.channels import registry
    from chatbridge.config_errors import empty_settings, explain
    from chatbridge.crm.settings import CommsSettings

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**given)
        registry.load_settings(settings)  # each channel's own settings (CHATBRIDGE_<NAME>_*)
        CommsSettings()
    except (ValidationError, SettingsError) as exc:
        lines = explain(exc, models=(Settings, CommsSettings), environ=os.environ, flags=given)
        for line in lines:
            typer.echo(line, err=True)
        raise typer.Exit(2) from None
    for warning in empty_settings(os.environ):
        typer.echo(warning, err=True)
    return settings


def _version(value: bool) -> None:
    if value:
        from chatbridge import __version__

        typer.echo(f"chatbridge {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Chatbridge: connect Chatwoot (and other channels) to AI agents."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (env CHATBRIDGE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (env CHATBRIDGE_PORT)")] = None,
    fd: Annotated[
        int | None,
        typer.Option(
            help="Serve on this inherited TCP socket (a file descriptor, bound by the parent: "
            "systemd socket activation passes 3) instead of binding --host/--port; connections "
            "made while the bridge restarts wait in its queue instead of being refused",
            show_default=False,
        ),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Database URL (env CHATBRIDGE_DATABASE_URL)")
    ] = None,
    proxy_headers: Annotated[
        bool | None,
        typer.Option(
            "--proxy-headers/--no-proxy-headers",
            help="Take the client address and scheme from X-Forwarded-For / X-Forwarded-Proto "
            "sent by --forwarded-allow-ips (env CHATBRIDGE_PROXY_HEADERS; default off)",
            show_default=False,
        ),
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated proxy addresses (or networks) trusted with those headers "
            "(env CHATBRIDGE_FORWARDED_ALLOW_IPS; default 127.0.0.1)",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            help="DEBUG | INFO | WARNING | ERROR (env CHATBRIDGE_LOG_LEVEL; default INFO)",
            show_default=False,
        ),
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log one line per HTTP request (env CHATBRIDGE_ACCESS_LOG; default off)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the bridge (HTTP API, webhooks, agent connections, workers)."""
    if fd is not None:
        if host is not None or port is not None:
            console.print("--fd takes the place of --host/--port: give one or the other",
                          style="red", markup=False, soft_wrap=True)  # fmt: skip
            raise typer.Exit(2)
        host, port = inherited_address(fd)  # what the exposure check and URLs must see

    settings = load_settings(
        host=host,
        port=port,
        database_url=database_url,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        log_level=log_level,
        access_log=access_log,
    )

    import uvicorn

    from chatbridge.api import create_app
    from chatbridge.api.edge import uvicorn_options
    from chatbridge.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    if settings.access_log:  # the logging set-up keeps uvicorn's access log to errors
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    refuse_open_webhooks(settings)
    refuse_unreachable_database(settings)
    application = create_app(settings)
    policy = gc_policy(settings, application.state.metrics.registry)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if policy is not None and self.started and not self.should_exit:
                policy.start()  # warm now: the app has started and listens

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if policy is not None:
                await policy.stop()
            await super().shutdown(sockets=sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:
            # uvicorn waits for open requests before the app's shutdown runs: end the web chat
            # long-polls and live sockets first, so a restart does not hang on them.
            super().handle_exit(sig, frame)
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
                loop.call_soon_threadsafe(
                    lambda: loop.create_task(application.state.bridge.begin_shutdown())
                )

    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.drain_seconds) + 1,
        access_log=settings.access_log,
        **uvicorn_options(settings),
    )
    if fd is None:
        Server(config).run()
        return
    console.print(f"serving on the inherited socket {host}:{port} (fd {fd})", highlight=False)
    # family, type and protocol read from the descriptor: uvicorn's own ``fd=`` takes every
    # descriptor for a Unix socket, and asyncio then leaves Nagle's algorithm on for the
    # accepted connections (~40 ms per kept-alive response)
    Server(config).run(sockets=[socket.socket(fileno=fd)])


def gc_policy(settings: Settings, registry: CollectorRegistry | None = None) -> GcPolicy | None:
    """The garbage-collector policy for a serving process (``chatbridge.gc_policy``), its
    figures registered in ``registry`` (the app's metrics); None when ``gc_freeze`` is off."""
    if not settings.gc_freeze:
        return None
    from chatbridge.gc_policy import GcMetrics, GcPolicy

    policy = GcPolicy()
    if registry is not None:
        registry.register(GcMetrics(policy))
    return policy


def inherited_address(fd: int) -> tuple[str, int]:
    """The address of the TCP socket behind file descriptor ``fd``, bound by whoever started
    us (who keeps it open, so the address stays ours across restarts); exit (2) with a
    message when ``fd`` is something else."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        console.print(f"--fd {fd}: not an open socket ({exc.strerror})",
                      style="red", markup=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(2) from None
    try:
        tcp = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
        address = sock.getsockname()
    finally:
        sock.detach()  # only looked at: serving opens it again
    if not tcp or address[1] == 0:
        console.print(f"--fd {fd}: not a bound TCP socket",
                      style="red", markup=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(2)
    return str(address[0]), int(address[1])


def refuse_open_webhooks(settings: Settings) -> None:
    """Before anything starts: warn about unauthenticated webhooks the environment sets up,
    and exit (2) when they would be served on a public address. The app checks again at
    start-up with the settings stored through the API."""
    from chatbridge.api.exposure import chatwoot_configured, exposure_problem, open_webhooks
    from chatbridge.crm.settings import CommsSettings

    found = open_webhooks(settings, CommsSettings(), chatwoot_in_use=chatwoot_configured(settings))
    problem = exposure_problem(settings, found)
    if problem is None:
        return  # the app's start-up logs the warnings
    for hook in found:
        console.print(f"warning: {hook.warning()}", style="yellow", markup=False, soft_wrap=True)
    console.print(problem, style="red", markup=False, soft_wrap=True)
    raise typer.Exit(2)


@contextlib.contextmanager
def database_failures(settings: Settings) -> Iterator[None]:
    """A database that cannot be reached (or refuses) ends the command with one line on
    stderr and exit 1, not a traceback."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from chatbridge.check import describe_failure
    from chatbridge.errors import StoreError

    try:
        yield
    except (OSError, TimeoutError, StoreError, SQLAlchemyError) as exc:
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        typer.echo(f"database {where}: {describe_failure(exc)}", err=True)
        raise typer.Exit(1) from None


def refuse_unreachable_database(settings: Settings) -> None:
    """Before anything starts: a database that cannot be reached (wrong host, port, name or
    password; a SQLite folder that does not exist) ends ``serve`` with one line and exit 1,
    where the app's start-up would end in a traceback."""
    from chatbridge.check import check_database

    with database_failures(settings):
        # the store's own connect timeout: a slow server is not refused here first
        result = asyncio.run(asyncio.wait_for(check_database(settings, timeout=10), 30))
    if not result.ok:
        typer.echo(f"database {result.detail}", err=True)
        raise typer.Exit(1)


@app.command()
def check(
    database_url: Annotated[
        str | None, typer.Option(help="Database URL (env CHATBRIDGE_DATABASE_URL)")
    ] = None,
) -> None:
    """Validate the configuration and reach the database, Redis, Chatwoot and each agent
    without starting the bridge: one ok/FAIL line per check; exit 1 if one fails."""
    from chatbridge.check import run_checks

    settings = load_settings(database_url=database_url)
    results = asyncio.run(run_checks(settings))
    for result in results:
        typer.echo(result.line())
    if not all(result.ok for result in results):
        raise typer.Exit(1)


@app.command()
def migrate(
    database_url: Annotated[
        str | None, typer.Option(help="Database URL (env CHATBRIDGE_DATABASE_URL)")
    ] = None,
) -> None:
    """Create or upgrade the database schema (serve does this too unless auto_migrate=false)."""
    from chatbridge.store import Store

    settings = load_settings(database_url=database_url)

    async def run() -> None:
        store = Store(settings.database_url)
        try:
            async with store.startup_lock():  # replicas (or jobs) migrating at once queue up
                await store.migrate()
        finally:
            await store.close()

    with database_failures(settings):
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
    webhook_port: Annotated[
        int | None,
        typer.Option(help="Answer http-webhook turns on this port instead (POST /)"),
    ] = None,
    webhook_secret: Annotated[
        str | None, typer.Option(help="Check X-Chatbridge-Signature with this secret")
    ] = None,
) -> None:
    """Run the mock agent: serve a WebSocket the bridge dials, dial in to a bridge, or answer
    http-webhook POSTs."""
    from chatbridge.logs import configure_logging
    from chatbridge.testing.mock_agent import run_mock_agent

    configure_logging()
    try:
        asyncio.run(
            run_mock_agent(
                behaviour,
                agent_id=agent_id,
                serve_host=None if dial_in or webhook_port else host,
                serve_port=None if dial_in or webhook_port else port,
                webhook_host=host,
                dial_in_url=dial_in,
                token=token,
                delay=delay,
                webhook_port=webhook_port,
                webhook_secret=webhook_secret,
            )
        )
    except KeyboardInterrupt:
        pass


@app.command("mock-openai")
def mock_openai(
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (the API root is http://host:port/v1)")] = 8089,
    api_key: Annotated[str | None, typer.Option(help="Require this Bearer key")] = None,
) -> None:
    """Run a fake OpenAI-compatible chat API that echoes: try an openai route with no key."""
    from chatbridge.testing.fake_openai import run_fake_openai

    try:
        asyncio.run(run_fake_openai(host, port, api_key=api_key))
    except KeyboardInterrupt:
        pass


def _opt(help_text: str) -> Any:
    """A pull-agent option read as text: ``PullConfig.from_sources`` validates it and names
    the flag (or the environment variable) at fault."""
    return typer.Option(help=help_text, show_default=False)


@app.command("pull-agent")
def pull_agent(
    api: Annotated[
        str | None,
        _opt(
            "native | action | auto (default: native when an agent id or token "
            "is given, else action) (env CHATBRIDGE_PULL_API)"
        ),
    ] = None,
    url: Annotated[
        str | None,
        _opt("The bridge's base URL (env WEB_CHAT_API_URL; default http://127.0.0.1:8000)"),
    ] = None,
    agent_id: Annotated[str | None, _opt("native: the agent id (env CHATBRIDGE_AGENT_ID)")] = None,
    token: Annotated[
        str | None, _opt("native: the agent token (env CHATBRIDGE_AGENT_TOKEN)")
    ] = None,
    api_key: Annotated[str | None, _opt("action: the API key (env WEB_CHAT_API_KEY)")] = None,
    poll_interval: Annotated[
        str | None,
        _opt("Seconds between polls that brought nothing (env WEB_CHAT_POLL_INTERVAL; default 5)"),
    ] = None,
    max_retries: Annotated[
        str | None,
        _opt("Attempts per request before giving up on it (env WEB_CHAT_MAX_RETRIES; default 3)"),
    ] = None,
    retry_delay: Annotated[
        str | None,
        _opt("First retry delay, doubling per attempt (env WEB_CHAT_RETRY_DELAY; default 10)"),
    ] = None,
    timeout: Annotated[
        str | None,
        _opt("Seconds per request, plus the long-poll wait (env WEB_CHAT_TIMEOUT; default 30)"),
    ] = None,
    wait: Annotated[
        str | None, _opt("native: long-poll wait in seconds, 0-60 (default 25)")
    ] = None,
    concurrency: Annotated[str | None, _opt("Turns handled at once (default 10)")] = None,
    drain_seconds: Annotated[
        str | None, _opt("On SIGINT/SIGTERM, how long running turns may finish (default 10)")
    ] = None,
    behaviour: Annotated[
        str | None,
        _opt(
            "Mock behaviour: echo | test | delay | error | stream | handoff | auto "
            "(default echo, unless --handler)"
        ),
    ] = None,
    handler: Annotated[
        str | None,
        _opt(
            "module:function (or module:agent): handler(turn: Turn) or "
            "handler(text: str), sync or async, returning text, Handoff, NoReply, "
            "None or (async) text chunks"
        ),
    ] = None,
    delay: Annotated[float, typer.Option(help="Seconds for the delay behaviour")] = 1.0,
    log_level: Annotated[str, typer.Option(help="DEBUG | INFO | WARNING | ERROR")] = "INFO",
) -> None:
    """Poll a bridge for turns over HTTP and answer them (native pull API or the web chat
    plugin's action API). Stops cleanly on SIGINT/SIGTERM."""
    import logging
    import os

    from chatbridge.agent import Agent
    from chatbridge.agent.pull import PullConfig, PullRejected, load_handler, run_pull_agent
    from chatbridge.errors import ConfigError
    from chatbridge.logs import configure_logging

    flags = dict(
        api=api, url=url, agent_id=agent_id, token=token, api_key=api_key,
        poll_interval=poll_interval, max_retries=max_retries, retry_delay=retry_delay,
        timeout=timeout, wait=wait, concurrency=concurrency, drain_seconds=drain_seconds,
    )  # fmt: skip
    try:
        if behaviour is not None and handler is not None:
            raise ConfigError("give --behaviour or --handler, not both")
        config = PullConfig.from_sources(os.environ, flags)
        name = config.agent_id or "pull-agent"
        if handler is not None:
            agent = Agent(name)
            agent.on_message(load_handler(handler))
        else:
            from chatbridge.testing.mock_agent import build_mock_agent

            try:
                agent = build_mock_agent(behaviour or "echo", agent_id=name, delay=delay)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    except ConfigError as exc:
        for line in str(exc).splitlines():
            console.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        console.print(f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}",
                      style="red", markup=False, highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(2)
    configure_logging(log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per poll otherwise
    try:
        asyncio.run(run_pull_agent(config, agent))
    except PullRejected as exc:
        console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:  # pragma: no cover - where signal handlers cannot be installed
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

    policy = gc_policy(load_settings())

    async def run() -> int:
        if policy is not None:
            policy.start()
        try:
            return await run_demo(
                port=port,
                chatwoot_port=chatwoot_port,
                agent_port=agent_port,
                database=database,
                keep_running=not exit_after,
            )
        finally:
            if policy is not None:
                await policy.stop()

    raise typer.Exit(asyncio.run(run()))


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

    with database_failures(settings):
        found = asyncio.run(run())
    json.dump(found, sys.stdout, indent=2)
    sys.stdout.write("\n")


@app.command()
def bench(
    scenario: Annotated[
        str | None,
        typer.Argument(help="chatwoot | webchat | pull | stream | burst; omit for the full suite"),
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", help="Open loop: messages per second in total")
    ] = None,
    max_in_flight: Annotated[
        int | None,
        typer.Option("--max", help="Closed loop: at most this many messages not yet replied"),
    ] = None,
    conversations: Annotated[
        int | None,
        typer.Option(
            help="Conversations the load is spread over (webchat, stream: widget sessions, "
            "all kept connected for the whole run)"
        ),
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
        float,
        typer.Option(
            help="Agent think time per message (reported apart from e2e; stream: the delay "
            "before the first chunk)"
        ),
    ] = 0.0,
    stored: Annotated[
        int, typer.Option(help="Messages stored before the full suite's stored-history run")
    ] = 1_000_000,
    replicas: Annotated[
        int,
        typer.Option(
            min=1,
            help="Bridge processes sharing one PostgreSQL database and one Redis; webhooks "
            "round-robin over them (chatwoot; needs --database postgresql)",
        ),
    ] = 1,
    redis_url: Annotated[
        str | None,
        typer.Option(
            help="Redis the replicas share (default: CHATBRIDGE_REDIS_URL, else a private "
            "redis-server per run); with --replicas 1 the bridge uses it too"
        ),
    ] = None,
    debounce_ms: Annotated[
        int | None,
        typer.Option(
            help="burst: the debounced run's debounce_ms (default 800; 0: only the run "
            "without debounce)"
        ),
    ] = None,
    jitter_ms: Annotated[
        float, typer.Option(help="burst: each 300 ms gap between fragments ± up to this")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="burst: seeds the customers' burst sizes")] = 14,
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
            replicas=replicas,
            redis_url=redis_url,
            debounce_ms=debounce_ms,
            jitter_ms=jitter_ms,
            seed=seed,
        ),
        json_path=json_path,
        plot_path=plot,
    )
    raise typer.Exit(code)


if __name__ == "__main__":  # pragma: no cover
    app()
