"""The chaos suite's harness: realistic customers, real faults, and an honest count.

Every case runs the bridge as real ``python -m chatbridge serve`` processes
(``chatbridge.testing.cluster``), the in-package mock Chatwoot in its **bot-token mode** (listing
messages is refused with 401, every message the bridge creates is echoed back as a
``message_created`` webhook with sender ``{"type": "agent_bot"}`` and the ``source_id`` the
bridge sent, as real Chatwoot does for an agent bot) and an echo agent whose reply names the
message it answers (``Echo: c7-m3``). A fault is injected while customers write; afterwards
the replies the mock Chatwoot *received* are counted. The bridge's own database is never used
to count: it is what is on trial. (It is read only to know when the bridge has nothing left
in flight, so that a late duplicate would have shown.)

The count (``Outcome``), per conversation:

- **acknowledged**: the bridge answered the customer's webhook 2xx. A webhook that was refused
  (non-2xx) or got no answer, also after its retries, is *refused*: it does not count.
- **lost**: acknowledged, and no reply by the deadline.
- **duplicated**: more than one reply to one message (acknowledged or not: a doubled reply
  is wrong either way).
- **out of order**: replies to acknowledged messages that are not in the order the messages
  were acknowledged in (how many would have to move: the replies outside a longest in-order
  run).
- **unexpected**: a reply that answers no message of its conversation (e.g. the fallback text).

How the customers behave (``Customers``), and why:

- Many conversations at once (24 by default, ~20 messages/s together), each one customer who
  writes message after message with a pause of 0.3-2 s between them, a typing person's pace.
  The next message does **not** wait for the reply: people write "hello", then their question,
  while the bot is still answering, so a fault always finds turns and deliveries in every
  stage (stored, with the agent, sending, waiting for the echo).
- A conversation's webhooks are sent one after the other (the next after the previous one was
  answered or given up). Chatwoot itself gives no ordering guarantee between webhooks, but
  "in order" is only defined against an order the bridge was told; one in-flight webhook per
  conversation is that order.
- Delivery like Chatwoot's agent-bot job: the same payload and the same
  ``X-Chatwoot-Delivery`` on every retry, a 5 s timeout, at most 3 attempts, 2 s apart.
  Chatwoot retries only 429 and 500; these customers also retry 503 and a missing answer
  (connection refused or reset, timeout). That makes the test stricter, not easier: more
  messages cross the fault and get acknowledged (a webhook the dead process had already
  stored comes back as a duplicate delivery, which must not make a second turn), and nothing
  is tuned to dodge a fault (the pace does not slow down while it lasts).

Waiting is on conditions with deadlines (``wait_until``); the only fixed pauses are the
customers' pace and the faults' own length (how long a database stays cut, when a kill
happens), which are the scenario, not synchronisation.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import random
import re
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatbridge.agent import Agent, Turn
from chatbridge.testing.cluster import ReplicaSet
from chatbridge.testing.mock_agent import echo_text
from chatbridge.testing.mock_chatwoot import MockChatwoot, TriggerRequest, create_mock_chatwoot
from chatbridge.testing.servers import serve_app

CHATWOOT_TOKEN = "chaos-bot-access-token-0123456789abcdef"
CHATWOOT_SECRET = "chaos-webhook-secret-0123456789abcdef"
AGENT_ID = "chaos-agent"
AGENT_TOKEN = "chaos-agent-dial-token-0123456789abcdef"
ADMIN_KEY = "chaos-admin-key-0123456789abcdef0123"
INBOX_ID = 1
KILL_LEASE_SECONDS = 3.0
"""The bridge's lease in the cases that kill processes: what a dead process held is taken
over after this long."""

API_LATENCY_MS = 80
"""How long each call to the mock Chatwoot's API takes. Real Chatwoot answers a message
create in tens to hundreds of milliseconds (Rails, its database, callbacks); an instant mock
would leave a crash almost no send in flight to find, which production always has."""

PG_ADMIN_DSN = os.environ.get(
    "CHATBRIDGE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)

FINAL_STATES = frozenset({"done", "failed", "dead", "dropped", "skipped"})
"""Turn and delivery states with no more work to do; anything else is still in flight."""


async def wait_until(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]],
    timeout: float,
    *,
    what: str = "condition",
    interval: float = 0.05,
) -> Any:
    """Poll ``check`` (sync or async) until it is truthy; ``AssertionError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:g}s")
        await asyncio.sleep(interval)


