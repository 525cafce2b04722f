"""What the container image runs, run here: images cannot be built on these machines.

The Dockerfile's final stage and compose.yaml's ``bridge`` service are read as data; their
command line (ENTRYPOINT + CMD) runs as a subprocess with the image's environment and the
service's, its host names moved to 127.0.0.1 (the suite's PostgreSQL, a private Redis), until
the image's HEALTHCHECK command passes; then it is stopped as ``docker stop`` does (SIGTERM).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatbridge.testing.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "compose-admin-key-0123456789"


def dockerfile_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's last stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), arguments.strip()))
    return stages[-1]


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) argument list; the image uses no shell form."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def image() -> dict[str, Any]:
    stage = dockerfile_stage()
    env: dict[str, str] = {}
    for instruction, arguments in stage:
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    found = {instruction: arguments for instruction, arguments in stage}
    health = found["HEALTHCHECK"]
    assert " CMD " in f" {health} "
    return {
        "env": env,
        "user": found["USER"],
        "command": exec_form(found["ENTRYPOINT"]) + exec_form(found["CMD"]),
        "health": exec_form(health.split(" CMD ", 1)[1]),
        "expose": found["EXPOSE"],
    }


def interpolate(value: str, given: dict[str, str]) -> str:
    """compose's ``${NAME:-default}`` and ``${NAME:?message}`` with ``given`` as the shell."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if given.get(name):
            return given[name]
        if op == ":?":
            raise AssertionError(f"compose requires {name}: {rest}")
        return rest or ""

    return re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", one, value)


def compose_bridge() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert set(compose["services"]) == {"bridge", "postgres", "redis"}
    bridge: dict[str, Any] = compose["services"]["bridge"]
    return bridge


def test_the_image_runs_as_a_user_and_installs_the_server_extra_only() -> None:
    built = image()
    assert built["user"] not in ("", "root", "0")
    assert built["expose"] == built["env"]["CHATBRIDGE_PORT"] == "8000"
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install [^\n&]*'(\.\[[^\]]*\])'", dockerfile)
    assert installs == [".[server]"]
    assert "-c constraints.txt" in dockerfile


def test_compose_starts_the_bridge_after_postgresql_and_redis() -> None:
    bridge = compose_bridge()
    assert bridge["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    env = bridge["environment"]
    assert env["CHATBRIDGE_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["CHATBRIDGE_REDIS_URL"].startswith("redis://redis:")
    with pytest.raises(AssertionError, match="compose requires CHATBRIDGE_ADMIN_KEY"):
        interpolate(env["CHATBRIDGE_ADMIN_KEY"], {})


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required in CI but not installed")
        pytest.skip("redis-server is not installed")
    async with RedisServer(workdir=tmp_path) as server:
        yield server.url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def healthy(command: list[str], env: dict[str, str], cwd: Path) -> bool:
    probe = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await asyncio.wait_for(probe.wait(), 30) == 0


async def test_the_image_command_serves_until_its_health_check_passes(
    tmp_path: Path, database_url_pg: str, redis_url: str
) -> None:
    built = image()
    bridge = compose_bridge()
    shell = {"CHATBRIDGE_ADMIN_KEY": ADMIN_KEY}
    service_env = {k: interpolate(str(v), shell) for k, v in bridge["environment"].items()}
    # the compose network's names, moved to this machine
    assert "@postgres:5432/" in service_env["CHATBRIDGE_DATABASE_URL"]
    service_env["CHATBRIDGE_DATABASE_URL"] = database_url_pg
    service_env["CHATBRIDGE_REDIS_URL"] = redis_url
    service_env["CHATBRIDGE_MEDIA_DIR"] = str(tmp_path / "media")
    port = free_port()
    env = {
        **{k: os.environ[k] for k in ("HOME", "LANG") if k in os.environ},
        **built["env"],
        **service_env,
        # the image's venv is this one; its 0.0.0.0 becomes loopback, on a free port
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "CHATBRIDGE_HOST": "127.0.0.1",
        "CHATBRIDGE_PORT": str(port),
    }
    assert built["command"] == ["chatbridge", "serve"]
    proc = await asyncio.create_subprocess_exec(
        *built["command"], env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = asyncio.get_running_loop().time() + 90
        while not await healthy(built["health"], env, tmp_path):
            assert proc.returncode is None, "the bridge exited before it was healthy"
            assert asyncio.get_running_loop().time() < deadline, "never healthy"
            await asyncio.sleep(0.2)  # poll interval of the probe, not a wait for an event
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = output.decode()
    # uvicorn ends a clean SIGTERM shutdown by re-raising the signal (docker's exit 143)
    assert proc.returncode in (0, -signal.SIGTERM), log
    # JSON log lines (the image's CHATBRIDGE_LOG_FORMAT), no traceback
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    messages = [r["message"] for r in records]
    assert "Application shutdown complete." in messages
    assert "Traceback" not in log
    # the compose file's empty Chatwoot settings are named, not silently kept as ""
    assert "warning: CHATWOOT_WEBHOOK_SECRET is empty and treated as unset" in log
