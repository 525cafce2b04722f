"""The server's edge over real TCP sockets: oversized bodies get their 413 on the wire, huge or
slow request heads are cut off without stalling anyone else, trickled bodies time out, bad
JSON anywhere is a 4xx, bad widget frames get an error frame, and pending widget sockets are
capped. The server is configured as ``chatbridge serve`` configures it (``uvicorn_options``).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import pytest
import websockets
from fastapi import FastAPI

from chatbridge.api import create_app
from chatbridge.api.edge import uvicorn_options
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.testing.servers import serve_app
from tests.e2e.drain import within
from tests.e2e.harness import running_stack

MiB = 1024 * 1024


@asynccontextmanager
async def bridge(tmp_path: Any, **settings: Any) -> AsyncIterator[str]:
    """A bridge on a real socket, with the edge limits of ``chatbridge serve``."""
    async with bridge_app(tmp_path, **settings) as (url, _app):
        yield url


@asynccontextmanager
async def bridge_app(tmp_path: Any, **settings: Any) -> AsyncIterator[tuple[str, FastAPI]]:
    """The bridge's URL and app; web chat inbox 1 is routed to a (never connected) agent."""
    route = InboxMapping(channel="webchat", inbox_id=1, agent_config=AgentConfig(agent_id="a"))
    config = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/edge.db",
        instance_id="edge",
        inbox_agent_mappings=[route],
        **settings,
    )
    app = create_app(config)
    async with serve_app(app) as url:
        yield url, app


def webhook_body(size: int) -> bytes:
    return b'{"event":"message_created","content":"' + b"x" * size + b'"}'


