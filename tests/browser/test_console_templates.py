"""The console's template composer in a real browser: on a Meta thread whose 24-hour window
has closed, free text is disabled and says why, the template picker opens with its fields
filled from the linked CRM person, a missing value is shown at its field, and the sent
template reaches the (fake) Graph API and shows in the conversation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import expect
from sqlalchemy import update

from chatbridge.store import tables as t
from chatbridge.testing.fake_wa_templates import add_template
from chatbridge.testing.fake_whatsapp import (
    FakeWhatsApp,
    create_fake_whatsapp,
    meta_text,
    meta_webhook,
)
from chatbridge.testing.servers import serve_app
from tests.browser.console_fixtures import Operator, admin_http, console_stack, operator, shoot
from tests.e2e.harness import Stack, wait_until

__all__ = ["admin_http", "console_stack", "operator"]  # fixtures, imported for pytest

PHONE_NUMBER_ID = "106540352242922"
BOOKING = [
    {"type": "HEADER", "format": "TEXT", "text": "Table {{1}}"},
    {"type": "BODY", "text": "Hi {{1}}, your table at {{2}} is kept until {{3}}."},
]
WELCOME = [{"type": "BODY", "text": "Hi {{first_name}}, {{company}} has news for you."}]


@pytest.fixture
async def meta_gateway(
    console_stack: Stack, admin_http: httpx.AsyncClient
) -> AsyncIterator[FakeWhatsApp]:
    """WhatsApp on Meta's Cloud API (the fake), its WABA's templates synced into the bridge."""
    app = create_fake_whatsapp()
    fake: FakeWhatsApp = app.state.fake
    add_template(fake, "welcome_back", WELCOME)
    add_template(fake, "table_kept", BOOKING)
    async with serve_app(app) as url:
        bridge = console_stack.bridge
        bridge.set_comms_settings(
            bridge.comms_settings().updated(
                {
                    "provider": "meta_cloud",
                    "meta_graph_url": url,
                    "meta_access_token": "meta-token",
                    "meta_phone_number_id": PHONE_NUMBER_ID,
                    "meta_waba_id": "102290129340398",
                }
            )
        )
        r = await admin_http.post("/api/comms/templates/sync")
        assert r.status_code == 200, r.text
        yield fake


async def test_template_composer_outside_the_window(
    operator: Operator,
    console_stack: Stack,
    admin_http: httpx.AsyncClient,
    meta_gateway: FakeWhatsApp,
) -> None:
    payload = meta_webhook(messages=[meta_text("Do you still have my table?", wamid="wamid.b-1")])
    r = await admin_http.post("/api/comms/webhooks/meta", content=json.dumps(payload).encode())
    assert r.status_code == 200, r.text
    store = console_stack.bridge.store
    key = f"meta_cloud:{PHONE_NUMBER_ID}:919876543210"

    async def thread_id() -> str | None:
        conv = await store.find_conversation("whatsapp", key)
        return None if conv is None else conv.id

    thread = await wait_until(thread_id, 10)
    r = await admin_http.post(
        "/api/comms/people",
        json={"name": "Asha Rao", "phone": "+919876543210", "company": "Lucky Shrub"},
    )
    assert r.status_code == 201, r.text
    await console_stack.idle()
    async with store._tx() as conn:  # the customer wrote 25 hours ago
        await conn.execute(
            update(t.messages)
            .where(t.messages.c.conversation_id == thread, t.messages.c.direction == "in")
            .values(created_at=t.messages.c.created_at - 25 * 3600)
        )

    page = operator.page
    await operator.log_in()
    await operator.go(f"inbox/{thread}")
    banner = page.locator("#window-closed")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("24-hour window is closed")
    await expect(page.locator("#composer")).to_be_disabled()
    panel = page.get_by_role("region", name="Send a template")
    await expect(panel).to_be_visible()

    await panel.get_by_label("Template").select_option(label="welcome_back · en_US")
    await expect(panel.locator('[data-slot="first_name"]')).to_have_value("Asha")
    await expect(panel.locator('[data-slot="company"]')).to_have_value("Lucky Shrub")
    await expect(panel.locator("#template-preview")).to_have_text(
        "Hi Asha, Lucky Shrub has news for you."
    )

    # positional slots get no suggestion: a missing one is shown at its field, nothing sent
    await panel.get_by_label("Template").select_option(label="table_kept · en_US")
    await panel.locator('[data-slot="header.1"]').fill("for 4")
    await panel.locator('[data-slot="1"]').fill("Asha")
    await panel.locator('[data-slot="2"]').fill("Lucky Shrub")
    sent_before = len(meta_gateway.requests)
    await panel.get_by_role("button", name="Send template").click()
    await expect(panel.locator('[data-slot="3"]')).to_have_attribute("aria-invalid", "true")
    await expect(panel.locator("#template-error")).to_contain_text("Fill in: 3")
    assert len(meta_gateway.requests) == sent_before
    await panel.locator('[data-slot="3"]').fill("8 pm")
    await expect(panel.locator("#template-error")).to_have_text("")
    await expect(panel.locator("#template-preview")).to_have_text(
        "Table for 4\n\nHi Asha, your table at Lucky Shrub is kept until 8 pm."
    )
    await shoot(page, "console-template-composer.png")
    await panel.get_by_role("button", name="Send template").click()

    def template_sent() -> list[dict[str, object]]:
        return [
            r.json
            for r in meta_gateway.requests
            if isinstance(r.json, dict) and r.json.get("type") == "template"
        ]

    [sent] = await wait_until(template_sent, 10)
    assert sent["template"] == {
        "name": "table_kept",
        "language": {"code": "en_US"},
        "components": [
            {"type": "header", "parameters": [{"type": "text", "text": "for 4"}]},
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "Asha"},
                    {"type": "text", "text": "Lucky Shrub"},
                    {"type": "text", "text": "8 pm"},
                ],
            },
        ],
    }
    await expect(page.locator("#chat-log")).to_contain_text(
        "Hi Asha, your table at Lucky Shrub is kept until 8 pm."
    )

    # an agent's template reply has no text of its own: the bubble names the template
    await store.add_outbound(
        thread,
        text="",
        author="agent",
        deliveries=[],
        meta={"template": {"name": "welcome_back", "parameters": {"first_name": "Asha"}}},
    )
    await expect(page.locator("#chat-log")).to_contain_text(
        "Template “welcome_back” — first_name: Asha"
    )


async def test_settings_sync_templates(
    operator: Operator, admin_http: httpx.AsyncClient, meta_gateway: FakeWhatsApp
) -> None:
    """The settings page's button syncs again: a template added at Meta shows up."""
    add_template(meta_gateway, "spring_sale", [{"type": "BODY", "text": "Spring sale!"}])
    await operator.log_in()
    await operator.go("settings")
    await operator.page.get_by_role("button", name="Sync templates from Meta").click()
    await expect(operator.page.locator("#toasts")).to_contain_text(
        "3 templates at Meta: 1 added, 2 updated, 0 removed."
    )
    names = [x["name"] for x in (await admin_http.get("/api/comms/templates")).json()["templates"]]
    assert "spring_sale" in names
