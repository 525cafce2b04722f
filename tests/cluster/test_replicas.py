"""Three bridge replicas on one PostgreSQL and one Redis: every message answered once, in order.

Each replica is its own ``python -m chatbridge serve`` process on its own port
(``chatbridge.testing.cluster``); the mock Chatwoot and the agent run in the test.

- **Agent**: one SDK ``Agent`` (``ws-dial-in``) answers every route (Chatwoot inboxes 1 and 2,
  web chat inbox 1) with ``Echo: <text>``, streaming the reply in chunks when the text says
  "stream". It dials through a ``TcpBalancer`` in failover mode over
  [replica-0, replica-1, replica-2]: it lands on replica-0 and, when that dies, reconnects to
  the next replica that accepts.
- **Chatwoot customers**: webhooks go round-robin straight to the three replicas. A webhook
  that got no answer (the replica is dead, or died mid-request) or an error is sent again,
  with the same delivery id, to the next replica, as Chatwoot retries. A conversation sends
  its next message only after the previous one was acknowledged.
- **Widgets**: web chat sessions made on replica-2; their live sockets go through a failover
  balancer over [replica-2, replica-0, replica-1], so they sit on replica-2 while it is up.
  A widget sends each message on its socket and waits for the ``ack``; after a drop it
  reconnects, sends ``resume`` with its cursor and re-sends an unacknowledged message with the
  same client message id, as ``widget.js`` does.

The checks, per conversation: every acknowledged message has exactly one reply, in order
(Chatwoot: the replies the mock received; web chat: the stored history, from any replica,
and what the widget's socket showed, streamed chunks included). Lost, duplicated, unexpected
and out-of-order replies are counted and listed. ``/agents/status`` on a replica that does not
hold the agent's connection must show it connected.

- ``test_steady_load``: all three up.
- ``test_sigkill_replicas_mid_load``: replica-0 (holding the agent) and later replica-2
  (holding the widgets) are SIGKILLed mid-load and started again. The time from each kill to
  the last reply is reported (printed and in the JUnit properties).
- ``test_redis_restart_mid_load``: Redis is killed mid-load and started again ~2 s later
  (empty); the database polling carries on.

Select them with ``-m cluster``. They need PostgreSQL (``CHATBRIDGE_TEST_PG_DSN``) and
``redis-server``; without them they skip, except in CI (``CI=true``) where that fails.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import websockets

from chatbridge.agent import Agent, Turn
from chatbridge.channels.signatures import DELIVERY_HEADER
from chatbridge.store import Store
from chatbridge.testing.cluster import RedisServer, ReplicaSet, TcpBalancer
from chatbridge.testing.mock_agent import echo_text, split_chunks
from chatbridge.testing.mock_chatwoot import MockChatwoot, TriggerRequest, create_mock_chatwoot
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import dialing_in, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(180)]

REPLICAS = 3
AGENT_ID = "agent1"
AGENT_TOKEN = "agent-dial-token"
ADMIN_KEY = "cluster-admin-key"
CHATWOOT_TOKEN = "bot-token"
ROUTE_TIMEOUT = 10.0
"""The route's ``timeout_seconds``: past it a turn gets the fallback text (a wrong reply)."""
LEASE_SECONDS = 10.0
"""Long enough that a live replica on a loaded machine never loses a lease it renews; a
killed replica is started again under the same instance id and takes its leases back at
once, so recovery does not wait for them to run out."""
SETTLE_WAIT = 3 * LEASE_SECONDS
"""Seconds after the replies to wait until the store shows nothing in flight."""
FINAL_STATES = frozenset({"done", "failed", "dead", "dropped", "skipped"})

CHATWOOT_CONVERSATIONS = 6
CHATWOOT_MESSAGES = 8
WIDGETS = 3
WIDGET_MESSAGES = 5
MAX_MESSAGES = 40
"""While a disruption is still going on, conversations keep writing, up to this many."""
STREAM_WORD = "stream"

ACK_TIMEOUT = 5.0
WEBHOOK_TIMEOUT = 5.0
DELIVERY_GIVE_UP = 60.0
REPLY_WAIT = 30.0
"""Seconds after the load to wait for the missing replies before counting them lost."""
SOCKET_WAIT = 5.0
"""Seconds more for the widgets' sockets to show the stored replies."""


# ---------------------------------------------------------------------------------- tally


@dataclass
class Tally:
    """How the replies of one conversation compare with what it expected."""

    expected: int
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.out_of_order)

    def describe(self) -> str:
        parts = [f"{self.expected} expected"]
        for name in ("lost", "duplicated", "unexpected", "out_of_order"):
            items: list[str] = getattr(self, name)
            if items:
                shown = ", ".join(repr(i[:60]) for i in items[:5])
                more = f" (+{len(items) - 5})" if len(items) > 5 else ""
                parts.append(f"{len(items)} {name}: {shown}{more}")
        return "; ".join(parts)


def tally(expected: Sequence[str], got: Sequence[str]) -> Tally:
    """Compare the replies ``got`` (in arrival order) with ``expected`` (in order).

    Out of order: the expected replies (first occurrences) outside a longest run that is in
    the expected order, i.e. the fewest that would have to move to put them in order.
    """
    position = {text: i for i, text in enumerate(expected)}
    counts = Counter(got)
    out = Tally(expected=len(expected))
    out.lost = [e for e in expected if counts[e] == 0]
    out.duplicated = [text for text, n in counts.items() if n > 1 and text in position]
    out.unexpected = [g for g in got if g not in position]
    firsts: list[str] = []
    for g in got:
        if g in position and g not in firsts:
            firsts.append(g)
    keep = _longest_increasing([position[g] for g in firsts])
    out.out_of_order = [g for i, g in enumerate(firsts) if i not in keep]
    return out


