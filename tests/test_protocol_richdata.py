"""Rich data (protocol 1.3): the shapes of the known kinds and the text every other channel gets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chatbridge.richdata import (
    FALLBACK_JSON_MAX,
    Cards,
    Chart,
    OtherRichData,
    QuickReplies,
    Table,
    data_text,
    parse_rich_data,
    text_fallback,
)

ONE_SERIES = [{"name": "s", "values": [1]}]


def test_cards_read_as_titles_details_and_links() -> None:
    data = {
        "kind": "cards",
        "cards": [
            {
                "title": "Blue shirt",
                "subtitle": "19.90 EUR",
                "text": "Cotton, sizes S to XL",
                "image_url": "https://shop/img/1.png",
                "url": "https://shop/p/1",
                "buttons": [{"title": "Buy", "url": "https://shop/buy/1"}, {"title": "More"}],
            },
            {"title": "Red shirt"},
        ],
    }
    assert text_fallback(data, "Two matches:") == (
        "Two matches:\n\n"
        "Blue shirt\n19.90 EUR\nCotton, sizes S to XL\nhttps://shop/p/1\n"
        "- Buy: https://shop/buy/1\n- More\n\n"
        "Red shirt"
    )


def test_quick_replies_read_as_numbered_options() -> None:
    data = {"kind": "quick_replies", "options": [{"title": "Yes", "value": "y"}, {"title": "No"}]}
    assert text_fallback(data, "Shall I book it?") == "Shall I book it?\n\n1. Yes\n2. No"


def test_a_table_reads_as_aligned_rows() -> None:
    data = {
        "kind": "table",
        "caption": "Your orders",
        "columns": ["Order", "Total", "Status"],
        "rows": [["A-1", 19.9, "shipped"], ["B-22", 5, None], ["C-333", 1200.0, "open"]],
    }
    assert text_fallback(data, None) == (
        "Your orders\n"
        "Order | Total | Status\n"
        "------+-------+--------\n"
        "A-1   | 19.9  | shipped\n"
        "B-22  | 5     |\n"
        "C-333 | 1200  | open"
    )


def test_a_table_without_rows_still_shows_its_columns() -> None:
    assert data_text({"kind": "table", "columns": ["a", "bb"], "rows": []}) == "a | bb\n--+---"


def test_a_chart_reads_as_one_line_per_series() -> None:
    one = {
        "kind": "chart",
        "chart": "bar",
        "title": "Sales",
        "labels": ["Jan", "Feb"],
        "series": [{"name": "2025", "values": [10, 12.5]}],
    }
    assert data_text(one) == "Sales: Jan 10, Feb 12.5"
    two = {
        **one,
        "series": [{"name": "2024", "values": [8, 9]}, {"name": "2025", "values": [10, 12]}],
    }
    assert data_text(two) == "Sales (2024): Jan 8, Feb 9\nSales (2025): Jan 10, Feb 12"
    untitled = {**two, "title": None}
    assert data_text(untitled) == "2024: Jan 8, Feb 9\n2025: Jan 10, Feb 12"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"kind": "map", "text": "Our shop: Main St 1", "title": "ignored"}, "Our shop: Main St 1"),
        ({"kind": "map", "title": "Main St 1"}, "Main St 1"),
        ({"kind": "form", "fallback": "Fill in the form at https://x"}, "Fill in the form at https://x"),
        ({"kind": "map", "lat": 52.5, "lng": 13.4}, '{"kind":"map","lat":52.5,"lng":13.4}'),
        ({"kind": "map", "text": "  ", "v": "ü"}, '{"kind":"map","text":"  ","v":"ü"}'),
    ],
)  # fmt: skip
def test_an_unknown_kind_reads_as_its_text_else_its_json(data: dict[str, Any], text: str) -> None:
    assert data_text(data) == text


def test_an_unknown_kind_without_text_is_cut_to_500_characters() -> None:
    text = data_text({"kind": "blob", "payload": "x" * 2000})
    assert len(text) == FALLBACK_JSON_MAX and text.endswith("…")
    assert text.startswith('{"kind":"blob","payload":"xxx')


def test_a_malformed_known_kind_degrades_instead_of_breaking() -> None:
    """A payload kept from before validation (or built by hand) still gives text."""
    assert data_text({"kind": "cards", "cards": "oops", "text": "See the shop"}) == "See the shop"
    assert data_text({"kind": "table"}) == '{"kind":"table"}'


def test_text_alone_without_data_and_data_alone_without_text() -> None:
    assert text_fallback(None, "Hello") == "Hello"
    assert text_fallback({}, " Hello ") == "Hello"
    assert text_fallback({"kind": "quick_replies", "options": [{"title": "A"}]}, "") == "1. A"
    assert text_fallback(None, None) == ""


def test_known_kinds_parse_to_their_model_and_others_to_the_catch_all() -> None:
    assert isinstance(parse_rich_data({"kind": "cards", "cards": [{"title": "a"}]}), Cards)
    assert isinstance(
        parse_rich_data({"kind": "quick_replies", "options": [{"title": "a"}]}), QuickReplies
    )
    assert isinstance(parse_rich_data({"kind": "table", "columns": ["a"]}), Table)
    chart = {
        "kind": "chart",
        "chart": "line",
        "labels": ["a"],
        "series": [{"name": "s", "values": [1]}],
    }
    assert isinstance(parse_rich_data(chart), Chart)
    assert isinstance(parse_rich_data({"kind": "video", "url": "u"}), OtherRichData)


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "cards", "cards": [{"title": str(i)} for i in range(11)]},
        {"kind": "cards", "cards": [{"title": ""}]},
        {"kind": "quick_replies", "options": []},
        {"kind": "table", "columns": [], "rows": []},
        {"kind": "table", "columns": ["a"], "rows": [["x", "y"]]},
        {"kind": "table", "columns": ["a"], "rows": [[{"nested": 1}]]},
        {"kind": "chart", "chart": "bar", "labels": ["a", "b"], "series": ONE_SERIES},
        {"kind": "chart", "chart": "bar", "labels": ["a"], "series": []},
        {"kind": "chart", "chart": "bar", "labels": ["a"],
         "series": [{"name": "s", "values": ["x"]}]},
        {"kind": "table", "columns": ["a"], "rows": [[float("nan")]]},
        {"kind": "chart", "chart": "bar", "labels": ["a"],
         "series": [{"name": "s", "values": [float("inf")]}]},
        {"kind": ""},
        {"kind": 5},
        "cards",
    ],
)  # fmt: skip
def test_malformed_known_kinds_are_refused(data: Any) -> None:
    with pytest.raises(ValidationError):
        parse_rich_data(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.sampled_from(["cards", "quick_replies", "table", "chart", "other"]),
    st.dictionaries(
        st.sampled_from(["cards", "options", "columns", "rows", "chart", "labels", "series",
                         "title", "text", "caption"]),
        json_values,
        max_size=5,
    ),
    st.none() | st.text(),
)  # fmt: skip
def test_any_payload_gives_text_and_never_raises(
    kind: str, fields: dict[str, Any], content: str | None
) -> None:
    data = {**fields, "kind": kind}
    text = text_fallback(data, content)
    assert isinstance(text, str)
    alone = data_text(data)
    assert alone and text.endswith(alone)
    if content and content.strip():
        assert text.startswith(content.strip())
    json.dumps(text)