# ------------------------------------------------------------------------------ the count


@dataclass
class Message:
    """One customer message and what became of its webhook."""

    conversation: int
    index: int
    text: str
    delivery_id: str | None = None
    attempts: list[str] = field(default_factory=list)
    """Per attempt: the HTTP status, or the network error's name."""
    acked_at: float | None = None

    @property
    def acknowledged(self) -> bool:
        return self.acked_at is not None


@dataclass
class Outcome:
    """What the customers saw: the figures every chaos case reports and asserts."""

    acknowledged: int = 0
    refused: int = 0
    replies: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order or self.unexpected)

    def summary(self, title: str) -> str:
        """One line: ``title: acknowledged N, lost a, duplicated b, out of order c …``."""
        return (
            f"{title}: acknowledged {self.acknowledged}, lost {len(self.lost)}, "
            f"duplicated {len(self.duplicated)}, out of order {len(self.out_of_order)} "
            f"(refused {self.refused}, replies {self.replies}, unexpected {len(self.unexpected)})"
        )

    def details(self) -> str:
        parts = []
        for name in ("lost", "duplicated", "out_of_order", "unexpected"):
            items: list[str] = getattr(self, name)
            if items:
                shown = ", ".join(items[:8]) + (f" (+{len(items) - 8})" if len(items) > 8 else "")
                parts.append(f"{name}: {shown}")
        return "; ".join(parts)


def count_outcome(
    messages: Sequence[Message], replies: Sequence[tuple[int, str]], *, answer: Callable[[str], str]
) -> Outcome:
    """Compare the replies a channel received with the messages the customers sent.

    Args:
        messages: every message a customer tried to send, in the order each conversation sent
            them (acknowledged or not).
        replies: ``(conversation, text)`` of every reply the channel received, in arrival order.
        answer: the reply the agent gives to a message's text.
    """
    out = Outcome(replies=len(replies))
    by_conv: dict[int, list[Message]] = {}
    for m in messages:
        by_conv.setdefault(m.conversation, []).append(m)
    got: dict[int, list[str]] = {}
    for conv, text in replies:
        got.setdefault(conv, []).append(text)
    for conv in sorted(set(by_conv) | set(got)):
        sent = by_conv.get(conv, [])
        texts = got.get(conv, [])
        counts = Counter(texts)
        expected = {answer(m.text): m for m in sent}
        acked = [m for m in sent if m.acknowledged]
        out.acknowledged += len(acked)
        out.refused += len(sent) - len(acked)
        out.lost += [m.text for m in acked if counts[answer(m.text)] == 0]
        out.duplicated += [m.text for m in sent if counts[answer(m.text)] > 1]
        out.unexpected += [f"c{conv}:{t!r}" for t in texts if t not in expected]
        # the first reply to each acknowledged message, in arrival order, against ack order
        rank = {answer(m.text): i for i, m in enumerate(acked)}
        firsts = list(dict.fromkeys(t for t in texts if t in rank))
        keep = _longest_increasing([rank[t] for t in firsts])
        out.out_of_order += [expected[t].text for i, t in enumerate(firsts) if i not in keep]
    return out


def _longest_increasing(values: Sequence[int]) -> set[int]:
    """Indices of one longest strictly increasing subsequence of ``values`` (patience sort)."""
    tails: list[int] = []  # smallest tail value of an increasing run of each length
    tail_index: list[int] = []
    previous = [-1] * len(values)
    for i, v in enumerate(values):
        k = bisect.bisect_left(tails, v)
        if k == len(tails):
            tails.append(v)
            tail_index.append(i)
        else:
            tails[k] = v
            tail_index[k] = i
        previous[i] = tail_index[k - 1] if k else -1
    keep: set[int] = set()
    i = tail_index[-1] if tail_index else -1
    while i >= 0:
        keep.add(i)
        i = previous[i]
    return keep