def _longest_increasing(values: Sequence[int]) -> set[int]:
    """Indices of one longest strictly increasing subsequence of ``values``."""
    tails: list[int] = []  # tails[k]: smallest tail value of an increasing run of length k+1
    tail_at: list[int] = []  # index in values of that tail
    parent = [-1] * len(values)
    for i, v in enumerate(values):
        k = bisect.bisect_left(tails, v)
        if k == len(tails):
            tails.append(v)
            tail_at.append(i)
        else:
            tails[k] = v
            tail_at[k] = i
        parent[i] = tail_at[k - 1] if k > 0 else -1
    keep: set[int] = set()
    i = tail_at[-1] if tail_at else -1
    while i >= 0:
        keep.add(i)
        i = parent[i]
    return keep


def test_tally_counts_lost_duplicated_unexpected_and_out_of_order() -> None:
    assert tally(["a", "b", "c"], ["a", "b", "c"]).ok
    t = tally(["a", "b", "c", "d"], ["b", "a", "b", "x", "d"])
    assert (t.lost, t.duplicated, t.unexpected) == (["c"], ["b"], ["x"])
    assert len(t.out_of_order) == 1 and t.out_of_order[0] in ("a", "b")
    assert len(tally(["a", "b", "c"], ["c", "b", "a"]).out_of_order) == 2


# ---------------------------------------------------------------------------------- agent


def build_agent(runs: Counter[str]) -> Agent:
    """The one agent of every route: ``Echo: <text>``, streamed when the text says so.

    ``runs`` counts how often the handler ran per turn id (a turn sent again after a
    reconnect is answered from the SDK's cache, so more than one run means a re-run).
    """
    agent = Agent(AGENT_ID, reconnect_initial_delay=0.1, reconnect_max_delay=1.0)

    async def chunks(text: str) -> AsyncIterator[str]:
        for piece in split_chunks(text, None):
            await asyncio.sleep(0.005)
            yield piece

    @agent.on_message
    async def answer(turn: Turn) -> str | AsyncIterator[str]:
        runs[turn.id] += 1
        text = echo_text(turn.content)
        return chunks(text) if STREAM_WORD in turn.content else text

    return agent


# -------------------------------------------------------------------------------- widgets


class Widget:
    """A web chat visitor with a live socket, doing on the wire what ``widget.js`` does.

    Keeps every message it was shown (by id, first arrival), the streamed chunks per turn,
    error frames, and the texts the bridge acknowledged (``sent``), in order.
    """

    def __init__(self, index: int, session_id: str, ws_url: str, *, stream: bool) -> None:
        self.index = index
        self.session_id = session_id
        self.ws_url = ws_url
        self.stream = stream
        self.sent: list[str] = []
        self.acked_at: dict[str, float] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.arrived: dict[str, float] = {}
        self.chunks: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
        self.errors: list[dict[str, Any]] = []
        self.log: list[tuple[float, int, str, dict[str, Any]]] = []
        """Every frame both ways: (time, connection number, "in"/"out", frame)."""
        self.connects = 0
        self.drops = 0
        self.resends = 0
        self._ws: websockets.ClientConnection | None = None
        self._connected = asyncio.Event()
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._cursor: str | None = None
        self._synced = True
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def agent_texts(self) -> list[str]:
        return [m["text"] for m in self.messages.values() if m["role"] == "agent"]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._connected.wait(), 15)

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._closing:
            try:
                async with websockets.connect(
                    self.ws_url, open_timeout=5, close_timeout=1, ping_interval=None
                ) as ws:
                    self._ws = ws
                    self.connects += 1
                    async for raw in ws:
                        await self._on_frame(ws, json.loads(raw))
            except (OSError, TimeoutError, websockets.WebSocketException):
                pass
            was_up = self._connected.is_set()
            self._ws = None
            self._connected.clear()
            for ack in self._acks.values():
                if not ack.done():
                    ack.set_exception(ConnectionError("socket dropped"))
            if self._closing:
                return
            self.drops += int(was_up)
            await asyncio.sleep(0.2)

    async def _send(self, ws: websockets.ClientConnection, frame: dict[str, Any]) -> None:
        self.log.append((time.time(), self.connects, "out", frame))
        await ws.send(json.dumps(frame))

    def dump(self, path: Path) -> None:
        """Write the frame log, one JSON line per frame (for a failed run)."""
        with path.open("w") as out:
            for at, conn, way, frame in self.log:
                out.write(json.dumps({"at": at, "conn": conn, "way": way, **frame}) + "\n")

    async def _on_frame(self, ws: websockets.ClientConnection, frame: dict[str, Any]) -> None:
        now = time.time()
        self.log.append((now, self.connects, "in", frame))
        match frame.get("type"):
            case "session":
                if self.connects > 1:  # a reconnect: ask for what we missed
                    self._synced = False
                    await self._send(ws, {"type": "resume", "after": self._cursor})
                self._connected.set()
            case "ack" | "error" as kind:
                if kind == "error":
                    self.errors.append(frame)
                ack = self._acks.get(str(frame.get("client_message_id")))
                if ack is not None and not ack.done():
                    ack.set_result(frame)
            case "message":
                self._see(frame["message"], now)
            case "history":
                for m in frame["messages"]:
                    self._see(m, now, resumed=True)
                self._synced = True
                if frame.get("cursor"):
                    self._cursor = frame["cursor"]
            case "agent_streaming":
                self.chunks[frame["turn_id"]].append(
                    (int(frame["stream_index"]), frame["content"], now)
                )
            case "ping":
                await self._send(ws, {"type": "pong"})
            case _:
                pass  # typing, system, pong

    def _see(self, message: dict[str, Any], now: float, *, resumed: bool = False) -> None:
        self.messages.setdefault(message["id"], message)
        self.arrived.setdefault(message["id"], now)
        # Live frames after a reconnect may come before the resume's history: only move the
        # cursor once what lies before them is known, or a later resume would skip a gap.
        if self._synced or resumed:
            self._cursor = message["id"]

    async def say(self, text: str) -> None:
        """Send ``text`` and return once the bridge acknowledged it; after a drop or an
        error, send it again (same client message id) until it is."""
        cmid = f"w{self.index}-{len(self.sent)}-{uuid.uuid4().hex[:6]}"
        frame = {"type": "user_message", "client_message_id": cmid, "content": text}
        deadline = time.monotonic() + DELIVERY_GIVE_UP
        attempt = 0
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"widget {self.index}: {text!r} never acknowledged")
            if attempt:
                self.resends += 1
            attempt += 1
            try:
                await asyncio.wait_for(self._connected.wait(), deadline - time.monotonic())
            except TimeoutError:
                continue
            ws = self._ws
            if ws is None:
                continue
            ack = asyncio.get_running_loop().create_future()
            self._acks[cmid] = ack
            try:
                await self._send(ws, frame)
                answer = await asyncio.wait_for(ack, ACK_TIMEOUT)
            except (ConnectionError, TimeoutError, websockets.ConnectionClosed):
                continue
            finally:
                self._acks.pop(cmid, None)
            if answer["type"] == "ack" and answer.get("status") in ("accepted", "duplicate"):
                self.sent.append(text)
                self.acked_at[text] = time.time()
                return
            await asyncio.sleep(0.3)  # refused (an error frame): try again


