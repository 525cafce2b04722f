"""The console's side of conversation policies (issue 14), in a real browser: the route editor
shows and edits every policy, checks what it can and shows what only the bridge can check
(an unknown time zone) at the field; the conversation view shows a handoff summary as a
private block, apart from the messages.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import httpx
from playwright.async_api import Locator, expect

from chatbridge.ids import new_id
from chatbridge.policies.model import DEFAULT_POLICIES, BusinessHours, IgnoreList, RoutePolicies
from chatbridge.store import tables as t
from chatbridge.store.records import Route
from tests.browser.console_fixtures import Operator, admin_http, console_stack, operator, shoot
from tests.e2e.harness import Stack

__all__ = ["admin_http", "console_stack", "operator"]  # fixtures, imported for pytest


def chatwoot_route(stack: Stack) -> Route:
    (route,) = [r for r in stack.bridge.routes() if (r.channel, r.inbox_id) == ("chatwoot", 1)]
    return route


async def open_editor(operator: Operator) -> Locator:
    """The routes page's editor of Chatwoot inbox 1, its Policies section opened."""
    page = operator.page
    await operator.go("routes")
    await (
        page.locator('#routes tr[data-route="chatwoot:1"]')
        .get_by_role("button", name="Edit")
        .click()
    )
    form = page.get_by_role("form", name="Edit route")
    section = form.locator("#route-policies")
    if await section.get_attribute("open") is None:
        await section.locator("summary").click()
    await expect(form.get_by_label("Debounce (ms)")).to_be_visible()
    return form


