"""What the web chat widget shows of protocol 1.3's envelope, in Chromium.

A shop's page embeds ``widget.js`` from the bridge; the bridge's web chat inbox 1 is answered
by an agent the bridge dials out to, which answers in raw protocol frames
(``tests/browser/envelope_agent.py``): a live status line and progress bar while it works,
system and warning notices, rich data (cards, quick replies, a table, a chart), files the
visitor attaches, and the end of a session. The tests act as a visitor does and check what the
visitor sees; where the point is what reached the agent, they check the agent's side too.
Screenshots go to docs/screenshots/.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Route, expect

from chatbridge.store import Store
from tests.browser.envelope_agent import ScriptedAgent, ScriptedTurn
from tests.browser.widget_site import Visit, Widget
from tests.e2e.harness import Stack, running_stack, wait_until

SEARCHING = "Searching your orders…"
READING = "Reading order 1042…"
SHIPS = "Order 1042 ships tomorrow."


class Gates:
    """Points where the agent's script waits for the test (set) and the test waits for the
    agent (reached): no sleeps, each step happens when the other side has seen the last."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def __getitem__(self, name: str) -> asyncio.Event:
        return self._events.setdefault(name, asyncio.Event())

    async def wait(self, name: str, timeout: float = 15) -> None:
        async with asyncio.timeout(timeout):
            await self[name].wait()


@pytest.fixture
def gates() -> Gates:
    return Gates()


def png(width: int = 160, height: int = 110) -> bytes:
    """A small valid PNG (a gradient), as a phone's photo would be for the magic-byte check."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((190 - y, 110 + x // 2, 140 + y // 2)) for x in range(width))
        for y in range(height)
    )

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


CARDS = {
    "kind": "cards",
    "cards": [
        {
            "title": "Kyusu teapot",
            "subtitle": "Stoneware · 350 ml",
            "text": "Side handle, fine mesh filter.",
            "url": "https://shop.example/kyusu",
            "buttons": [
                {"title": "View", "url": "https://shop.example/kyusu"},
                {"title": "Add to basket", "value": "Add the kyusu"},
            ],
        },
        {
            "title": "Family teapot",
            "subtitle": "Porcelain · 1.2 l",
            "text": "Pours six cups.",
            "buttons": [{"title": "View", "url": "https://shop.example/family"}],
        },
    ],
}
TABLE = {
    "kind": "table",
    "caption": "Sizes",
    "columns": ["Teapot", "Volume (ml)", "Cups"],
    "rows": [["Kyusu", 350, 2], ["Family", 1200, 6], ["Travel", None, 1]],
}
CHART = {
    "kind": "chart",
    "chart": "bar",
    "title": "Teapots sold",
    "labels": ["Jan", "Feb", "Mar"],
    "series": [{"name": "Kyusu", "values": [12, 18, 9]}, {"name": "Family", "values": [5, 7, 11]}],
}
HAND_MIXED = "Glazes are mixed by hand; colours vary a little."
NEW_LID = "Thanks, I can see the crack. A new lid is on its way."
LABEL = {
    "url": "https://shop.example/labels/1042.pdf",
    "mime": "application/pdf",
    "name": "returns-label.pdf",
    "size": 18432,
}
ATTACK = "<img src=x onerror=alert(1)>"
HOSTILE = {
    "kind": "cards",
    "cards": [
        {
            "title": ATTACK,
            "text": "<script>alert(2)</script>",
            "image_url": "javascript:alert(3)",
            "url": "javascript:alert(4)",
            "buttons": [{"title": "Open", "url": "data:text/html,<script>alert(5)</script>"}],
        }
    ],
}
MAP = {"kind": "map", "text": "We are at 5 Kiln Lane", "lat": 59.91, "lon": 10.75}
GLAZES = {
    "kind": "quick_replies",
    "options": [
        {"title": "Celadon green", "value": "Celadon"},
        {"title": "Tenmoku"},
        {"title": "Shino white", "value": "Shino"},
    ],
}


async def envelope_script(turn: ScriptedTurn, gates: Gates) -> None:
    """What the shop's agent does with each message (by its text)."""
    text = turn.content
    if text == "Where is my order?":
        await turn.status(SEARCHING)
        await gates.wait("progress")
        await turn.progress(0.4, READING)
        await gates.wait("reply")
        await turn.reply(SHIPS)
    elif text == "Anything else?":
        await turn.status("Checking…")
        await gates.wait("no_reply")
        await turn.send({"type": "no_reply"})
    elif text == "Is the shop open?":
        await turn.notice("system", "The shop's assistant is in test mode today.")
        await turn.notice("warning", "Deliveries to Norway are delayed by a storm.")
        await turn.reply("Yes, until 18:00.")
    elif text == "Compare the sizes":
        await turn.reply("Here are the sizes:", data=TABLE)
    elif text == "How did they sell?":
        await turn.reply("Sales this quarter:", data=CHART)
    elif text == "Show me teapots":
        await turn.reply("Two favourites:", data=CARDS)
    elif text == "Where are you?":
        await turn.reply("", data=MAP)  # a kind the widget does not know, no words
    elif text == "Try this":
        await turn.reply("A card for you:", data=HOSTILE)
    elif text == "Which glaze?":
        await turn.reply("Pick a glaze:", data=GLAZES)
        await gates.wait("glaze_notice")
        await turn.notice("system", HAND_MIXED)  # after the reply is shown: outside the turn
    elif turn.files:
        ref = turn.files[0]
        gates["file"].set()
        await turn.file_event("processing", ref["file_id"], content="Looking at your photo…")
        await gates.wait("file_checked")
        await turn.file_event("complete", ref["file_id"], content="A hairline crack on the lid.")
        await turn.reply(NEW_LID, attachments=[LABEL])
    else:
        await turn.reply(f"Echo: {text}")