# ----------------------------------------------------------------------------------- load


@dataclass
class Refusal:
    """A webhook attempt that was not acknowledged."""

    at: float
    replica: int
    status: int | None
    detail: str


class Load:
    """Chatwoot customers and web chat visitors writing at once.

    Each conversation writes at least its share of messages, and keeps writing (up to
    ``MAX_MESSAGES``) while ``disrupting`` is set, so a disruption always lands mid-load.
    """

    def __init__(
        self,
        replicas: ReplicaSet,
        mock: MockChatwoot,
        http: httpx.AsyncClient,
        widgets: list[Widget],
        *,
        seed: int,
        pause: tuple[float, float],
    ) -> None:
        self.replicas = replicas
        self.mock = mock
        self.http = http
        self.widgets = widgets
        self.rng = random.Random(seed)
        self.pause = pause
        self.disrupting = False
        self.chatwoot_sent: dict[int, list[str]] = {
            c: [] for c in range(1, CHATWOOT_CONVERSATIONS + 1)
        }
        self.acked_at: dict[str, float] = {}
        """When each Chatwoot message was acknowledged (texts are unique)."""
        self.attempts: Counter[int] = Counter()
        self.refusals: list[Refusal] = []
        self.started_at = 0.0
        self.ended_at = 0.0
        self.timeline: list[tuple[float, str]] = []
        self._turn = 0

    def mark(self, what: str) -> float:
        """Note a moment of the run (for the report); returns its time."""
        now = time.time()
        self.timeline.append((now, f"{what} (acked {self.acked})"))
        return now

    @property
    def acked(self) -> int:
        return sum(map(len, self.chatwoot_sent.values())) + sum(len(w.sent) for w in self.widgets)

    @property
    def planned(self) -> int:
        return CHATWOOT_CONVERSATIONS * CHATWOOT_MESSAGES + len(self.widgets) * WIDGET_MESSAGES

    def _more(self, n: int, minimum: int) -> bool:
        return n < minimum or (self.disrupting and n < MAX_MESSAGES)

    async def run(self) -> None:
        self.started_at = time.time()
        try:
            await asyncio.gather(
                *(self._customer(c) for c in self.chatwoot_sent),
                *(self._visitor(w) for w in self.widgets),
            )
        finally:
            self.ended_at = time.time()

    async def _customer(self, conv: int) -> None:
        inbox = 1 + conv % 2
        n = 0
        while self._more(n, CHATWOOT_MESSAGES):
            text = f"cw{conv}-m{n}" + (f" {STREAM_WORD}" if n % 3 == 2 else "")
            await self.webhook(conv, inbox, text)
            self.chatwoot_sent[conv].append(text)
            self.acked_at[text] = time.time()
            n += 1
            await asyncio.sleep(self.rng.uniform(*self.pause))

    async def _visitor(self, widget: Widget) -> None:
        n = 0
        while self._more(n, WIDGET_MESSAGES):
            text = f"w{widget.index}-m{n}" + (f" {STREAM_WORD}" if widget.stream else "")
            await widget.say(text)
            n += 1
            await asyncio.sleep(self.rng.uniform(*self.pause))

    async def webhook(self, conv: int, inbox: int, text: str) -> None:
        """Deliver one ``message_created`` webhook: round-robin over the replicas, and again
        (same delivery id) to the next one until a replica acknowledges it."""
        spec = TriggerRequest(conversation_id=conv, inbox_id=inbox, content=text)
        payload, _ = self.mock.build_event("message_created", spec)
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: str(uuid.uuid4())}
        deadline = time.monotonic() + DELIVERY_GIVE_UP
        while True:
            replica = self.replicas[self._turn % len(self.replicas)]
            self._turn += 1
            self.attempts[replica.index] += 1
            try:
                r = await self.http.post(
                    f"{replica.url}/webhook/chatwoot", content=body, headers=headers
                )
            except httpx.HTTPError as exc:
                self.refusals.append(Refusal(time.time(), replica.index, None, repr(exc)))
            else:
                if r.status_code == 200:
                    status = r.json().get("status")
                    assert status in ("accepted", "duplicate"), r.text
                    return
                self.refusals.append(Refusal(time.time(), replica.index, r.status_code, r.text))
            if time.monotonic() > deadline:
                raise AssertionError(f"webhook {text!r} not acknowledged by any replica")
            await asyncio.sleep(0.05)