async def test_route_editor_edits_every_policy_and_keeps_them(
    operator: Operator, console_stack: Stack
) -> None:
    page = operator.page
    await operator.log_in()
    await operator.go("routes")
    row = page.locator('#routes tr[data-route="chatwoot:1"]')
    await expect(row.locator(".policies-cell")).to_have_text("defaults")

    form = await open_editor(operator)
    await form.get_by_label("Debounce (ms)").fill("1500")
    await form.get_by_label("Max wait (ms)").fill("20000")
    await form.get_by_label("Close keywords").fill("that's all")
    await form.get_by_role("radio", name=re.compile("^Supersede")).check()
    await form.get_by_label("Handoff keywords").fill("human,\nagent")
    await form.get_by_label("Resume keywords").fill("bot")
    await form.get_by_role("checkbox", name=re.compile("^Customer can resume")).check()
    await form.get_by_label("Expire after (s)").fill("1800")
    await form.get_by_role("checkbox", name=re.compile("^Expiry returns to bot")).check()
    await form.get_by_role("checkbox", name=re.compile("^Split replies")).check()
    await form.get_by_label("Typing per character (ms)").fill("40")
    await expect(form.get_by_label("Time zone")).to_be_hidden()
    await form.get_by_role("checkbox", name=re.compile("^Business hours")).check()
    await form.get_by_label("Time zone").fill("Europe/Berlin")
    await form.get_by_label("Monday").fill("09:00-12:00, 13:00-17:30")
    await form.get_by_role("button", name=re.compile("^Copy Monday to Tue")).click()
    await form.get_by_label("Saturday").fill("10:00-14:00")
    await form.get_by_label("Holidays").fill("2026-12-24\n2026-12-25")
    await form.get_by_label("Outside hours").select_option("away_handoff")
    await form.get_by_label("Away text").fill("We are closed; a colleague answers from 9:00.")
    await form.get_by_role("checkbox", name=re.compile("^Handoff summary")).check()
    await form.get_by_label("Summary messages").fill("6")
    await form.get_by_label("Group patterns").fill("*@g.us")
    await form.get_by_label("Phone numbers").fill("+14155550123, +14155550124")
    summary = form.locator(".policy-summary")
    await expect(summary).to_contain_text("debounce 1.5 s · max wait 20 s")
    await expect(summary).to_contain_text("hours Europe/Berlin (outside: away handoff)")
    await form.locator("#route-policies").evaluate("el => el.scrollIntoView({block: 'start'})")
    await shoot(page, "console-route-policies.png")
    await form.get_by_role("button", name="Save route").click()

    cell = row.locator(".policies-cell")
    await expect(cell).to_contain_text("debounce 1.5 s · max wait 20 s")
    await expect(cell).to_contain_text("supersede")
    await expect(cell).to_contain_text("hours Europe/Berlin")
    await expect(cell).to_contain_text("ignores 3")
    week = ["09:00-12:00", "13:00-17:30"]
    assert chatwoot_route(console_stack).policies == RoutePolicies(
        debounce_ms=1500,
        max_wait_ms=20_000,
        close_keywords=["that's all"],
        in_flight="supersede",
        handoff_keywords=["human", "agent"],
        resume_keywords=["bot"],
        customer_can_resume=True,
        expire_after_seconds=1800,
        expire_returns_to_bot=True,
        split_replies=True,
        ms_per_char=40,
        business_hours=BusinessHours(
            timezone="Europe/Berlin",
            weekly={d: week for d in ("mon", "tue", "wed", "thu", "fri")}
            | {"sat": ["10:00-14:00"]},
            holidays=[date(2026, 12, 24), date(2026, 12, 25)],
            outside="away_handoff",
            away_text="We are closed; a colleague answers from 9:00.",
        ),
        handoff_summary=True,
        summary_messages=6,
        ignore=IgnoreList(phones=["+14155550123", "+14155550124"], group_patterns=["*@g.us"]),
    )

    # a fresh page shows what was stored, not what the last page had typed
    await page.reload()
    form = await open_editor(operator)
    await expect(form.get_by_label("Debounce (ms)")).to_have_value("1500")
    await expect(form.get_by_role("radio", name=re.compile("^Supersede"))).to_be_checked()
    await expect(form.get_by_label("Handoff keywords")).to_have_value("human, agent")
    await expect(form.get_by_label("Time zone")).to_be_visible()
    await expect(form.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    await expect(form.get_by_label("Thursday")).to_have_value("09:00-12:00, 13:00-17:30")
    await expect(form.get_by_label("Sunday")).to_have_value("")
    await expect(form.get_by_label("Holidays")).to_have_value("2026-12-24, 2026-12-25")
    await expect(form.get_by_label("Outside hours")).to_have_value("away_handoff")
    await expect(form.get_by_label("Group patterns")).to_have_value("*@g.us")

    # back to the defaults: nothing but the route itself is stored
    await form.get_by_label("Debounce (ms)").fill("0")
    await form.get_by_label("Max wait (ms)").fill("10000")
    await form.get_by_label("Close keywords").fill("")
    await form.get_by_role("radio", name=re.compile("^Queue")).check()
    for name in ("Handoff keywords", "Resume keywords", "Expire after (s)", "Group patterns"):
        await form.get_by_label(name).fill("")
    await form.get_by_label("Phone numbers").fill("")
    await form.get_by_label("Typing per character (ms)").fill("30")
    await form.get_by_label("Summary messages").fill("10")
    for name in (
        "Customer can resume",
        "Expiry returns to bot",
        "Split replies",
        "Business hours",
        "Handoff summary",
    ):
        await form.get_by_role("checkbox", name=re.compile(f"^{name}")).uncheck()
    await form.get_by_role("button", name="Save route").click()
    await expect(cell).to_have_text("defaults")
    assert chatwoot_route(console_stack).policies == DEFAULT_POLICIES


async def test_route_editor_names_what_is_wrong_and_keeps_the_typing(
    operator: Operator, console_stack: Stack
) -> None:
    page = operator.page
    await operator.log_in()
    form = await open_editor(operator)
    problems = form.locator("#route-errors")
    max_wait = form.get_by_label("Max wait (ms)")
    before = chatwoot_route(console_stack).updated_at

    # what the page can check itself: nothing is sent
    await form.get_by_label("Debounce (ms)").fill("5000")
    await max_wait.fill("1000")
    await form.get_by_role("button", name="Save route").click()
    await expect(problems).to_contain_text("Max wait (ms): must be at least the debounce")
    await expect(max_wait).to_have_attribute("aria-invalid", "true")
    await expect(max_wait).to_be_focused()
    await expect(form.locator('[data-path="policies.max_wait_ms"] .field-error')).to_have_text(
        "must be at least the debounce"
    )
    # editing the field takes its note away
    await max_wait.fill("8000")
    await expect(form.locator('[data-path="policies.max_wait_ms"] .field-error')).to_have_count(0)

    await form.get_by_role("checkbox", name=re.compile("^Business hours")).check()
    await form.get_by_label("Monday").fill("9-17")
    await form.get_by_label("Outside hours").select_option("away_handoff")
    await form.get_by_role("button", name="Save route").click()
    await expect(problems).to_contain_text('Monday: "9-17" is not a time range like 09:00-17:30')
    await expect(problems).to_contain_text("Away text: an away text is needed")
    await expect(form.get_by_label("Monday")).to_have_attribute("aria-invalid", "true")
    await expect(form.get_by_label("Away text")).to_have_attribute("aria-invalid", "true")

    # what only the bridge knows: the time zone database. The 422 names the field.
    time_zone = form.get_by_label("Time zone")
    await form.get_by_label("Monday").fill("09:00-17:00")
    await form.get_by_label("Away text").fill("Closed for now.")
    await time_zone.fill("Mars/Olympus_Mons")
    async with page.expect_response(
        lambda r: r.url.endswith("/config/mappings/1?channel=chatwoot") and r.status == 422
    ):
        await form.get_by_role("button", name="Save route").click()
    await expect(problems).to_contain_text("The bridge refused the route.")
    await expect(problems).to_contain_text("Time zone: unknown time zone 'Mars/Olympus_Mons'")
    await expect(time_zone).to_have_attribute("aria-invalid", "true")
    await expect(
        form.locator('[data-path="policies.business_hours.timezone"] .field-error')
    ).to_contain_text("unknown time zone 'Mars/Olympus_Mons'")
    await time_zone.evaluate("el => el.scrollIntoView({block: 'center'})")
    await shoot(page, "console-route-policies-error.png")
    # nothing typed was lost, nothing was stored
    await expect(time_zone).to_have_value("Mars/Olympus_Mons")
    await expect(form.get_by_label("Debounce (ms)")).to_have_value("5000")
    await expect(form.get_by_label("Monday")).to_have_value("09:00-17:00")
    route = chatwoot_route(console_stack)
    assert route.policies == DEFAULT_POLICIES and route.updated_at == before

    await time_zone.fill("America/New_York")
    await form.get_by_role("button", name="Save route").click()
    row = page.locator('#routes tr[data-route="chatwoot:1"]')
    await expect(row.locator(".policies-cell")).to_contain_text("hours America/New_York")
    hours = chatwoot_route(console_stack).policies.business_hours
    assert hours is not None and hours.timezone == "America/New_York"
    assert hours.weekly == {"mon": ["09:00-17:00"]} and hours.away_text == "Closed for now."


async def add_note_message(
    stack: Stack, conversation_id: str, text: str, at: float, **meta: Any
) -> None:
    """A private note in the conversation, as the bridge writes a handoff summary."""
    async with stack.bridge.store.engine.begin() as conn:
        await conn.execute(
            t.messages.insert().values(
                id=new_id("m"),
                conversation_id=conversation_id,
                direction="note",
                author="system",
                text=text,
                content_type="text",
                attachments=[],
                meta=meta,
                created_at=at,
            )
        )


async def messages_of(http: httpx.AsyncClient, thread_id: str) -> list[dict[str, Any]]:
    r = await http.get(f"/api/comms/threads/{thread_id}/messages")
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


async def test_conversation_shows_a_handoff_summary_as_a_private_block(
    operator: Operator, console_stack: Stack, admin_http: httpx.AsyncClient
) -> None:
    page = operator.page
    r = await admin_http.post(
        "/api/comms/mock/inbound",
        json={"from": "+15550002222", "name": "Bo", "text": "I want a person", "id": "wamid-s1"},
    )
    assert r.status_code == 200, r.text
    await console_stack.idle()
    threads = (await admin_http.get("/api/comms/threads")).json()["threads"]
    (thread_id,) = [th["id"] for th in threads if th["channel"] == "whatsapp"]
    summary = "Bo asks for a person.\nOrder #4411, parcel late by a week."
    last = max(m["created_at"] for m in await messages_of(admin_http, thread_id))
    await add_note_message(console_stack, thread_id, "Call transcript: (none)", last + 1)
    await add_note_message(console_stack, thread_id, summary, last + 2, kind="handoff_summary")

    await operator.log_in()
    await page.goto(f"{operator.base}/console#/inbox/{thread_id}")
    log = page.locator("#chat-log")
    block = log.get_by_role("region", name="Handoff summary")
    await expect(block).to_contain_text("Handoff summary — only your team sees this")
    await expect(block.locator(".summary-text")).to_have_text(summary)
    await expect(block).to_contain_text("private note, never sent")
    # the summary is not a message bubble; the other system note stays as it was
    await expect(log.locator(".msg[data-author=system] .bubble")).to_have_text(
        ["Call transcript: (none)"]
    )
    await expect(log.locator(".msg[data-author=customer] .bubble")).to_have_text(
        ["I want a person"]
    )
    await shoot(page, "console-handoff-summary.png")

    notes = [m for m in await messages_of(admin_http, thread_id) if m["direction"] == "note"]
    assert [(m["text"], m["meta"]) for m in notes] == [
        ("Call transcript: (none)", {}),
        (summary, {"kind": "handoff_summary"}),
    ]
