"""Route policies validation: a bad setting is refused with a message that says what is
wrong, and the defaults keep today's behaviour."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chatbridge.policies.model import (
    DEFAULT_POLICIES,
    BusinessHours,
    IgnoreList,
    RoutePolicies,
    parse_range,
)

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def refused(model: type[Any], data: dict[str, Any], *, match: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    assert match in str(info.value), str(info.value)


def test_the_defaults_keep_todays_behaviour() -> None:
    assert not DEFAULT_POLICIES.windowed()
    assert DEFAULT_POLICIES.is_default() and DEFAULT_POLICIES.stored() is None
    assert RoutePolicies.model_validate({}) == DEFAULT_POLICIES
    assert RoutePolicies(debounce_ms=500).stored() == {"debounce_ms": 500}


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe/Berlin ", "", "../etc", "zone.tab"])
def test_an_unknown_time_zone(zone: str) -> None:
    refused(BusinessHours, {"timezone": zone}, match="unknown time zone")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("17:00-09:00", "must end after it starts"),
        ("09:00-09:00", "must end after it starts"),
        ("09:00-24:30", "by 24:00 at the latest"),
        ("9:00-17:00", "is not a time range like 09:00-17:30"),
        ("09:00 - 17:00", "is not a time range"),
        ("24:00-24:00", "is not a time range"),
        ("09:60-10:00", "is not a time range"),
    ],
)
def test_a_bad_range(text: str, match: str) -> None:
    refused(BusinessHours, {"weekly": {"mon": [text]}}, match=match)
    with pytest.raises(ValueError, match=match):
        parse_range(text)


def test_ranges_and_days() -> None:
    assert parse_range("00:00-24:00") == (0, 1440)
    assert parse_range("09:00-17:30") == (540, 1050)
    refused(BusinessHours, {"weekly": {"monday": ["09:00-17:00"]}}, match="monday")
    refused(BusinessHours, {"weekly": {"mon": ["09:00-09:30"] * 13}}, match="at most 12 ranges")
    refused(BusinessHours, {"holidays": ["2025-02-30"]}, match="holidays")


def test_away_handoff_needs_an_away_text() -> None:
    for text in (None, "", "   "):
        refused(
            BusinessHours,
            {"outside": "away_handoff", "away_text": text},
            match="outside=away_handoff needs an away_text",
        )
    assert BusinessHours(outside="away_handoff", away_text="Back at 9").away_text == "Back at 9"
    assert BusinessHours(outside="hold").away_text is None


def test_max_wait_must_cover_the_debounce() -> None:
    refused(
        RoutePolicies,
        {"debounce_ms": 2000, "max_wait_ms": 1000},
        match="max_wait_ms must be at least debounce_ms",
    )
    assert RoutePolicies(debounce_ms=2000, max_wait_ms=2000).windowed()
    assert RoutePolicies(debounce_ms=0, max_wait_ms=0) is not None  # no window, no cap


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (RoutePolicies, {"debounce": 500}),
        (RoutePolicies, {"business_hours": {"tz": "UTC"}}),
        (RoutePolicies, {"ignore": {"numbers": ["+14155550123"]}}),
        (BusinessHours, {"open": "always"}),
        (IgnoreList, {"chats": []}),
    ],
)
def test_an_unknown_field_is_refused_by_name(model: type[Any], data: dict[str, Any]) -> None:
    name = next(iter(data))
    inner = data[name]
    name = next(iter(inner)) if isinstance(inner, dict) else name
    refused(model, data, match=f"{name}\n  Extra inputs are not permitted")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"in_flight": "drop"}, "'queue', 'merge_next' or 'supersede'"),
        ({"debounce_ms": -1}, "greater than or equal to 0"),
        ({"debounce_ms": 60_001}, "less than or equal to 60000"),
        ({"expire_after_seconds": 0}, "greater than 0"),
        ({"handoff_keywords": ["  "]}, "a keyword is 1 to 100 characters"),
        ({"handoff_keywords": ["x" * 101]}, "a keyword is 1 to 100 characters"),
        ({"close_keywords": ["👋"]}, "has no letter or digit, so it can never match"),
        ({"resume_keywords": ["!!!"]}, "has no letter or digit, so it can never match"),
        ({"ignore": {"phones": ["call me"]}}, "is not a phone number"),
        ({"ignore": {"phones": ["+1234567890123456"]}}, "is not a phone number"),
    ],
)
def test_a_bad_setting_says_what_is_wrong(data: dict[str, Any], match: str) -> None:
    refused(RoutePolicies, data, match=match)


def test_keywords_are_trimmed() -> None:
    assert RoutePolicies(handoff_keywords=[" human ", "agent"]).handoff_keywords == [
        "human",
        "agent",
    ]


@SETTINGS
@given(st.text(max_size=64))
def test_any_time_zone_text_is_accepted_or_refused_cleanly(zone: str) -> None:
    """Never an exception other than a validation error (the API would answer 500)."""
    try:
        BusinessHours(timezone=zone)
    except ValidationError as exc:
        assert "time zone" in str(exc) or "timezone" in str(exc)


@SETTINGS
@given(st.text(max_size=15))
def test_any_range_text_is_accepted_or_refused_cleanly(text: str) -> None:
    try:
        start, end = parse_range(text)
    except ValueError as exc:
        assert text[:5] in str(exc) or repr(text) in str(exc)
    else:
        assert 0 <= start < end <= 24 * 60


@SETTINGS
@given(
    st.integers(0, 60_000),
    st.integers(0, 600_000),
    st.sampled_from(["queue", "merge_next", "supersede"]),
)
def test_a_window_is_valid_exactly_when_its_cap_covers_its_debounce(
    debounce: int, max_wait: int, in_flight: str
) -> None:
    data = {"debounce_ms": debounce, "max_wait_ms": max_wait, "in_flight": in_flight}
    try:
        policies = RoutePolicies.model_validate(data)
    except ValidationError:
        assert 0 < debounce and max_wait < debounce
    else:
        assert debounce == 0 or max_wait >= debounce
        # stored as JSON on the route and read back the same
        assert RoutePolicies.model_validate(policies.stored() or {}) == policies