@pytest.fixture
async def scripted(gates: Gates) -> ScriptedAgent:
    async def script(turn: ScriptedTurn) -> None:
        await envelope_script(turn, gates)

    return ScriptedAgent(script)


@pytest.fixture
async def stack(
    sqlite_url: str, scripted: ScriptedAgent, bridge_settings: dict[str, Any]
) -> AsyncIterator[Stack]:
    """A bridge whose web chat inbox 1 is answered by the scripted agent (dialled out to)."""
    async with scripted.serving() as port:
        async with running_stack(sqlite_url, agent_port=port, webchat=True, **bridge_settings) as s:
            s.bridge.settings.public_url = s.url  # signed file URLs name where we reach it
            yield s
    assert scripted.errors == [], scripted.errors  # the bridge refused none of its frames
    assert scripted.failures == [], scripted.failures


async def stored_out(stack: Stack, widget: Widget) -> list[tuple[str, str]]:
    """The conversation's stored messages as (author, text), oldest first."""
    uid = (await widget.state())["uid"]
    conv = await stack.bridge.store.find_conversation("webchat", uid)
    assert conv is not None
    rows = await stack.bridge.store.list_messages(conv.id, limit=100)
    return [(m.author, m.text) for m in rows]


async def test_status_then_progress_then_the_reply_clears_them(
    site: str, stack: Stack, widget: Widget, gates: Gates, scripted: ScriptedAgent
) -> None:
    page = widget.page
    live = widget.host.locator(".live")
    bar = live.locator("[role=progressbar]")
    await page.goto(site)
    await widget.open()
    await widget.wait_state("s.transport === 'ws'")
    await expect(live).to_be_hidden()

    await widget.say("Where is my order?")
    await expect(live).to_be_visible()
    await expect(live).to_contain_text(SEARCHING)
    await expect(bar).to_be_hidden()  # a status line alone: no bar yet
    await expect(widget.typing).to_be_hidden()  # the line says more than the dots

    gates["progress"].set()
    await expect(live).to_contain_text(READING)  # replaced, not added to
    await expect(bar).to_be_visible()
    await expect(bar).to_have_attribute("aria-valuenow", "40")
    assert await live.count() == 1
    state = await widget.state()
    assert state["live"] == {
        "turn_id": scripted.turns[0]["message_id"],  # the turn the agent is working on
        "text": READING,
        "progress": 0.4,
    }
    await widget.screenshot("widget-status.png")

    gates["reply"].set()
    await expect(widget.bubble("agent", SHIPS)).to_be_visible()
    await expect(live).to_be_hidden()
    assert (await widget.state())["live"] is None

    # a turn that ends without a message: the bridge says status_clear
    await widget.say("Anything else?")
    await expect(live).to_contain_text("Checking…")
    gates["no_reply"].set()
    await expect(live).to_be_hidden()

    # live only: the status and progress lines were never stored as messages
    await stack.idle()
    assert await stored_out(stack, widget) == [
        ("contact", "Where is my order?"),
        ("agent", SHIPS),
        ("contact", "Anything else?"),
    ]


