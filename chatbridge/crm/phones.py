"""Phone numbers in one form, E.164 (``+919876543210``): the key threads and people meet on.

Channels and operators write numbers every way (``(202) 555-0143``, ``0044 20 7946 0958``,
``919876543210@c.us``, ``919876543210:12@s.whatsapp.net``); ``normalize`` turns each into
E.164 with ``phonenumbers`` or refuses it, and every caller (the people and calls API,
auto-linking, the WhatsApp channel) goes through it, so one number written any of these ways
is one person.

How a number is read:

* With a ``+``, or as a WhatsApp id (``@c.us``, ``@s.whatsapp.net``, a device suffix
  ``:12`` dropped): international.
* Written without ``+``, two readings: a national number of the default country (an
  operator typing ``(202) 555-0143`` or ``098765 43210``) and an international number
  without its ``+`` (Meta's ``wa_id``, a WhatsApp id pasted without its suffix). A reading
  that is a *valid* number wins over one that is only *possible*; between two valid ones,
  plain digits (``919876543210``) are read as international first (how WhatsApp writes
  them), anything with separators or a trunk ``0`` as national first.
* Accepted: any *possible* number (right length for its country, ``is_possible_number``),
  not only the *valid* ones. WhatsApp has already checked its numbers exist, and the
  fictional ranges (``+1 555 01xx xxxx``) are what test accounts and demos use; refusing
  them made a +1 555 contact impossible to link. A number that is possible only locally
  (``555 0100``, no area code) is refused: it has no E.164 form.
* Refused with a 422 naming the problem: letters (vanity numbers, ``ext``), a ``+`` or
  ``@`` anywhere else, ``@lid`` and other non-phone ids, too short or too long, an unknown
  country code.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumber, ValidationResult

from chatbridge.errors import BadInput

# A WhatsApp user id: the number, maybe a device suffix, then the server.
_JID = re.compile(r"(?P<user>[0-9]+)(?::[0-9]{1,4})?@(?:c\.us|s\.whatsapp\.net)", re.IGNORECASE)
# What a written number may contain: one leading "+" (maybe inside an opening parenthesis),
# digits and the usual separators. Letters are refused, although ``phonenumbers`` would read
# them as a keypad's digits (1-800-FLOWERS): in a CRM they are a typo or an extension.
_WRITTEN = re.compile(r"\(?\+?[\d\s().\-/]+")  # \d: any script's decimal digits
_MAX_INPUT = 64  # longer than any number written any way; phonenumbers refuses > 250 anyway


class InvalidPhone(BadInput):
    """A phone number that cannot be read as a possible number (422)."""

    status_code = 422

    def __init__(self, raw: str, reason: str = "not a valid phone number") -> None:
        super().__init__("invalid_phone", f"{raw[:_MAX_INPUT]!r}: {reason}")


def _possible(number: PhoneNumber) -> bool:
    """Right length for a known country code, with the area code (not local-only)."""
    reason = phonenumbers.is_possible_number_with_reason(number)
    return bool(reason == ValidationResult.IS_POSSIBLE)


def _parse(text: str, region: str | None) -> PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def readings(raw: str, default_country: str = "US") -> list[PhoneNumber]:
    """The ways ``raw`` can be read, most likely first (see the module docstring).

    Raises:
        InvalidPhone: ``raw`` is empty, too long, or has characters no number has.
    """
    text = raw.strip()
    if not text or len(text) > _MAX_INPUT:
        raise InvalidPhone(raw, "empty or too long")
    jid = _JID.fullmatch(text)
    if jid is not None:
        text = "+" + jid["user"]
    elif not _WRITTEN.fullmatch(text) or not any(c.isdecimal() for c in text):
        raise InvalidPhone(raw, "a phone number has only digits, spaces, a leading + and - ( ) . /")
    digits = "".join(c for c in text if c.isdecimal())
    international = _parse("+" + digits, None)
    if "+" in text:
        found = [international]
    else:
        national = _parse(text, default_country.upper())
        # Plain digits (no separators, no trunk "0") are how WhatsApp writes numbers:
        # international first. Countries with numbers of many lengths (Germany) would
        # otherwise read "4915123456700" as a national number with 49 in front.
        bare = all(c.isdecimal() or c.isspace() for c in text) and digits[0] != "0"
        found = [international, national] if bare else [national, international]
    return [number for number in found if number is not None]


def normalize(raw: str, default_country: str = "US") -> str:
    """The E.164 form of ``raw``, read in ``default_country`` when it has no ``+`` prefix.

    Idempotent: an E.164 number comes back unchanged, whatever the default country.

    Raises:
        InvalidPhone: ``raw`` is not a possible number (wrong length, unknown country code,
            letters, a non-phone WhatsApp id such as ``…@lid``).
    """
    candidates = readings(raw, default_country)
    for acceptable in (phonenumbers.is_valid_number, _possible):
        for number in candidates:
            if acceptable(number):
                return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise InvalidPhone(raw, "not a possible phone number (wrong length or country code)")


def try_normalize(raw: str | None, default_country: str = "US") -> str | None:
    """``normalize``, or None for a missing or invalid number (for data channels send us)."""
    if not raw:
        return None
    try:
        return normalize(raw, default_country)
    except InvalidPhone:
        return None
