"""End to end over real sockets, http-pull: leases and re-offers, two pollers, a puller that
crashes mid-turn, a late answer, and ``chatbridge pull-agent`` as a process (native API and
the web chat plugin's action API)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx

from chatbridge.agent import Agent, PullClient, PullConfig, Turn
from chatbridge.config import AgentConfig, InboxMapping
from chatbridge.testing.mock_agent import HANDOFF_TEXT, build_mock_agent
from tests.e2e.harness import Stack, running_stack, wait_until

PULL_TOKEN = "pull-secret-0123456"
HEADERS = {"Authorization": f"Bearer {PULL_TOKEN}", "X-Agent-Id": "agent1"}


@asynccontextmanager
async def pull_stack(database_url: str, **settings: Any) -> AsyncIterator[Stack]:
    """The e2e stack with Chatwoot inbox 1 routed to ``agent1`` over http-pull."""
    async with running_stack(database_url, transport="ws-dial-in", **settings) as s:
        agent = AgentConfig(
            agent_id="agent1", transport="http-pull", token=PULL_TOKEN, timeout_seconds=30
        )
        await s.bridge.save_mapping(InboxMapping(inbox_id=1, agent_config=agent))
        yield s


async def pull(s: Stack, *, wait: float = 5, limit: int = 10) -> list[dict[str, Any]]:
    """One raw long-poll as agent1."""
    r = await s.http.get("/api/agent/turns", params={"wait": wait, "limit": limit}, headers=HEADERS)
    assert r.status_code == 200, r.text
    turns: list[dict[str, Any]] = r.json()["turns"]
    return turns


async def answer(s: Stack, item: dict[str, Any], content: str) -> httpx.Response:
    """Answer a pulled turn under the lease it came with."""
    return await s.http.post(
        f"/api/agent/turns/{item['turn']['message_id']}/reply",
        params={"lease": item["lease_id"]},
        json={"type": "agent_message", "content": content},
        headers=HEADERS,
    )


@asynccontextmanager
async def pulling_agent(
    s: Stack, agent: Any, *, concurrency: int = 10
) -> AsyncIterator[PullClient]:
    """The SDK's pull client answering as agent1 while the block runs."""
    config = PullConfig(
        url=s.url,
        agent_id="agent1",
        token=PULL_TOKEN,
        wait=1,
        poll_interval=0.05,
        retry_delay=0.05,
        concurrency=concurrency,
        drain_seconds=1,
    )
    client = PullClient(config, agent)
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        yield client
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