async def raw_request(url: str, head: bytes, body: bytes = b"") -> bytes:
    """Send bytes as they are; return what the server answered (b"" if it reset)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + body)
        await writer.drain()
        return await reader.read(65536)
    except (ConnectionResetError, BrokenPipeError):
        return b""
    finally:
        writer.close()


# ------------------------------------------------------------------ 413 on the wire


@pytest.mark.parametrize("connection", ["close", "keep-alive"])
async def test_a_5_mib_webhook_gets_its_413_over_httpx(tmp_path: Any, connection: str) -> None:
    async with bridge(tmp_path) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(3):
            r = await client.post(
                "/webhook/chatwoot",
                content=webhook_body(5 * MiB),
                headers={"Content-Type": "application/json", "Connection": connection},
            )
            assert r.status_code == 413
            assert r.json()["error"]["code"] == "payload_too_large"
        assert (await client.get("/health")).status_code == 200


async def test_a_5_mib_streamed_webhook_gets_its_413_over_aiohttp(tmp_path: Any) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for _ in range(5):
            yield b"x" * MiB

    async with bridge(tmp_path) as url, aiohttp.ClientSession() as session:
        for data in (io.BytesIO(webhook_body(5 * MiB)), chunks()):
            async with session.post(
                f"{url}/webhook/chatwoot",
                data=data,
                headers={"Content-Type": "application/json", "Connection": "close"},
            ) as r:
                assert r.status == 413
                assert (await r.json())["error"]["code"] == "payload_too_large"


async def test_a_body_past_the_discard_bound_does_not_hang_the_client(tmp_path: Any) -> None:
    async with bridge(tmp_path, body_discard_bytes=MiB) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            try:
                # a hang would outlast this wait (and the client's own 60 s)
                r = await within(
                    30,
                    client.post(
                        "/webhook/chatwoot",
                        content=webhook_body(40 * MiB),
                        headers={"Content-Type": "application/json"},
                    ),
                )
                assert r.status_code == 413
            except httpx.TransportError as exc:
                # refused before the client finished sending: a reset, not a hang
                assert not isinstance(exc, httpx.TimeoutException), exc
            assert (await client.get("/health")).status_code == 200


# ------------------------------------------------------------------ request heads


async def test_a_64_mib_header_is_refused_quickly_and_health_stays_fast(tmp_path: Any) -> None:
    async with bridge(tmp_path) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        refused = False
        sent = 0
        try:
            while sent < 64 * MiB:
                writer.write(b"a" * MiB)
                await writer.drain()
                sent += MiB
                if sent % (8 * MiB) == 0:  # the server still answers others meanwhile
                    assert (await client.get("/health")).status_code == 200
        except (ConnectionResetError, BrokenPipeError):
            refused = True
        if not refused:
            answer = await within(30, reader.read(65536))
            refused = answer.startswith(b"HTTP/1.1 431") or answer == b""
        writer.close()
        # the byte count is the check; how fast /health stays meanwhile is a benchmark's
        assert refused and sent < 64 * MiB, f"server read {sent} bytes of header"
        assert (await client.get("/health")).status_code == 200


async def test_a_header_over_the_limit_gets_431(tmp_path: Any) -> None:
    async with bridge(tmp_path, max_header_bytes=8192) as url:
        ok = await raw_request(
            url, b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 4000 + b"\r\n\r\n"
        )
        assert ok.startswith(b"HTTP/1.1 200")
        big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 40_000 + b"\r\n\r\n"
        answer = await raw_request(url, big)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431")


async def test_a_silent_or_trickling_head_is_cut_off(tmp_path: Any) -> None:
    async with bridge(tmp_path, header_timeout_seconds=0.5) as url:
        host, port = url.removeprefix("http://").split(":")
        silent = await asyncio.open_connection(host, int(port))
        trickle = await asyncio.open_connection(host, int(port))
        trickle[1].write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        # neither would ever end on its own: ending at all is the server's cut-off
        assert await within(30, silent[0].read()) == b""  # closed, nothing to say
        answer = await within(30, trickle[0].read())
        assert answer.startswith(b"HTTP/1.1 408")
        for _, writer in (silent, trickle):
            writer.close()
        # a normal request on a fresh connection is not affected
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/health")).status_code == 200


async def test_a_trickled_body_times_out_with_408(tmp_path: Any) -> None:
    async with bridge(tmp_path, body_timeout_seconds=0.5) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /webhook/chatwoot HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        answer = await within(30, reader.read(65536))  # the body never comes: cut off
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408")
        assert b'"code":"request_timeout"' in answer


def test_serve_sets_the_limits_on_uvicorn() -> None:
    options = uvicorn_options(Settings())
    assert options["limit_concurrency"] == 2000 and options["timeout_keep_alive"] == 5
    assert options["h11_max_incomplete_event_size"] == 64 * 1024
    assert options["http"].max_header_bytes == 64 * 1024
    assert options["proxy_headers"] is False and options["forwarded_allow_ips"] == "127.0.0.1"


# ------------------------------------------------------------------ JSON too deep


async def test_json_nested_100000_deep_is_a_4xx_everywhere(sqlite_url: str) -> None:
    deep = b"[" * 100_000
    async with running_stack(sqlite_url, webchat=True) as s:
        for path in (
            "/console/login",
            "/api/agent/turns/t_1/reply",
            "/webhook/chatwoot",
            "/api/webchat/sessions",
            "/routes",
        ):
            r = await s.http.post(path, content=deep, headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])
            assert "error" in r.json(), path


# ------------------------------------------------------------------ widget socket


async def test_bad_widget_frames_get_an_error_frame_and_the_socket_stays(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, webchat=True, delay=0) as s:
        sid = (await s.http.post("/api/webchat/sessions", json={"inbox_id": 1})).json()[
            "session_id"
        ]
        url = s.url.replace("http://", "ws://") + f"/api/ws/chat/{sid}"
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["type"] == "session"
            for bad, code in (
                ("[" * 100_000, "invalid_json"),
                ("not json", "invalid_json"),
                ("[1, 2]", "invalid_frame"),
                (b"\x00\x01", "invalid_frame"),
                (json.dumps({"type": "user_message", "content": {"x": 1}}), "invalid_message"),
            ):
                await ws.send(bad)
                frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert frame["type"] == "error" and frame["code"] == code, (bad[:20], frame)
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"


async def test_pending_widget_sockets_are_capped(tmp_path: Any) -> None:
    async with bridge_app(tmp_path, webchat_max_pending_sockets=2) as (url, app):
        async with httpx.AsyncClient(base_url=url) as client:
            r = await client.post("/api/webchat/sessions", json={"inbox_id": 1})
            sid = r.json()["session_id"]
        ws_url = url.replace("http://", "ws://") + f"/api/ws/chat/{sid}"
        gate = app.state.webchat_pending
        gate.count = gate.limit  # as if two strangers' sockets were still being set up
        async with websockets.connect(ws_url) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        gate.count = 0
        async with websockets.connect(ws_url) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "session"
            assert gate.count == 0  # established: no longer pending


async def test_agent_sockets_before_hello_are_capped(tmp_path: Any) -> None:
    """Anyone may open ``/api/ws/agent``: sockets that have not said hello yet are capped, so
    strangers cannot hold thousands of them open; a socket past its hello is not counted."""
    async with bridge_app(tmp_path, agent_max_pending_sockets=2) as (url, app):
        ws_url = url.replace("http://", "ws://") + "/api/ws/agent"
        gate = app.state.agent_pending
        async with websockets.connect(ws_url), websockets.connect(ws_url):
            await wait_for_count(gate, 2)
            async with websockets.connect(ws_url) as third:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(third.recv(), 5)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        await wait_for_count(gate, 0)  # the two strangers went away: freed
        async with websockets.connect(ws_url) as ws:
            await ws.send(json.dumps({"type": "hello", "agent_id": "a", "token": "x" * 20}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["type"] == "hello_error"  # refused on its token, not by the cap
        assert gate.count == 0


async def wait_for_count(gate: Any, count: int) -> None:
    for _ in range(500):
        if gate.count == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"pending sockets {gate.count}, expected {count}")
