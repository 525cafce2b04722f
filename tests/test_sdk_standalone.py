"""The agent SDK stands alone: it imports and answers a turn without the server's packages.

An agent author installs ``chatbridge`` without extras (websockets, httpx, pydantic). Two
checks keep that true:

- here, in the normal suite: a fresh interpreter whose imports of the server's packages
  (FastAPI, SQLAlchemy, Redis, …) fail, as they would in such an install, imports every SDK
  module, answers a turn over a real WebSocket, and finds that the parts needing an extra
  say which one;
- ``scripts/test``: the same program (``python tests/test_sdk_standalone.py``) in a venv that
  really has the package installed without extras (``.venv-sdk``).

This module imports only the standard library, so it runs in that venv as a script.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

SDK = "chatbridge.agent"
# The ground floor the SDK stands on (tests/test_layers.py: the SDK imports nothing else).
GROUND = (
    "chatbridge",
    "chatbridge.errors",
    "chatbridge.clock",
    "chatbridge.ids",
    "chatbridge.logs",
    "chatbridge.backoff",
    "chatbridge.protocol",
    "chatbridge.models",
    "chatbridge.signing",
)
# SDK modules that need an extra, and the extra.
OPTIONAL = {"chatbridge.agent.webhook": "webhook"}
# Top-level packages of the ``server`` and ``webhook`` extras (import names).
SERVER_PACKAGES = frozenset(
    {
        "aiohttp",
        "aiosqlite",
        "alembic",
        "asyncpg",
        "fastapi",
        "httptools",
        "limits",
        "multipart",
        "phonenumbers",
        "prometheus_client",
        "pydantic_settings",
        "python_multipart",
        "redis",
        "rich",
        "sqlalchemy",
        "starlette",
        "typer",
        "uvicorn",
        "uvloop",
        "watchfiles",
    }
)
REPO = Path(__file__).resolve().parent.parent


class ServerPackagesBlocked(importlib.abc.MetaPathFinder):
    """Makes an import of a server package fail as in an install without the extras."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in SERVER_PACKAGES:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def sdk_modules() -> list[str]:
    """Every module of the SDK package, found on disk (nothing imported to find them)."""
    spec = importlib.util.find_spec(SDK)
    assert spec is not None and spec.submodule_search_locations is not None
    found = [SDK]

    def walk(paths: list[str], prefix: str) -> None:
        for info in pkgutil.iter_modules(paths, prefix):
            found.append(info.name)
            if info.ispkg:
                short = info.name.rpartition(".")[2]
                where = getattr(info.module_finder, "path", "")
                walk([os.path.join(where, short)], info.name + ".")

    walk(list(spec.submodule_search_locations), SDK + ".")
    return sorted(found)


def check_imports() -> list[str]:
    """Import the ground floor and every SDK module; return what went wrong."""
    problems = []
    for name in [*GROUND, *sdk_modules()]:
        if name in OPTIONAL:
            continue
        try:
            importlib.import_module(name)
        except Exception:
            problems.append(f"import {name} failed:\n{traceback.format_exc()}")
    loaded = sorted(m for m in sys.modules if m.partition(".")[0] in SERVER_PACKAGES)
    if loaded:
        problems.append(f"server packages were imported: {loaded}")
    return problems


def check_extras_named() -> list[str]:
    """The parts that need an extra fail with a message naming it, not a traceback."""
    from chatbridge.agent import Agent

    problems = []
    for name, extra in OPTIONAL.items():
        try:
            importlib.import_module(name)
        except ImportError:
            pass
        else:
            problems.append(f"{name} imported without the {extra} extra (is it installed?)")
    try:
        Agent("a1").webhook_app("secret")
    except ImportError as exc:
        if "chatbridge[webhook]" not in str(exc):
            problems.append(f"Agent.webhook_app: the message names no extra: {exc}")
    else:
        problems.append("Agent.webhook_app worked without the webhook extra")
    try:
        importlib.import_module("chatbridge.cli")
    except SystemExit as exc:
        if "pip install 'chatbridge[server]'" not in str(exc.code):
            problems.append(f"chatbridge.cli: the message names no extra: {exc.code}")
    else:
        problems.append("chatbridge.cli imported without the server extra")
    return problems


async def answer_one_turn() -> list[str]:
    """An SDK agent serves a WebSocket on 127.0.0.1 and answers a turn over it."""
    from websockets.asyncio.client import connect

    from chatbridge.agent import Agent, Turn

    agent = Agent("a1")

    @agent.on_message
    async def echo(turn: Turn) -> str:
        return f"Echo: {turn.content}"

    turn = {
        "type": "user_message",
        "protocol": "chatbridge/1",
        "message_id": "t_1",
        "seq": 1,
        "conversation_id": "c_1",
        "content": "hello",
    }
    async with agent.serving("127.0.0.1", 0) as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await ws.send(json.dumps(turn))
        async with asyncio.timeout(10):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] not in ("ack", "ping", "pong"):
                    break
    if frame.get("type") != "agent_message" or frame.get("content") != "Echo: hello":
        return [f"the agent answered {frame!r}"]
    return []


def main(block: bool) -> int:
    """Run every check; print the problems; 0 when there are none."""
    if block:
        sys.meta_path.insert(0, ServerPackagesBlocked())
    problems = check_imports()
    if not problems:
        problems = check_extras_named() + asyncio.run(answer_one_turn())
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        import chatbridge

        print(f"agent SDK ok without the server's packages ({chatbridge.__file__})")
    return 1 if problems else 0


def test_the_sdk_runs_without_the_server_packages() -> None:
    """Run ``main`` in a fresh interpreter with the server's packages blocked."""
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", __file__, "--block-server-packages"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "agent SDK ok" in done.stdout


def test_the_blocker_blocks() -> None:
    """The check above can fail: an SDK module importing a server package is caught."""
    program = (
        "import sys, test_sdk_standalone as t\n"
        "sys.meta_path.insert(0, t.ServerPackagesBlocked())\n"
        "try:\n"
        "    import chatbridge.agent.webhook\n"
        "except ModuleNotFoundError as exc:\n"
        "    print('blocked', exc.name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "blocked starlette", done.stderr


if __name__ == "__main__":
    sys.exit(main(block="--block-server-packages" in sys.argv[1:]))