async def test_notices_are_drawn_apart_from_the_agent(
    site: str, stack: Stack, widget: Widget
) -> None:
    page = widget.page
    await page.goto(site)
    await widget.open()
    await widget.say("Is the shop open?")
    await expect(widget.bubble("agent", "Yes, until 18:00.")).to_be_visible()

    system = widget.log.locator(".notice--system")
    warning = widget.log.locator(".notice--warning")
    await expect(system).to_have_text("The shop's assistant is in test mode today.")
    await expect(warning).to_contain_text("Deliveries to Norway are delayed by a storm.")
    await expect(warning).to_have_attribute("role", "note")
    await expect(widget.bubbles("agent")).to_have_count(1)  # not agent bubbles
    assert await widget.log.locator(".msg .notice").count() == 0

    look = """e => { const s = getComputedStyle(e);
        return [s.textAlign, s.alignSelf, s.backgroundColor]; }"""
    assert await system.evaluate(look) == ["center", "center", "rgba(0, 0, 0, 0)"]
    assert await warning.evaluate(look) == ["center", "center", "rgb(254, 243, 199)"]  # amber


async def test_rich_data_renders_and_a_quick_reply_reaches_the_agent(
    site: str, stack: Stack, widget: Widget, scripted: ScriptedAgent, gates: Gates
) -> None:
    page = widget.page
    await page.goto(site)
    await widget.open()

    await widget.say("Compare the sizes")
    table = widget.log.locator(".msg--agent table")
    await expect(table.locator("caption")).to_have_text("Sizes")
    await expect(table.locator("th")).to_have_text(["Teapot", "Volume (ml)", "Cups"])
    await expect(table.locator("tbody tr")).to_have_count(3)
    await expect(table.locator("tbody tr").nth(1).locator("td")).to_have_text(
        ["Family", "1,200", "6"]
    )
    await expect(table.locator("tbody tr").nth(2).locator("td").nth(1)).to_have_text("")

    await widget.say("How did they sell?")
    chart = widget.log.locator(".msg--agent .chart svg")
    await expect(chart).to_have_attribute("aria-label", "Teapots sold: bar chart")
    await expect(chart.locator("rect")).to_have_count(6)  # 3 months, 2 series
    await expect(chart.locator("rect title")).to_contain_text(["Kyusu, Jan: 12"])
    heights = await chart.locator("rect").evaluate_all(
        "rs => rs.map(r => parseFloat(r.getAttribute('height')))"
    )
    assert max(heights) == heights[1]  # Kyusu in Feb (18) is the tallest bar
    await expect(widget.log.locator(".legend")).to_have_text("KyusuFamily")

    await widget.say("Show me teapots")
    cards = widget.log.locator(".msg--agent .card")
    await expect(cards).to_have_count(2)
    await expect(cards.nth(0).locator(".card-title")).to_have_text("Kyusu teapot")
    await expect(cards.nth(0).locator(".card-title")).to_have_attribute(
        "href", "https://shop.example/kyusu"
    )
    await expect(cards.nth(0).locator(".card-subtitle")).to_have_text("Stoneware · 350 ml")
    await expect(cards.nth(0).locator("a.card-button")).to_have_attribute("target", "_blank")
    await expect(cards.nth(1).locator(".card-text")).to_have_text("Pours six cups.")

    await widget.say("Which glaze?")
    replies = widget.log.locator(".msg--agent .quick-reply")
    await expect(replies).to_have_text(["Celadon green", "Tenmoku", "Shino white"])
    # a notice after them is no answer: the quick replies stay open
    gates["glaze_notice"].set()
    await expect(widget.log.locator(".notice--system")).to_have_text(HAND_MIXED)
    await expect(replies.nth(0)).to_be_enabled()
    await widget.screenshot("widget-rich-data.png")

    # a click sends the option's value as the visitor's message; the set is spent
    await replies.nth(0).click()
    await expect(widget.bubble("user", "Celadon")).to_have_count(1)
    await expect(widget.bubble("agent", "Echo: Celadon")).to_be_visible()
    for i in range(3):
        await expect(replies.nth(i)).to_be_disabled()
    await expect(replies.nth(0)).to_have_attribute("aria-pressed", "true")
    assert scripted.turns[-1]["content"] == "Celadon"
    # the card's own reply button of an earlier message is spent too
    await expect(cards.nth(0).locator("button.card-button")).to_be_disabled()
    assert await widget.log.locator(".msg--agent img").count() == 0  # no card had an image


