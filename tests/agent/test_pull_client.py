"""The pull client without a bridge: options, retry delays, dedupe, handlers, and the client
against a fake bridge (an ``httpx.MockTransport``) for retries, re-offers and streaming."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from chatbridge.agent import Handoff, NoReply, Turn, TurnError
from chatbridge.agent.pull import (
    PullClient,
    PullConfig,
    PullRejected,
    SeenMessages,
    TurnLedger,
    action_message_key,
    adapt_handler,
    backoff_delay,
    load_handler,
    parse_retry_after,
)
from chatbridge.cli import app
from chatbridge.errors import ConfigError
from tests.agent.sdk_helpers import user_message
from tests.e2e.harness import wait_until

NATIVE = {"CHATBRIDGE_AGENT_ID": "agent1", "CHATBRIDGE_AGENT_TOKEN": "tok"}

# ------------------------------------------------------------------------------ options


def test_options_come_from_the_plugins_environment_names() -> None:
    env = {
        **NATIVE,
        "WEB_CHAT_API_URL": "http://bridge.example:9000/",
        "WEB_CHAT_POLL_INTERVAL": "2.5",
        "WEB_CHAT_MAX_RETRIES": "4",
        "WEB_CHAT_RETRY_DELAY": "0.5",
        "WEB_CHAT_TIMEOUT": "7",
    }
    c = PullConfig.from_sources(env)
    assert (c.url, c.api, c.agent_id, c.token) == (
        "http://bridge.example:9000",  # no trailing slash: no //api/v1/
        "native",
        "agent1",
        "tok",
    )
    assert (c.poll_interval, c.max_retries, c.retry_delay, c.timeout) == (2.5, 4, 0.5, 7.0)


def test_defaults_match_the_plugin() -> None:
    c = PullConfig.from_sources(NATIVE)
    assert (c.url, c.poll_interval, c.retry_delay, c.max_retries, c.timeout) == (
        "http://127.0.0.1:8000",
        5.0,
        10.0,
        3,
        30.0,
    )


def test_flags_override_the_environment_and_empty_variables_count_as_unset() -> None:
    env = {**NATIVE, "WEB_CHAT_POLL_INTERVAL": "9", "WEB_CHAT_TIMEOUT": ""}
    c = PullConfig.from_sources(env, {"poll_interval": "0.25", "agent_id": "other"})
    assert (c.poll_interval, c.agent_id, c.timeout) == (0.25, "other", 30.0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"WEB_CHAT_POLL_INTERVAL": "abc"},
            "WEB_CHAT_POLL_INTERVAL must be a number > 0, got 'abc'",
        ),
        ({"WEB_CHAT_POLL_INTERVAL": "0"}, "WEB_CHAT_POLL_INTERVAL must be a number > 0, got '0'"),
        ({"WEB_CHAT_POLL_INTERVAL": "nan"}, "WEB_CHAT_POLL_INTERVAL must be a number > 0"),
        ({"WEB_CHAT_MAX_RETRIES": "1.5"}, "WEB_CHAT_MAX_RETRIES must be a whole number >= 1"),
        ({"WEB_CHAT_MAX_RETRIES": "0"}, "WEB_CHAT_MAX_RETRIES must be a whole number >= 1"),
        ({"WEB_CHAT_RETRY_DELAY": "-1"}, "WEB_CHAT_RETRY_DELAY must be a number > 0, got '-1'"),
        ({"WEB_CHAT_TIMEOUT": "inf"}, "WEB_CHAT_TIMEOUT must be a number > 0, got 'inf'"),
        ({"WEB_CHAT_API_URL": "localhost:8000"}, "WEB_CHAT_API_URL must be an http:// or"),
        ({"WEB_CHAT_API_URL": "ftp://x"}, "WEB_CHAT_API_URL must be an http:// or https:// URL"),
        ({"CHATBRIDGE_PULL_API": "grpc"}, "CHATBRIDGE_PULL_API must be native, action or auto"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        PullConfig.from_sources({**NATIVE, **env})


def test_every_bad_value_is_reported_at_once_and_a_flag_is_named_as_a_flag() -> None:
    with pytest.raises(ConfigError) as err:
        PullConfig.from_sources(
            {"WEB_CHAT_TIMEOUT": "soon"}, {"wait": "61", "concurrency": "0", "api": "native"}
        )
    assert str(err.value).splitlines() == [
        "WEB_CHAT_TIMEOUT must be a number > 0, got 'soon'",
        "--wait must be a number between 0 and 60, got '61'",
        "--concurrency must be a whole number >= 1, got '0'",
        "the native pull API needs --agent-id or CHATBRIDGE_AGENT_ID",
        "the native pull API needs --token or CHATBRIDGE_AGENT_TOKEN",
    ]


def test_the_api_follows_the_credentials_given() -> None:
    assert PullConfig.from_sources({"WEB_CHAT_API_KEY": "k"}).api == "action"
    assert PullConfig.from_sources({**NATIVE, "WEB_CHAT_API_KEY": "k"}).api == "native"
    with pytest.raises(ConfigError, match="action API needs --api-key or WEB_CHAT_API_KEY"):
        PullConfig.from_sources(NATIVE, {"api": "action"})
    with pytest.raises(ConfigError, match="give --agent-id and --token"):
        PullConfig.from_sources({})


def test_cli_refuses_bad_options_with_a_clear_message_and_no_traceback() -> None:
    env = {**NATIVE, "WEB_CHAT_POLL_INTERVAL": "abc"}
    result = CliRunner().invoke(app, ["pull-agent", "--max-retries", "x"], env=env)
    assert result.exit_code == 2
    assert "WEB_CHAT_POLL_INTERVAL must be a number > 0, got 'abc'" in result.output
    assert "--max-retries must be a whole number >= 1, got 'x'" in result.output
    assert "Traceback" not in result.output

    result = CliRunner().invoke(app, ["pull-agent", "--behaviour", "sing"], env=NATIVE)
    assert result.exit_code == 2
    assert "unknown mock behaviour 'sing'" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------------ decisions


@given(st.integers(0, 40), st.floats(0.001, 100), st.integers(0, 2**32))
def test_backoff_doubles_with_jitter_and_is_capped(attempt: int, base: float, seed: int) -> None:
    delay = backoff_delay(attempt, base, rng=random.Random(seed))
    ceiling = min(max(base, 300.0), base * 2**attempt)
    assert ceiling / 2 <= delay <= ceiling


def test_backoff_never_undercuts_retry_after() -> None:
    assert backoff_delay(0, 0.01, retry_after=3.0) == 3.0
    assert backoff_delay(0, 10.0, retry_after=1.0) >= 5.0
    assert backoff_delay(0, 0.01, retry_after=10**9) == 3600.0  # a silly value is capped


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None) is None


def test_ledger_runs_a_turn_once_and_reposts_a_kept_answer() -> None:
    ledger = TurnLedger()
    decision, entry = ledger.offer("t_1", "c_1", "L1")
    assert decision == "run"
    assert ledger.offer("t_1", "c_1", "L2") == ("wait", entry)  # still running: new lease only
    assert entry.lease == "L2" and ledger.running == 1
    ledger.answered(entry, [{"type": "agent_message"}])
    assert ledger.offer("t_1", "c_1", "L3") == ("wait", entry)  # its answer is being posted
    entry.posting = False
    assert ledger.offer("t_1", "c_1", "L4") == ("repost", entry)  # the answer never landed
    assert entry.lease == "L4" and entry.posting and ledger.running == 0


def test_ledger_runs_again_after_a_cancelled_handler_and_forgets_old_answers() -> None:
    ledger = TurnLedger(keep=2)
    ledger.forget(ledger.offer("t_1", "c_1", "L1")[1])
    assert ledger.offer("t_1", "c_1", "L2")[0] == "run"
    for n in range(2, 5):
        ledger.answered(ledger.offer(f"t_{n}", "c", "L")[1], [])
    assert ledger.offer("t_2", "c", "L")[0] == "run"  # beyond ``keep``
    assert ledger.offer("t_4", "c", "L")[0] == "wait"


def test_action_messages_are_deduped_like_the_plugin() -> None:
    m = {"id": "5", "session_id": "s1", "message": "hi", "timestamp": "2026-01-01T00:00:00Z"}
    seen = SeenMessages(keep=2)
    assert action_message_key(m) == ("s1", "5", "2026-01-01T00:00:00Z")
    assert seen.add(action_message_key(m))  # type: ignore[arg-type]
    assert not seen.add(action_message_key(dict(m)))  # type: ignore[arg-type]
    later = {**m, "timestamp": "2026-01-01T00:00:01Z"}
    assert seen.add(action_message_key(later))  # type: ignore[arg-type]
    assert action_message_key({**m, "timestamp": None}) == ("s1", "5", "None")
    bad: Any
    for bad in ({**m, "session_id": ""}, {**m, "message": None}, {**m, "timestamp": "x"}, []):
        assert action_message_key(bad) is None


# ------------------------------------------------------------------------------ handlers


def test_load_handler_takes_any_callable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_handlers.py").write_text(
        textwrap.dedent(
            """
            from chatbridge.agent import Agent, Turn

            def shout(text: str) -> str:
                return text.upper()

            async def by_turn(turn: Turn) -> str:
                return f"{turn.conversation_id}: {turn.content}"

            def words(text: str):
                yield from text.split()

            agent = Agent("a")

            @agent.on_message
            def answer(turn):
                return "from the agent"

            not_callable = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    turn = Turn(id="t_1", seq=1, conversation_id="c_1", content="hi there")

    async def call(spec: str) -> Any:
        result: Any = load_handler(spec)(turn)
        if asyncio.iscoroutine(result):
            result = await result
        if isinstance(result, AsyncIterator):
            result = [chunk async for chunk in result]
        return result

    assert asyncio.run(call("my_handlers:shout")) == "HI THERE"
    assert asyncio.run(call("my_handlers:by_turn")) == "c_1: hi there"
    assert asyncio.run(call("my_handlers:words")) == ["hi", "there"]
    assert asyncio.run(call("my_handlers:agent")) == "from the agent"
    for spec, message in [
        ("my_handlers", "must look like module:function"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("my_handlers:missing", "has no attribute 'missing'"),
        ("my_handlers:not_callable", "int is not callable"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_handler(spec)
    sys.modules.pop("my_handlers", None)


# ------------------------------------------------------------------------------ fake bridge

Script = list[httpx.Response | Exception]


class FakePullBridge:
    """The native pull endpoints: hands out queued turns, records what the client posts.

    ``poll_script`` / ``reply_script`` answer the next requests first (a response or an
    exception to raise) before the normal behaviour.
    """

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.polls: list[dict[str, str]] = []
        self.posts: list[tuple[str, str, dict[str, Any]]] = []  # every attempt
        self.replies: list[tuple[str, str, dict[str, Any]]] = []  # accepted ones
        self.poll_script: Script = []
        self.reply_script: Script = []
        self.headers: list[httpx.Headers] = []

    def offer(self, n: int, lease: str = "L1", conv: str = "c_1", content: str = "hi") -> None:
        turn = user_message(f"t_{n}", seq=n, content=content, conversation_id=conv)
        self.pending.append({"lease_id": lease, "lease_expires_at": "…", "turn": turn})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.headers.append(request.headers)
        if request.url.path == "/api/agent/turns":
            self.polls.append(dict(request.url.params))
            if self.poll_script:
                return _play(self.poll_script.pop(0))
            limit = int(request.url.params["limit"])
            items, self.pending = self.pending[:limit], self.pending[limit:]
            return httpx.Response(200, json={"turns": items})
        match = re.fullmatch(r"/api/agent/turns/(t_\d+)/reply", request.url.path)
        assert match and request.method == "POST", request.url
        post = (match[1], request.url.params["lease"], json.loads(request.content))
        self.posts.append(post)
        if self.reply_script:
            return _play(self.reply_script.pop(0))
        self.replies.append(post)
        kind = post[2]["type"]
        return httpx.Response(
            200, json={"status": "chunk" if kind == "agent_streaming" else "answered"}
        )

    def frames(self, turn_id: str = "t_1") -> list[dict[str, Any]]:
        return [frame for t, _, frame in self.replies if t == turn_id]


def _play(step: httpx.Response | Exception) -> httpx.Response:
    if isinstance(step, Exception):
        raise step
    return step


def lease_expired() -> httpx.Response:
    return httpx.Response(409, json={"error": {"code": "lease_expired", "message": "pull again"}})


def fast_config(**kw: Any) -> PullConfig:
    base: dict[str, Any] = dict(
        url="http://bridge.test", agent_id="agent1", token="tok", poll_interval=0.01,
        retry_delay=0.01, max_retries=3, wait=0, drain_seconds=2,
    )  # fmt: skip
    return PullConfig(**{**base, **kw})


@asynccontextmanager
async def pulling(
    fake: Callable[[httpx.Request], httpx.Response], handler: Any, **config: Any
) -> AsyncIterator[PullClient]:
    client = PullClient(fast_config(**config), handler, transport=httpx.MockTransport(fake))
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        yield client
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def counting(answer: Callable[[Turn], Any] = lambda t: f"Echo: {t.content}") -> Any:
    runs: list[str] = []

    async def handler(turn: Turn) -> Any:
        runs.append(turn.id)
        return answer(turn)

    handler.runs = runs  # type: ignore[attr-defined]
    return handler


# ------------------------------------------------------------------------------ native client


async def test_answers_a_turn_with_the_agents_credentials() -> None:
    fake = FakePullBridge()
    fake.offer(1, content="hello")
    async with pulling(fake, counting()):
        await wait_until(lambda: fake.replies)
    turn_id, lease, frame = fake.replies[0]
    assert (turn_id, lease, frame["type"], frame["content"]) == (
        "t_1",
        "L1",
        "agent_message",
        "Echo: hello",
    )
    assert (frame["message_id"], frame["conversation_id"]) == ("t_1", "c_1")
    assert fake.headers[0]["authorization"] == "Bearer tok"
    assert fake.headers[0]["x-agent-id"] == "agent1"
    assert fake.polls[0] == {"wait": "0", "limit": "10"}


async def test_a_turn_offered_again_while_running_is_not_started_twice() -> None:
    runs: list[str] = []
    release = asyncio.Event()

    async def slow(turn: Turn) -> str:
        runs.append(turn.id)
        await release.wait()
        return "done"

    fake = FakePullBridge()
    fake.offer(1, lease="L1")
    async with pulling(fake, slow):
        await wait_until(lambda: runs)
        fake.offer(1, lease="L2")  # the lease ran out; the bridge offers the turn again
        await wait_until(lambda: not fake.pending)
        release.set()
        await wait_until(lambda: fake.replies)
    assert runs == ["t_1"]
    assert [(t, lease) for t, lease, _ in fake.replies] == [("t_1", "L2")]  # the newest lease


async def test_an_answer_refused_for_its_lease_is_sent_again_without_running_again() -> None:
    fake = FakePullBridge()
    handler = counting()
    fake.reply_script = [lease_expired()]  # the handler outlived its lease
    fake.offer(1, lease="L1", content="slowpoke")
    async with pulling(fake, handler):
        await wait_until(lambda: fake.posts)
        fake.offer(1, lease="L2", content="slowpoke")
        await wait_until(lambda: fake.replies)
    assert handler.runs == ["t_1"]
    assert [(lease, f["content"]) for _, lease, f in fake.posts] == [
        ("L1", "Echo: slowpoke"),
        ("L2", "Echo: slowpoke"),
    ]


async def test_the_same_turn_id_from_a_reset_bridge_is_a_new_turn() -> None:
    """``t_1`` counts per bridge database: after a reset it names another customer's turn,
    which must be answered for itself; a genuine repeat still gets the kept answer."""
    fake = FakePullBridge()
    handler = counting()
    fake.offer(1, lease="L1", conv="c_01OLD", content="where is my order?")
    async with pulling(fake, handler):
        await wait_until(lambda: len(fake.replies) == 1)
        fake.offer(1, lease="L2", conv="c_01NEW", content="cancel my subscription")
        await wait_until(lambda: len(fake.replies) == 2)
        fake.offer(1, lease="L3", conv="c_01OLD", content="where is my order?")
        await wait_until(lambda: len(fake.replies) == 3)
    answers = [(lease, f["conversation_id"], f["content"]) for _, lease, f in fake.replies]
    assert answers == [
        ("L1", "c_01OLD", "Echo: where is my order?"),
        ("L2", "c_01NEW", "Echo: cancel my subscription"),
        ("L3", "c_01OLD", "Echo: where is my order?"),  # the kept answer
    ]
    assert handler.runs == ["t_1", "t_1"]


async def test_connection_errors_5xx_and_429_are_retried() -> None:
    fake = FakePullBridge()
    request = httpx.Request("GET", "http://bridge.test/")
    fake.poll_script = [
        httpx.ConnectError("refused", request=request),
        httpx.Response(503),
        httpx.Response(429, headers={"Retry-After": "0"}),
    ]
    fake.reply_script = [httpx.ReadTimeout("slow", request=request), httpx.Response(502)]
    fake.offer(1)
    async with pulling(fake, counting()) as client:
        await wait_until(lambda: fake.replies)
    assert len(fake.polls) >= 4 and len(fake.posts) == 3
    assert client.answered == 1


async def test_a_reply_is_given_up_after_max_retries_and_kept_for_a_new_offer() -> None:
    fake = FakePullBridge()
    handler = counting()
    fake.reply_script = [httpx.Response(503)] * 3
    fake.offer(1, lease="L1")
    async with pulling(fake, handler, max_retries=3, concurrency=2):
        await wait_until(lambda: len(fake.posts) == 3)
        # a poll asking for 2 turns again comes once the turn's task has ended (given up)
        seen = len(fake.polls)
        await wait_until(lambda: any(p["limit"] == "2" for p in fake.polls[seen:]))
        assert len(fake.posts) == 3 and not fake.replies  # no fourth attempt
        fake.offer(1, lease="L2")
        await wait_until(lambda: fake.replies)
    assert handler.runs == ["t_1"]
    assert fake.replies[0][1] == "L2"


async def test_a_refused_poll_stops_the_client() -> None:
    fake = FakePullBridge()
    fake.poll_script = [
        httpx.Response(401, json={"error": {"code": "unauthorized", "message": "bad token"}})
    ]
    client = PullClient(fast_config(), counting(), transport=httpx.MockTransport(fake))
    with pytest.raises(PullRejected, match="HTTP 401 unauthorized: bad token"):
        await asyncio.wait_for(client.run(), 5)


async def test_streamed_answer_posts_chunks_then_the_whole_text() -> None:
    async def stream(turn: Turn) -> AsyncIterator[str]:
        for word in ("Hello ", "there"):
            yield word

    fake = FakePullBridge()
    fake.offer(1)
    async with pulling(fake, stream):
        await wait_until(lambda: len(fake.replies) == 3)
    assert [(f["type"], f.get("stream_index"), f["content"]) for f in fake.frames()] == [
        ("agent_streaming", 0, "Hello "),
        ("agent_streaming", 1, "there"),
        ("agent_complete", None, "Hello there"),
    ]


async def test_handoff_no_reply_and_errors_become_their_frames() -> None:
    def answer(turn: Turn) -> Any:
        match turn.content:
            case "human":
                return Handoff(reason="asked", content="One moment")
            case "quiet":
                return NoReply()
            case "fail":
                raise TurnError("busy", "try later")
            case _:
                raise RuntimeError("boom")

    fake = FakePullBridge()
    for n, text in enumerate(("human", "quiet", "fail", "crash"), 1):
        fake.offer(n, conv=f"c_{n}", content=text)
    async with pulling(fake, answer):
        await wait_until(lambda: len(fake.replies) == 4)
    frames = {t: f for t, _, f in fake.replies}
    assert (frames["t_1"]["type"], frames["t_1"]["reason"], frames["t_1"]["content"]) == (
        "handoff",
        "asked",
        "One moment",
    )
    assert frames["t_2"]["type"] == "no_reply"
    assert (frames["t_3"]["type"], frames["t_3"]["error_code"]) == ("error_message", "busy")
    assert frames["t_4"]["error_code"] == "handler_error"
    assert frames["t_4"]["error_details"] == {"type": "RuntimeError", "message": "boom"}


async def test_turns_run_concurrently_up_to_the_limit() -> None:
    running: set[str] = set()
    peak = 0
    gate = asyncio.Event()

    async def handler(turn: Turn) -> str:
        nonlocal peak
        running.add(turn.id)
        peak = max(peak, len(running))
        await gate.wait()
        running.discard(turn.id)
        return "ok"

    fake = FakePullBridge()
    for n in range(1, 6):
        fake.offer(n, conv=f"c_{n}")
    async with pulling(fake, handler, concurrency=3):
        await wait_until(lambda: len(running) == 3)
        assert [p["limit"] for p in fake.polls[:1]] == ["3"]
        gate.set()
        await wait_until(lambda: len(fake.replies) == 5)
    assert peak == 3


async def test_stopping_lets_a_running_turn_finish_and_post(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chatbridge.agent.pull")
    started = asyncio.Event()
    finish = asyncio.Event()

    async def handler(turn: Turn) -> str:
        started.set()
        await finish.wait()  # still running when the client is told to stop
        return "finished"

    fake = FakePullBridge()
    fake.offer(1)
    client = PullClient(fast_config(), handler, transport=httpx.MockTransport(fake))
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    await started.wait()
    stop.set()
    # the client has stopped polling and waits for the turn, which is still running
    await wait_until(lambda: "stopping: waiting up to 2s for 1 running turn(s)" in caplog.text)
    finish.set()
    await asyncio.wait_for(task, 5)
    assert [f["content"] for f in fake.frames()] == ["finished"]


# ------------------------------------------------------------------------------ action client


class FakeActionApi:
    """``/api/v1/?action=inbox|outbox``: hands out the queued messages on each inbox poll."""

    def __init__(self) -> None:
        self.inbox: list[list[dict[str, Any]]] = []  # one page per poll
        self.requests: list[httpx.Request] = []
        self.outbox: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.url.path == "/api/v1/"
        action = request.url.params["action"]
        if action == "inbox":
            page = self.inbox.pop(0) if self.inbox else []
            data = {"messages": page, "pagination": {"total": len(page)}}
            return httpx.Response(200, json={"success": True, "message": "Success", "data": data})
        assert action == "outbox" and request.method == "POST"
        self.outbox.append(json.loads(request.content))
        return httpx.Response(200, json={"success": True, "data": {"response_id": "1"}})


def inbox_message(
    n: int, session: str = "s1", text: str = "hi", ts: str = "2026-01-01T00:00:00Z"
) -> dict[str, Any]:
    return {"id": str(n), "session_id": session, "message": text, "timestamp": ts, "uid": "u1"}


async def test_action_api_answers_each_message_once_in_order_per_session() -> None:
    api = FakeActionApi()
    first, second = inbox_message(1, text="one"), inbox_message(2, text="two")
    api.inbox = [[first, second], [first], [inbox_message(3, session="s2", text="three")]]
    handler = counting()
    async with pulling(api, handler, api="action", api_key="k", agent_id=None, token=None):
        await wait_until(lambda: len(api.outbox) == 3)
        await wait_until(lambda: not api.inbox)
    assert handler.runs == ["1", "2", "3"]
    assert api.outbox == [
        {"session_id": "s1", "response": "Echo: one"},
        {"session_id": "s1", "response": "Echo: two"},
        {"session_id": "s2", "response": "Echo: three"},
    ]
    poll = api.requests[0]
    assert dict(poll.url.params) == {"action": "inbox", "limit": "50", "offset": "0"}
    assert poll.headers["authorization"] == "Bearer k"


async def test_action_api_sends_streams_whole_and_handoff_content_only() -> None:
    async def handler(turn: Turn) -> Any:
        if turn.content == "stream":

            async def chunks() -> AsyncIterator[str]:
                yield "a"
                yield "b"

            return chunks()
        if turn.content == "quiet":
            return None
        return Handoff(content="A person will answer")

    api = FakeActionApi()
    api.inbox = [[inbox_message(1, "s1", "stream"), inbox_message(2, "s2", "quiet"),
                  inbox_message(3, "s3", "human")]]  # fmt: skip
    async with pulling(api, handler, api="action", api_key="k"):
        await wait_until(lambda: len(api.outbox) == 2)
    assert sorted(m["response"] for m in api.outbox) == ["A person will answer", "ab"]


def test_adapt_handler_runs_plain_functions_in_a_thread() -> None:
    import threading

    threads: list[str] = []

    def blocking(text: str) -> str:
        threads.append(threading.current_thread().name)
        return text

    async def go() -> Any:
        result: Any = adapt_handler(blocking)(
            Turn(id="t", seq=None, conversation_id="c", content="x")
        )
        return await result

    assert asyncio.run(go()) == "x"
    assert threads and threads[0] != threading.main_thread().name
