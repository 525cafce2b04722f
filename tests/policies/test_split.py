"""Human-paced replies, the pure half: how a reply is cut into parts, how long each is typed."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbridge.policies.model import RoutePolicies
from chatbridge.policies.split import MAX_PARTS, split_reply, typing_ms

# paragraphs of words, code fences and odd whitespace, joined by every kind of break
_WORD = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12)
_BREAKS = st.sampled_from(["\n\n", "\n \n", "\r\n\r\n", "\n\n\n\n", "\n\t\n", "\u2029", "\n", " "])
_PIECE = st.one_of(_WORD, st.just("```"), st.just("```py"), st.just("  "))
TEXTS = st.lists(st.tuples(_PIECE, _BREAKS), max_size=40).map(
    lambda items: "".join(p + b for p, b in items)
)


def ink(text: str) -> str:
    """The text without any whitespace: what a reader must find, in order, in the parts."""
    return re.sub(r"\s", "", text)


@given(TEXTS, st.integers(1, 15))
def test_parts_keep_every_visible_character_in_order(text: str, cap: int) -> None:
    parts = split_reply(text, max_parts=cap)
    assert ink("".join(parts)) == ink(text)
    assert all(p and p == p.strip() for p in parts)
    assert len(parts) <= cap


@given(TEXTS)
def test_blank_text_has_no_parts_and_other_text_at_least_one(text: str) -> None:
    assert (split_reply(text) == []) == (not text.strip())


@given(st.text(max_size=200).filter(lambda s: "\n" not in s and "\u2029" not in s))
def test_a_text_without_a_paragraph_break_is_one_part(text: str) -> None:
    assert split_reply(text) == ([text.strip()] if text.strip() else [])


def test_paragraphs_become_parts_in_order() -> None:
    text = "Hello Ana!\n\n  Your order shipped today.  \r\n\r\n\n Anything else?\n"
    assert split_reply(text) == ["Hello Ana!", "Your order shipped today.", "Anything else?"]


def test_a_single_line_break_does_not_split() -> None:
    assert split_reply("Line one\nline two") == ["Line one\nline two"]


def test_a_code_block_with_blank_lines_stays_one_part() -> None:
    code = "```python\ndef f():\n\n    return 1\n```"
    assert split_reply(f"Try this:\n\n{code}\n\nDoes it work?") == [
        "Try this:",
        code,
        "Does it work?",
    ]


def test_beyond_the_cap_the_tail_goes_with_the_last_part() -> None:
    paragraphs = [f"p{i}" for i in range(MAX_PARTS + 3)]
    parts = split_reply("\n\n".join(paragraphs))
    assert len(parts) == MAX_PARTS
    assert parts[:-1] == paragraphs[: MAX_PARTS - 1]
    assert parts[-1] == "\n\n".join(paragraphs[MAX_PARTS - 1 :])


def test_the_cap_must_allow_a_part() -> None:
    with pytest.raises(ValueError):
        split_reply("hi", max_parts=0)


@given(st.text(max_size=3000), st.integers(0, 1000), st.integers(0, 60_000))
def test_typing_time_is_proportional_and_clamped(part: str, per_char: int, cap: int) -> None:
    policies = RoutePolicies(ms_per_char=per_char, max_typing_ms=cap)
    ms = typing_ms(part, policies)
    assert 0 <= ms <= cap
    assert ms == min(len(part) * per_char, cap)


def test_typing_time_of_a_short_and_a_long_part() -> None:
    policies = RoutePolicies(ms_per_char=30, max_typing_ms=3000)
    assert typing_ms("Hello!", policies) == 180
    assert typing_ms("x" * 500, policies) == 3000
