"""Run ASGI apps on real loopback sockets inside the current event loop (tests, demo, bench)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host program."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP; without it every kept-alive response stalls ~40 ms (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


@contextlib.asynccontextmanager
async def serve_app(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, **config: Any
) -> AsyncIterator[str]:
    """Serve ``app`` until the block ends; yields its base URL (``http://127.0.0.1:PORT``).

    A bridge app is served with the limits ``chatbridge serve`` sets (``uvicorn_options``),
    so tests meet the same edge as production; ``config`` overrides any of them.
    """
    bridge = getattr(getattr(app, "state", None), "bridge", None)
    if bridge is not None:
        from chatbridge.api.edge import uvicorn_options

        config = {**uvicorn_options(bridge.settings), **config}
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    server = EmbeddedServer(uvicorn.Config(app, log_config=None, lifespan="on", **config))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # re-raise the start-up error
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.005)
        yield f"http://{host}:{bound}"
    finally:
        if bridge is not None:  # end long-polls first (as ``chatbridge serve`` does)
            with contextlib.suppress(Exception):
                await bridge.begin_shutdown()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()
