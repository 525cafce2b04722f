"""``chatbridge check``: is this configuration ready to serve? Asked without starting it.

Each check reaches one thing the bridge needs and says so in one line: the database (and
its schema), Redis when ``redis_url`` is set, Chatwoot when it is in use (a cheap
authenticated ``GET``), and every agent the environment's routes name: a dial-out WebSocket
must answer its handshake, a webhook or OpenAI-compatible URL must answer HTTP; an agent
that dials in (or pulls) is only reported, since it comes to the bridge. Nothing is written:
a SQLite file that does not exist yet is not created.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from chatbridge.config import AgentConfig, Settings

TIMEOUT = 5.0
"""Seconds each check may take."""


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``ok``, what was checked (``name``) and what was found."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def describe_failure(exc: BaseException) -> str:
    """What went wrong reaching something, in a few words (no traceback)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT:g} s"
    cause: BaseException | None = exc
    while cause is not None:  # httpx and SQLAlchemy wrap the OSError that says it plainly
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    original = getattr(exc, "orig", None)  # SQLAlchemy's wrapper of the driver's error
    if isinstance(original, BaseException):
        exc = original
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    kind = type(exc).__name__
    if kind in ("Error", "Exception"):  # a wrapper's name says nothing
        return text or kind
    return f"{kind}: {text}" if text else kind


async def _guard(
    name: str, probe: Callable[[], Awaitable[Check]], where: str | None = None
) -> Check:
    """``probe()``, bounded by ``TIMEOUT``; an exception is that check's FAIL line (about
    ``where``, when given)."""
    try:
        return await asyncio.wait_for(probe(), TIMEOUT)
    except Exception as exc:
        return Check(
            name, False, f"{where}: {describe_failure(exc)}" if where else describe_failure(exc)
        )


async def check_database(settings: Settings, timeout: float = TIMEOUT) -> Check:
    """The database answers (connecting within ``timeout`` seconds), and which schema
    revision it holds."""
    from sqlalchemy import make_url, text
    from sqlalchemy.ext.asyncio import create_async_engine

    url = make_url(settings.database_url)
    where = url.render_as_string(hide_password=True)
    connect_args: dict[str, object] = {}
    if settings.is_sqlite:
        found = _sqlite_file(url.database, where)
        if found is not None:
            return found
    else:
        connect_args = {"timeout": timeout}
    engine = create_async_engine(settings.database_url, connect_args=connect_args)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            try:
                revision = await conn.execute(text("SELECT version_num FROM alembic_version"))
                found = revision.scalar()
            except Exception:
                found = None
    finally:
        await engine.dispose()
    schema = f"schema revision {found}" if found else "no schema yet (serve or migrate makes it)"
    return Check("database", True, f"{where}: {schema}")


def _sqlite_file(database: str | None, where: str) -> Check | None:
    """The outcome for a SQLite file that is not there yet (None: it is, open it)."""
    if not database or database == ":memory:":
        return Check("database", True, f"{where}: in memory")
    path = Path(database)
    if path.exists():
        return None
    folder = path.parent.resolve()
    if not folder.is_dir():
        return Check("database", False, f"{where}: the folder {folder} does not exist")
    return Check("database", True, f"{where}: created when the bridge starts")


async def check_redis(url: str) -> Check:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)
    try:
        await client.ping()
    finally:
        await client.aclose()
    return Check("redis", True, "answers PING")


async def check_chatwoot(settings: Settings) -> Check:
    from chatbridge.channels.chatwoot_api import ChatwootAdapter

    base = settings.chatwoot_base_url
    adapter = ChatwootAdapter(base, settings.chatwoot_api_access_token, timeout=TIMEOUT)
    try:
        status = await adapter.probe(settings.chatwoot_account_id)
    finally:
        await adapter.aclose()
    if status is None:
        return Check("chatwoot", False, f"cannot reach {base}")
    if status in (401, 403):
        return Check(
            "chatwoot", False, f"{base} refused the access token (HTTP {status}): check "
            "CHATWOOT_API_ACCESS_TOKEN and CHATWOOT_ACCOUNT_ID",
        )  # fmt: skip
    if status in (200, 404):
        return Check("chatwoot", True, f"{base} accepts the access token")
    return Check("chatwoot", False, f"{base} answered HTTP {status}")


