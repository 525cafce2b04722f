"""Choices without I/O: numbered text, matching a typed answer, Meta's interactive object and
its limits (beyond them: numbered text, never a refusal)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbridge.channels.interactive import Offer, match_choice, numbered_text
from chatbridge.channels.whatsapp.interactive import (
    evolution_choice,
    meta_choice,
    meta_interactive,
)
from chatbridge.testing.fake_wa_interactive import check


def offer(*titles: str, kind: str = "buttons", **kw: Any) -> Offer:
    options = [{"id": f"o{i}", "title": t} for i, t in enumerate(titles, 1)]
    found = Offer.from_json({"kind": kind, "options": options, **kw})
    assert found is not None
    return found


def test_numbered_text() -> None:
    choices = Offer.from_json(
        {
            "kind": "list",
            "title": "Sizes",
            "options": [
                {"id": "s", "title": "Small"},
                {"id": "l", "title": "Large", "description": "500 ml"},
            ],
        }
    )
    assert choices is not None
    assert numbered_text("Which size?", choices) == (
        "Sizes\n\nWhich size?\n\n1. Small\n2. Large — 500 ml"
    )
    assert numbered_text(None, offer("Yes", "No")) == "1. Yes\n2. No"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("2", "o2"),
        (" 2. ", "o2"),
        ("2)", "o2"),
        ("#1", "o1"),
        ("no", "o2"),  # the title "No", not a number
        ("  YES ", "o1"),
        ("Yes!", "o1"),
        ("3", None),  # out of range
        ("0", None),
        ("yes please", None),
        ("", None),
    ],
)
def test_match_choice(typed: str, expected: str | None) -> None:
    option = match_choice(typed, offer("Yes", "No"))
    assert (option.id if option else None) == expected


@given(st.integers(min_value=1, max_value=10), st.sampled_from(["{}", "{}.", " {} ", "#{}", "{})"]))
def test_every_number_picks_its_option(count: int, form: str) -> None:
    choices = offer(*(f"Option {i}" for i in range(1, count + 1)))
    for n in range(1, count + 1):
        option = match_choice(form.format(n), choices)
        assert option is not None and option.id == f"o{n}"
    assert match_choice(form.format(count + 1), choices) is None


def test_offer_ignores_unusable_options() -> None:
    assert Offer.from_json({"options": []}) is None
    assert Offer.from_json({"options": [{"id": "", "title": "x"}]}) is None
    assert Offer.from_json("nope") is None


def test_meta_buttons_and_list() -> None:
    buttons = meta_interactive("Pick one", offer("Yes", "No", title="Confirm"))
    assert buttons == {
        "type": "button",
        "header": {"type": "text", "text": "Confirm"},
        "body": {"text": "Pick one"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "o1", "title": "Yes"}},
                {"type": "reply", "reply": {"id": "o2", "title": "No"}},
            ]
        },
    }
    assert check(buttons) is None
    # four buttons do not fit: a list, with the default button label
    listed = meta_interactive("Pick", offer("A", "B", "C", "D"))
    assert listed is not None and listed["type"] == "list"
    assert listed["action"]["button"] == "Choose"
    assert [r["id"] for r in listed["action"]["sections"][0]["rows"]] == ["o1", "o2", "o3", "o4"]
    assert check(listed) is None
    # a button title over 20 characters: a list (rows take 24)
    long_button = meta_interactive("Pick", offer("x" * 21, "No"))
    assert long_button is not None and long_button["type"] == "list"
    assert check(long_button) is None


@pytest.mark.parametrize(
    "choices",
    [
        offer(*(f"o{i}" for i in range(11))),  # 11 rows
        offer("x" * 25, "No"),  # row title over 24
        offer("Yes", "No", kind="list", button="b" * 21),  # list button over 20
        offer("Yes", "No", title="t" * 61),  # header over 60
    ],
)
def test_beyond_meta_limits_is_numbered_text(choices: Offer) -> None:
    assert meta_interactive("Pick", choices) is None


def test_meta_body_limits() -> None:
    assert meta_interactive("x" * 1025, offer("Yes")) is None
    assert meta_interactive("", offer("Yes")) is not None  # a default body, Meta needs one


def test_fake_refuses_what_meta_refuses() -> None:
    bad = meta_interactive("Pick", offer("Yes", "No"))
    assert bad is not None
    bad["action"]["buttons"][1]["reply"]["id"] = "o1"
    assert check(bad) == "button ids must be unique"
    assert check({"type": "button", "body": {"text": ""}, "action": {}}) is not None


def test_taps_read_back() -> None:
    assert meta_choice(
        "interactive", {"type": "button_reply", "button_reply": {"id": "a", "title": "A"}}
    ) == {
        "id": "a",
        "title": "A",
    }
    assert meta_choice(
        "interactive", {"list_reply": {"id": "r", "title": "R", "description": "d"}}
    ) == {
        "id": "r",
        "title": "R",
    }
    assert meta_choice("button", {"payload": "p1", "text": "Stop"}) == {"id": "p1", "title": "Stop"}
    assert meta_choice("text", {}) is None
    assert evolution_choice(
        {"buttonsResponseMessage": {"selectedButtonId": "b1", "selectedDisplayText": "Yes"}}
    ) == {"id": "b1", "title": "Yes"}
    assert evolution_choice(
        {"listResponseMessage": {"title": "Large", "singleSelectReply": {"selectedRowId": "l"}}}
    ) == {"id": "l", "title": "Large"}
    assert evolution_choice({"conversation": "hi"}) is None