# ------------------------------------------------------------------------------ customers


RETRYABLE = frozenset({429, 500, 502, 503, 504})


class Customers:
    """Customers writing in many Chatwoot conversations at once (see the module docstring).

    Args:
        mock: the mock Chatwoot that sends their webhooks (to its registered URL).
        conversations: how many conversations (display ids 1..n).
        think: the pause between two messages of a conversation, drawn uniformly (seconds).
        seed: for the pauses, so a run can be repeated.
        attempts / retry_pause / webhook_timeout: delivery of one webhook (Chatwoot's job:
            3 attempts, its timeout 5 s).
    """

    def __init__(
        self,
        mock: MockChatwoot,
        *,
        conversations: int = 24,
        think: tuple[float, float] = (0.3, 2.0),
        seed: int = 1,
        attempts: int = 3,
        retry_pause: float = 2.0,
        webhook_timeout: float = 5.0,
    ) -> None:
        self.mock = mock
        self.conversations = conversations
        self.think = think
        self.rng = random.Random(seed)
        self.attempts = attempts
        self.retry_pause = retry_pause
        self.webhook_timeout = webhook_timeout
        self.messages: list[Message] = []
        self.started_at = 0.0
        self.stopped_at = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def acknowledged(self) -> int:
        return sum(m.acknowledged for m in self.messages)

    def acknowledged_since(self, at: float) -> int:
        return sum(1 for m in self.messages if m.acked_at is not None and m.acked_at >= at)

    def start(self) -> None:
        """Start writing (in the background) until ``stop()``."""
        self.started_at = time.time()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Let every conversation finish the webhook it is sending, then stop."""
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, self.attempts * (self.webhook_timeout + 5) + 10)
        self.stopped_at = time.time()

    async def cancel(self) -> None:
        self._stop.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        pauses = [self.rng.uniform(0, self.think[1]) for _ in range(self.conversations)]
        await asyncio.gather(
            *(self._customer(c + 1, random.Random(self.rng.random()), pauses[c]) for c in
              range(self.conversations))
        )  # fmt: skip

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (the customer's pace); False when told to stop meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return not self._stop.is_set()

    async def _customer(self, conv: int, rng: random.Random, first: float) -> None:
        if not await self._pause(first):
            return
        n = 0
        while True:
            message = Message(conv, n, f"c{conv}-m{n}")
            self.messages.append(message)
            await self._deliver(message)
            n += 1
            if not await self._pause(rng.uniform(*self.think)):
                return

    async def _deliver(self, message: Message) -> None:
        spec = TriggerRequest(
            conversation_id=message.conversation,
            inbox_id=INBOX_ID,
            content=message.text,
            timeout=self.webhook_timeout,
        )
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.retry_pause)
                spec = TriggerRequest(
                    conversation_id=message.conversation,
                    delivery_id=message.delivery_id,
                    timeout=self.webhook_timeout,
                )
            result = await self.mock.trigger("message_created", spec)
            message.delivery_id = result["delivery_id"]
            status = result["status_code"]
            if status is None:
                message.attempts.append(str(result["error"]).partition(":")[0])
                continue
            message.attempts.append(str(status))
            if 200 <= status < 300:
                message.acked_at = time.time()
                return
            if status not in RETRYABLE:
                return


def received_replies(mock: MockChatwoot) -> list[tuple[int, str]]:
    """``(conversation, text)`` of every message the bridge posted, in arrival order."""
    return [(m["conversation_id"], m["content"]) for m in mock.received_messages]


async def wait_answered(mock: MockChatwoot, customers: Customers, timeout: float) -> float | None:
    """Wait until every acknowledged message has a reply; the time it happened, or None if
    some were still unanswered after ``timeout`` seconds (they will be counted lost)."""

    def answered() -> bool:
        got = {text for _, text in received_replies(mock)}
        return all(echo_text(m.text) in got for m in customers.messages if m.acknowledged)

    try:
        await wait_until(answered, timeout, what="every acknowledged message answered")
    except AssertionError:
        return None
    return time.time()


def outcome(mock: MockChatwoot, customers: Customers) -> Outcome:
    return count_outcome(customers.messages, received_replies(mock), answer=echo_text)


def echo_trails(mock: MockChatwoot, texts: Sequence[str], since: float) -> list[str]:
    """For each reply text that arrived more than once: when each copy was posted and what
    became of its echo's attempts (``+s:status``, seconds since ``since``), to tell whether
    the first copy's echo — its receipt — was refused while the bridge was down, lost, or
    answered too late for the bridge to see it."""
    posts: dict[str, list[dict[str, Any]]] = {}
    for m in mock.received_messages:
        posts.setdefault(m["content"], []).append(m)
    attempts: dict[int, list[str]] = {}
    for h in mock.webhook_history:
        if h["event"] == "message_created" and h["message_id"] is not None:
            outcome = h["status_code"] or str(h["error"]).partition(":")[0]
            attempts.setdefault(h["message_id"], []).append(
                f"+{h['sent_at'] - since:.1f}:{outcome}"
            )
    lines = []
    for text in texts:
        for copy in posts.get(text, []):
            echoes = " ".join(attempts.get(copy["id"], [])) or "none"
            lines.append(
                f"{text!r} posted at +{copy['received_at'] - since:.1f}s; its echo: {echoes}"
            )
    return lines


# ---------------------------------------------------------------------------------- agent


def echo_agent(runs: Counter[str] | None = None) -> Agent:
    """The agent of every case: ``Echo: <text>``, reconnecting quickly after a drop.

    ``runs`` counts handler runs per turn (more than one: the turn was run again)."""
    agent = Agent(AGENT_ID, reconnect_initial_delay=0.1, reconnect_max_delay=1.0)

    @agent.on_message
    async def answer(turn: Turn) -> str:
        if runs is not None:
            runs[turn.id] += 1
        return echo_text(turn.content)

    return agent


# -------------------------------------------------------------------------- mock Chatwoot


class SlowCompleteRequests:
    """ASGI middleware: each ``/api/`` request is read whole, takes ``latency`` seconds, and
    then runs to the end even if its client has gone meanwhile, as a request to a Rails
    server (Puma reads the request before dispatching it and does not stop a running one).
    A bridge killed while its reply is in flight has thus posted the reply, without knowing.
    """

    def __init__(self, app: Any, latency: float) -> None:
        self.app = app
        self.latency = latency
        self.state = getattr(app, "state", None)  # serve_app looks for app.state.bridge

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                return  # gone before the request was even complete: nothing happens
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        await asyncio.sleep(self.latency)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # never tell the app its client left
            raise AssertionError("unreachable")

        async def send_if_still_there(event: dict[str, Any]) -> None:
            with contextlib.suppress(Exception):
                await send(event)

        await self.app(scope, replay, send_if_still_there)


@asynccontextmanager
async def strict_chatwoot() -> AsyncIterator[tuple[MockChatwoot, str]]:
    """The mock Chatwoot as an agent bot sees real Chatwoot, served on a free port: no
    message listing (401), every created message echoed back as a webhook, signed webhooks,
    a bot token required, and every API call taking ``API_LATENCY_MS`` (a request the bridge
    abandons, e.g. because it was killed, still completes, as a Rails request does). Yields
    ``(mock, base_url)``; register the bridge's webhook URL on ``mock.webhook_url``."""
    app = create_mock_chatwoot(
        api_token=CHATWOOT_TOKEN,
        secret=CHATWOOT_SECRET,
        emit_message_webhooks=True,
        allow_list_messages=False,
        webhook_timeout=5.0,
    )
    mock: MockChatwoot = app.state.mock
    async with serve_app(SlowCompleteRequests(app, API_LATENCY_MS / 1000)) as url:
        yield mock, url