async def test_unknown_kinds_and_hostile_data_stay_text(
    site: str, stack: Stack, visit: Visit, widget: Widget
) -> None:
    page = widget.page
    await page.goto(site)
    await widget.open()
    await widget.say("Where are you?")
    await expect(widget.bubble("agent", "We are at 5 Kiln Lane")).to_be_visible()  # its text
    assert await widget.log.locator(".rich").count() == 0

    await widget.say("Try this")
    card = widget.log.locator(".msg--agent .card")
    await expect(card.locator(".card-title")).to_have_text(ATTACK)  # shown, not parsed
    await expect(card.locator(".card-text")).to_have_text("<script>alert(2)</script>")
    # no URL but http(s) is used: no image, the title is no link, the data: button is left out
    assert await card.locator("img").count() == 0
    assert await card.locator("a").count() == 0
    assert await card.locator(".card-button").count() == 0
    assert visit.dialogs == []


async def test_a_file_reaches_the_agent_and_its_events_show_under_it(
    site: str, stack: Stack, widget: Widget, scripted: ScriptedAgent, gates: Gates
) -> None:
    page = widget.page
    photo = png()
    await page.goto(site)
    await widget.open()
    await widget.wait_state("s.transport === 'ws'")
    attach = widget.host.get_by_role("button", name="Attach a file")
    await expect(attach).to_be_visible()

    # a type the web chat does not take is refused with the bridge's reason; nothing to send
    await widget.host.locator("input[type=file]").set_input_files(
        {"name": "setup.exe", "mimeType": "application/x-msdownload", "buffer": b"MZ\x90\x00"}
    )
    refused = widget.host.locator(".tray .chip--failed")
    await expect(refused).to_contain_text("setup.exe")
    await expect(refused).to_contain_text("Not attached \u2013 application/x-msdownload files")
    await expect(widget.send_button).to_be_disabled()
    await widget.host.get_by_role("button", name="Remove setup.exe").click()
    await expect(widget.host.locator(".tray")).to_be_hidden()

    # a slow upload: the message waits for it (Send stays off, Enter sends nothing)
    held = asyncio.Event()

    async def slow_upload(route: Route) -> None:
        await held.wait()
        await route.continue_()

    await page.route("**/api/webchat/upload", slow_upload)
    await widget.host.locator("input[type=file]").set_input_files(
        {"name": "lid.png", "mimeType": "image/png", "buffer": photo}
    )
    await expect(widget.host.locator(".tray .chip[data-state=uploading]")).to_contain_text(
        "lid.png"
    )
    await widget.say("The lid arrived cracked")
    await expect(widget.send_button).to_be_disabled()
    await expect(widget.input).to_have_value("The lid arrived cracked")
    assert await widget.log.locator(".msg--user").count() == 0
    held.set()
    ready = widget.host.locator(".tray .chip[data-state=ready]")
    await expect(ready).to_contain_text("lid.png")
    await expect(widget.send_button).to_be_enabled()
    await widget.input.press("Enter")
    sent = widget.log.locator(".msg--user").filter(has_text="The lid arrived cracked")
    await expect(sent.locator("img.att-img")).to_have_attribute("alt", "lid.png")
    await expect(widget.host.locator(".tray")).to_be_hidden()

    # the agent got the file as a reference it can fetch: the same bytes
    await gates.wait("file")
    turn = scripted.turns[-1]
    assert turn["content"] == "The lid arrived cracked"
    [ref] = turn["files"]
    assert (ref["file_name"], ref["mime"], ref["size"]) == ("lid.png", "image/png", len(photo))
    async with httpx.AsyncClient() as http:
        fetched = await http.get(ref["file_url"])
    assert fetched.status_code == 200 and fetched.content == photo

    line = sent.locator(".file-status")
    await expect(line).to_have_text("Looking at your photo…")
    gates["file_checked"].set()
    await expect(line).to_have_text("✓ A hairline crack on the lid.")
    await expect(line).to_have_attribute("data-state", "complete")
    # the agent's answer carries a file of its own: a download link, not an image
    answer = widget.log.locator(".msg--agent").filter(has_text=NEW_LID)
    label = answer.locator("a.att-file")
    await expect(label).to_have_text("returns-label.pdf18 KB")
    await expect(label).to_have_attribute("href", str(LABEL["url"]))
    await expect(label).to_have_attribute("download", "returns-label.pdf")
    await widget.screenshot("widget-file.png")

    # after a reload the photo comes back from the history, by the bridge's signed URL
    await page.reload()
    await widget.open()
    img = widget.log.locator(".msg--user img.att-img")
    await expect(img).to_have_count(1)
    src = await img.get_attribute("src")
    assert src is not None and src.startswith(stack.url)
    assert await img.evaluate("i => i.complete && i.naturalWidth") == 160


