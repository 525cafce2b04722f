"""``chatbridge serve --fd N``: serving on a listening socket the parent bound and keeps.

What systemd socket activation does, and what the crash test relies on: the address stays the
bridge's across a restart (nobody else can bind it in between), and a client connecting while
no bridge process runs waits in the socket's queue and is answered by the next one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from chatbridge.cli import app
from chatbridge.testing.servers import bind_socket


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHATBRIDGE_", "CHATWOOT_", "INBOX_AGENT"))
    }
    env["CHATBRIDGE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/s.db"
    env.update(extra)
    return env


def _serve(tmp_path: Path, fd: int, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "chatbridge", "serve", "--fd", str(fd), *args],
        cwd=tmp_path,
        env=_env(tmp_path, **env),
        pass_fds=(fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _refused(fd: int, *args: str) -> str:
    """Run ``serve --fd`` in this process, expecting it to refuse to start (before anything is
    served); returns what it said."""
    result = CliRunner().invoke(app, ["serve", "--fd", str(fd), *args])
    assert result.exit_code == 2, result.output
    return result.output


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Chatbridge or Chatwoot settings from the developer's environment or a ``.env``."""
    for name in os.environ:
        if name.startswith(("CHATBRIDGE_", "CHATWOOT_", "INBOX_AGENT")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATBRIDGE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/s.db")


def _get(port: int, path: str) -> httpx.Response:
    """GET ``path``, waiting (bounded) for a process to answer on the socket."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise


def test_a_connection_made_between_two_bridges_is_answered_by_the_second(
    tmp_path: Path,
) -> None:
    listener = bind_socket()
    listener.listen(16)
    port = int(listener.getsockname()[1])
    fd = listener.fileno()
    first = second = None
    try:
        first = _serve(tmp_path, fd)
        assert _get(port, "/ready").status_code == 200
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # no bridge runs: the connection is queued, not refused, and the request waits in it
        with socket.create_connection(("127.0.0.1", port), timeout=60) as waiting:
            waiting.sendall(b"GET /health HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n\r\n")
            second = _serve(tmp_path, fd)
            answer = b""
            while chunk := waiting.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        listener.close()


@pytest.mark.usefixtures("clean_env")
def test_serve_fd_refuses_what_is_not_a_bound_tcp_socket() -> None:
    read_end, write_end = os.pipe()
    try:
        assert "not an open socket" in _refused(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        assert "not a bound TCP socket" in _refused(udp.fileno())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as unbound:
        assert "not a bound TCP socket" in _refused(unbound.fileno())
    with bind_socket() as tcp:
        assert "give one or the other" in _refused(tcp.fileno(), "--port", "8000")


@pytest.mark.usefixtures("clean_env")
def test_serve_fd_checks_the_sockets_address_for_open_webhooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket bound to a public address counts as a public bind: unsigned Chatwoot
    webhooks make ``serve`` refuse to start, as with ``--host 0.0.0.0``."""
    monkeypatch.setenv("CHATWOOT_API_ACCESS_TOKEN", "bot-token")
    # were it to start serving anyway, its start-up fails at once (no such folder): no hang
    monkeypatch.setenv("CHATBRIDGE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/none/s.db")
    with bind_socket("0.0.0.0") as public:
        said = _refused(public.fileno())
    assert "refusing to serve on 0.0.0.0" in said


def test_a_bad_channel_setting_is_named_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a channel's own settings (here the http channel's) are checked with the bridge's, and a
    # bad one is named in one line, as a bad CHATBRIDGE_* setting is: exit 2, no traceback
    monkeypatch.setenv(
        "CHATBRIDGE_HTTP_INBOXES",
        '{"7": {"secret": "short", "callback_url": "http://127.0.0.1:9/replies"}}',
    )
    monkeypatch.setenv("CHATBRIDGE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/none/s.db")
    result = CliRunner().invoke(app, ["serve", "--port", "9"])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        "CHATBRIDGE_HTTP_INBOXES.7.secret: String should have at least 16 characters"
    ]
    assert "Traceback" not in result.output
