"""The SDK as its users meet it: typed (py.typed, typed ``Turn`` fields), a start-up line, and
one clear line — no traceback, no retrying for ever — when the bridge refuses the agent."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from chatbridge.agent import Agent, ChannelContext, HelloRejected, SenderInfo, Turn
from chatbridge.protocol import UserMessage, parse_bridge_frame
from tests.agent.sdk_helpers import FakeBridge, recv

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_ships_py_typed() -> None:
    assert resources.files("chatbridge").joinpath("py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    package_data = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("]", 1)[0]
    assert '"py.typed"' in package_data  # so a built wheel has it too


def test_turn_sender_and_context_are_typed_dicts_not_any() -> None:
    hints = typing.get_type_hints(Turn)
    assert hints["sender"] == SenderInfo | None
    assert hints["context"] == ChannelContext | None
    assert typing.get_type_hints(SenderInfo) == {
        "id": str | None,
        "name": str | None,
        "email": str | None,
        "phone": str | None,
    }
    assert {"channel", "external_conversation_id", "additional_attributes"} <= set(
        typing.get_type_hints(ChannelContext)
    )


def test_a_turn_carries_sender_context_and_traceparent_from_the_frame() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    raw = {
        "type": "user_message",
        "message_id": "t_1",
        "conversation_id": "c_1",
        "content": "hi",
        "sender": {"id": 42, "name": "Ann", "email": None, "phone": "+33", "vip": True},
        "context": {"channel": "web_widget", "external_conversation_id": "9"},
        "traceparent": traceparent,
    }
    message = parse_bridge_frame(raw)
    assert isinstance(message, UserMessage)
    turn = Turn.from_message(message, raw)
    assert turn.sender is not None and turn.sender["id"] == "42" and turn.sender["name"] == "Ann"
    assert turn.sender.get("vip") is True  # type: ignore[typeddict-item]  # a channel's own key
    assert turn.context is not None and turn.context["channel"] == "web_widget"
    assert turn.traceparent == traceparent


def test_a_type_checker_sees_the_sdk_types(tmp_path: Path) -> None:
    """What an agent author's mypy says of the installed SDK (the package copied onto the
    interpreter's path, as an installed one is: mypy reads it only for its py.typed): a
    typo in a sender key is an error."""
    site = tmp_path / "site"
    shutil.copytree(
        ROOT / "chatbridge", site / "chatbridge", ignore=shutil.ignore_patterns("__pycache__")
    )
    user = tmp_path / "my_agent.py"
    user.write_text(
        textwrap.dedent(
            """
            from chatbridge.agent import Turn

            def name(turn: Turn) -> str:
                assert turn.sender is not None
                reveal_type(turn.sender)
                return turn.sender["nmae"] or ""
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(user)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        timeout=300,
    )
    assert "SenderInfo" in run.stdout, run.stdout
    assert 'TypedDict "SenderInfo" has no key "nmae"' in run.stdout, run.stdout


async def test_dialing_in_logs_a_start_up_line(
    fake_bridge: FakeBridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatbridge.agent")
    agent = Agent("support-bot")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.dial_in(fake_bridge.url, "secret", stop=stop))
    await fake_bridge.accept()
    try:
        await asyncio.wait_for(_logged(caplog, "connected to"), 5)
    finally:
        stop.set()
        await task
    lines = [r.getMessage() for r in caplog.records if "connected to" in r.getMessage()]
    assert lines[0].startswith(f"connected to {fake_bridge.url} as agent support-bot")


async def test_serving_logs_where_it_listens(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chatbridge.agent")
    agent = Agent("support-bot")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.serve("127.0.0.1", 0, stop=stop))
    try:
        await asyncio.wait_for(_logged(caplog, "listening on"), 5)
    finally:
        stop.set()
        await task
    [line] = [r.getMessage() for r in caplog.records if "listening on" in r.getMessage()]
    assert line.startswith("listening on ws://127.0.0.1:") and line.endswith("as agent support-bot")


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    while not any(text in r.getMessage() for r in caplog.records):
        await asyncio.sleep(0.01)