# -------------------------------------------------------------------------------- cluster


@dataclass
class Cluster:
    replicas: ReplicaSet
    redis: RedisServer
    mock: MockChatwoot
    agent: Agent
    agent_runs: Counter[str]
    agent_task: asyncio.Task[None]
    agent_balancer: TcpBalancer
    widget_balancer: TcpBalancer
    widgets: list[Widget]
    http: httpx.AsyncClient
    database_url: str

    def agent_replica(self) -> int | None:
        """The replica the agent's connection goes to now (through its balancer)."""
        active = self.agent_balancer.active()
        if len(active) != 1:
            return None
        return self.replicas.ports.index(active[0][1])

    async def agent_connected_on(self, index: int) -> bool:
        """Whether ``GET /agents/status`` of replica ``index`` shows the agent connected."""
        try:
            r = await self.http.get(
                f"{self.replicas[index].url}/agents/status",
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )
            agents = r.json()["agents"] if r.status_code == 200 else []
        except (httpx.HTTPError, ValueError, KeyError):
            return False
        rows = [a for a in agents if a.get("agent_id") == AGENT_ID]
        return bool(rows and rows[0].get("connected"))

    async def wait_agent_on(self, index: int, timeout: float = 20.0) -> None:
        """Wait until the agent's connection is on replica ``index`` and it says so."""

        async def there() -> bool:
            return self.agent_replica() == index and await self.agent_connected_on(index)

        try:
            await wait_until(there, timeout)
        except AssertionError:
            raise AssertionError(
                f"the agent is not connected to replica-{index} after {timeout}s "
                f"(balancer: {self.agent_balancer.active()})\n{self.replicas.tails()}"
            ) from None


def replica_env(chatwoot_url: str) -> dict[str, str]:
    agent_config = {
        "agent_id": AGENT_ID,
        "transport": "ws-dial-in",
        "token": AGENT_TOKEN,
        "timeout_seconds": ROUTE_TIMEOUT,
    }
    mappings = [
        {"inbox_id": 1, "agent_config": agent_config},
        {"inbox_id": 2, "agent_config": agent_config},
        {"channel": "webchat", "inbox_id": 1, "agent_config": agent_config},
    ]
    return {
        "CHATWOOT_BASE_URL": chatwoot_url,
        "CHATWOOT_API_ACCESS_TOKEN": CHATWOOT_TOKEN,
        "INBOX_AGENT_MAPPINGS": json.dumps(mappings),
        "CHATBRIDGE_ADMIN_KEY": ADMIN_KEY,
        "CHATBRIDGE_LEASE_SECONDS": str(LEASE_SECONDS),
        "CHATBRIDGE_POLL_INTERVAL": "0.5",
        "CHATBRIDGE_CLUSTER_PRESENCE_SECONDS": "3",
        "CHATBRIDGE_HEARTBEAT_INTERVAL": "2",
        "CHATBRIDGE_RETRY_BASE_SECONDS": "0.05",
        "CHATBRIDGE_RETRY_MAX_SECONDS": "1",
        "CHATBRIDGE_RECONNECT_INITIAL_DELAY": "0.1",
        "CHATBRIDGE_RECONNECT_MAX_DELAY": "1",
        "CHATBRIDGE_DRAIN_SECONDS": "1",
        "CHATBRIDGE_RATE_LIMIT_SESSION_CREATE": "1000/minute",
        "CHATBRIDGE_RATE_LIMIT_MESSAGES_IP": "10000/minute",
        "CHATBRIDGE_RATE_LIMIT_MESSAGES_SESSION": "1000/minute",
        "CHATBRIDGE_RATE_LIMIT_HISTORY": "10000/minute",
        "CHATBRIDGE_LOG_LEVEL": "INFO",
    }


@asynccontextmanager
async def running_cluster(
    database_url: str, redis: RedisServer, workdir: Path
) -> AsyncIterator[Cluster]:
    """Mock Chatwoot, three replicas, the agent dialed in to replica-0, three widgets on
    replica-2. Everything is stopped when the block ends, whatever happened."""
    async with AsyncExitStack() as exits:
        mock_app = create_mock_chatwoot(api_token=CHATWOOT_TOKEN)
        chatwoot_url = await exits.enter_async_context(serve_app(mock_app))
        mock: MockChatwoot = mock_app.state.mock
        http = await exits.enter_async_context(httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT))
        replicas = ReplicaSet(
            REPLICAS,
            database_url=database_url,
            redis_url=redis.url,
            env=replica_env(chatwoot_url),
            workdir=workdir,
        )
        await exits.enter_async_context(replicas)
        agent_balancer = await exits.enter_async_context(
            TcpBalancer(replicas.backends([0, 1, 2]), mode="failover")
        )
        widget_balancer = await exits.enter_async_context(
            TcpBalancer(replicas.backends([2, 0, 1]), mode="failover")
        )
        # Chatwoot's echoes of our replies (their receipts) reach the replicas through a load
        # balancer that answers 500 for a replica that dies under a request, so Chatwoot
        # retries them on another one (docs/reliability.md)
        echo_balancer = await exits.enter_async_context(
            TcpBalancer(replicas.backends(), mode="round_robin", when_down=500)
        )
        mock.webhook_url = f"{echo_balancer.url}/webhook/chatwoot"
        runs: Counter[str] = Counter()
        agent = build_agent(runs)
        agent_task = await exits.enter_async_context(
            dialing_in(agent, f"{agent_balancer.ws_url}/api/ws/agent", AGENT_TOKEN)
        )
        widgets: list[Widget] = []
        exits.push_async_callback(_close_widgets, widgets, workdir)
        for i in range(WIDGETS):
            r = await http.post(f"{replicas[2].url}/api/webchat/sessions", json={"inbox_id": 1})
            assert r.status_code == 200, r.text
            sid = r.json()["session_id"]
            url = f"{widget_balancer.ws_url}/api/ws/chat/{sid}"
            widgets.append(Widget(i, sid, url, stream=i < 2))
        for w in widgets:
            await w.start()
        cluster = Cluster(
            replicas,
            redis,
            mock,
            agent,
            runs,
            agent_task,
            agent_balancer,
            widget_balancer,
            widgets,
            http,
            database_url,
        )
        await cluster.wait_agent_on(0)
        yield cluster


