"""The web chat widget in a real browser (Debian's chromium, driven by Playwright).

A shop's page on one origin embeds ``widget.js`` from the bridge on another; the bridge's web
chat inbox 1 is answered by a mock agent ("stream" → a slow stream, "slow" → a delay, else an
echo). The tests act as a visitor does (click, type, Enter, Escape) and check what the visitor
sees, plus the bridge's own store where "exactly once" is the point. Screenshots of the widget
go to docs/screenshots/.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Route, WebSocketRoute, expect

from chatbridge.store import Store
from chatbridge.testing.mock_agent import echo_text
from tests.browser.widget_site import Visit, Widget
from tests.e2e.harness import Stack, wait_until

LIVE_SOCKET = re.compile(r"/api/ws/chat/")
MESSAGES_API = re.compile(r"/api/webchat/sessions/[^/]+/messages")


async def stored_texts(stack: Stack, widget: Widget, direction: str = "in") -> list[str]:
    """The texts of the widget's conversation as the bridge stored them: ``in`` (the
    visitor's) or ``out`` (the replies)."""
    uid = (await widget.state())["uid"]
    conv = await stack.bridge.store.find_conversation("webchat", uid)
    if conv is None:
        return []
    rows = await stack.bridge.store.list_messages(conv.id, limit=500)
    return [m.text for m in rows if m.direction == direction and m.text]


async def test_embedded_widget_round_trip(site: str, stack: Stack, widget: Widget) -> None:
    page = widget.page
    await page.goto(site)
    await expect(widget.launcher).to_be_visible()
    await expect(widget.panel).to_be_hidden()
    await expect(widget.launcher).to_have_attribute("aria-expanded", "false")
    await widget.screenshot("widget-closed.png")

    await widget.open()
    await expect(widget.panel).to_be_visible()
    await expect(widget.input).to_be_focused()  # focus moves into the composer on open
    await expect(widget.log).to_have_attribute("aria-live", "polite")
    await widget.wait_state("s.transport === 'ws'")
    state = await widget.state()
    assert state["bridge"] == stack.url and not stack.url.startswith(site)  # cross-origin

    await widget.say("Hello, do you ship teapots to Norway?")
    await expect(widget.bubble("user", "Hello, do you ship teapots to Norway?")).to_have_count(1)
    reply = echo_text("Hello, do you ship teapots to Norway?")
    await expect(widget.bubble("agent", reply)).to_have_count(1)

    # Shift+Enter is a new line inside one message; Enter sends it
    await widget.input.press_sequentially("Two lines:")
    await widget.input.press("Shift+Enter")
    await widget.input.press_sequentially("the second one")
    await expect(widget.bubbles("user")).to_have_count(1)
    await widget.input.press("Enter")
    await expect(widget.bubble("agent", echo_text("Two lines:\nthe second one"))).to_have_count(1)
    await expect(widget.input).to_have_value("")

    # the page's aggressive styles (red cursive on every div) do not reach the widget
    font = await widget.bubbles("agent").first.evaluate("e => getComputedStyle(e).fontFamily")
    assert "cursive" not in font
    await widget.screenshot("widget-conversation.png")

    # the bridge stored exactly what was typed, once
    assert await stored_texts(stack, widget) == [
        "Hello, do you ship teapots to Norway?",
        "Two lines:\nthe second one",
    ]

    # Escape closes the panel and gives focus back to the launcher
    await widget.input.press("Escape")
    await expect(widget.panel).to_be_hidden()
    await expect(widget.launcher).to_be_focused()
    await expect(widget.launcher).to_have_attribute("aria-expanded", "false")


