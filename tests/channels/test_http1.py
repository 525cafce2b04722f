"""Http1Pool against a scripted origin (a real TCP server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatbridge.channels.http1 import BadResponse, ConnectTimeout, Http1Pool
from tests.channels.scripted_origin import OK, Origin


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    async with Origin() as server:
        yield server


def pool_for(
    origin: Origin, *, timeout: float = 5.0, limit: int = 100, keepalive: float = 5.0
) -> Http1Pool:
    return Http1Pool(
        origin.url,
        headers={"Accept": "application/json", "X-Key": "k"},
        timeout=timeout,
        limit=limit,
        keepalive=keepalive,
    )


async def test_request_bytes_and_response(origin: Origin) -> None:
    pool = pool_for(origin)
    try:
        response = await pool.request("POST", "/things?x=1", b'{"a":"\xc3\xa9"}')
        fetched = await pool.request("GET", "/things/1")
    finally:
        await pool.aclose()

    port = origin.url.rsplit(":", 1)[1]
    assert origin.requests == [
        b"POST /things?x=1 HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{port}\r\n".encode()
        + b"Accept: application/json\r\nX-Key: k\r\nAccept-Encoding: identity\r\n"
        b'Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{"a":"\xc3\xa9"}',
        b"GET /things/1 HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{port}\r\n".encode()
        + b"Accept: application/json\r\nX-Key: k\r\nAccept-Encoding: identity\r\n\r\n",
    ]
    assert (response.status, response.body) == (200, b'{"id": 17}\n')
    assert response.header("content-type") == "application/json"
    assert response.header("Retry-After") is None
    assert fetched.status == 200


async def test_base_url_path_prefix_and_default_port() -> None:
    pool = Http1Pool("http://127.0.0.1/chat%20woot/", headers={}, timeout=1.0)
    assert pool._prefix == b"/chat%20woot"
    assert pool._fixed.startswith(b"Host: 127.0.0.1\r\n")
    await pool.aclose()


async def test_connections_are_reused(origin: Origin) -> None:
    pool = pool_for(origin)
    try:
        for _ in range(5):
            assert (await pool.request("GET", "/")).status == 200
    finally:
        await pool.aclose()
    assert (origin.connections, len(origin.requests)) == (1, 5)


async def test_no_more_connections_than_the_limit(origin: Origin) -> None:
    pool = pool_for(origin, limit=2)
    try:
        responses = await asyncio.gather(*(pool.request("GET", f"/{i}") for i in range(20)))
    finally:
        await pool.aclose()
    assert [r.status for r in responses] == [200] * 20
    assert origin.connections <= 2


async def test_a_connection_idle_too_long_is_not_reused(origin: Origin) -> None:
    pool = pool_for(origin, keepalive=0.0)
    try:
        for _ in range(3):
            await pool.request("GET", "/")
    finally:
        await pool.aclose()
    assert origin.connections == 3


async def test_connection_close_is_honoured() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with Origin(lambda _: closing) as origin:
        pool = pool_for(origin)
        try:
            for _ in range(2):
                assert (await pool.request("GET", "/")).body == b"ok"
        finally:
            await pool.aclose()
    assert origin.connections == 2


async def test_chunked_and_interim_responses() -> None:
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"id\r\n5\r\n":42}\r\n0\r\n\r\n'
    )
    async with Origin(lambda _: chunked) as origin:
        pool = pool_for(origin)
        try:
            first = await pool.request("POST", "/", b"{}")
            second = await pool.request("POST", "/", b"{}")
        finally:
            await pool.aclose()
    assert (first.status, first.body) == (201, b'{"id":42}')
    assert second.body == b'{"id":42}'
    assert origin.connections == 1


async def test_body_until_close() -> None:
    def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 3\r\n\r\nbusy, sorry")
        writer.close()

    async with Origin(lambda _: answer) as origin:
        pool = pool_for(origin)
        try:
            response = await pool.request("GET", "/")
        finally:
            await pool.aclose()
    assert (response.status, response.body) == (503, b"busy, sorry")
    assert response.header("retry-after") == "3"


async def test_cut_off_response_is_a_connection_error() -> None:
    def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        writer.close()

    async with Origin(lambda _: answer) as origin:
        pool = pool_for(origin)
        try:
            with pytest.raises(ConnectionError):
                await pool.request("GET", "/")
            # The closed connection is gone; the next request gets a new one (and fails
            # the same way, the origin being what it is).
            with pytest.raises(ConnectionError):
                await pool.request("GET", "/")
        finally:
            await pool.aclose()
    assert origin.connections == 2


async def test_garbage_is_a_bad_response() -> None:
    async with Origin(lambda _: b"SSH-2.0-OpenSSH_9.2\r\n\r\n") as origin:
        pool = pool_for(origin)
        try:
            with pytest.raises(BadResponse):
                await pool.request("GET", "/")
        finally:
            await pool.aclose()


async def test_unasked_bytes_drop_the_connection() -> None:
    async with Origin(lambda _: OK + OK) as origin:
        pool = pool_for(origin)
        try:
            assert (await pool.request("GET", "/")).status == 200
            assert (await pool.request("GET", "/")).status == 200
        finally:
            await pool.aclose()
    # the second response came unasked: that connection was not trusted again
    assert origin.connections == 2


async def test_timeout_drops_the_connection() -> None:
    async with Origin(lambda index: None if index == 0 else OK) as origin:
        pool = pool_for(origin, timeout=0.05)
        try:
            with pytest.raises(TimeoutError):
                await pool.request("POST", "/", b"{}")
            assert (await pool.request("POST", "/", b"{}")).status == 200
        finally:
            await pool.aclose()
    assert origin.connections == 2


async def test_waiting_for_a_connection_counts_in_the_timeout() -> None:
    async with Origin(lambda index: None if index == 0 else OK) as origin:
        pool = pool_for(origin, timeout=0.1, limit=1)
        try:
            # The hung request's own deadline is far later, so it still holds the only
            # connection when the waiting request's 0.1 s run out (with the same deadline it
            # would give its slot back first, and the waiting one could go through in time).
            hung = asyncio.create_task(pool.request("GET", "/hangs", timeout=0.5))
            await origin.arrived.wait()  # the only connection is taken
            with pytest.raises(ConnectTimeout):  # never written: the origin cannot have it
                await pool.request("GET", "/waits")
            assert not hung.done()
            with pytest.raises(TimeoutError) as waited:
                await hung
            assert not isinstance(waited.value, ConnectTimeout)  # written: it may have landed
            # Both slots came back: a request goes through.
            assert (await pool.request("GET", "/")).status == 200
        finally:
            await pool.aclose()


async def test_a_cancelled_request_frees_its_slot(origin: Origin) -> None:
    origin.answer = lambda index: None if index == 0 else OK
    pool = pool_for(origin, limit=1)
    try:
        hung = asyncio.create_task(pool.request("GET", "/hangs"))
        waiting = asyncio.create_task(pool.request("GET", "/waits"))
        await origin.arrived.wait()
        hung.cancel()
        assert (await waiting).status == 200
        with pytest.raises(asyncio.CancelledError):
            await hung
    finally:
        await pool.aclose()


async def test_refused() -> None:
    async with Origin() as origin:
        url = origin.url
    pool = Http1Pool(url, headers={}, timeout=5.0)
    try:
        with pytest.raises(OSError):
            await pool.request("GET", "/")
        assert pool._in_use == 0
    finally:
        await pool.aclose()


async def test_closed_pool(origin: Origin) -> None:
    pool = pool_for(origin)
    await pool.request("GET", "/")
    await pool.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await pool.request("GET", "/")


async def test_bad_base_url_and_headers() -> None:
    for url in ("", "ftp://example.com", "/relative", "http://"):
        with pytest.raises(ValueError):
            Http1Pool(url, headers={}, timeout=1.0)
    for headers in ({"X": "a\r\nInjected: 1"}, {"Bad:Name": "x"}, {"X": "nul\0"}):
        with pytest.raises(ValueError):
            Http1Pool("http://127.0.0.1", headers=headers, timeout=1.0)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_is_verified(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    origin = Origin()
    origin.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    origin.tls.load_cert_chain(cert, key)
    async with origin:
        # Not trusted: the handshake fails, an OSError like any connect failure.
        pool = Http1Pool(origin.url, headers={}, timeout=5.0)
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                await pool.request("GET", "/")
        finally:
            await pool.aclose()
        # Trusted through the default verify paths: it goes through, over one connection.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        pool = Http1Pool(origin.url, headers={}, timeout=5.0)
        try:
            for _ in range(3):
                assert (await pool.request("POST", "/", b"{}")).body == b'{"id": 17}\n'
        finally:
            await pool.aclose()
    assert origin.connections == 1  # the refused handshake never reached the handler


def test_on_uvloop() -> None:
    """``chatbridge serve`` runs on uvloop, whose transports are not asyncio's classes."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> int:
        async with Origin(lambda index: None if index == 2 else OK) as origin:
            pool = pool_for(origin, timeout=0.1)
            try:
                assert (await pool.request("POST", "/", b"{}")).body == b'{"id": 17}\n'
                assert (await pool.request("GET", "/")).status == 200
                with pytest.raises(TimeoutError):
                    await pool.request("GET", "/hangs")
                assert (await pool.request("GET", "/")).status == 200
            finally:
                await pool.aclose()
        return origin.connections

    assert uvloop.run(scenario()) == 2