async def _close_widgets(widgets: list[Widget], workdir: Path) -> None:
    await asyncio.gather(*(w.close() for w in widgets))
    for w in widgets:  # beside the replicas' logs, for a failed run
        w.dump(workdir / f"widget-{w.index}.jsonl")


# --------------------------------------------------------------------------------- checks


@dataclass
class Report:
    """What a run produced; ``problems`` empty means it passed."""

    tallies: dict[str, Tally] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    reply_times: list[float] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    acked_at: dict[str, float] = field(default_factory=dict)
    """Every acknowledged message's text → when it was acknowledged."""
    replied_at: dict[str, float] = field(default_factory=dict)
    """Every acknowledged message's text → when its reply was first seen (Chatwoot: at the
    mock; web chat: on the widget's socket)."""

    @property
    def last_reply(self) -> float | None:
        return max(self.reply_times) if self.reply_times else None

    def recovery(self, at: float) -> float | None:
        """Seconds from ``at`` until the last reply to a message acknowledged before ``at``
        arrived: how long the work that existed at a kill took to be finished."""
        times = [
            self.replied_at[text]
            for text, acked in self.acked_at.items()
            if acked <= at and text in self.replied_at
        ]
        return max(times) - at if times else None

    def totals(self) -> dict[str, int]:
        return {
            name: sum(len(getattr(t, name)) for t in self.tallies.values())
            for name in ("lost", "duplicated", "unexpected", "out_of_order")
        }

    def longest_gap(self, start: float) -> float:
        """The longest time without any reply, from ``start`` to the last reply."""
        times = sorted(t for t in self.reply_times if t >= start)
        gaps = [b - a for a, b in zip([start, *times], times, strict=False)]
        return max(gaps, default=0.0)


def chatwoot_replies(mock: MockChatwoot, conv: int) -> list[str]:
    return [m["content"] for m in mock.received_messages if m["conversation_id"] == conv]


async def stored_history(c: Cluster, widget: Widget, replica: int) -> list[dict[str, Any]]:
    r = await c.http.get(
        f"{c.replicas[replica].url}/api/webchat/sessions/{widget.session_id}/messages",
        params={"limit": 500},
    )
    assert r.status_code == 200, r.text
    return list(r.json()["messages"])


def _any_running(c: Cluster) -> int:
    running = c.replicas.running()
    assert running, "no replica is running"
    return 1 if 1 in running else running[0]


async def wait_for_replies(c: Cluster, load: Load) -> None:
    """Wait (bounded) until every acknowledged message has a reply, then (more briefly)
    until each widget's socket showed its replies. What is missing then is counted."""
    replica = _any_running(c)

    async def stored() -> bool:
        for conv, sent in load.chatwoot_sent.items():
            if len(chatwoot_replies(c.mock, conv)) < len(sent):
                return False
        for w in c.widgets:
            history = await stored_history(c, w, replica)
            if sum(m["role"] == "agent" for m in history) < len(w.sent):
                return False
        return True

    def shown() -> bool:
        return all(len(w.agent_texts()) >= len(w.sent) for w in c.widgets)

    with contextlib.suppress(AssertionError):
        await wait_until(stored, REPLY_WAIT)
    with contextlib.suppress(AssertionError):
        await wait_until(shown, SOCKET_WAIT)


@dataclass
class Streams:
    """What one widget's socket showed of its streamed replies."""

    problems: list[str] = field(default_factory=list)
    replies: int = 0
    with_chunks: int = 0
    """Replies of which at least one chunk was shown."""
    whole: int = 0
    """Replies shown whole in chunks before their final message."""
    partial: list[str] = field(default_factory=list)


def check_streams(w: Widget, history: list[dict[str, Any]]) -> Streams:
    """The streamed chunks a widget saw, against the final texts.

    Problems (what must always hold): no chunk index seen twice, and the chunks seen (from
    index 0, without a gap) are the start of the final text. How many replies streamed whole
    before their final message is counted, not required: the final message may be announced
    by the replica that delivered it a moment before the last chunks relayed from the agent's
    replica arrive (the socket then shows the complete reply and drops the late pieces), and
    how often that happens depends on the machine's load.
    """
    out = Streams()
    problems = out.problems
    partial = out.partial
    replies = [m for m in history if m["role"] == "agent"]
    for m in replies:
        seen = w.chunks.get(m.get("turn_id", ""), [])
        indices = [i for i, _, _ in seen]
        if len(indices) != len(set(indices)):
            problems.append(f"widget {w.index}: chunk doubled in {m['turn_id']}: {indices}")
        parts = dict((i, text) for i, text, _ in seen)
        prefix = ""
        for i in range(len(parts)):
            if i not in parts:
                break
            prefix += parts[i]
        if not m["text"].startswith(prefix):
            problems.append(f"widget {w.index}: chunks {prefix!r} do not start {m['text']!r}")
        whole = sorted(parts) == list(range(len(parts))) and prefix == m["text"]
        final_at = w.arrived.get(m["id"])
        in_time = bool(seen) and final_at is not None and max(t for *_, t in seen) <= final_at
        out.replies += 1
        out.with_chunks += bool(seen)
        if whole and in_time:
            out.whole += 1
        elif final_at is not None:  # a reply never shown is reported as such
            partial.append(f"{m['text']!r} (chunk indices {sorted(indices)})")
    return out