# -- refusals: one line, no retries ---------------------------------------------------------------


@asynccontextmanager
async def answering(status: int) -> AsyncIterator[str]:
    """A server answering every WebSocket upgrade with HTTP ``status``."""

    def refuse(_ws: ServerConnection, _request: Request) -> Response:
        body = json.dumps({"detail": "nope"}).encode()
        return Response(status, "Refused", Headers([("Content-Type", "application/json")]), body)

    async def handler(ws: ServerConnection) -> None:  # never reached
        await ws.close()

    async with serve(handler, "127.0.0.1", 0, process_request=refuse) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/wrong/path"


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        (404, "not_found", "/api/ws/agent"),
        (403, "forbidden", "/api/ws/agent"),
        (401, "unauthorized", "token"),
    ],
)
async def test_an_http_refusal_of_the_upgrade_stops_dialing(
    status: int, code: str, hint: str
) -> None:
    agent = Agent("a1", reconnect_initial_delay=0.01, reconnect_max_delay=0.02)
    async with answering(status) as url:
        with pytest.raises(HelloRejected) as info:
            await asyncio.wait_for(agent.dial_in(url, "secret"), 10)
    assert info.value.code == code
    message = str(info.value)
    assert "\n" not in message and hint in message and f"HTTP {status}" in message


async def test_a_policy_close_during_the_handshake_stops_dialing(fake_bridge: FakeBridge) -> None:
    agent = Agent("a1", reconnect_initial_delay=0.01, reconnect_max_delay=0.02)
    task = asyncio.create_task(agent.dial_in(fake_bridge.url, "bad"))
    ws = await fake_bridge.connections.get()
    await recv(ws)
    await ws.close(1008, "too many failed authentications")
    with pytest.raises(HelloRejected) as info:
        await asyncio.wait_for(task, 10)
    assert "too many failed authentications" in str(info.value)


REFUSING_BRIDGE = """
import asyncio, json, sys
from websockets.asyncio.server import serve

async def handler(ws):
    await ws.recv()
    await ws.send(json.dumps({"type": "hello_error", "error_code": "unauthorized",
                              "message": "unknown agent or bad token"}))
    await ws.close(1008, "unauthorized")

async def main():
    async with serve(handler, "127.0.0.1", 0) as server:
        print(next(iter(server.sockets)).getsockname()[1], flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""

AGENT = """
import sys
from chatbridge.agent import Agent
agent = Agent("support-bot")

@agent.on_message
def answer(turn):
    return turn.content

agent.run(dial_in=sys.argv[1], token="wrong")
"""


def test_a_refused_token_ends_agent_run_with_one_line(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", REFUSING_BRIDGE], stdout=subprocess.PIPE, text=True
    ) as bridge:
        try:
            assert bridge.stdout is not None
            port = int(bridge.stdout.readline())
            run = subprocess.run(
                [sys.executable, "-c", AGENT, f"ws://127.0.0.1:{port}/api/ws/agent"],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=ROOT,
            )
        finally:
            bridge.kill()
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and "ExceptionGroup" not in run.stderr, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last == (
        "agent support-bot: bridge refused the agent (unauthorized): unknown agent or bad token"
    )


async def test_a_wrong_path_on_a_real_bridge_is_one_clear_refusal(sqlite_url: str) -> None:
    from tests.e2e.harness import running_stack

    async with running_stack(sqlite_url, transport="ws-dial-in") as stack:
        agent = Agent("agent1", reconnect_initial_delay=0.01, reconnect_max_delay=0.02)
        wrong = stack.ws_url.replace("/api/ws/agent", "/ws/agent")
        with pytest.raises(HelloRejected) as info:
            await asyncio.wait_for(agent.dial_in(wrong, "a-token-of-16-chars"), 10)
    message = str(info.value)
    assert "\n" not in message and "/api/ws/agent" in message, message
