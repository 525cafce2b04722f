"""The operator console (``/console``) in a real browser (Debian's chromium, via Playwright).

The bridge runs in-process with admin key ``k``; its Chatwoot, web chat and WhatsApp inbox 1
are answered by the mock agent (echo; "slow" waits). The tests act as an operator does — log
in, watch a WhatsApp thread arrive, take it over, write, hand it back, note, task, link a
person, retry a dead letter — and check both the page and what the bridge did. Screenshots of
every page go to docs/screenshots/console-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any

import httpx
from playwright.async_api import expect

from chatbridge.api import create_app
from chatbridge.config import Settings
from chatbridge.testing.chatwoot_state import Faults
from chatbridge.testing.mock_agent import echo_text
from tests.browser.console_fixtures import (
    ADMIN_KEY,
    Operator,
    admin_http,
    console_stack,
    operator,
    shoot,
)
from tests.e2e.harness import Stack, wait_until

__all__ = ["admin_http", "console_stack", "operator"]  # fixtures, imported for pytest


async def test_login_refuses_a_wrong_key_and_lets_the_right_one_in(
    operator: Operator, console_stack: Stack
) -> None:
    page = operator.page
    await page.goto(f"{console_stack.url}/console#/agents")
    await expect(page).to_have_url(re.compile(r"/console/login"))
    await expect(page.get_by_label("Email")).to_be_focused()  # operators log in by email
    await shoot(page, "console-login.png")

    await operator.log_in("not-the-key")
    await expect(page.get_by_role("alert")).to_have_text("Wrong admin key.")
    assert [c for c in await page.context.cookies() if c["name"] == "chatbridge_console"] == []

    await operator.log_in()
    await expect(operator.nav("Conversations")).to_have_attribute("aria-current", "page")
    (cookie,) = [c for c in await page.context.cookies() if c["name"] == "chatbridge_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert await page.evaluate("document.cookie") == ""  # scripts cannot read the session

    # the keyboard moves between pages: g then a → agents
    await page.locator("body").press("g")
    await page.locator("body").press("a")
    await expect(operator.nav("Agents")).to_have_attribute("aria-current", "page")
    await expect(page.locator("#agents tr[data-agent=agent1]")).to_contain_text("connected")

    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(re.compile(r"/console/login"))
    await page.goto(f"{console_stack.url}/console")
    await expect(page).to_have_url(re.compile(r"/console/login"))


async def test_a_session_changes_nothing_without_its_csrf_token(console_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=console_stack.url, timeout=30) as browser:
        assert (await browser.get("/console")).status_code == 303
        assert (await browser.post("/console/login", json={"key": "nope"})).status_code == 401
        evil = await browser.post(
            "/console/login", json={"key": ADMIN_KEY}, headers={"Origin": "https://evil.example"}
        )
        assert evil.status_code == 403 and "set-cookie" not in evil.headers

        r = await browser.post("/console/login", json={"key": ADMIN_KEY})
        assert r.status_code == 200
        csrf = r.json()["csrf_token"]
        set_cookie = r.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie
        assert "path=/" in set_cookie and "secure" not in set_cookie  # plain http here

        app = await browser.get("/console")
        assert app.status_code == 200
        assert f'<meta name="csrf-token" content="{csrf}">' in app.text
        assert "frame-ancestors 'none'" in app.headers["content-security-policy"]
        assert (await browser.get("/agents/status")).status_code == 200  # reads: cookie only

        route = {
            "channel": "webchat",
            "inbox_id": 7,
            "agent_config": {"agent_id": "agent1", "transport": "http-pull"},
        }
        for headers in ({}, {"X-CSRF-Token": "0" * 64}):
            refused = await browser.post("/config/mappings", json=route, headers=headers)
            assert refused.status_code == 401, refused.text
        assert all(r.inbox_id != 7 for r in console_stack.bridge.routes())
        ok = await browser.post("/config/mappings", json=route, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 201, ok.text
        # the comms API the console uses follows the same rule
        person = {"name": "Ada"}
        assert (await browser.post("/api/comms/people", json=person)).status_code == 401
        made = await browser.post("/api/comms/people", json=person, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text

        out = await browser.post("/console/logout", json={})
        assert out.status_code == 200
        assert (await browser.get("/agents/status")).status_code == 401


async def test_dead_letter_is_inspected_and_retried(
    operator: Operator, console_stack: Stack
) -> None:
    s = console_stack
    # typing_on gets three 500s (dropped quietly), the reply a 404: a dead letter
    s.mock.set_faults(Faults(fail_next=[500, 500, 500, 404]))
    await s.say("a slow reply that is doomed")
    await wait_until(s.bridge.store.list_dead_letters)
    (dead,) = await s.bridge.store.list_dead_letters()

    await operator.log_in()
    await operator.nav("Dead letters").click()
    row = operator.page.locator(f'#dead-letters tr[data-dead-letter="{dead.id}"]')
    await expect(row).to_contain_text(echo_text("a slow reply that is doomed"))
    await row.get_by_role("button", name="Inspect").click()
    await expect(operator.page.locator("#dead-letters tr.detail")).to_contain_text("404")
    await shoot(operator.page, "console-dead-letters.png")

    await row.get_by_role("button", name="Retry").click()
    await expect(operator.page.get_by_role("status")).to_contain_text("queued again")
    assert await s.wait_replies(1) == [echo_text("a slow reply that is doomed")]
    await expect(row).to_have_count(0)
    await expect(operator.page.locator("#dead-letters")).to_contain_text("No dead letters")

    # another one is discarded (asked twice, in place): it is gone and never sent
    s.mock.set_faults(Faults(fail_next=[500, 500, 500, 404]))
    await s.say("a slow reply nobody needs", conv=2)
    await wait_until(s.bridge.store.list_dead_letters)
    (dead,) = await s.bridge.store.list_dead_letters()
    row = operator.page.locator(f'#dead-letters tr[data-dead-letter="{dead.id}"]')
    discard = row.get_by_role("button", name=re.compile("discard", re.I))
    await discard.click()
    await expect(discard).to_have_text("Really discard?")
    await discard.click()
    await expect(row).to_have_count(0)
    assert await s.bridge.store.list_dead_letters() == []
    assert s.replies(2) == []


async def test_agents_and_routes_pages(operator: Operator, console_stack: Stack) -> None:
    page = operator.page
    await operator.log_in()
    await operator.go("agents")
    agent = page.locator("#agents tr[data-agent=agent1]")
    await expect(agent).to_contain_text("connected")
    await expect(agent).to_contain_text("Chatwoot 1")
    await shoot(page, "console-agents.png")

    await operator.nav("Routes").click()
    row = page.locator('#routes tr[data-route="chatwoot:1"]')
    await expect(row).to_contain_text("agent1")
    await row.get_by_role("button", name="Edit").click()
    form = page.get_by_role("form", name="Edit route")
    await expect(form.get_by_label("Agent id")).to_be_focused()
    await form.get_by_label("On failure").select_option("fallback")
    await form.get_by_label("Fallback text").fill("We are back in a minute.")
    await shoot(page, "console-routes.png")
    await form.get_by_role("button", name="Save route").click()
    await expect(row).to_contain_text("We are back in a minute.")
    (route,) = [
        r for r in console_stack.bridge.routes() if (r.channel, r.inbox_id) == ("chatwoot", 1)
    ]
    assert route.fallback_text == "We are back in a minute."


async def test_routes_page_sets_up_an_openai_agent(
    operator: Operator, console_stack: Stack
) -> None:
    page = operator.page
    await operator.log_in()
    await operator.go("routes")
    await page.get_by_role("button", name="New route").click()
    form = page.get_by_role("form", name="New route")
    await form.get_by_label("Channel").select_option("webchat")
    await form.get_by_label("Inbox id").fill("42")
    await form.get_by_label("Agent id").fill("gpt")
    await expect(form.get_by_label("Model")).to_be_hidden()
    await form.get_by_label("Transport").select_option("openai")
    await expect(form.get_by_label("WebSocket URL (dial-out)")).to_be_hidden()
    await expect(form.get_by_label("Webhook URL")).to_be_hidden()
    await form.get_by_label("Base URL").fill("http://127.0.0.1:9/v1")
    await form.get_by_label("Model").fill("small-model")
    await form.get_by_label("API key").fill("sk-console-test")
    await form.get_by_label("System prompt").fill("You are the teapot shop's assistant.")
    await form.get_by_role("button", name="Create route").click()
    row = page.locator('#routes tr[data-route="webchat:42"]')
    await expect(row).to_contain_text("openai")
    await expect(row).to_contain_text("small-model @ http://127.0.0.1:9/v1")
    await expect(page.locator("#routes")).not_to_contain_text("sk-console-test")
    agent = await console_stack.bridge.store.get_agent("gpt")
    assert agent is not None and agent.transport == "openai"
    assert agent.url == "http://127.0.0.1:9/v1"
    assert agent.options["api_key"] == "sk-console-test"
    assert agent.options["system_prompt"] == "You are the teapot shop's assistant."

    # editing it again without typing the key keeps the key
    await row.get_by_role("button", name="Edit").click()
    form = page.get_by_role("form", name="Edit route")
    await expect(form.get_by_label("API key")).to_have_attribute(
        "placeholder", "set (leave empty to keep)"
    )
    await form.get_by_label("Model").fill("bigger-model")
    await form.get_by_role("button", name="Save route").click()
    await expect(row).to_contain_text("bigger-model")
    agent = await console_stack.bridge.store.get_agent("gpt")
    assert agent is not None and agent.options["model"] == "bigger-model"
    assert agent.options["api_key"] == "sk-console-test"


async def inbound(http: httpx.AsyncClient, text: str, wamid: str) -> None:
    """Asha writes on WhatsApp (the mock provider)."""
    r = await http.post(
        "/api/comms/mock/inbound",
        json={"from": "+15550001111", "name": "Asha", "text": text, "id": wamid},
    )
    assert r.status_code == 200, r.text


async def outbox(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """What the mock WhatsApp provider has sent, oldest first."""
    items: list[dict[str, Any]] = (await http.get("/api/comms/mock/outbox")).json()["items"]
    return items


async def test_whatsapp_thread_live_take_over_and_hand_back(
    operator: Operator, console_stack: Stack, admin_http: httpx.AsyncClient
) -> None:
    s, page = console_stack, operator.page
    await operator.log_in()
    await expect(page.locator(".list-foot")).to_have_text("No conversations match.")

    # a customer writes while the page is open: the thread appears by itself
    await inbound(admin_http, "Do you have the blue teapot?", "wamid-1")
    thread = page.locator("#threads [role=option]", has_text="Asha")
    await expect(thread).to_contain_text("WhatsApp")
    await page.locator("body").press("j")  # the keyboard opens the first thread
    await expect(thread).to_have_attribute("aria-selected", "true")
    log = page.locator("#chat-log")
    said = log.locator(".msg[data-author=customer] .bubble")
    agent = log.locator(".msg[data-author=agent] .bubble")
    await expect(said).to_have_text(["Do you have the blue teapot?"])
    await expect(agent).to_have_text([echo_text("Do you have the blue teapot?")])
    # WhatsApp reports the reply read (what a provider's status webhook records)
    (sent,) = [
        i
        for i in await outbox(admin_http)
        if i.get("text") == echo_text("Do you have the blue teapot?")
    ]
    assert await s.bridge.store.set_message_status(sent["id"], "read") is not None
    await expect(log.locator(".msg[data-author=agent] .msg-status")).to_have_attribute(
        "data-status", "read"
    )

    # take over and answer as a person
    await page.get_by_role("button", name="Take over").click()
    await expect(page.locator("#owner-toggle")).to_have_text("Hand back to bot")
    await expect(thread.locator(".pill.human")).to_be_visible()
    composer = page.get_by_role("textbox", name="Message")
    await composer.fill("Hi Asha, Sam here. Yes, we have two left.")
    await composer.press("Enter")
    await expect(log.locator(".msg[data-author=human] .bubble")).to_have_text(
        ["Hi Asha, Sam here. Yes, we have two left."]
    )
    await expect(composer).to_have_value("")

    async def sent_by_provider() -> list[str]:
        return [i["text"] for i in await outbox(admin_http) if i.get("text")]

    await wait_until(
        lambda: _contains(sent_by_provider(), "Hi Asha, Sam here. Yes, we have two left.")
    )

    # the customer answers: the agent stays silent while a person has the thread
    await inbound(admin_http, "Great, I will take both.", "wamid-2")
    await expect(said).to_have_count(2)
    await s.idle()
    await expect(agent).to_have_count(1)
    assert echo_text("Great, I will take both.") not in await sent_by_provider()

    # hand back: the agent answers the next message
    await page.get_by_role("button", name="Hand back to bot").click()
    await expect(page.locator("#owner-toggle")).to_have_text("Take over")
    await inbound(admin_http, "Do you ship to Oslo?", "wamid-3")
    await expect(agent).to_have_text(
        [echo_text("Do you have the blue teapot?"), echo_text("Do you ship to Oslo?")]
    )

    # the contact rail: a note, a task (ticked off), a person linked
    await page.get_by_role("textbox", name="Note", exact=True).fill(
        "Wants both blue teapots, gift-wrapped."
    )
    await page.get_by_role("button", name="Add note").click()
    await expect(page.locator("#notes")).to_contain_text("Wants both blue teapots, gift-wrapped.")
    await page.get_by_role("textbox", name="Task", exact=True).fill(
        "Confirm the shipping cost to Oslo"
    )
    await page.get_by_role("button", name="Add task").click()
    task = page.locator("#tasks li", has_text="Confirm the shipping cost to Oslo")
    await task.get_by_role("checkbox").check()
    await expect(task).to_have_class(re.compile(r"\bdone\b"))
    await page.get_by_role("searchbox", name="Person").fill("Asha Rao")
    await page.get_by_role("button", name="Create “Asha Rao” and link").click()
    await expect(page.locator("#linked-person .person-name")).to_have_text("Asha Rao")
    await expect(thread.locator(".who")).to_have_text("Asha Rao")
    await shoot(page, "console-conversations.png")

    thread_id = await thread.get_attribute("data-id")
    detail = (await admin_http.get(f"/api/comms/threads/{thread_id}")).json()["thread"]
    assert detail["person"]["name"] == "Asha Rao"
    assert [n["text"] for n in detail["notes"]] == ["Wants both blue teapots, gift-wrapped."]
    assert [(t["title"], t["done"]) for t in detail["tasks"]] == [
        ("Confirm the shipping cost to Oslo", True)
    ]
    assert detail["owner"] == "bot" and detail["unread"] == 0  # the open thread was read

    # search and filters narrow the list
    await page.locator("body").press("/")
    await expect(page.get_by_role("searchbox", name="Search conversations")).to_be_focused()
    await page.keyboard.type("nobody")
    await expect(thread).to_have_count(0)
    await page.get_by_role("searchbox", name="Search conversations").fill("")
    await expect(thread).to_have_count(1)
    await page.get_by_label("Owner").select_option("human")
    await expect(thread).to_have_count(0)


async def _contains(items: Awaitable[list[str]], text: str) -> bool:
    return text in await items


async def test_settings_page_tests_the_provider(
    operator: Operator, console_stack: Stack, admin_http: httpx.AsyncClient
) -> None:
    page = operator.page
    await operator.log_in()
    await operator.nav("Settings").click()
    await expect(page.get_by_role("combobox", name="Provider", exact=True)).to_have_value("mock")
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator("#provider-result")).to_contain_text("Connected to mock")
    await page.get_by_role("textbox", name="Default country").fill("GB")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("status").last).to_contain_text("Settings saved.")
    await shoot(page, "console-settings.png")
    settings = (await admin_http.get("/api/comms/settings")).json()["settings"]
    assert settings["default_country"] == "GB"


async def test_without_an_admin_key_only_this_machine_logs_in(sqlite_url: str) -> None:
    app = create_app(Settings(database_url=sqlite_url, admin_key=None))
    for host, status in (("127.0.0.1", 200), ("203.0.113.9", 401)):
        transport = httpx.ASGITransport(app=app, client=(host, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            r = await client.post("/console/login", json={"key": ""})
            assert r.status_code == status, (host, r.text)
            assert ("chatbridge_console" in r.cookies) is (status == 200)
