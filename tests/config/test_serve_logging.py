"""``serve --log-level`` and ``--access-log``, on the real command line."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve_and_get_health(tmp_path: Path, *flags: str) -> str:
    """The log of a ``chatbridge serve`` that answered one ``GET /health``."""
    port = free_port()
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env["CHATBRIDGE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/bridge.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatbridge", "serve", "--port", str(port), *flags,
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = asyncio.get_running_loop().time() + 90
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                assert proc.returncode is None, "serve exited"
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/health")
                    break
                except httpx.TransportError:
                    assert asyncio.get_running_loop().time() < deadline, "serve never answered"
                    await asyncio.sleep(0.1)  # poll interval while the port opens
        assert response.status_code == 200
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return output.decode()


async def test_access_log_on_and_log_level_warning(tmp_path: Path) -> None:
    log = await serve_and_get_health(tmp_path, "--access-log", "--log-level", "warning")
    assert '"GET /health HTTP/1.1" 200' in log
    assert "INFO    uvicorn.access:" in log
    assert "bridge started" not in log  # INFO of the bridge's own loggers: below the level


async def test_access_log_is_off_by_default(tmp_path: Path) -> None:
    log = await serve_and_get_health(tmp_path)
    assert "bridge started" in log
    assert "GET /health" not in log
