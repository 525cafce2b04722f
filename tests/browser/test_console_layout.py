"""The console on a phone (390 px), a small laptop (1024 px) and a desktop (1440 px), in a real
browser (Debian's chromium via Playwright), and the words it shows.

Each test starts a bridge with a few conversations on every channel — WhatsApp (Asha), two
Chatwoot customers whose names differ only at the end, two web chat visitors (one named by the
page, one not) — and a dead letter, then checks the geometry an operator depends on: the reply
box on screen and wide enough, the contact rail reachable, nothing over Send after a take-over.
Screenshots of the three sizes go to docs/screenshots/console-{390,1024,1440}*.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from playwright.async_api import Browser, Locator, Page, expect

from chatbridge.testing.chatwoot_state import Faults
from tests.browser.console_fixtures import Operator, admin_http, console_stack, shoot
from tests.e2e.harness import Stack, wait_until

__all__ = ["admin_http", "console_stack"]  # fixtures, imported for pytest

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1024, "height": 768}
DESKTOP = {"width": 1440, "height": 900}
LONG_NAMES = ("Customer Service North Region Office", "Customer Service North Region Depot")


@dataclass
class Seeded:
    visitor_uid: str  # the web chat visitor the page did not name
    dead_letter_id: str
    dead_conversation_id: str


async def seed(s: Stack, http: httpx.AsyncClient) -> Seeded:
    """A dead letter first (its faults must hit its own sends only), then the other threads."""
    s.mock.set_faults(Faults(fail_next=[500, 500, 500, 404]))
    await s.say("Where is my parcel?", conv=30)
    await wait_until(s.bridge.store.list_dead_letters)
    (dead,) = await s.bridge.store.list_dead_letters()
    await s.idle()

    r = await http.post(
        "/api/comms/mock/inbound",
        json={"from": "+15550001111", "name": "Asha", "text": "Blue teapot?", "id": "wamid-1"},
    )
    assert r.status_code == 200, r.text
    for conv in (11, 12):  # short names that a narrow list used to cut to "Customer 1…"
        await s.say(f"Question {conv}", conv=conv, sender={"id": conv, "name": f"Customer {conv}"})
    for conv, name in zip((21, 22), LONG_NAMES, strict=True):
        await s.say(
            f"Hello from the {name.split()[-1].lower()}",
            conv=conv,
            sender={"id": conv, "name": name},
        )
    uid = ""
    for meta in ({}, {"name": "Ann"}):
        opened = await s.http.post("/api/webchat/sessions", json={"inbox_id": 1, "metadata": meta})
        assert opened.status_code == 200, opened.text
        session = opened.json()
        uid = uid or session["uid"]
        posted = await s.http.post(
            f"/api/webchat/sessions/{session['session_id']}/messages", json={"text": "Hi there"}
        )
        assert posted.status_code == 202, posted.text
    await s.idle()
    return Seeded(uid, str(dead.id), dead.conversation_id)


@asynccontextmanager
async def console_at(browser: Browser, s: Stack, size: dict[str, int]) -> AsyncIterator[Operator]:
    """An operator logged in to the console in a window of ``size``."""
    ctx = await browser.new_context(
        viewport=size,  # type: ignore[arg-type]
        color_scheme="dark",
        locale="en-US",
        timezone_id="UTC",
    )
    page = await ctx.new_page()
    page.set_default_timeout(15_000)
    op = Operator(page, s.url)
    try:
        await op.log_in()
        await expect(page.locator("#threads [role=option]")).to_have_count(8)
        yield op
    finally:
        await ctx.close()
    assert op.page_errors == [], op.page_errors


Box = dict[str, float]


async def box_of(locator: Locator) -> Box:
    box = await locator.bounding_box()
    assert box is not None, f"{locator} has no box (not displayed)"
    return box  # type: ignore[return-value]


def inside(box: Box, size: dict[str, int]) -> bool:
    return (
        box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= size["width"]
        and box["y"] + box["height"] <= size["height"]
    )


def overlap(a: Box, b: Box) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


SNAPSHOT = """text => {
  const toasts = [...document.querySelectorAll("#toasts .toast")];
  if (!toasts.some((t) => t.textContent.includes(text))) return null;
  const send = document.querySelector(".composer [type=submit]");
  const r = send.getBoundingClientRect();
  const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
  const box = (e) => {
    const b = e.getBoundingClientRect();
    return {x: b.x, y: b.y, width: b.width, height: b.height};
  };
  return {send: box(send), toasts: toasts.map(box), on_top: hit === send || send.contains(hit)};
}"""


async def take_over_keeps_send_clear(page: Page, size: dict[str, int]) -> None:
    """Take the open conversation over: its toast shows, and neither it nor anything else is
    over the Send button, which is on screen; then a reply goes out from the reply box."""
    composer = page.get_by_role("textbox", name="Message")
    send = page.get_by_role("button", name="Send", exact=True)
    await page.get_by_role("button", name="Take over").click()
    # one snapshot while the toast shows (it goes after a few seconds): where the toasts and
    # Send are, and what is on top at Send's centre (a fixed element anywhere would show)
    handle = await page.wait_for_function(SNAPSHOT, arg="You have the conversation")
    seen: dict[str, Any] = await handle.json_value()
    assert inside(seen["send"], size), seen
    assert seen["toasts"] and not any(overlap(t, seen["send"]) for t in seen["toasts"]), seen
    assert seen["on_top"], "something covers the Send button"
    box = await box_of(composer)
    assert inside(box, size) and box["width"] >= 250, box
    await composer.fill("Sam here, a person. Let me check.")
    await send.click()
    await expect(page.locator("#chat-log .msg[data-author=human] .bubble")).to_have_text(
        ["Sam here, a person. Let me check."]
    )
    await expect(page.locator("#threads [aria-selected=true] .pill.human")).to_have_count(1)


async def test_a_phone_goes_list_thread_contact_and_back(
    console_stack: Stack, admin_http: httpx.AsyncClient, browser: Browser
) -> None:
    seeded = await seed(console_stack, admin_http)
    async with console_at(browser, console_stack, PHONE) as op:
        page = op.page
        threads = page.get_by_role("listbox", name="Conversations")
        chat = page.get_by_role("region", name="Conversation", exact=True)
        # the pages sit behind a menu button; choosing one closes the menu
        menu = page.get_by_role("button", name="Menu")
        await expect(op.nav("Agents")).to_be_hidden()
        await menu.click()
        await expect(menu).to_have_attribute("aria-expanded", "true")
        await op.nav("Agents").click()
        await expect(page.locator("#agents tr[data-agent=agent1]")).to_be_visible()
        await expect(op.nav("Agents")).to_be_hidden()
        await menu.click()
        await op.nav("Conversations").click()

        # the list fills the screen; the conversation is not beside it
        await expect(threads).to_be_visible()
        await expect(chat).to_be_hidden()
        list_box = await box_of(threads)
        assert list_box["width"] >= PHONE["width"] - 2, list_box
        await shoot(page, "console-390-list.png")

        # a thread opens full screen, with the reply box whole and wide
        await threads.get_by_role("option", name=re.compile("Asha")).click()
        await expect(chat).to_be_visible()
        await expect(threads).to_be_hidden()
        await expect(page.locator("#chat-log .msg[data-author=customer] .bubble")).to_have_text(
            ["Blue teapot?"]
        )
        await take_over_keeps_send_clear(page, PHONE)
        await shoot(page, "console-390.png")

        # the contact pane, and back to the conversation
        contact = page.get_by_role("button", name="Contact", exact=True)
        await contact.click()
        rail = page.get_by_role("complementary", name="Contact")
        await expect(rail).to_be_visible()
        assert inside(await box_of(rail), PHONE)
        await expect(rail.locator("#person")).to_contain_text("WhatsApp · inbox 1")
        note = page.get_by_role("textbox", name="Note", exact=True)
        await note.fill("Wants it gift-wrapped.")
        await page.get_by_role("button", name="Add note").click()
        await expect(page.locator("#notes")).to_contain_text("Wants it gift-wrapped.")
        await shoot(page, "console-390-contact.png")
        await page.get_by_role("button", name="Back to the conversation").click()
        await expect(rail).to_be_hidden()
        await expect(page.get_by_role("textbox", name="Message")).to_be_in_viewport()

        # back to the list: the arrow, and the browser's own back button
        await page.get_by_role("link", name="Back to conversations").click()
        await expect(threads).to_be_visible()
        await expect(chat).to_be_hidden()
        await expect(page).to_have_url(re.compile(r"#/inbox$"))
        await threads.get_by_role("option", name=re.compile("Ann")).click()
        await expect(chat).to_be_visible()
        await page.go_back()
        await expect(threads).to_be_visible()
        await expect(chat).to_be_hidden()

        # a table's rows are cards on a phone: nothing off to the side, each value labelled
        await op.go("dead-letters")
        row = page.locator(f'#dead-letters tr[data-dead-letter="{seeded.dead_letter_id}"]')
        link = row.get_by_role("link", name="Chatwoot 1:30")
        for control in (link, row.get_by_role("button", name="Retry")):
            assert inside(await box_of(control), PHONE), await box_of(control)
        await expect(link.locator("xpath=..")).to_have_attribute("data-label", "Conversation")
        for scroller in ("#view", "#dead-letters"):
            assert await page.locator(scroller).evaluate("e => e.scrollWidth <= e.clientWidth")
        await shoot(page, "console-390-dead-letters.png")
        await link.click()
        await expect(chat).to_be_visible()
        await expect(page.locator("#chat-log .msg[data-author=customer] .bubble")).to_have_text(
            ["Where is my parcel?"]
        )


async def test_at_1024_the_contact_rail_opens_and_closes(
    console_stack: Stack, admin_http: httpx.AsyncClient, browser: Browser
) -> None:
    seeded = await seed(console_stack, admin_http)
    async with console_at(browser, console_stack, LAPTOP) as op:
        page = op.page
        threads = page.get_by_role("listbox", name="Conversations")
        # names that differ only at the end are not cut to the same text, and every row's
        # tooltip holds the whole name and last message
        for name in ("Customer 11", "Customer 12"):
            who = threads.get_by_role("option", name=re.compile(name)).locator(".who")
            await expect(who).to_have_text(name)
            assert await who.evaluate("e => e.scrollWidth <= e.clientWidth"), f"{name} is cut"
        titles = [
            await threads.get_by_role("option", name=re.compile(n)).get_attribute("title")
            for n in LONG_NAMES
        ]
        assert titles[0] != titles[1], titles
        for name, title in zip(LONG_NAMES, titles, strict=True):
            assert title is not None and title.startswith(name), title
            assert f"Hello from the {name.split()[-1].lower()}" in title, title

        # the unnamed web chat visitor: a readable name, the session's uid in the details only
        visitor = f"Web visitor #{seeded.visitor_uid[:4]}"
        await threads.get_by_role("option", name=re.compile(re.escape(visitor))).click()
        await expect(page.locator(".chat-head .title")).to_have_text(visitor)
        await expect(threads).not_to_contain_text("webchat")

        rail = page.get_by_role("complementary", name="Contact")
        toggle = page.get_by_role("button", name="Contact", exact=True)
        await expect(rail).to_be_hidden()
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await toggle.click()
        await expect(rail).to_be_visible()
        await expect(toggle).to_have_attribute("aria-expanded", "true")
        rail_box = await box_of(rail)
        assert inside(rail_box, LAPTOP) and rail_box["width"] >= 280, rail_box
        # the rail takes the list's place: the conversation stays whole beside it
        await expect(threads).to_be_hidden()
        composer = await box_of(page.get_by_role("textbox", name="Message"))
        assert inside(composer, LAPTOP) and not overlap(composer, rail_box), composer
        assert inside(await box_of(toggle), LAPTOP)
        await expect(rail.locator("#person")).to_contain_text(f"Visitor id{seeded.visitor_uid}")
        await expect(rail.locator("#person")).to_contain_text("Web chat · inbox 1")
        await page.get_by_role("textbox", name="Task", exact=True).fill("Call back tomorrow")
        await page.get_by_role("button", name="Add task").click()
        await expect(page.locator("#tasks")).to_contain_text("Call back tomorrow")
        await shoot(page, "console-1024.png")
        await toggle.click()
        await expect(rail).to_be_hidden()
        await expect(threads).to_be_visible()
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await toggle.click()
        await expect(rail).to_be_visible()
        await page.keyboard.press("Escape")
        await expect(rail).to_be_hidden()
        # another conversation starts with the rail closed
        await toggle.click()
        await expect(rail).to_be_visible()
        await page.goto(f"{console_stack.url}/console#/inbox")
        await threads.get_by_role("option", name=re.compile("Asha")).click()
        await expect(page.locator(".chat-head .title")).to_have_text("Asha")
        await expect(rail).to_be_hidden()

        await take_over_keeps_send_clear(page, LAPTOP)


async def test_at_1440_everything_shows_with_words_people_read(
    console_stack: Stack, admin_http: httpx.AsyncClient, browser: Browser
) -> None:
    s = console_stack
    seeded = await seed(s, admin_http)
    async with console_at(browser, s, DESKTOP) as op:
        page = op.page
        threads = page.get_by_role("listbox", name="Conversations")
        await expect(threads.get_by_role("option", name=re.compile("Ann"))).to_have_count(1)
        channels = await threads.locator(".pill.channel").all_text_contents()
        assert sorted(set(channels)) == ["Chatwoot", "Web chat", "WhatsApp"], channels
        await threads.get_by_role("option", name=re.compile("Asha")).click()
        rail = page.get_by_role("complementary", name="Contact")
        await expect(rail).to_be_visible()
        await expect(page.get_by_role("button", name="Contact", exact=True)).to_be_hidden()
        await take_over_keeps_send_clear(page, DESKTOP)
        await shoot(page, "console-1440.png")

        # a dead letter links to its conversation
        await op.go("dead-letters")
        row = page.locator(f'#dead-letters tr[data-dead-letter="{seeded.dead_letter_id}"]')
        await expect(row.locator("td").nth(3)).to_have_text("Message")
        link = row.get_by_role("link", name="Chatwoot 1:30")
        await expect(link).to_have_attribute("href", f"#/inbox/{seeded.dead_conversation_id}")
        await link.click()
        await expect(op.nav("Conversations")).to_have_attribute("aria-current", "page")
        await expect(
            threads.locator(f'[data-id="{seeded.dead_conversation_id}"]')
        ).to_have_attribute("aria-selected", "true")
        await expect(page.locator("#chat-log .msg[data-author=customer] .bubble")).to_have_text(
            ["Where is my parcel?"]
        )

        # the breaker in words, and failures counted in good English
        await op.go("agents")
        agent = page.locator("#agents tr[data-agent=agent1]")
        await expect(agent.locator("[data-breaker]")).to_have_text("Agent reachable")
        breaker = s.bridge.breaker("agent1")
        breaker.record_success()
        breaker.record_failure(time.time())
        await expect(agent).to_contain_text("1 failure in a row")
        while breaker.state(time.time()) == "closed":
            breaker.record_failure(time.time())
        await expect(agent.locator("[data-breaker]")).to_have_text("Agent paused after failures")
        await expect(agent).to_contain_text(f"{breaker.failures} failures in a row")
        await expect(agent).not_to_contain_text("closed")
        breaker.record_success()

        await settings_have_human_labels(op, admin_http)


# labels that are the setting's own name, and read well as they are
PLAIN = {
    "provider": "Provider",
    "default_country": "Default country",
    "send_read_receipts": "Send read receipts",
    "transcription_model": "Transcription model",
}


async def settings_have_human_labels(op: Operator, http: httpx.AsyncClient) -> None:
    page = op.page
    await op.go("settings")
    form = page.get_by_role("form", name="Comms settings")
    await expect(form.get_by_label("WAHA API key")).to_have_attribute("name", "waha_api_key")
    await expect(form.get_by_label("Recordings folder")).to_have_attribute("name", "recordings_dir")
    await expect(form.get_by_role("combobox", name="Provider", exact=True)).to_have_value("mock")
    await expect(form.get_by_role("option", name="Meta Cloud API")).to_have_count(1)
    settings: dict[str, Any] = (await http.get("/api/comms/settings")).json()["settings"]
    keys = [k for k in settings if not k.endswith("_set")]
    labels: dict[str, str] = await form.evaluate(
        "f => Object.fromEntries([...f.querySelectorAll('[name]')].map(el => [el.name,"
        " [...el.closest('label').childNodes].filter(n => n !== el)"
        ".map(n => n.textContent).join('').trim()]))"
    )
    assert sorted(labels) == sorted(keys)
    for key in keys:
        machine = key.replace("_", " ").capitalize()
        if key in PLAIN:
            assert labels[key] == PLAIN[key]
        else:
            assert labels[key] != machine, f"{key} is labelled {labels[key]!r}"
        assert not re.search(r"\b(api|url|id|dir|waha|jwt|hmac)\b", labels[key]), labels[key]