def bridge_env(
    chatwoot_url: str, agent_config: dict[str, Any], *, lease_seconds: float | None = None
) -> dict[str, str]:
    """Environment of a bridge process: one Chatwoot inbox answered by ``agent_config``,
    quick retries and reconnects, INFO logs for the report.

    ``lease_seconds``: the bridge's lease (default: the bridge's own default). Short leases
    make a test with killed processes recover in seconds; a case where no process dies keeps
    the default, since a lease shorter than the fault would hide work stranded by a living
    process (it would expire during the outage and be taken over by chance).
    """
    mapping = [{"inbox_id": INBOX_ID, "agent_config": {"agent_id": AGENT_ID, **agent_config}}]
    env = {
        "CHATWOOT_BASE_URL": chatwoot_url,
        "CHATWOOT_API_ACCESS_TOKEN": CHATWOOT_TOKEN,
        "CHATWOOT_WEBHOOK_SECRET": CHATWOOT_SECRET,
        "INBOX_AGENT_MAPPINGS": json.dumps(mapping),
        "CHATBRIDGE_ADMIN_KEY": ADMIN_KEY,
        "CHATBRIDGE_POLL_INTERVAL": "0.2",
        "CHATBRIDGE_RETRY_BASE_SECONDS": "0.05",
        "CHATBRIDGE_RETRY_MAX_SECONDS": "1",
        "CHATBRIDGE_RECONNECT_INITIAL_DELAY": "0.1",
        "CHATBRIDGE_RECONNECT_MAX_DELAY": "1",
        "CHATBRIDGE_DRAIN_SECONDS": "1",
        "CHATBRIDGE_LOG_LEVEL": "INFO",
    }
    if lease_seconds is not None:
        env["CHATBRIDGE_LEASE_SECONDS"] = str(lease_seconds)
    return env


