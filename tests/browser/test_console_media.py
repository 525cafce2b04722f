"""Media in the console's conversation view, in a real browser: a WhatsApp customer's photo,
voice note and PDF (WAHA, the fake gateway) are downloaded by the bridge and shown from its
signed URLs — the image decoded inline, the voice note with a player and its transcript, the
document as a link that serves the same bytes — under the console's strict CSP."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import expect

from chatbridge.testing.fake_wa_media import add_waha_file
from chatbridge.testing.fake_whatsapp import FakeWhatsApp, create_fake_whatsapp
from chatbridge.testing.servers import serve_app
from chatbridge.testing.whatsapp_payloads import waha_message
from tests.browser.console_fixtures import Operator, admin_http, console_stack, operator, shoot
from tests.crm.fake_transcriber import create_fake_transcriber
from tests.e2e.harness import Stack, wait_until

__all__ = ["admin_http", "console_stack", "operator"]  # fixtures, imported for pytest

OGG = b"OggS\x00\x02" + bytes(range(200)) * 3
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG (the browser must decode it), one colour with a diagonal stripe."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = b""
    for y in range(height):
        row = b"".join(
            bytes((255, 255, 255)) if abs(x - y) < 6 else bytes(rgb) for x in range(width)
        )
        rows += b"\x00" + row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
async def waha_gateway(console_stack: Stack) -> AsyncIterator[tuple[FakeWhatsApp, str]]:
    """WhatsApp on WAHA (the fake), voice notes transcribed by a local OpenAI-compatible fake."""
    app = create_fake_whatsapp()
    fake: FakeWhatsApp = app.state.fake
    async with serve_app(app) as url, serve_app(create_fake_transcriber()) as stt:
        bridge = console_stack.bridge
        bridge.set_comms_settings(
            bridge.comms_settings().updated(
                {
                    "provider": "waha",
                    "waha_base_url": url,
                    "waha_api_key": "waha-key",
                    "transcription_provider": "openai",
                    "transcription_base_url": f"{stt}/v1",
                    "transcription_api_key": "sk-transcribe",
                }
            )
        )
        yield fake, url


async def test_media_shown_in_the_conversation(
    operator: Operator,
    console_stack: Stack,
    admin_http: httpx.AsyncClient,
    waha_gateway: tuple[FakeWhatsApp, str],
) -> None:
    fake, fake_url = waha_gateway
    photo = png(160, 120, (40, 120, 200))
    sent = [
        ("3EB0PHOTO0001", photo, "image/png", "photo.png", "Here is the broken part"),
        ("3EB0VOICE0001", OGG, "audio/ogg; codecs=opus", "voice.oga", ""),
        ("3EB0INVOICE01", PDF, "application/pdf", "invoice.pdf", ""),
    ]
    for msg_id, data, mime, name, caption in sent:
        path = add_waha_file(fake, data, mime, name)
        media = {"url": f"{fake_url}{path}", "mimetype": mime, "filename": name, "error": None}
        payload = waha_message(caption, msg_id=msg_id, media=media)
        r = await admin_http.post("/api/comms/webhooks/waha", content=json.dumps(payload).encode())
        assert r.status_code == 200, r.text
    store = console_stack.bridge.store
    key = "waha:default:919876543210@c.us"

    async def all_stored() -> str | None:
        conv = await store.find_conversation("whatsapp", key)
        if conv is None:
            return None
        rows = await store.list_media(conversation_id=conv.id)
        return conv.id if len(rows) == 3 and all(r.state == "done" for r in rows) else None

    thread = await wait_until(all_stored, 20)
    await console_stack.idle()

    page = operator.page
    await operator.log_in()
    await operator.go(f"inbox/{thread}")
    log = page.locator("#chat-log")
    image = log.locator("img.media-image")
    await expect(image).to_be_visible()
    # decoded: the browser fetched the signed URL's bytes under the console's CSP
    await wait_until(lambda: image.evaluate("el => el.complete && el.naturalWidth"), 10)
    assert await image.evaluate("el => el.naturalWidth") == 160
    assert (await image.get_attribute("src") or "").startswith("/media/")
    await expect(log.locator("audio.media-audio")).to_have_count(1)
    transcript = f"hello from a {len(OGG)}-byte call"
    await expect(log.locator(".media-transcript-text")).to_have_text(transcript)
    link = log.locator("a.media-file")
    await expect(link).to_contain_text("invoice.pdf")
    href = await link.get_attribute("href") or ""
    async with httpx.AsyncClient(base_url=console_stack.url) as anyone:
        got = await anyone.get(href)
    assert got.status_code == 200 and got.content == PDF
    assert fake_url not in await log.inner_html()  # no provider URL reaches the page
    await shoot(page, "console-media.png")