class Echo:
    """An echo handler that records which turns it ran."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    async def __call__(self, turn: Turn) -> str:
        self.runs.append(turn.id)
        return f"Echo: {turn.content}"


async def user_messages_only(s: Stack, conv: int = 1) -> bool:
    conversation = await s.bridge.store.find_conversation("chatwoot", f"1:{conv}")
    assert conversation is not None
    messages = await s.bridge.store.list_messages(conversation.id)
    return [m.direction for m in messages] == ["in"]


# ------------------------------------------------------------------------------ leases


async def test_a_lease_that_runs_out_is_offered_again_and_answered_once(sqlite_url: str) -> None:
    async with pull_stack(sqlite_url, pull_lease_seconds=0.5) as s:
        await s.say("hello", conv=1)
        [first] = await pull(s)  # this puller never answers
        echo = Echo()
        async with pulling_agent(s, echo):
            assert await s.wait_replies(1) == ["Echo: hello"]
            await s.idle()
        assert echo.runs == [first["turn"]["message_id"]]
        late = await answer(s, first, "too late")  # the first puller wakes up
        assert late.status_code == 404
        assert late.json()["error"]["code"] == "unknown_turn"
        await s.idle()
        assert s.replies() == ["Echo: hello"]


async def test_an_answer_under_an_expired_lease_is_refused_and_not_written(
    sqlite_url: str,
) -> None:
    async with pull_stack(sqlite_url, pull_lease_seconds=0.3) as s:
        await s.say("hello", conv=1)
        [item] = await pull(s)
        await wait_until(lambda: s.bridge.hub.pull.available("agent1") == 1)  # lease ran out
        r = await answer(s, item, "stale answer")
        assert r.status_code == 409
        assert r.headers["content-type"].startswith("application/json")
        error = r.json()["error"]
        assert error["code"] == "lease_expired" and item["turn"]["message_id"] in error["message"]
        assert s.bridge.hub.pull.answered("agent1") == 0
        assert await user_messages_only(s)

        [again] = await pull(s)  # offered again, same turn, new lease
        assert again["turn"]["message_id"] == item["turn"]["message_id"]
        assert again["lease_id"] != item["lease_id"]
        r = await answer(s, again, "fresh answer")
        assert (r.status_code, r.json()) == (200, {"status": "answered"})
        assert await s.wait_replies(1) == ["fresh answer"]
        await s.idle()
        assert s.replies() == ["fresh answer"]


# ------------------------------------------------------------------------------ two pollers


async def test_two_pollers_never_hold_the_same_turn(sqlite_url: str) -> None:
    conversations = 24
    async with pull_stack(sqlite_url) as s:
        leases: Counter[str] = Counter()
        taken: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}

        async def poller(name: str) -> None:
            while sum(leases.values()) < conversations:
                for item in await pull(s, wait=1, limit=3):
                    leases[item["turn"]["message_id"]] += 1
                    taken[name].append(item)

        pollers = asyncio.gather(poller("a"), poller("b"))  # both wait before any turn exists
        for conv in range(1, conversations + 1):
            await s.say(f"message {conv}", conv=conv)
        await asyncio.wait_for(pollers, 30)

        assert len(leases) == conversations and set(leases.values()) == {1}
        assert taken["a"] and taken["b"]
        for item in taken["a"] + taken["b"]:
            r = await answer(s, item, f"re: {item['turn']['content']}")
            assert r.status_code == 200, r.text
        await s.wait_replies(conversations)
        await s.idle()
        for conv in range(1, conversations + 1):
            assert s.replies(conv) == [f"re: message {conv}"]


async def test_two_sdk_pull_clients_share_the_work_without_overlap(sqlite_url: str) -> None:
    conversations = 16
    async with pull_stack(sqlite_url) as s:
        echo = Echo()  # one handler, two clients: a turn run twice would show twice
        async with pulling_agent(s, echo, concurrency=2), pulling_agent(s, echo, concurrency=2):
            for conv in range(1, conversations + 1):
                await s.say(f"message {conv}", conv=conv)
            await s.wait_replies(conversations, timeout=20)
            await s.idle()
        assert len(echo.runs) == conversations == len(set(echo.runs))
        for conv in range(1, conversations + 1):
            assert s.replies(conv) == [f"Echo: message {conv}"]


# ------------------------------------------------------------------------------ crash


async def test_a_puller_that_crashes_mid_turn_loses_nothing(sqlite_url: str) -> None:
    async with pull_stack(sqlite_url, pull_lease_seconds=0.5) as s:
        started = asyncio.Event()

        async def hangs(turn: Turn) -> str:
            started.set()
            await asyncio.Event().wait()
            return "never"

        config = PullConfig(url=s.url, agent_id="agent1", token=PULL_TOKEN, wait=1)
        crashing = asyncio.create_task(PullClient(config, hangs).run())
        await s.say("are you there?", conv=1)
        await asyncio.wait_for(started.wait(), 10)
        crashing.cancel()  # the agent dies holding the turn
        with suppress(asyncio.CancelledError):
            await crashing

        echo = Echo()
        async with pulling_agent(s, echo):
            assert await s.wait_replies(1) == ["Echo: are you there?"]
            await s.idle()
        assert len(echo.runs) == 1
        assert s.replies() == ["Echo: are you there?"]
        assert (await s.bridge.store.counts())["turns"] == {"done": 1}


# ------------------------------------------------------------------------------ replies


async def test_streamed_and_handoff_answers_over_pull(sqlite_url: str) -> None:
    async with pull_stack(sqlite_url) as s:
        agent: Agent = build_mock_agent("auto", agent_id="agent1")
        async with pulling_agent(s, agent):
            await s.say("please stream this", conv=1)
            await s.say("I want a human", conv=2)
            assert await s.wait_replies(1, conv=1) == ["Echo: please stream this"]
            assert await s.wait_replies(1, conv=2) == [HANDOFF_TEXT]
            await wait_until(lambda: "toggle_status" in s.actions(2))
            await s.idle()
        conversation = await s.bridge.store.find_conversation("chatwoot", "1:2")
        assert conversation is not None and conversation.owner == "human"


# ------------------------------------------------------------------------------ the command


@asynccontextmanager
async def pull_agent_process(env: dict[str, str], *args: str) -> AsyncIterator[Any]:
    """``chatbridge pull-agent`` as a child process; SIGTERM at the end must exit it cleanly."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatbridge",
        "pull-agent",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    log = err.decode(errors="replace")
    assert proc.returncode == 0, log
    assert "Traceback" not in log, log