# ------------------------------------------------------------------------------ databases


def _pg_dsn(database: str) -> str:
    base, _, _ = PG_ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


async def pg_admin(sql: str, *args: Any) -> list[Any]:
    """Run ``sql`` on the server's admin database (never the one under test)."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_pg_database(prefix: str = "chatbridge_chaos") -> AsyncIterator[tuple[str, str]]:
    """Create a database of our own, yield ``(name, SQLAlchemy URL)``, drop it after.

    PostgreSQL unreachable: skip, except in CI (``CI=true``) where it fails the test."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        await pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI but not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    try:
        yield name, "postgresql+asyncpg://" + _pg_dsn(name).split("://", 1)[1]
    finally:
        with contextlib.suppress(Exception):
            await pg_admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class DatabaseCut:
    """Cut one PostgreSQL database off its clients, and give it back.

    ``flap()`` terminates every backend connected to it again and again while new connections
    are still allowed: the clients reconnect and lose the connection mid-transaction, as
    during a failover or a restart's first moments. ``cut()`` refuses new connections
    (``ALLOW_CONNECTIONS false``; superusers too) and terminates every backend; ``hold()``
    keeps it so; ``restore()`` allows connections again. Other databases on the server are
    not touched, so tests running beside this one are not disturbed.
    """

    def __init__(self, database: str) -> None:
        self.database = database
        self.terminated = 0

    async def terminate(self) -> int:
        rows = await pg_admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            self.database,
        )
        self.terminated += len(rows)
        return len(rows)

    async def cut(self) -> None:
        await pg_admin(f'ALTER DATABASE "{self.database}" WITH ALLOW_CONNECTIONS false')
        await self.terminate()

    async def hold(self, seconds: float) -> None:
        """Stay cut for ``seconds`` (the outage), terminating stragglers every 0.25 s."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(0.25, left))
            await self.terminate()

    async def flap(self, seconds: float, every: float = 0.2) -> None:
        """For ``seconds``, terminate the database's backends every ``every`` seconds while
        it still accepts connections (each client connection dies soon after it is made)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await self.terminate()
            await asyncio.sleep(min(every, left))

    async def restore(self) -> None:
        await pg_admin(f'ALTER DATABASE "{self.database}" WITH ALLOW_CONNECTIONS true')


