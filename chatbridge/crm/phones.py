"""Phone numbers in one form, E.164 (``+919876543210``): the key threads and people meet on.

Channels and operators write numbers every way (``(202) 555-0143``, ``0044 20 7946 0958``,
``919876543210@c.us``); ``normalize`` turns each into E.164 with ``phonenumbers`` or refuses
it. A number without a country prefix is read in the configured default country.
"""

from __future__ import annotations

import re

import phonenumbers

from chatbridge.errors import BadInput

# WhatsApp ids carry the number before the "@": 919876543210@c.us, 919876543210@s.whatsapp.net
_JID_SUFFIX = re.compile(r"@(c\.us|s\.whatsapp\.net)$", re.IGNORECASE)
_MAX_INPUT = 64  # longer than any number written any way; phonenumbers refuses > 250 anyway


class InvalidPhone(BadInput):
    """A phone number that cannot be read as a valid number (422)."""

    status_code = 422

    def __init__(self, raw: str, reason: str = "not a valid phone number") -> None:
        super().__init__("invalid_phone", f"{raw[:_MAX_INPUT]!r}: {reason}")


def normalize(raw: str, default_country: str = "US") -> str:
    """The E.164 form of ``raw``, read in ``default_country`` when it has no ``+`` prefix.

    Idempotent: an E.164 number comes back unchanged.

    Raises:
        InvalidPhone: ``raw`` is not a valid number (wrong length, unknown prefix, letters).
    """
    text = _JID_SUFFIX.sub("", raw.strip())
    if not text or len(text) > _MAX_INPUT:
        raise InvalidPhone(raw, "empty or too long")
    # A bare WhatsApp id (digits only, as long as an international number) has no "+".
    if text.isdigit() and _JID_SUFFIX.search(raw.strip()):
        text = "+" + text
    region = default_country.upper()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(raw, str(exc)) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(raw)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def try_normalize(raw: str | None, default_country: str = "US") -> str | None:
    """``normalize``, or None for a missing or invalid number (for data channels send us)."""
    if not raw:
        return None
    try:
        return normalize(raw, default_country)
    except InvalidPhone:
        return None