StreamingCheck = Literal["whole", "some", "none"]
"""What a run requires of streaming as a whole (each reply's chunks are always checked):
``whole``, at least one reply was shown whole in chunks before its final message; ``some``,
at least one chunk of some reply was shown; ``none``, nothing (chunks go from the agent's
replica to the widgets' through Redis: with Redis gone they are lost, and it may go before
the first streamed reply)."""


def check_streaming_happened(streams: Sequence[Streams], required: StreamingCheck) -> list[str]:
    """Whether streaming reached the widgets as ``required``; returns what is wrong."""
    replies = sum(s.replies for s in streams)
    whole = sum(s.whole for s in streams)
    with_chunks = sum(s.with_chunks for s in streams)
    if required == "none":
        return []
    if not replies:
        return ["no streamed reply to check"]
    if required == "whole" and not whole:
        partial = [p for s in streams for p in s.partial]
        return [f"none of {replies} streamed replies was shown whole in chunks: {partial[:5]}"]
    if not with_chunks:
        return [f"no chunk of any of {replies} streamed replies was shown"]
    return []


async def settled(database_url: str, timeout: float) -> dict[str, dict[str, int]]:
    """Wait (bounded) until no turn or delivery is in flight; returns the last counts read
    (what is still in flight after ``timeout`` shows in them and is reported)."""
    store = Store(database_url)
    counts: dict[str, dict[str, int]] = {}

    async def idle() -> bool:
        nonlocal counts
        counts = await store.counts()
        return not any(set(by_state) - FINAL_STATES for by_state in counts.values())

    try:
        with contextlib.suppress(AssertionError):
            await wait_until(idle, timeout)
    finally:
        await store.close()
    return counts


async def verify(c: Cluster, load: Load, *, streaming: StreamingCheck) -> Report:
    """Count lost / duplicated / unexpected / out-of-order replies of every conversation,
    and what else a user would notice."""
    report = Report()
    await wait_for_replies(c, load)
    # Until nothing is in flight: a turn or delivery orphaned by a dead replica has been
    # taken over (and a reply sent twice would show) by then.
    counts = await settled(c.database_url, SETTLE_WAIT)
    for conv, sent in load.chatwoot_sent.items():
        got = chatwoot_replies(c.mock, conv)
        report.tallies[f"chatwoot conversation {conv}"] = tally([echo_text(t) for t in sent], got)
    report.reply_times += [m["received_at"] for m in c.mock.received_messages]
    report.acked_at.update(load.acked_at)
    answer_of = {echo_text(text): text for text in load.acked_at}
    for m in c.mock.received_messages:
        if m["content"] in answer_of:
            report.replied_at.setdefault(answer_of[m["content"]], m["received_at"])
    # web chat: the stored history (read on another replica than the widgets use) …
    replica = _any_running(c)
    streams: list[Streams] = []
    for w in c.widgets:
        history = await stored_history(c, w, replica)
        (c.replicas.workdir / f"widget-{w.index}-history.json").write_text(json.dumps(history))
        users = [m["text"] for m in history if m["role"] == "user"]
        agents = [m["text"] for m in history if m["role"] == "agent"]
        report.tallies[f"widget {w.index} (stored)"] = tally([echo_text(t) for t in w.sent], agents)
        if users != w.sent:
            report.problems.append(f"widget {w.index}: stored visitor messages {users} != {w.sent}")
        others = [m for m in history if m["role"] not in ("user", "agent")]
        if others:
            report.problems.append(f"widget {w.index}: unexpected messages {others}")
        # … and what its live socket showed
        seen = set(w.messages)
        missed = [m["text"] for m in history if m["role"] == "agent" and m["id"] not in seen]
        if missed:
            report.problems.append(f"widget {w.index}: replies never shown on its socket: {missed}")
        stored_ids = {m["id"] for m in history}
        strangers = [m for i, m in w.messages.items() if i not in stored_ids]
        if strangers:
            report.problems.append(f"widget {w.index}: socket showed unknown messages {strangers}")
        if w.errors:
            report.problems.append(f"widget {w.index}: error frames {w.errors}")
        if w.stream:  # what must hold of each widget's streams; whether any streamed: below
            streams.append(check_streams(w, history))
            report.problems += streams[-1].problems
        report.reply_times += [
            w.arrived[m["id"]] for m in history if m["role"] == "agent" and m["id"] in w.arrived
        ]
        report.acked_at.update(w.acked_at)
        asked = {echo_text(text): text for text in w.acked_at}
        for m in history:
            if m["role"] == "agent" and m["id"] in w.arrived and m["text"] in asked:
                report.replied_at.setdefault(asked[m["text"]], w.arrived[m["id"]])
    report.problems += check_streaming_happened(streams, streaming)
    report.lines.append(
        f"streamed replies: {sum(x.whole for x in streams)} of {sum(x.replies for x in streams)} "
        f"shown whole in chunks before their final message, {sum(x.with_chunks for x in streams)} "
        "with chunks"
    )
    for name, t in report.tallies.items():
        if not t.ok:
            report.problems.append(f"{name}: {t.describe()}")
    # the database agrees: one finished turn per acknowledged message, nothing left over
    if counts["turns"] != {"done": load.acked}:
        report.problems.append(f"turns by state {counts['turns']}, expected {load.acked} done")
    if not set(counts["deliveries"]) <= {"done", "dropped", "skipped"}:
        report.problems.append(f"deliveries by state {counts['deliveries']}")
    if c.agent_task.done():
        report.problems.append(f"the agent stopped dialing: {c.agent_task!r}")
    reruns = sum(n - 1 for n in c.agent_runs.values() if n > 1)
    report.lines += [
        f"logs: {c.replicas.workdir} (replica-<i>.log, widget-<i>.jsonl)",
        *(f"t+{at - load.started_at:6.2f}s {what}" for at, what in load.timeline),
        f"acknowledged messages: {load.acked} "
        f"({sum(map(len, load.chatwoot_sent.values()))} Chatwoot, "
        f"{sum(len(w.sent) for w in c.widgets)} web chat); turns by state {counts['turns']}",
        f"replies: {report.totals()}",
        f"webhook attempts per replica {dict(sorted(load.attempts.items()))}, "
        f"not acknowledged {len(load.refusals)} "
        f"(with an HTTP status: {Counter(r.status for r in load.refusals if r.status)})",
        f"agent handler runs {sum(c.agent_runs.values())} for {len(c.agent_runs)} turns "
        f"({reruns} re-runs); agent connections per replica "
        f"{_per_replica(c, c.agent_balancer.connections)}",
        f"widgets: connects {[w.connects for w in c.widgets]}, drops "
        f"{[w.drops for w in c.widgets]}, resent messages {[w.resends for w in c.widgets]}",
    ]
    return report


