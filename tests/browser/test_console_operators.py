"""Operators in the console, in a real browser: two operators (an admin and an agent) each in
their own browser. The admin adds the agent in the console; the agent assigns a thread to
themselves (Mine / Unassigned), answers with a canned reply, leaves a private note and is
refused the admin pages; the admin sees who did what in the thread and in the audit log.
Screenshots go to docs/screenshots/console-operators*.png.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.console_fixtures import (
    CONSOLE_VIEWPORT,
    Operator,
    admin_http,
    console_stack,
    shoot,
)
from tests.e2e.harness import Stack, wait_until

__all__ = ["admin_http", "console_stack"]  # fixtures, imported for pytest

ADA = {
    "email": "ada@example.com",
    "name": "Ada Admin",
    "role": "admin",
    "password": "ada-pass-0123",
}
BOB = {"email": "bob@example.com", "name": "Bob Agent", "password": "bob-pass-0123"}


@pytest.fixture
async def two_browsers(
    console_stack: Stack, browser: Browser
) -> AsyncIterator[tuple[Operator, Operator]]:
    """Two separate browser contexts (cookies apart) on the console, not yet logged in."""
    operators = []
    contexts = []
    for _ in range(2):
        ctx = await browser.new_context(
            viewport=CONSOLE_VIEWPORT,  # type: ignore[arg-type]
            color_scheme="dark",
            locale="en-US",
            timezone_id="UTC",
        )
        contexts.append(ctx)
        page = await ctx.new_page()
        page.set_default_timeout(15_000)
        operators.append(Operator(page, console_stack.url))
    try:
        yield operators[0], operators[1]
    finally:
        for ctx in contexts:
            await ctx.close()
    for op in operators:
        assert op.page_errors == [], op.page_errors


async def log_in(op: Operator, email: str, password: str) -> Page:
    page = op.page
    await page.goto(f"{op.base}/console")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#signed-in")).to_be_visible()
    return page


async def thread_of(s: Stack, admin: httpx.AsyncClient, conv: int) -> str:
    threads = (await admin.get("/api/comms/threads", params={"channel": "chatwoot"})).json()
    return str(next(t["id"] for t in threads["threads"] if t["channel_key"].endswith(f":{conv}")))


async def test_two_operators_assignment_attribution_and_roles(
    console_stack: Stack, admin_http: httpx.AsyncClient, two_browsers: tuple[Operator, Operator]
) -> None:
    s = console_stack
    ada_op, bob_op = two_browsers
    assert (await admin_http.post("/api/operators", json=ADA)).status_code == 201
    r = await admin_http.post(
        "/api/canned-replies",
        json={"shortcut": "hours", "text": "We answer from 9 to 17, Monday to Friday."},
    )
    assert r.status_code == 201, r.text
    await s.say("Hello, is my refund done?", conv=1, sender={"id": 71, "name": "Asha Rao"})
    await s.say("Where is my parcel?", conv=2, sender={"id": 72, "name": "Ravi Kumar"})
    await s.wait_replies(1, 1)
    await s.wait_replies(1, 2)
    first = await thread_of(s, admin_http, 1)
    second = await thread_of(s, admin_http, 2)

    # --- the admin logs in by email and adds an agent in the console
    ada = await log_in(ada_op, ADA["email"], ADA["password"])
    await expect(ada.locator("#signed-in")).to_contain_text("Ada Admin · admin")
    await ada_op.nav("Operators").click()
    await ada.get_by_label("Email").fill(BOB["email"])
    await ada.get_by_label("Name").fill(BOB["name"])
    await ada.get_by_label("Role").select_option("agent")
    await ada.get_by_label("Password").fill(BOB["password"])
    await ada.get_by_role("button", name="Add operator").click()
    await expect(ada.locator("#invite-result")).to_have_text("Bob Agent can log in now.")
    await expect(ada.locator("#operators tbody tr")).to_have_count(2)
    await expect(ada.locator("#operators tbody tr", has_text="Bob Agent")).to_contain_text("active")
    await shoot(ada, "console-operators-admin.png")

    # --- the agent logs in: no admin pages in the navigation
    bob = await log_in(bob_op, BOB["email"], BOB["password"])
    await expect(bob.locator("#signed-in")).to_contain_text("Bob Agent · agent")
    await expect(bob_op.nav("Conversations")).to_be_visible()
    for hidden in ("Routes", "Settings", "Operators", "Audit log"):
        await expect(bob_op.nav(hidden)).to_be_hidden()

    # canned replies: the team's (made with the admin key) and one of Bob's own
    await bob_op.nav("Canned replies").click()
    await bob.get_by_label("Shortcut").fill("thanks")
    await bob.get_by_label("Text").fill("Thank you for your patience!")
    await bob.get_by_role("button", name="Add", exact=True).click()
    await expect(bob.locator("#canned tr[data-shortcut=thanks]")).to_contain_text("yours")
    await expect(bob.locator("#canned tr[data-shortcut=hours]")).to_contain_text("team")
    await expect(bob.locator("#canned tr[data-shortcut=hours] button")).to_have_count(0)
    await bob_op.nav("Conversations").click()

    # unassigned: both threads; Bob takes the first; mine: only that one
    await bob.get_by_role("tab", name="Unassigned").click()
    await expect(bob.locator("#threads [role=option]")).to_have_count(2)
    await bob.locator(f"#thread-{first}").click()
    await bob.get_by_role("button", name="Assign to me").click()
    await expect(bob.locator("#assignee")).to_have_text("Assigned to you")
    await expect(bob.locator("#threads [role=option]")).to_have_count(1)  # still "unassigned"
    await expect(bob.locator(f"#thread-{second}")).to_be_visible()
    await bob.get_by_role("tab", name="Mine").click()
    await expect(bob.locator("#threads [role=option]")).to_have_count(1)
    await expect(bob.locator(f"#thread-{first}")).to_contain_text("you")

    # a canned reply with "/" and Enter, then Enter sends it
    await bob.locator(f"#thread-{first}").click()
    composer = bob.locator("#composer")
    await composer.fill("")
    await composer.press_sequentially("/hou")
    await expect(bob.locator("#canned-list [data-shortcut=hours]")).to_be_visible()
    await composer.press("Enter")
    await expect(composer).to_have_value("We answer from 9 to 17, Monday to Friday.")
    await composer.press("Enter")
    log = bob.locator("#chat-log")
    sent = log.locator(".msg[data-author=human]", has_text="We answer from 9 to 17")
    await expect(sent).to_contain_text("Bob Agent")
    await s.wait_replies(2, 1)
    assert s.replies(1)[-1] == "We answer from 9 to 17, Monday to Friday."  # as sent today

    # a private note: inline in the thread, never sent
    await bob.get_by_label("Private note").check()
    await composer.fill("Refund approved by finance, ticket 4411")
    await composer.press("Enter")
    note = log.locator("[data-kind=private_note]")
    await expect(note).to_contain_text("Refund approved by finance")
    await expect(note).to_contain_text("Bob Agent")
    await shoot(bob, "console-operators-agent.png")
    await s.idle()
    assert all("Refund approved" not in m["content"] for m in s.mock.received_messages)

    # the agent is refused the admin screens: the page says so, the API answers 403 JSON
    await bob_op.go("settings")
    await expect(bob.locator("#view")).to_contain_text("agent role")
    refused = await bob.evaluate(
        """async () => {
            const r = await fetch('/config/mappings', {credentials: 'same-origin'});
            return [r.status, (await r.json()).error.code];
        }"""
    )
    assert refused == [403, "forbidden"]

    # --- the admin sees the assignee and who wrote what
    await ada_op.nav("Conversations").click()
    row = ada.locator(f"#thread-{first}")
    await expect(row.locator(".pill.assignee")).to_have_text("Bob Agent")
    await row.click()
    await expect(ada.locator("#assignee")).to_have_text("Assigned to Bob Agent")
    ada_log = ada.locator("#chat-log")
    await expect(ada_log.locator(".msg[data-author=human]").last).to_contain_text("Bob Agent")
    await expect(ada_log.locator("[data-kind=private_note]")).to_contain_text("Refund approved")
    await expect(ada_log.locator("[data-kind=assignment]")).to_contain_text(
        "Bob Agent assigned the conversation to themselves"
    )
    # Bob's reply took the thread over; Ada hands it back, and the thread says who did
    await ada.get_by_role("button", name="Hand back to bot").click()
    await expect(ada_log.locator("[data-kind=owner_change]")).to_contain_text(
        "Ada Admin handed back to the bot"
    )
    await shoot(ada, "console-operators.png")
    await ada.get_by_role("tab", name="Mine").click()
    await expect(ada.locator("#threads [role=option]")).to_have_count(0)

    # the audit log shows the operator the admin created
    await ada_op.nav("Audit log").click()
    entry = ada.locator("#audit tbody tr[data-action='operator.create']", has_text="Ada Admin")
    await expect(entry).to_contain_text(re.compile("op_"))

    async def two_creations() -> bool:
        rows = (await admin_http.get("/api/audit")).json()["entries"]
        return [e["action"] for e in rows].count("operator.create") == 2

    await wait_until(two_creations, 5)

    # an agent sees the dead letters but not their actions; changes their own password
    await bob_op.go("dead-letters")
    await expect(bob.locator("body")).to_have_attribute("data-role", "agent")
    await bob.get_by_role("button", name="Change password").click()
    await bob.get_by_label("Current password").fill("not-my-password")
    await bob.get_by_label("New password").fill("bob-new-pass-0123")
    await bob.get_by_role("button", name="Change", exact=True).click()
    await expect(bob.get_by_role("dialog").get_by_role("alert")).to_contain_text("wrong")
    await bob.get_by_label("Current password").fill(BOB["password"])
    await bob.get_by_role("button", name="Change", exact=True).click()
    await expect(bob).to_have_url(re.compile(r"/console/login"))
    await log_in(bob_op, BOB["email"], "bob-new-pass-0123")