async def test_streamed_reply_grows_chunk_by_chunk(site: str, stack: Stack, widget: Widget) -> None:
    page = widget.page
    await page.goto(site)
    await widget.open()
    await widget.wait_state("s.transport === 'ws'")
    # every text the growing bubble shows, as the visitor would see it
    await page.evaluate(
        """() => {
            const root = document.getElementById("chatbridge-widget").shadowRoot;
            const seen = (window.__streamed = []);
            new MutationObserver(() => {
                const b = root.querySelector(".msg--streaming .bubble");
                if (b && seen[seen.length - 1] !== b.textContent) seen.push(b.textContent);
            }).observe(root.querySelector(".log"),
                       {subtree: true, childList: true, characterData: true});
        }"""
    )
    text = "stream me the story of the blue teapot glaze please"
    await widget.say(text)
    await page.wait_for_function("() => window.__streamed.length >= 3")
    await expect(widget.log.locator(".msg--streaming")).to_have_count(1)
    await widget.screenshot("widget-streaming.png")

    final = echo_text(text)
    await expect(widget.bubble("agent", final)).to_have_count(1)
    await expect(widget.log.locator(".msg--streaming")).to_have_count(0)
    await expect(widget.bubbles("agent")).to_have_count(1)  # the final replaced the chunks
    partials: list[str] = await page.evaluate("() => window.__streamed")
    lengths = [len(p) for p in partials]
    assert len(set(lengths)) >= 2, partials
    assert lengths == sorted(lengths) and lengths[-1] <= len(final), partials
    assert all(final.startswith(p) for p in partials), partials
    assert await stored_texts(stack, widget, "out") == [final]


# typing from the turn's start, so it shows for the whole of the slow answer's 1.5 s
@pytest.mark.parametrize("bridge_settings", [{"typing_delay_seconds": 0}])
async def test_typing_indicator_while_the_agent_works(
    site: str, stack: Stack, widget: Widget
) -> None:
    page = widget.page
    await page.goto(site)
    await widget.open()
    await expect(widget.typing).to_be_hidden()
    await widget.say("a slow question about delivery times")
    await expect(widget.typing).to_be_visible()
    await expect(widget.typing).to_contain_text("typing")  # for screen readers
    assert (await widget.state())["typing"] is True
    await expect(
        widget.bubble("agent", echo_text("a slow question about delivery times"))
    ).to_be_visible()
    await expect(widget.typing).to_be_hidden()