def _per_replica(c: Cluster, connections: Counter[tuple[str, int]]) -> dict[str, int]:
    return {f"replica-{c.replicas.ports.index(port)}": n for (_, port), n in connections.items()}


async def check_status_elsewhere(c: Cluster) -> list[str]:
    """``/agents/status`` of every running replica that does not hold the agent's
    connection shows it connected (presence is shared); returns what is wrong."""
    problems = []
    holder = c.agent_replica()
    for i in c.replicas.running():
        if i == holder:
            continue
        try:
            await wait_until(lambda i=i: c.agent_connected_on(i), 10)
        except AssertionError:
            problems.append(
                f"GET /agents/status on replica-{i} does not show {AGENT_ID} connected "
                f"(its connection is on replica-{holder})"
            )
    return problems


def finish(report: Report, record: Callable[[str, object], None], title: str) -> None:
    """Print the report, attach its numbers to the JUnit record, fail on any problem."""
    for name, value in report.totals().items():
        record(name, value)
    print(f"\n== {title} ==")
    for line in report.lines:
        print("  " + line)
    if report.problems:
        pytest.fail(f"{title}:\n  " + "\n  ".join(report.problems), pytrace=False)


async def run_load(load: Load, disrupt: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run the load, and ``disrupt`` beside it (conversations keep writing until it ends)."""
    task = asyncio.create_task(load.run())
    try:
        if disrupt is not None:
            load.disrupting = True
            try:
                await disrupt()
            finally:
                load.disrupting = False
        await asyncio.wait_for(asyncio.shield(task), 120)
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    task.result()


async def at_least(load: Load, share: float, timeout: float = 60.0) -> None:
    """Wait until ``share`` of the planned messages were acknowledged."""
    await wait_until(lambda: load.acked >= share * load.planned, timeout)


# ---------------------------------------------------------------------------------- tests


async def test_steady_load(
    database_url_pg: str,
    redis_server: RedisServer,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    async with running_cluster(database_url_pg, redis_server, tmp_path) as c:
        presence = await check_status_elsewhere(c)
        load = Load(c.replicas, c.mock, c.http, c.widgets, seed=1, pause=(0.05, 0.25))
        await run_load(load)
        report = await verify(c, load, streaming="whole")
        report.problems = presence + report.problems
        assert report.last_reply is not None
        last_ack = max(report.acked_at.values())
        report.lines.append(
            f"load ran {load.ended_at - load.started_at:.2f}s; the last reply came "
            f"{report.last_reply - last_ack:.2f}s after the last message was acknowledged"
        )
        record_property("time_to_last_reply_s", round(report.last_reply - load.started_at, 3))
        finish(report, record_property, "three replicas, steady load")


async def test_sigkill_replicas_mid_load(
    database_url_pg: str,
    redis_server: RedisServer,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    async with running_cluster(database_url_pg, redis_server, tmp_path) as c:
        load = Load(c.replicas, c.mock, c.http, c.widgets, seed=2, pause=(0.2, 0.5))
        kills: dict[str, float] = {}
        problems: list[str] = []

        async def disrupt() -> None:
            await at_least(load, 0.2)
            kills["replica-0"] = load.mark("SIGKILL replica-0 (holds the agent)")
            await c.replicas.kill(0)
            try:  # the agent reconnects through its balancer: replica-1 is next in line
                await c.wait_agent_on(1)
                load.mark("agent connected to replica-1")
            except AssertionError as exc:
                problems.append(str(exc).splitlines()[0])
            await asyncio.sleep(0.5)
            load.mark("starting replica-0")
            await c.replicas.start(0)
            load.mark("replica-0 ready")
            await at_least(load, 0.5)
            kills["replica-2"] = load.mark("SIGKILL replica-2 (holds the widgets)")
            await c.replicas.kill(2)
            await asyncio.sleep(0.5)
            load.mark("starting replica-2")
            await c.replicas.start(2)
            load.mark("replica-2 ready")

        await run_load(load, disrupt)
        load.mark("load done")
        report = await verify(c, load, streaming="some")
        report.problems = problems + report.problems
        report.problems += await check_status_elsewhere(c)
        last = report.last_reply
        assert last is not None
        for name, at in kills.items():
            recovered = report.recovery(at)
            report.lines.append(
                f"SIGKILL {name}: the last reply came {last - at:.2f}s later; the messages "
                f"acknowledged before it were all answered {_seconds(recovered)} after it"
            )
            record_property(f"kill_{name}_to_last_reply_s", round(last - at, 3))
            if recovered is not None:
                record_property(f"kill_{name}_recovery_s", round(recovered, 3))
        first_kill = min(kills.values())
        report.lines.append(
            f"longest time without any reply after the first kill: "
            f"{report.longest_gap(first_kill):.2f}s; load ran "
            f"{load.ended_at - load.started_at:.2f}s"
        )
        record_property("longest_reply_gap_s", round(report.longest_gap(first_kill), 3))
        finish(report, record_property, "three replicas, two SIGKILLed mid-load")


async def test_redis_restart_mid_load(
    database_url_pg: str,
    redis_server: RedisServer,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    async with running_cluster(database_url_pg, redis_server, tmp_path) as c:
        load = Load(c.replicas, c.mock, c.http, c.widgets, seed=3, pause=(0.2, 0.5))
        down: dict[str, float] = {}

        async def disrupt() -> None:
            await at_least(load, 0.3)
            down["killed"] = load.mark("Redis SIGKILLed")
            await c.redis.restart(down_for=2.0)
            down["back"] = load.mark("Redis answers again (empty)")
            load.disrupting = False

        await run_load(load, disrupt)
        load.mark("load done")
        report = await verify(c, load, streaming="none")
        # Redis carries no message: a webhook must not be refused because it is away.
        errors = [r for r in load.refusals if r.status is not None and r.status >= 500]
        if errors:
            report.problems.append(f"webhooks refused while Redis was away: {errors[:3]}")
        report.problems += await check_status_elsewhere(c)
        last = report.last_reply
        assert last is not None
        recovered = report.recovery(down["killed"])
        report.lines.append(
            f"Redis down {down['back'] - down['killed']:.2f}s; the last reply came "
            f"{last - down['killed']:.2f}s after it was killed; the messages acknowledged "
            f"before it were all answered {_seconds(recovered)} after it; longest time "
            f"without any reply {report.longest_gap(down['killed']):.2f}s"
        )
        record_property("redis_kill_to_last_reply_s", round(last - down["killed"], 3))
        if recovered is not None:
            record_property("redis_kill_recovery_s", round(recovered, 3))
        finish(report, record_property, "three replicas, Redis restarted mid-load")


def _seconds(value: float | None) -> str:
    return "(none answered)" if value is None else f"{value:.2f}s"


# -------------------------------------------------------------------------------- harness


async def test_balancer_round_robin_failover_and_dead_backends() -> None:
    """The balancer itself: round-robin, failover order, a refusing backend skipped, bytes
    piped both ways with half-close, connections cut when the backend goes."""
    hits: Counter[int] = Counter()

    def serve_as(n: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            hits[n] += 1
            data = await reader.read()  # until the client half-closes
            writer.write(f"{n}:".encode() + data)
            await writer.drain()
            writer.close()

        return handle

    servers = [await asyncio.start_server(serve_as(n), "127.0.0.1", 0) for n in range(3)]
    backends = [("127.0.0.1", int(s.sockets[0].getsockname()[1])) for s in servers]

    async def ask(port: int, text: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(text)
        writer.write_eof()
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
        return answer

    try:
        async with TcpBalancer(backends, mode="round_robin") as rr:
            answers = [await ask(rr.port, b"x" * 100_000) for _ in range(6)]
            assert [a[:2] for a in answers] == [b"0:", b"1:", b"2:"] * 2
            assert all(len(a) == 100_002 for a in answers)
        async with TcpBalancer(backends, mode="failover") as fo:
            assert (await ask(fo.port, b"hi")) == b"0:hi"
            servers[0].close()
            await servers[0].wait_closed()
            assert (await ask(fo.port, b"hi")) == b"1:hi"  # refused: the next one
            fo.backends = [backends[0]]
            reader, writer = await asyncio.open_connection("127.0.0.1", fo.port)
            assert await reader.read() == b""  # nobody accepts: closed at once
            writer.close()
            assert fo.refused == 1
    finally:
        for s in servers:
            s.close()


async def test_balancer_carries_a_websocket_until_the_backend_dies() -> None:
    async def echo(ws: websockets.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        port = int(next(iter(server.sockets)).getsockname()[1])
        async with TcpBalancer([("127.0.0.1", port)], mode="failover") as lb:
            async with websockets.connect(lb.ws_url) as ws:
                await ws.send("ping")
                assert await ws.recv() == "ping"
                assert lb.active() == [("127.0.0.1", port)]
                assert lb.drop() == 1  # a network cut reaches the client
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
            await wait_until(lambda: not lb.active())


async def test_redis_server_restarts_on_the_same_port(redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    async def get(key: str) -> object:
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            return await client.get(key)
        finally:
            await client.aclose()

    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.set("k", "v")
    finally:
        await client.aclose()
    port = redis_server.port
    await redis_server.restart(down_for=0.2)
    assert redis_server.port == port and await redis_server.ping()
    assert await get("k") is None  # a new, empty server on the same address
    await redis_server.kill()
    assert not await redis_server.ping() and not redis_server.running
    await redis_server.start()
    assert await redis_server.ping() and redis_server.starts == 3
