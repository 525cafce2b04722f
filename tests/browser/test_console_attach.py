"""An operator attaches a file in the console's composer (Chromium): it is uploaded when
chosen, sent with the message through the WhatsApp gateway (WAHA fake: ``file.data`` holds the
very bytes), and a mistyped file is refused with the reason shown under the composer."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect

from chatbridge.testing.fake_whatsapp import FakeWhatsApp, create_fake_whatsapp
from chatbridge.testing.servers import serve_app
from chatbridge.testing.whatsapp_payloads import waha_message
from tests.browser.console_fixtures import Operator, admin_http, console_stack, operator
from tests.browser.test_console_media import png
from tests.e2e.harness import Stack, wait_until

__all__ = ["admin_http", "console_stack", "operator"]  # fixtures, imported for pytest


@pytest.fixture
async def waha(console_stack: Stack) -> AsyncIterator[FakeWhatsApp]:
    app = create_fake_whatsapp()
    async with serve_app(app) as url:
        bridge = console_stack.bridge
        bridge.set_comms_settings(
            bridge.comms_settings().updated(
                {"provider": "waha", "waha_base_url": url, "waha_api_key": "waha-key"}
            )
        )
        yield app.state.fake


async def test_operator_attaches_a_photo(
    operator: Operator,
    console_stack: Stack,
    admin_http: httpx.AsyncClient,
    waha: FakeWhatsApp,
    tmp_path: Path,
) -> None:
    payload = waha_message("Can you show me the blue one?", msg_id="3EB0ATTACH0001")
    r = await admin_http.post("/api/comms/webhooks/waha", content=json.dumps(payload).encode())
    assert r.status_code == 200, r.text
    store = console_stack.bridge.store
    conv = await wait_until(
        lambda: store.find_conversation("whatsapp", "waha:default:919876543210@c.us")
    )
    await console_stack.idle()

    page = operator.page
    await operator.log_in()
    await operator.go(f"inbox/{conv.id}")
    note = page.locator(".composer-attach")

    fake_png = tmp_path / "not-really.png"
    fake_png.write_bytes(b"%PDF-1.4\n" + b"x" * 100)
    await page.locator("#composer-file").set_input_files(str(fake_png))
    await expect(note).to_contain_text("Not attached")
    await expect(note).to_contain_text("PDF")

    photo = png(40, 30, (20, 90, 200))
    blue = tmp_path / "blue.png"
    blue.write_bytes(photo)
    await page.locator("#composer-file").set_input_files(str(blue))
    await expect(note).to_have_text("Attached: blue.png")
    await page.locator("#composer").fill("Here it is in blue")
    await page.get_by_role("button", name="Send", exact=True).click()
    [sent] = await wait_until(lambda: waha.calls("/api/sendImage"))
    assert sent.json["file"] == {
        "data": base64.b64encode(photo).decode(),
        "mimetype": "image/png",
        "filename": "blue.png",
    }
    assert sent.json["caption"] == "Here it is in blue"
    await expect(note).to_have_text("")  # sent: the attachment is cleared
