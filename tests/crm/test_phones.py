"""Phone normalisation: E.164 or refused, idempotent, and every way of writing a number agrees,
whoever reads it (the people API, auto-linking, the WhatsApp channel's parsers)."""

from __future__ import annotations

import json

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbridge.channels.whatsapp import waha
from chatbridge.channels.whatsapp.ids import e164 as channel_e164
from chatbridge.crm.linking import inbound_phone
from chatbridge.crm.phones import InvalidPhone, normalize, try_normalize
from chatbridge.crm.settings import CommsSettings
from chatbridge.models import ContactInfo, InboundMessage
from chatbridge.testing.fake_whatsapp import waha_message

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


@st.composite
def fictional_numbers(draw: st.DrawFn) -> tuple[str, phonenumbers.PhoneNumber]:
    """A possible but not valid number: the +1 555 01xx test range, or a region's valid
    number with a digit changed so it leaves every allocated range (kept if still possible)."""
    if draw(st.booleans()):
        line = draw(st.integers(100, 199)) * 10_000 + draw(st.integers(0, 9999))
        number = phonenumbers.parse(f"+1555{line:07d}")
    else:
        region, valid = draw(valid_numbers())
        digits = str(valid.national_number)
        first = draw(st.sampled_from("0123456789"))
        number = phonenumbers.PhoneNumber(
            country_code=valid.country_code, national_number=int(first + digits[1:] or "0")
        )
    phonenumbers_ok = phonenumbers.is_possible_number_with_reason(number)
    if phonenumbers_ok != phonenumbers.ValidationResult.IS_POSSIBLE:
        number = phonenumbers.parse("+15550100123")
    region = phonenumbers.region_code_for_number(number) or "US"
    return region, number


def whatsapp_forms(number: phonenumbers.PhoneNumber) -> list[str]:
    """Every way a WhatsApp gateway or an operator writes ``number`` with its country code."""
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    digits = e164[1:]
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    cc, _, rest = international.partition(" ")
    return [
        e164,
        international,
        f"{cc} ({rest.replace(' ', ') ', 1)}" if " " in rest else international,
        international.replace(" ", "-"),
        f"  {international}  ",
        f"{digits}@c.us",
        f"{digits}@s.whatsapp.net",
        f"{digits}:12@s.whatsapp.net",
        f"{digits}@C.US",
    ]


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
    # a WhatsApp id without "+", read in its own country, is still that number
    assert normalize(e164[1:], region) == e164


@given(st.one_of(valid_numbers(), fictional_numbers()), st.sampled_from(REGIONS))
def test_every_whatsapp_form_of_a_possible_number_gives_one_e164_for_every_reader(
    case: tuple[str, phonenumbers.PhoneNumber], default_country: str
) -> None:
    """The same number in any form a WhatsApp id or an operator writes it (with its country
    code) is one E.164 for ``normalize`` (people API, calls), the WhatsApp channel's ``e164``,
    and auto-linking's ``inbound_phone`` — whatever the default country."""
    _, number = case
    expected = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    digits = expected[1:]
    for form in whatsapp_forms(number):
        assert normalize(form, default_country) == expected, form
        assert channel_e164(form, default_country) == expected, form
    # the channel reads a bare WhatsApp id (Meta's wa_id, a JID's user) as international
    assert channel_e164(digits, default_country) == expected
    for key in (f"{digits}@c.us", digits):
        message = InboundMessage(
            channel="whatsapp",
            inbox_id=1,
            channel_key=f"waha:default:{key}",
            text="hi",
            contact=ContactInfo(external_id=key),
        )
        assert inbound_phone(message, default_country) == expected


@given(fictional_numbers(), st.sampled_from(["NOWEB", "GOWS", "WEBJS"]))
def test_a_waha_message_from_a_test_number_carries_its_e164(
    case: tuple[str, phonenumbers.PhoneNumber], engine: str
) -> None:
    _, number = case
    expected = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    body = json.dumps(waha_message(chat=f"{expected[1:]}@c.us", engine=engine)).encode()  # type: ignore[arg-type]
    [parsed] = waha.parse_webhook({}, body, CommsSettings(_env_file=None))  # type: ignore[call-arg]
    assert isinstance(parsed, InboundMessage) and parsed.contact is not None
    assert parsed.contact.phone == expected
    assert inbound_phone(parsed, "DE") == expected


@given(st.text(max_size=40), st.sampled_from(REGIONS))
def test_output_is_e164_or_refused_and_idempotent(raw: str, region: str) -> None:
    try:
        out = normalize(raw, region)
    except InvalidPhone as exc:
        assert exc.status_code == 422 and exc.code == "invalid_phone"
        assert try_normalize(raw, region) is None
        return
    assert out.startswith("+") and out[1:].isdigit() and len(out) <= 16
    assert phonenumbers.is_possible_number(phonenumbers.parse(out))
    assert normalize(out, region) == out
    assert normalize(out, "US") == out  # E.164 does not depend on the default country


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("(202) 555-0143", "US", "+12025550143"),
        ("+1 202-555-0143", "IN", "+12025550143"),
        ("098765 43210", "IN", "+919876543210"),
        ("919876543210@c.us", "US", "+919876543210"),
        ("919876543210", "US", "+919876543210"),  # a wa_id pasted without "+"
        ("919876543210:7@s.whatsapp.net", "GB", "+919876543210"),
        ("0044 20 7946 0958", "GB", "+442079460958"),
        ("2025550143", "US", "+12025550143"),
        # the fictional +1 555 range: possible, not valid, and what test accounts use
        ("+1 555 0100 123", "IN", "+15550100123"),
        ("+1 (555) 010-0123", "GB", "+15550100123"),
        ("15550100123@c.us", "IN", "+15550100123"),
        ("15550100123", "US", "+15550100123"),
        ("(+44) 7700 900123", "US", "+447700900123"),
        ("".join(chr(0xFF10 + int(d)) for d in "2025550143"), "US", "+12025550143"),  # full-width
    ],
)
def test_examples(raw: str, country: str, expected: str) -> None:
    assert normalize(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("12", "not a possible"),
        ("hello", "only digits"),
        ("+999 1234", "not a possible"),
        ("1" * 80, "too long"),
        ("123@lid", "only digits"),
        ("919876543210@g.us", "only digits"),
        ("1-800-FLOWERS", "only digits"),
        ("+1 202 555 0143 ext 12", "only digits"),
        ("+1 555 0100", "not a possible"),  # local-only: no area code, no E.164
        ("202+5550143", "only digits"),
        ("+", "only digits"),
        ("+1 555 0100 1234 5678", "not a possible"),
    ],
)
def test_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        normalize(raw, "US")
    assert caught.value.status_code == 422 and reason in str(caught.value)
    assert try_normalize(raw, "US") is None
