"""Keyword matching: the whole message is the keyword, whatever its case, punctuation,
spacing or Unicode form; a keyword inside a longer message is not a match."""

from __future__ import annotations

import unicodedata
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbridge.policies.keywords import matches, normalize

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)

words = st.text(st.characters(categories=["Ll", "Lu", "Lo", "Nd", "Mn"]), min_size=1, max_size=12)
separators = st.text(st.sampled_from(" \t\n.,!?¿¡;:-_()\"'…·"), max_size=4)


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("human", "human"),
        ("HUMAN", "human"),
        ("Human!", "human"),
        ("  human  ", "human"),
        ("¿Humano?", "humano"),
        ("talk   to-an\tAGENT!!", "talk to an agent"),
        ("\uff28\uff35\uff2d\uff21\uff2e\uff01", "human"),  # full width, as IMEs type it
        ("ATENÇÃO", "atenção"),
        ("atenc\u0327a\u0303o", "atenção"),  # decomposed accents
        ("STRASSE", "straße"),  # case folding, not lower()
        ("मानव", "मानव"),  # a vowel sign is part of its word
        ("#bot", "bot"),
    ],
)
def test_matches(text: str, keyword: str) -> None:
    assert matches(text, [keyword])
    assert matches(text, ["other", keyword])


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("I am not a human", "human"),
        ("humans", "human"),
        ("human agent", "human"),
        ("hu man", "human"),
        ("h.u.m.a.n", "human"),
        ("humano", "humáno"),  # accents count
        ("की", "के"),  # Hindi words that differ only by their vowel sign
        ("", "human"),
        ("!!!", "human"),
        ("human", ""),
        ("human", "!!!"),
    ],
)
def test_does_not_match(text: str, keyword: str) -> None:
    assert not matches(text, [keyword])


def test_no_keywords_never_match() -> None:
    assert not matches("human", [])
    assert not matches("", [])


@SETTINGS
@given(st.lists(words, min_size=1, max_size=3), separators, separators, st.data())
def test_case_punctuation_and_spacing_do_not_count(
    parts: list[str], before: str, after: str, data: st.DataObject
) -> None:
    keyword = " ".join(parts)
    gaps = [data.draw(separators.map(lambda s: s + " ")) for _ in parts[1:]]
    said = before + parts[0] + "".join(g + p for g, p in zip(gaps, parts[1:], strict=True))
    said += after
    assert matches(said, [keyword]) == bool(normalize(keyword))
    assert matches(said.casefold(), [keyword.upper()]) == matches(said, [keyword.casefold()])


@SETTINGS
@given(words, st.sampled_from(["NFC", "NFD", "NFKC", "NFKD"]))
def test_unicode_forms_do_not_count(
    keyword: str, form: Literal["NFC", "NFD", "NFKC", "NFKD"]
) -> None:
    said = unicodedata.normalize(form, keyword)
    assert matches(said, [keyword]) == bool(normalize(keyword))


@SETTINGS
@given(words, words)
def test_a_keyword_used_in_passing_is_not_a_match(keyword: str, other: str) -> None:
    if not (normalize(keyword) and normalize(other)):
        return
    assert not matches(f"{other} {keyword}", [keyword])
    assert not matches(f"{keyword} {other}", [keyword])


@SETTINGS
@given(st.text(max_size=40), st.text(max_size=40))
def test_matching_is_symmetric_and_total(a: str, b: str) -> None:
    assert matches(a, [b]) == matches(b, [a])
    assert matches(a, [b]) == (normalize(a) == normalize(b) != "")
    assert normalize(normalize(a)) == normalize(a)
