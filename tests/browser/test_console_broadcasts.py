"""The console's Broadcasts page in Chromium: preview a segment (opted-out skipped), create a
broadcast from a template, watch its progress bar and per-state counts move while the
bridge's worker sends to the fake WAHA, pause it and resume it to the end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import expect

from chatbridge.testing.fake_whatsapp import FakeWhatsApp, create_fake_whatsapp
from chatbridge.testing.servers import serve_app
from tests.broadcasts.rig import WAHA_KEY, add_template
from tests.browser.console_fixtures import Operator, admin_http, console_stack, operator, shoot
from tests.e2e.harness import Stack, wait_until

__all__ = ["admin_http", "console_stack", "operator"]  # fixtures, imported for pytest

PEOPLE = 12


@pytest.fixture
async def waha_gateway(
    console_stack: Stack, admin_http: httpx.AsyncClient
) -> AsyncIterator[FakeWhatsApp]:
    app = create_fake_whatsapp()
    async with serve_app(app) as url:
        bridge = console_stack.bridge
        bridge.set_comms_settings(
            bridge.comms_settings().updated(
                {
                    "provider": "waha",
                    "waha_base_url": url,
                    "waha_api_key": WAHA_KEY,
                    "broadcast_rate": 1.5,
                }
            )
        )
        for i in range(PEOPLE):
            r = await admin_http.post(
                "/api/comms/people",
                json={
                    "name": f"Asha {i}",
                    "phone": f"+1 555 020 {1000 + i}",
                    "tags": ["vip"] if i % 4 else ["lead"],
                    "opted_out": i == 1,
                },
            )
            assert r.status_code == 201, r.text
        yield app.state.fake


async def test_create_a_broadcast_and_follow_its_progress(
    operator: Operator, console_stack: Stack, waha_gateway: FakeWhatsApp
) -> None:
    await add_template(console_stack.bridge.store)
    page = operator.page
    await operator.log_in()
    await operator.go("broadcasts")
    await expect(page.get_by_role("heading", name="Broadcasts")).to_be_visible()
    await page.get_by_role("button", name="New broadcast").click()
    form = page.get_by_role("region", name="New broadcast")
    await form.get_by_label("Broadcast name").fill("Kettles are back")
    await expect(form.locator('[data-slot="1"]')).to_have_value("{person.first_name}")
    await form.locator('[data-slot="2"]').fill("The red kettle")
    await form.get_by_label("Tags (any)").fill("vip")

    # a missing parameter: the server's reason under the form, nothing created
    await form.locator('[data-slot="2"]').fill("")
    await form.get_by_role("button", name="Create broadcast").click()
    await expect(form.locator("#bc-problem")).to_contain_text("missing parameter(s) 2")
    await form.locator('[data-slot="2"]').fill("The red kettle")

    await form.get_by_role("button", name="Preview").click()
    await expect(form.locator("#bc-result")).to_have_text("8 will get it, 1 skipped (1 opted_out)")
    await form.get_by_role("button", name="Create broadcast").click()

    item = page.locator(".bc-item").first
    await expect(item).to_contain_text("Kettles are back")
    await expect(item).to_contain_text("9 recipients")
    await expect(item.locator('[data-state="skipped"]')).to_have_text("skipped 1")
    await expect(item.locator('[data-state="sent"]')).to_be_visible()  # moving
    await item.get_by_role("button", name="Pause").click()
    await expect(item).to_have_attribute("data-state", "paused")
    bar = item.locator("progress")
    paused_at = int(await bar.get_attribute("value") or "0")
    assert paused_at < 100
    await shoot(page, "console-broadcasts.png")
    await item.get_by_role("button", name="Resume").click()
    await expect(item).to_have_attribute("data-state", "done", timeout=20_000)
    await expect(bar).to_have_attribute("value", "100")
    await expect(item.locator('[data-state="sent"]')).to_have_text("sent 8")

    def sent() -> int:
        return len(waha_gateway.calls("/api/sendText"))

    assert await wait_until(lambda: sent() == 8, 5)
    chats = sorted(c.json["chatId"] for c in waha_gateway.calls("/api/sendText"))
    assert len(set(chats)) == 8 and "15550201001@c.us" not in chats
