"""The route policies of live status and notices: off by default, and a value the bridge
cannot use is refused with a message naming it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from chatbridge.policies.model import DEFAULT_POLICIES, RoutePolicies


def test_the_defaults_send_no_working_notice_and_keep_notices_off_the_channel() -> None:
    assert DEFAULT_POLICIES.working_notice_after is None
    assert DEFAULT_POLICIES.working_notice_text == "Working on it…"
    assert DEFAULT_POLICIES.notices_to_channel is False
    assert DEFAULT_POLICIES.stored() is None


def test_set_values_are_stored_and_read_back() -> None:
    p = RoutePolicies(working_notice_after=4.5, working_notice_text="One moment…")
    assert p.stored() == {"working_notice_after": 4.5, "working_notice_text": "One moment…"}
    assert RoutePolicies.model_validate(p.stored()) == p
    assert RoutePolicies(notices_to_channel=True).stored() == {"notices_to_channel": True}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"working_notice_after": 0}, "greater than 0"),
        ({"working_notice_after": -3}, "greater than 0"),
        ({"working_notice_after": 3601}, "less than or equal to 3600"),
        ({"working_notice_text": ""}, "at least 1 character"),
        ({"working_notice_text": "   "}, "the working notice needs words"),
        ({"working_notice_text": "x" * 1001}, "at most 1000 characters"),
        ({"notices_to_channel": "sometimes"}, "valid boolean"),
        ({"working_notice": 5}, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_value_is_refused_by_name(data: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as info:
        RoutePolicies.model_validate(data)
    assert words in str(info.value), str(info.value)
    assert next(iter(data)) in str(info.value)
