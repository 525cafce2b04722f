"""Rich data on the way to a channel, without a server: a reply with only data is still a
reply, its data rides the delivery and the reply's meta, and every channel but the web chat
is sent readable text; an unknown or malformed kind degrades to text and never fails."""

from __future__ import annotations

from typing import Any

import pytest

from chatbridge.models import ConversationRef, OutboundAction
from chatbridge.pipeline.decisions import plan_outcome
from chatbridge.pipeline.delivery_runner import with_data_text
from chatbridge.store.records import Route
from chatbridge.transports.base import AgentOutcome

CARDS: dict[str, Any] = {
    "kind": "cards",
    "cards": [
        {
            "title": "Blue mug",
            "subtitle": "12 EUR",
            "url": "https://shop.example/mug",
            "buttons": [{"title": "Buy", "url": "https://shop.example/buy/mug"}],
        }
    ],
}
QUICK: dict[str, Any] = {
    "kind": "quick_replies",
    "options": [{"title": "Yes", "value": "yes"}, {"title": "No"}],
}

ROUTE = Route(
    id=1,
    channel="chatwoot",
    inbox_id=1,
    agent_id="a1",
    reply_mode="async",
    timeout_seconds=5,
    fallback_text=None,
    on_failure="fallback",
    agent_bot_mode=False,
    created_at=0,
    updated_at=0,
)


def action(text: str | None, kind: str = "message", channel: str = "chatwoot") -> OutboundAction:
    ref = ConversationRef(id="c_1", channel=channel, channel_key="1:1", inbox_id=1)
    return OutboundAction(kind=kind, conversation=ref, idempotency_key="d_1", text=text)  # type: ignore[arg-type]


@pytest.mark.parametrize("channel", ["chatwoot", "whatsapp", "http"])
def test_cards_become_readable_text_on_other_channels(channel: str) -> None:
    sent = with_data_text(action("Here are two:"), CARDS, channel)
    assert sent.text == (
        "Here are two:\n\nBlue mug\n12 EUR\nhttps://shop.example/mug\n"
        "- Buy: https://shop.example/buy/mug"
    )


def test_quick_replies_without_words_are_numbered_options() -> None:
    assert with_data_text(action(""), QUICK, "chatwoot").text == "1. Yes\n2. No"


def test_the_web_chat_draws_the_data_itself() -> None:
    a = action("Here are two:", channel="webchat")
    assert with_data_text(a, CARDS, "webchat") is a


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"kind": "map", "title": "Our shop"}, "Pick one\n\nOur shop"),
        ({"kind": "map", "lat": 1.5}, 'Pick one\n\n{"kind":"map","lat":1.5}'),
        (
            {"kind": "cards", "cards": "not a list"},
            'Pick one\n\n{"cards":"not a list","kind":"cards"}',  # keys sorted
        ),
        (
            {"kind": "table", "columns": ["a"], "rows": [[1, 2, 3]], "text": "the table"},
            "Pick one\n\nthe table",
        ),
    ],
)
def test_an_unknown_or_malformed_kind_degrades_to_text(data: dict[str, Any], text: str) -> None:
    assert with_data_text(action("Pick one"), data, "chatwoot").text == text


@pytest.mark.parametrize("data", [None, "cards", ["x"], 7])
def test_no_data_object_leaves_the_text_alone(data: object) -> None:
    a = action("plain")
    assert with_data_text(a, data, "chatwoot") is a


def test_typing_and_handoff_are_not_touched() -> None:
    a = action(None, kind="typing_on")
    assert with_data_text(a, CARDS, "chatwoot") is a


def test_a_reply_with_only_data_is_a_reply_carrying_it() -> None:
    outcome = AgentOutcome("reply", content=None, data=QUICK)
    plan = plan_outcome(outcome, route=ROUTE, default_fallback="sorry", max_attempts=3)
    assert plan.outcome == "reply" and plan.reply_text == ""
    assert plan.reply_meta == {"data": QUICK}
    [message] = [s for s in plan.deliveries if s.kind == "message"]
    assert message.payload == {"data": QUICK}


def test_a_reply_with_words_and_data_keeps_both() -> None:
    outcome = AgentOutcome("reply", content="Which one?", data=CARDS)
    plan = plan_outcome(outcome, route=ROUTE, default_fallback="sorry", max_attempts=3)
    [message] = [s for s in plan.deliveries if s.kind == "message"]
    assert (message.text, message.payload) == ("Which one?", {"data": CARDS})