async def test_the_pull_agent_command_answers_over_the_native_api(sqlite_url: str) -> None:
    async with pull_stack(sqlite_url) as s:
        env = {
            "WEB_CHAT_API_URL": s.url,
            "CHATBRIDGE_AGENT_ID": "agent1",
            "CHATBRIDGE_AGENT_TOKEN": PULL_TOKEN,
            "WEB_CHAT_POLL_INTERVAL": "0.2",
        }
        async with pull_agent_process(env, "--wait", "1", "--behaviour", "echo") as proc:
            await s.say("hello from the command", conv=1)
            await wait_until(lambda: s.replies() or proc.returncode is not None, timeout=30)
            assert s.replies() == ["Echo: hello from the command"]
            await s.idle()
        assert s.replies() == ["Echo: hello from the command"]


async def test_the_pull_agent_command_answers_over_the_action_api(sqlite_url: str) -> None:
    key = "compat-key-0123456"
    async with running_stack(
        sqlite_url,
        transport="ws-dial-in",
        web_chat_api_key=key,
        web_chat_admin_key="compat-admin-key-0123456",
        rate_limit_enabled=False,
    ) as s:

        async def say(text: str) -> None:
            body = {"session_id": "sess_pull_1", "message": text}
            r = await s.http.post("/api/v1/", params={"action": "messages"}, json=body)
            assert r.status_code == 200 and r.json()["success"], r.text

        async def responses() -> list[str]:
            params = {"action": "responses", "session_id": "sess_pull_1"}
            r = await s.http.get("/api/v1/", params=params)
            assert r.status_code == 200, r.text
            return [x["response"] for x in r.json()["data"]["responses"]]

        env = {"WEB_CHAT_API_URL": s.url, "WEB_CHAT_API_KEY": key, "WEB_CHAT_POLL_INTERVAL": "0.2"}
        async with pull_agent_process(env, "--api", "action") as proc:

            def answered(n: int) -> Any:
                async def check() -> bool:
                    assert proc.returncode is None, "pull-agent exited"
                    return len(await responses()) >= n

                return check

            await say("hello over the action API")
            await wait_until(answered(1), timeout=30)
            await say("and again")
            await wait_until(answered(2), timeout=30)
        assert await responses() == ["Echo: hello over the action API", "Echo: and again"]


async def test_a_poll_whose_client_hung_up_gives_its_turns_back(sqlite_url: str) -> None:
    async with pull_stack(sqlite_url, pull_lease_seconds=60) as s:
        broker = s.bridge.hub.pull
        released: list[str] = []
        release = broker.release

        def spy(offers: list[Any]) -> None:
            released.extend(o.key for o in offers)
            release(offers)

        broker.release = spy  # type: ignore[method-assign]
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as gone:
            dead = asyncio.create_task(
                gone.get("/api/agent/turns", params={"wait": 20}, headers=HEADERS)
            )
            # the poll is waiting in the broker (it looked for turns once) …
            await wait_until(lambda: broker.last_seen("agent1") is not None)
            dead.cancel()  # … when the agent restarts: its poll is cut off mid-wait
            with suppress(asyncio.CancelledError):
                await dead
        await s.say("hello")
        # the dead poll takes the turn when it comes, finds its client gone and gives it back
        await wait_until(lambda: released, timeout=30)
        # offered again at once: a poll that gives up after 10 s cannot outwait the dead
        # poll's 60 s lease, so getting the turn at all proves it was handed over
        [item] = await pull(s, wait=10)
        assert released == [item["turn"]["message_id"]]
        assert (await answer(s, item, "hi")).status_code == 200
        await s.wait_replies(1)