@pytest.mark.parametrize("bridge_settings", [{"webchat_session_timeout": 2.0}])
async def test_an_expired_session_is_shown_and_the_next_message_starts_anew(
    site: str, stack: Stack, widget: Widget
) -> None:
    page = widget.page
    await page.goto(site)
    await widget.open()
    await widget.say("Hello before the break")
    await expect(widget.bubble("agent", "Echo: Hello before the break")).to_be_visible()
    before = await widget.state()

    # the visitor stays on the page, silent: the bridge ends the session and says so
    ended = widget.log.locator(".notice--ended")
    await expect(ended).to_have_text(
        "This conversation has ended after a while without messages. "
        "Send a message to start a new one.",
        timeout=20_000,
    )
    assert (await widget.state())["ended"] is True

    await widget.say("Hello after the break")
    await expect(widget.bubble("agent", "Echo: Hello after the break")).to_be_visible()
    after = await widget.state()
    assert after["uid"] != before["uid"] and not after["ended"]
    # the new session's session_created is kept, not shown: the one note is the ending
    assert after["session_data"]["uid"] == after["uid"]
    await expect(widget.log.locator(".notice, .system")).to_have_count(1)
    await expect(ended).to_have_count(1)  # said once
    await expect(widget.bubble("user", "Hello before the break")).to_have_count(1)


@pytest.mark.parametrize("bridge_settings", [{"webchat_session_timeout": 2.0}])
async def test_a_session_that_ended_while_the_visitor_was_away_is_shown_once(
    site: str, stack: Stack, widget: Widget
) -> None:
    page = widget.page
    await page.goto(site)
    await widget.open()
    await widget.say("Hello before the tunnel")
    await expect(widget.bubble("agent", "Echo: Hello before the tunnel")).to_be_visible()
    before = await widget.state()

    # offline (the socket gone) while the session expires: its session_expired is missed
    await page.context.set_offline(True)
    await stack.bridge.webchat_live.close_all()
    store = stack.bridge.store
    await wait_until(lambda: _expired(store, before["session_id"]), timeout=15)
    await page.context.set_offline(False)

    # back: the bridge no longer has the session (4410 / 404); the widget makes it again
    # and tells the visitor that the conversation on screen has ended
    await widget.wait_state(f"s.connected && s.uid !== {before['uid']!r}")
    ended = widget.log.locator(".notice--ended")
    await expect(ended).to_have_text(
        "This conversation has ended. Send a message to start a new one."
    )
    await widget.say("Hello after the tunnel")
    await expect(widget.bubble("agent", "Echo: Hello after the tunnel")).to_be_visible()
    await expect(ended).to_have_count(1)


async def _expired(store: Store, session_id: str) -> bool:
    return await store.get_session(session_id, timeout=2.0) is None


@pytest.mark.parametrize("bridge_settings", [{"webchat_upload_types": []}])
async def test_no_attach_button_where_the_bridge_takes_no_files(
    site: str, stack: Stack, widget: Widget
) -> None:
    page = widget.page
    await page.goto(site)
    await widget.open()
    await widget.wait_state("s.transport === 'ws' && s.uploads_enabled === false")
    await expect(widget.host.get_by_role("button", name="Attach a file")).to_be_hidden()
    await widget.say("Just text then")
    await expect(widget.bubble("agent", "Echo: Just text then")).to_be_visible()
