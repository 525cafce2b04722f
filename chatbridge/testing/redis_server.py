"""``RedisServer``: a private ``redis-server`` on a free loopback port (no persistence), that
can be stopped, SIGKILLed and started again on the same port."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from chatbridge.testing.processes import ChildProcess, child_env, restartable_ports, sigkill

__all__ = ["RedisServer"]


class RedisServer:
    """A private ``redis-server`` child on ``127.0.0.1`` (no RDB snapshots, no AOF).

    Args:
        port: the port to listen on; a free one (``restartable_ports``) by default. It stays
            the same across ``restart()``, so clients configured with ``url`` reconnect to
            the new server.
        workdir: where its log (``redis-<port>.log``) goes and its working directory; the
            system's temporary folder by default.
        executable: the server binary, looked up on ``PATH``.
        start_timeout: seconds to wait for the first ``PING`` answer.

    Raises (from ``start()``):
        FileNotFoundError: ``redis-server`` is not installed.
        RuntimeError: it exited or did not answer ``PING`` in time (the log's tail says why).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        workdir: Path | None = None,
        executable: str = "redis-server",
        start_timeout: float = 10.0,
    ) -> None:
        self.port = port or restartable_ports(1)[0]
        self.workdir = workdir or Path(tempfile.gettempdir())
        self.executable = executable
        self.start_timeout = start_timeout
        self.starts = 0
        self._child: ChildProcess | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    @property
    def log_path(self) -> Path:
        return self.workdir / f"redis-{self.port}.log"

    async def start(self) -> None:
        """Start the server (no-op if it runs) and wait until it answers ``PING``."""
        if self.running:
            return
        binary = shutil.which(self.executable)
        if binary is None:
            raise FileNotFoundError(f"{self.executable} is not installed (not on PATH)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        child = ChildProcess(
            "redis-server", [], env=child_env({}), cwd=self.workdir, log_path=self.log_path
        )
        child.argv = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        self._child = child
        self.starts += 1
        await child.start()
        try:
            await child.wait_until(self.ping, timeout=self.start_timeout, what="PING")
        except BaseException:
            await sigkill(child)
            raise

    async def ping(self) -> bool:
        """Whether the server answers ``PING`` now."""
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=0.5, socket_timeout=0.5, retry_on_timeout=False
        )
        try:
            return bool(await client.ping())
        except Exception:
            return False
        finally:
            await client.aclose()

    async def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (then SIGKILL after 5 s), or SIGKILL at once with ``kill``."""
        if self._child is None:
            return
        if kill:
            await sigkill(self._child)
        else:
            await self._child.stop(timeout=5.0)

    async def kill(self) -> None:
        """SIGKILL the server (a crash: every client connection breaks at once)."""
        await self.stop(kill=True)

    async def restart(self, down_for: float = 0.0, *, kill: bool = True) -> None:
        """Take the server down (SIGKILL by default), stay down ``down_for`` seconds, start
        it again on the same port and wait until it answers. The new server is empty."""
        await self.stop(kill=kill)
        if down_for > 0:
            await asyncio.sleep(down_for)
        await self.start()

    def tail(self, lines: int = 30) -> str:
        return self._child.tail(lines) if self._child is not None else "(not started)"

    async def __aenter__(self) -> RedisServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