async def in_flight(database_url: str) -> dict[str, dict[str, int]]:
    """Turns and deliveries by state, read straight from the bridge's database (read-only)."""
    query = "SELECT state, count(*) FROM {} GROUP BY state"
    out: dict[str, dict[str, int]] = {}
    if database_url.startswith("sqlite"):
        path = database_url.split(":///", 1)[1]

        def read() -> None:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                for table in ("turns", "deliveries"):
                    rows = conn.execute(query.format(table)).fetchall()
                    out[table] = {str(s): int(n) for s, n in rows}
            finally:
                conn.close()

        await asyncio.to_thread(read)
        return out
    import asyncpg

    dsn = "postgresql://" + database_url.split("://", 1)[1]
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for table in ("turns", "deliveries"):
            rows = await conn.fetch(query.format(table))
            out[table] = {str(r[0]): int(r[1]) for r in rows}
    finally:
        await conn.close()
    return out


async def wait_settled(database_url: str, timeout: float) -> dict[str, dict[str, int]]:
    """Wait until no turn or delivery is in flight (a re-send would have happened by then);
    returns the last counts read (still busy ones included if ``timeout`` passed)."""
    last: dict[str, dict[str, int]] = {}

    async def settled() -> bool:
        nonlocal last
        try:
            last = await in_flight(database_url)
        except Exception:
            return False
        return all(state in FINAL_STATES for by_state in last.values() for state in by_state)

    with contextlib.suppress(AssertionError):
        await wait_until(settled, timeout, what="nothing in flight", interval=0.25)
    return last


# ------------------------------------------------------------------------------ readiness


class ReadyWatch:
    """Polls ``GET /ready`` of a bridge every ``interval`` seconds in the background and keeps
    ``(time, status)`` of every answer (``None``: no HTTP answer)."""

    def __init__(self, url: str, interval: float = 0.2) -> None:
        self.url = url
        self.interval = interval
        self.samples: list[tuple[float, int | None]] = []
        self._task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                try:
                    status: int | None = (await http.get(f"{self.url}/ready")).status_code
                except httpx.HTTPError:
                    status = None
                self.samples.append((time.time(), status))
                await asyncio.sleep(self.interval)

    def first(self, status: int, after: float) -> float | None:
        """When ``status`` was first answered at or after ``after``."""
        return next((t for t, s in self.samples if s == status and t >= after), None)

    def describe(self, since: float) -> str:
        """The answers since ``since`` as runs: ``200x12 503x25 200x3``."""
        runs: list[list[Any]] = []
        for t, s in self.samples:
            if t < since:
                continue
            if runs and runs[-1][0] == s:
                runs[-1][1] += 1
            else:
                runs.append([s, 1])
        return " ".join(f"{s or 'none'}x{n}" for s, n in runs)

    async def __aenter__(self) -> ReadyWatch:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


# -------------------------------------------------------------------------------- report

_LOG_RECORD = re.compile(r"^\S+\s+(?P<level>WARNING|ERROR|CRITICAL)\s+(?P<text>.*)$")


def key_log_lines(replicas: ReplicaSet, limit: int = 15) -> str:
    """The warnings and errors of each replica's log, grouped by message and counted (the
    first 120 characters, digits blanked), the most frequent first; tracebacks left out."""
    out = []
    for r in replicas:
        try:
            lines = Path(r.log_path).read_text(errors="replace").splitlines()
        except OSError:
            continue
        counts: Counter[str] = Counter()
        for line in lines:
            match = _LOG_RECORD.match(line)
            if match:
                text = re.sub(r"\d+", "N", match["text"][:120])
                counts[f"{match['level']} {text}"] += 1
        if counts:
            out.append(f"== {r.instance_id}: {sum(counts.values())} warnings/errors ==")
            out += [f"{n:6d} x {text}" for text, n in counts.most_common(limit)]
    return "\n".join(out) or "(no warnings or errors in the logs)"


def report(title: str, result: Outcome, lines: Sequence[str], replicas: ReplicaSet) -> None:
    """Print the one-line summary and the run's notes; fail with the details and the logs'
    key lines unless lost, duplicated, out of order (and unexpected) are all 0."""
    summary = result.summary(title)
    print(f"\nCHAOS {summary}")
    for line in lines:
        print(f"  {line}")
    if not result.ok:
        pytest.fail(
            f"{summary}\n  {result.details()}\n  "
            + "\n  ".join(lines)
            + f"\nlogs in {replicas.workdir}:\n{key_log_lines(replicas)}",
            pytrace=False,
        )
