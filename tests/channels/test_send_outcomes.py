"""Whether a failed send may have reached the channel (``RetryableDelivery.outcome_unknown``),
for the generic http channel and the WhatsApp gateways, against scripted origins on 127.0.0.1.

A timeout on the answer or a connection dropped before it: the request was written, so the
channel may have the message (True, the retry asks ``already_sent`` / waits for the echo
first). A refused connection or an error answer (429, 5xx): a known non-delivery (False).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from chatbridge.channels.http import HttpChannel, HttpInbox
from chatbridge.channels.whatsapp import WhatsAppChannel
from chatbridge.errors import PermanentDelivery, RetryableDelivery
from chatbridge.models import ConversationRef, OutboundAction
from tests.channels.scripted_origin import Answer, Origin
from tests.channels.whatsapp.rig import gateways_at
from tests.e2e.drain import within

SECRET = "an-inbox-secret-0123456789"
WAHA = "waha:default:919876543210@c.us"
EVO = "evolution:shop:919876543210@s.whatsapp.net"
META = "meta_cloud:106540352242922:919876543210"


def hang(_: int) -> Answer:
    """Read the request and never answer it."""
    return None


def drop(_: int) -> Answer:
    """Close the connection once the request has arrived, without a response."""
    return lambda writer: writer.close()


def status(code: int, *, retry_after: str | None = None) -> Callable[[int], Answer]:
    body = b'{"error":"no"}'
    extra = f"Retry-After: {retry_after}\r\n" if retry_after else ""
    head = (
        f"HTTP/1.1 {code} Whatever\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return lambda _: head.encode() + body


def closed_port() -> int:
    """A port with nothing listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- http channel


def http_action() -> OutboundAction:
    conversation = ConversationRef(id="conv-1", channel="http", channel_key="7:c1", inbox_id=7)
    return OutboundAction("message", conversation, idempotency_key="d-1", text="hello")


async def http_send(base_url: str) -> BaseException:
    """The error ``HttpChannel.send`` raised against ``base_url`` (it must raise)."""
    channel = HttpChannel({7: HttpInbox(secret=SECRET, callback_url=f"{base_url}/cb")}, timeout=0.3)
    try:
        with pytest.raises((RetryableDelivery, PermanentDelivery)) as caught:
            await within(10, channel.send(http_action()))
    finally:
        await channel.aclose()
    return caught.value


@pytest.mark.parametrize(("answer", "words"), [(hang, "timed out"), (drop, "cannot reach")])
async def test_http_no_answer_to_a_written_request_may_have_landed(
    answer: Callable[[int], Answer], words: str
) -> None:
    async with Origin(answer) as origin:
        error = await http_send(origin.url)
    assert isinstance(error, RetryableDelivery)
    assert words in str(error)
    assert error.outcome_unknown is True
    assert len(origin.requests) == 1  # the request was there: the app may have acted on it


async def test_http_refused_connection_did_not_land() -> None:
    error = await http_send(f"http://127.0.0.1:{closed_port()}")
    assert isinstance(error, RetryableDelivery)
    assert "cannot reach" in str(error)
    assert error.outcome_unknown is False


@pytest.mark.parametrize(("code", "wait"), [(503, 3.0), (429, 3.0), (500, None), (408, None)])
async def test_http_an_error_answer_is_a_known_non_delivery(code: int, wait: float | None) -> None:
    retry_after = None if wait is None else "3"
    async with Origin(status(code, retry_after=retry_after)) as origin:
        error = await http_send(origin.url)
    assert isinstance(error, RetryableDelivery)
    assert f"HTTP {code}" in str(error)
    assert error.outcome_unknown is False
    assert error.retry_after == wait


@pytest.mark.parametrize("code", [400, 401, 404, 409, 422])
async def test_http_another_4xx_is_permanent(code: int) -> None:
    async with Origin(status(code)) as origin:
        error = await http_send(origin.url)
    assert isinstance(error, PermanentDelivery)
    assert not isinstance(error, RetryableDelivery)
    assert f"HTTP {code}" in str(error)


# --------------------------------------------------------------------------- WhatsApp


def wa_action(key: str) -> OutboundAction:
    conversation = ConversationRef(id="c_1", channel="whatsapp", channel_key=key, inbox_id=1)
    return OutboundAction("message", conversation, idempotency_key="k1", text="Hi")


@asynccontextmanager
async def gateway(base_url: str) -> AsyncIterator[WhatsAppChannel]:
    """A WhatsApp channel whose three gateways are all at ``base_url``."""
    settings = gateways_at(base_url)
    channel = WhatsAppChannel(lambda: settings, timeout=0.3)
    try:
        yield channel
    finally:
        await channel.aclose()


async def wa_send(base_url: str, key: str) -> BaseException:
    """The error ``WhatsAppChannel.send`` raised for conversation ``key`` (it must raise)."""
    async with gateway(base_url) as channel:
        with pytest.raises((RetryableDelivery, PermanentDelivery)) as caught:
            await within(10, channel.send(wa_action(key)))
    return caught.value


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(WAHA, id="waha"),
        pytest.param(EVO, id="evolution"),
        pytest.param(META, id="meta"),
    ],
)
@pytest.mark.parametrize(("answer", "words"), [(hang, "timed out"), (drop, "cannot reach")])
async def test_whatsapp_no_answer_to_a_written_request_may_have_landed(
    answer: Callable[[int], Answer], words: str, key: str
) -> None:
    async with Origin(answer) as origin:
        error = await wa_send(origin.url, key)
    assert isinstance(error, RetryableDelivery)
    assert words in str(error)
    assert error.outcome_unknown is True
    assert len(origin.requests) == 1  # the gateway had the request and may have sent it


async def test_whatsapp_refused_connection_did_not_land() -> None:
    error = await wa_send(f"http://127.0.0.1:{closed_port()}", WAHA)
    assert isinstance(error, RetryableDelivery)
    assert "cannot reach" in str(error)
    assert error.outcome_unknown is False


@pytest.mark.parametrize(("code", "wait"), [(503, 3.0), (500, None), (502, None), (429, 3.0)])
async def test_whatsapp_an_error_answer_is_a_known_non_delivery(
    code: int, wait: float | None
) -> None:
    retry_after = None if wait is None else "3"
    async with Origin(status(code, retry_after=retry_after)) as origin:
        error = await wa_send(origin.url, WAHA)
    assert isinstance(error, RetryableDelivery)
    assert f"HTTP {code}" in str(error)
    assert error.outcome_unknown is False
    assert error.retry_after == wait
    assert len(origin.requests) == 1


async def test_whatsapp_a_4xx_is_permanent() -> None:
    async with Origin(status(400)) as origin:
        error = await wa_send(origin.url, WAHA)
    assert isinstance(error, PermanentDelivery)
    assert "HTTP 400" in str(error)
