"""WhatsApp addresses: JIDs, LIDs, Meta business-scoped user ids (BSUID) and phone numbers.

Every gateway names a chat differently:

* WAHA: ``919876543210@c.us`` (user), ``…@lid`` (hidden user), ``…@g.us`` (group),
  ``…@newsletter``, ``status@broadcast``; ``@s.whatsapp.net`` only inside ``_data``.
* Evolution (Baileys): ``919876543210@s.whatsapp.net``, ``…@lid`` with the phone JID in
  ``remoteJidAlt``, ``…@g.us``.
* Meta Cloud API: the bare number (``wa_id`` ``919876543210``) or a BSUID (``user_id``,
  ``US.13491208655302741918``) for users known only by a username.

A conversation is keyed ``"<provider>:<instance>:<chat id>"`` (``ChatAddress``): the provider
and instance say which gateway and session/number the thread lives on, the chat id is what
that gateway wants back when we reply. All functions here are pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from chatbridge.crm.phones import try_normalize
from chatbridge.errors import PermanentDelivery

JidKind = Literal["user", "lid", "group", "newsletter", "broadcast", "other"]

PROVIDERS = ("mock", "waha", "evolution", "meta_cloud")

_BSUID_RE = re.compile(r"[A-Z]{2}\.[0-9A-Za-z]{6,64}")


def jid_kind(jid: str) -> JidKind:
    """What a JID names: a user, a hidden user (LID), a group, a channel or a broadcast."""
    if jid == "status@broadcast" or jid.endswith("@broadcast"):
        return "broadcast"
    _, _, server = jid.rpartition("@")
    if server in ("c.us", "s.whatsapp.net"):
        return "user"
    if server == "lid":
        return "lid"
    if server == "g.us":
        return "group"
    if server == "newsletter":
        return "newsletter"
    if "@" not in jid and jid.lstrip("+").isdigit():
        return "user"
    return "other"


def user_part(jid: str) -> str:
    """``"919876543210:12@s.whatsapp.net"`` → ``"919876543210"`` (device suffix dropped)."""
    user = jid.partition("@")[0]
    return user.partition(":")[0]


def to_c_us(jid: str) -> str:
    """A user JID in WAHA's form: ``@s.whatsapp.net`` → ``@c.us``, device suffix dropped."""
    if jid_kind(jid) == "user":
        return f"{user_part(jid).lstrip('+')}@c.us"
    return jid


def to_s_whatsapp(jid: str) -> str:
    """A user JID in Baileys' form (``@s.whatsapp.net``)."""
    if jid_kind(jid) == "user":
        return f"{user_part(jid).lstrip('+')}@s.whatsapp.net"
    return jid


def phone_digits(jid_or_number: str) -> str | None:
    """The international number's digits of a user JID or a number, else ``None``."""
    if jid_kind(jid_or_number) != "user":
        return None
    digits = user_part(jid_or_number).lstrip("+")
    return digits if digits.isdigit() and 6 <= len(digits) <= 15 else None


def e164(number: str | None, default_country: str = "US") -> str | None:
    """A phone number in E.164 (``+919876543210``), or ``None`` if it is not a possible number.

    WhatsApp numbers come without ``+`` but always in international form, so a bare string
    of digits is read as international first; only if that fails is it read as a national
    number of ``default_country``. The reading itself is ``crm.phones.normalize`` (possible
    numbers accepted: WhatsApp has checked they exist, and test ranges such as +1 555…
    appear), so the channel, auto-linking and the people API agree on every number.
    """
    if not number:
        return None
    raw = number.strip()
    if raw.isdigit():
        found = try_normalize("+" + raw, default_country)
        if found is not None:
            return found
    return try_normalize(raw, default_country)


def is_bsuid(value: str) -> bool:
    """Whether ``value`` looks like a Meta business-scoped user id (``US.1349…``)."""
    return _BSUID_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class ChatAddress:
    """Where a WhatsApp conversation lives: provider, instance (session / phone number id)
    and the chat id that provider wants back."""

    provider: str
    instance: str
    chat_id: str

    @property
    def channel_key(self) -> str:
        return f"{self.provider}:{self.instance}:{self.chat_id}"

    @property
    def phone(self) -> str | None:
        """The chat's phone digits, when the chat id is a user's number."""
        return phone_digits(self.chat_id)

    @classmethod
    def parse(cls, channel_key: str) -> ChatAddress:
        """Read a ``"<provider>:<instance>:<chat id>"`` key.

        Raises:
            PermanentDelivery: the key is not one this channel writes.
        """
        provider, sep1, rest = channel_key.partition(":")
        instance, sep2, chat_id = rest.partition(":")
        if not (sep1 and sep2 and chat_id) or provider not in PROVIDERS:
            raise PermanentDelivery(
                "whatsapp channel_key must be '<provider>:<instance>:<chat id>' with provider "
                f"one of {', '.join(PROVIDERS)}; got {channel_key[:200]!r}"
            )
        return cls(provider, instance, chat_id)