class LoseFirstAnswer:
    """Network trouble at the worst moment: the first attempt to send ``text`` reaches the
    bridge, but the connection breaks before the answer comes back (a WebSocket is cut right
    after the frame went out; an HTTP response is lost). Everything else passes through."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lost = 0

    def socket(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        cut = False

        async def from_page(message: str | bytes) -> None:
            nonlocal cut
            if cut:
                return
            server.send(message)
            if not self.lost and isinstance(message, str) and self.text in message:
                self.lost += 1
                cut = True
                await ws.close(code=4000, reason="network trouble")
                await server.close()

        def from_server(message: str | bytes) -> None:
            if not cut:
                ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    async def http(self, route: Route) -> None:
        request = route.request
        if request.method == "POST" and not self.lost and self.text in (request.post_data or ""):
            self.lost += 1
            await route.fetch()  # the bridge gets it...
            await route.abort("connectionreset")  # ...the widget never hears back
        else:
            await route.continue_()


async def test_offline_message_is_queued_and_delivered_exactly_once(
    site: str, stack: Stack, widget: Widget
) -> None:
    page = widget.page
    offline_text = "Sent from the tunnel"
    trouble = LoseFirstAnswer(offline_text)
    await page.route_web_socket(LIVE_SOCKET, trouble.socket)
    await page.route(MESSAGES_API, trouble.http)
    await page.goto(site)
    await widget.open()
    await widget.say("Before the tunnel")
    await expect(widget.bubble("agent", echo_text("Before the tunnel"))).to_be_visible()

    # the network goes away and the bridge drops the live socket
    await page.context.set_offline(True)
    assert await stack.bridge.webchat_live.close_all() >= 1
    await widget.wait_state("!s.connected")

    await widget.say(offline_text)
    await expect(widget.log.locator(".msg--pending .bubble")).to_have_text(offline_text)
    await widget.wait_state("s.queued === 1 && !s.connected")
    persisted = await page.evaluate(
        "() => Object.keys(localStorage).filter(k => k.endsWith(':queue'))"
        ".map(k => localStorage.getItem(k)).join()"
    )
    assert offline_text in persisted
    assert offline_text not in await stored_texts(stack, widget)

    # back online: the first attempt's answer is lost, the retry (same client_message_id)
    # is recognised as a duplicate
    await page.context.set_offline(False)
    await expect(widget.bubble("agent", echo_text(offline_text))).to_be_visible()
    await widget.wait_state("s.queued === 0 && s.transport === 'ws'")
    assert trouble.lost == 1
    await stack.idle()
    assert await stored_texts(stack, widget) == ["Before the tunnel", offline_text]
    assert await stored_texts(stack, widget, "out") == [
        echo_text("Before the tunnel"),
        echo_text(offline_text),
    ]
    await expect(widget.bubble("user", offline_text)).to_have_count(1)
    await expect(widget.bubble("agent", echo_text(offline_text))).to_have_count(1)
    await expect(widget.log.locator(".msg--pending")).to_have_count(0)
    persisted = await page.evaluate(
        "() => Object.keys(localStorage).filter(k => k.endsWith(':queue'))"
        ".map(k => localStorage.getItem(k)).join()"
    )
    assert offline_text not in persisted


async def test_history_survives_a_reload(site: str, stack: Stack, widget: Widget) -> None:
    page = widget.page
    # no data-bridge: the widget talks to the origin it was loaded from
    await page.goto(f"{site}/?bridge_attr=0")
    await widget.open()
    await widget.say("Remember my order 42")
    await expect(widget.bubble("agent", echo_text("Remember my order 42"))).to_be_visible()
    before = await widget.state()
    assert before["bridge"] == stack.url

    await page.reload()
    await expect(widget.launcher).to_be_visible()
    await expect(widget.host.locator(".badge")).to_be_hidden()  # history is not "unread"
    await widget.open()
    await expect(widget.bubble("user", "Remember my order 42")).to_have_count(1)
    await expect(widget.bubble("agent", echo_text("Remember my order 42"))).to_have_count(1)
    await widget.wait_state("s.transport === 'ws'")
    after = await widget.state()
    assert (after["session_id"], after["uid"]) == (before["session_id"], before["uid"])

    # and the conversation goes on in the same session
    await widget.say("Still there?")
    await expect(widget.bubble("agent", echo_text("Still there?"))).to_be_visible()
    await expect(widget.bubbles("agent")).to_have_count(2)
    await page.emulate_media(color_scheme="dark")
    await widget.screenshot("widget-dark.png")


async def test_markup_in_messages_is_shown_as_text(
    site: str, stack: Stack, visit: Visit, widget: Widget
) -> None:
    page = widget.page
    await page.goto(site)
    await widget.open()
    attack = "<img src=x onerror=alert(1)>"
    await widget.say(attack)
    await expect(widget.bubble("user", attack)).to_have_count(1)
    await expect(widget.bubble("agent", echo_text(attack))).to_have_count(1)
    assert await widget.log.locator("img").count() == 0
    assert await page.locator("img").count() == 0
    assert visit.dialogs == []
    assert await stored_texts(stack, widget) == [attack]  # stored as sent, not escaped


BROKEN_WEBSOCKET = """
window.__wsAttempts = 0;
window.WebSocket = function BlockedWebSocket() {
    // as behind a proxy that refuses upgrades: never opens, errors, closes with 1006
    window.__wsAttempts += 1;
    var ws = this;
    ws.readyState = 0;
    setTimeout(function () {
        ws.readyState = 3;
        if (ws.onerror) ws.onerror(new Event("error"));
        if (ws.onclose) ws.onclose({code: 1006, reason: "", wasClean: false});
    }, 10);
};
window.WebSocket.prototype.send = function () { throw new Error("not open"); };
window.WebSocket.prototype.close = function () {};
"""


async def test_long_poll_fallback_when_websockets_fail(
    site: str, stack: Stack, widget: Widget
) -> None:
    page = widget.page
    await page.add_init_script(BROKEN_WEBSOCKET)
    await page.goto(site)
    await widget.open()
    await widget.wait_state("s.transport === 'poll' && s.connected")
    assert await page.evaluate("() => window.__wsAttempts") >= 3

    await widget.say("Is anyone there without WebSockets?")
    reply = echo_text("Is anyone there without WebSockets?")
    await expect(widget.bubble("agent", reply)).to_have_count(1)
    await expect(widget.bubble("user", "Is anyone there without WebSockets?")).to_have_count(1)
    await expect(widget.log.locator(".msg--pending")).to_have_count(0)
    assert (await widget.state())["transport"] == "poll"
    assert await stored_texts(stack, widget) == ["Is anyone there without WebSockets?"]

    # The bridge holds a long-poll until news or its wait ends, even after the client has
    # gone, and its shutdown waits for it: leave, then wake the held request.
    uid = (await widget.state())["uid"]
    await page.close()
    stack.bridge.webchat_live.news(uid)


async def test_phone_viewport_goes_full_screen(site: str, stack: Stack, visit: Visit) -> None:
    page = await visit.page(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    widget = Widget(page)
    await page.goto(site)
    await widget.launcher.tap()
    await expect(widget.panel).to_be_visible()
    box = await widget.panel.bounding_box()
    assert box is not None
    assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 390, 844)
    await expect(widget.launcher).to_be_hidden()  # the panel covers the screen

    await widget.say("Hi from my phone")
    await expect(widget.bubble("agent", echo_text("Hi from my phone"))).to_be_visible()
    await widget.screenshot("widget-mobile.png")

    await widget.close_button.tap()
    await expect(widget.panel).to_be_hidden()
    await expect(widget.launcher).to_be_visible()


async def _expired(store: Store, session_id: str, timeout: float) -> bool:
    return await store.get_session(session_id, timeout=timeout) is None


@pytest.mark.parametrize("bridge_settings", [{"webchat_session_timeout": 2.5}])
async def test_expired_session_is_made_again(site: str, stack: Stack, widget: Widget) -> None:
    page = widget.page
    await page.goto(site)
    await widget.open()
    await widget.say("Hello before the break")
    await expect(widget.bubble("agent", echo_text("Hello before the break"))).to_be_visible()
    before = await widget.state()

    # the visitor goes away long enough for the bridge to expire the session
    await page.context.set_offline(True)
    await stack.bridge.webchat_live.close_all()
    store = stack.bridge.store
    await wait_until(lambda: _expired(store, before["session_id"], 2.5), timeout=15)
    await page.context.set_offline(False)

    # 4410 / 404 unknown_session: the widget makes the session again and goes on
    await widget.wait_state(f"s.connected && s.uid !== {before['uid']!r}")
    after = await widget.state()
    assert after["session_id"] == before["session_id"]
    await widget.say("Hello after the break")
    await expect(widget.bubble("agent", echo_text("Hello after the break"))).to_be_visible()
    assert await stored_texts(stack, widget) == ["Hello after the break"]  # a new conversation
    await expect(widget.bubble("user", "Hello before the break")).to_have_count(1)


async def test_demo_page(stack: Stack, visit: Visit) -> None:
    page = await visit.page()
    widget = Widget(page)
    await page.goto(f"{stack.url}/chat")
    await expect(page.get_by_role("heading", name="Chatbridge web chat")).to_be_visible()
    await expect(page.locator("pre").first).to_contain_text('data-inbox="1"')
    await page.get_by_role("button", name="open the chat").click()
    await expect(widget.panel).to_be_visible()
    await widget.say("Hello from the demo page")
    await expect(widget.bubble("agent", echo_text("Hello from the demo page"))).to_be_visible()
    assert (await widget.state())["bridge"] == stack.url
