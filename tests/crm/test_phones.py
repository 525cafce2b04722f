"""Phone normalisation: E.164 or refused, idempotent, and every way of writing a number agrees."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbridge.crm.phones import InvalidPhone, normalize, try_normalize

REGIONS = ["US", "GB", "IN", "DE", "BR", "FR", "AU", "JP", "NG", "MX"]


@st.composite
def valid_numbers(draw: st.DrawFn) -> tuple[str, phonenumbers.PhoneNumber]:
    """A valid number of some region (its example numbers, with the last digits varied)."""
    region = draw(st.sampled_from(REGIONS))
    kind = draw(
        st.sampled_from(
            [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
        )
    )
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None
    national = str(example.national_number)
    tail = draw(st.integers(0, 99))
    candidate = phonenumbers.PhoneNumber(
        country_code=example.country_code,
        national_number=int(national[:-2] + f"{tail:02d}"),
        italian_leading_zero=example.italian_leading_zero,
    )
    if not phonenumbers.is_valid_number(candidate):
        candidate = example
    return region, candidate


@given(valid_numbers())
def test_every_format_of_a_number_gives_the_same_e164(
    case: tuple[str, phonenumbers.PhoneNumber],
) -> None:
    region, number = case
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    assert normalize(e164) == e164
    assert normalize(international, "US") == e164
    assert normalize(national, region) == e164
    assert normalize(f"  {international}  ", region.lower()) == e164


@given(st.text(max_size=40), st.sampled_from(REGIONS))
def test_output_is_e164_or_refused_and_idempotent(raw: str, region: str) -> None:
    try:
        out = normalize(raw, region)
    except InvalidPhone as exc:
        assert exc.status_code == 422 and exc.code == "invalid_phone"
        assert try_normalize(raw, region) is None
        return
    assert out.startswith("+") and out[1:].isdigit() and len(out) <= 16
    assert phonenumbers.is_valid_number(phonenumbers.parse(out))
    assert normalize(out, region) == out
    assert normalize(out, "US") == out  # E.164 does not depend on the default country


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("(202) 555-0143", "US", "+12025550143"),
        ("+1 202-555-0143", "IN", "+12025550143"),
        ("098765 43210", "IN", "+919876543210"),
        ("919876543210@c.us", "US", "+919876543210"),
        ("0044 20 7946 0958", "GB", "+442079460958"),
    ],
)
def test_examples(raw: str, country: str, expected: str) -> None:
    assert normalize(raw, country) == expected


@pytest.mark.parametrize("raw", ["", "   ", "12", "hello", "+999 1234", "1" * 80, "123@lid"])
def test_refused(raw: str) -> None:
    with pytest.raises(InvalidPhone):
        normalize(raw, "US")
    assert try_normalize(raw, "US") is None