@dataclass(frozen=True)
class AgentTarget:
    """An agent to reach: from the environment's routes or stored (console, API)."""

    agent_id: str
    transport: str
    url: str | None
    api_key: str | None = None
    stored: bool = False

    @classmethod
    def of(cls, config: AgentConfig) -> AgentTarget:
        return cls(config.agent_id, str(config.transport), config.url, config.api_key)

    @property
    def name(self) -> str:
        return f"{'stored ' if self.stored else ''}agent {self.agent_id} ({self.transport})"


def check_webhooks(settings: Settings) -> Check:
    """Whether ``serve`` would start with the channels' webhook authentication as it is."""
    from chatbridge.api.exposure import chatwoot_configured, exposure_problem, open_webhooks
    from chatbridge.crm.settings import CommsSettings

    found = open_webhooks(settings, CommsSettings(), chatwoot_in_use=chatwoot_configured(settings))
    problem = exposure_problem(settings, found)
    if problem is not None:
        return Check("webhooks", False, problem.replace(" (see the warnings above)", ""))
    if found:
        names = ", ".join(hook.channel for hook in found)
        return Check(
            "webhooks", True, f"{names} not authenticated (allowed on {settings.host} only)"
        )
    return Check("webhooks", True, "every channel in use authenticates its webhooks")


async def check_agent(agent: AgentTarget, openai_key: str | None) -> Check:
    """One agent, as its transport reaches it."""
    name = agent.name
    if agent.transport in ("ws-dial-in", "http-pull"):
        return Check(name, True, "waits for the agent to connect")
    url = agent.url or ""
    if agent.transport == "ws-dial-out":
        import websockets

        async with websockets.connect(url, open_timeout=TIMEOUT, close_timeout=1):
            pass
        return Check(name, True, f"{url} answers the WebSocket handshake")
    import httpx

    headers = {}
    if agent.transport == "openai":
        key = agent.api_key or openai_key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = url.rstrip("/") + "/models"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(url, headers=headers)
    if agent.transport == "openai" and response.status_code in (401, 403):
        return Check(name, False, f"{url} refused the API key (HTTP {response.status_code})")
    # a webhook takes POSTs: any answer to a GET shows it is there
    return Check(name, True, f"{url} answers HTTP ({response.status_code} to a GET)")


def configured_agents(settings: Settings) -> Iterator[AgentTarget]:
    """Every agent the environment's routes name, once each."""
    seen: set[str] = set()
    for mapping in settings.inbox_agent_mappings:
        configs = [mapping.agent_config] + [
            a.agent_config for a in mapping.agents if a.agent_config is not None
        ]
        for config in configs:
            if config.agent_id not in seen:
                seen.add(config.agent_id)
                yield AgentTarget.of(config)
    for agent_id in settings.agent_tokens:
        if agent_id not in seen:
            seen.add(agent_id)
            yield AgentTarget(agent_id, "ws-dial-in", None)


async def stored_agents(settings: Settings) -> list[AgentTarget]:
    """The enabled agents stored in the database (routes made in the console or the API)."""
    from chatbridge.store import Store

    store = Store(settings.database_url)
    try:
        records = await store.list_agents()
    finally:
        await store.close()
    return [
        AgentTarget(r.id, r.transport, r.url, r.options.get("api_key"), stored=True)
        for r in records
        if r.enabled
    ]


async def run_checks(settings: Settings) -> list[Check]:
    """Every check that applies to ``settings``, run one after the other."""
    from sqlalchemy import make_url

    from chatbridge.api.exposure import chatwoot_configured

    routes = len(settings.inbox_agent_mappings)
    results = [Check("configuration", True, f"valid ({routes} routes in the environment)")]
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    results.append(await _guard("database", partial(check_database, settings), database))
    if settings.redis_url:
        redis_url = settings.redis_url
        shown = re.sub(r"//[^@/]*@", "//***@", redis_url)  # no password on screen
        results.append(await _guard("redis", partial(check_redis, redis_url), shown))
    if chatwoot_configured(settings):
        results.append(await _guard("chatwoot", partial(check_chatwoot, settings)))
    results.append(check_webhooks(settings))
    agents = list(configured_agents(settings))
    if "schema revision" in results[1].detail:  # stored routes' agents too
        try:
            stored = await asyncio.wait_for(stored_agents(settings), TIMEOUT)
        except Exception as exc:
            results.append(Check("stored agents", False, describe_failure(exc)))
            stored = []
        named = {a.agent_id for a in agents}
        agents += [a for a in stored if a.agent_id not in named]
    for agent in agents:
        probe = partial(check_agent, agent, settings.openai_api_key)
        results.append(await _guard(agent.name, probe, agent.url))
    return results
