"""WAHA LID lookups: the phone number behind a hidden user id (``…@lid``).

WhatsApp hides a user's number behind a *linked id* in groups, communities and, more and
more, direct chats. WAHA's webhook then names the chat ``<digits>@lid``; NOWEB adds the phone
JID in ``_data.key.remoteJidAlt`` and GOWS in ``Info.SenderAlt`` (the parser prefers those),
but older engines and versions send the LID alone. Without a phone the thread cannot be
linked to a CRM person, and it would be a different thread from the one the same customer
has when WhatsApp does send their number.

So before a parsed WAHA message goes on (``WhatsAppChannel.parse``), ``LidDirectory.resolve``
asks WAHA::

    GET {waha_base_url}/api/{session}/lids/{lid number}     X-Api-Key: <waha_api_key>
    200 {"lid": "123123123@lid", "pn": "919876543210@c.us"}    (found)
    200 {"lid": "123123123@lid", "pn": null}                    (not known to this session)

The LID is sent as its number alone, which WAHA's docs allow besides ``%40``-escaping the
``@``: HTTP clients differ on whether they keep a ``%40`` in a path (``yarl``, under aiohttp,
turns it back into ``@``), the bare number means the same everywhere.

With a phone, the message becomes the one WAHA would have sent with ``remoteJidAlt``: the
chat is the phone JID (``<digits>@c.us``, so one thread whichever id WhatsApp used), the
contact's phone is its E.164 number (auto-linking finds the person), and the LID stays among
the contact's identities. A group keeps its chat; only the member's phone is filled in.

Answers are cached (bounded, least recently used out first): a found phone for a day (a LID
names one account), "not known" for ten minutes (WAHA learns numbers as contacts and groups
sync), a failure for thirty seconds (so a burst does not wait on a gateway that is down).
Lookups of one LID at the same time share one request. A lookup never loses a message: when
WAHA cannot answer (down, slow past ``timeout``, refusing the key) the message goes on as it
came, with the LID as its chat, unlinked, and the failure is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from chatbridge.channels.whatsapp.gateway import GatewayError, GatewayHttp
from chatbridge.channels.whatsapp.ids import ChatAddress, e164, jid_kind, to_c_us, user_part
from chatbridge.crm.settings import CommsSettings
from chatbridge.models import (
    ContactInfo,
    DeliveryReceipt,
    InboundMessage,
    OwnerSignal,
    ParsedWebhook,
)

log = logging.getLogger("chatbridge.whatsapp.lids")

FOUND_TTL = 24 * 3600.0
MISSING_TTL = 600.0
FAILED_TTL = 30.0


@dataclass(frozen=True, slots=True)
class _Entry:
    phone_jid: str | None  # "<digits>@c.us", or None: not known / the lookup failed
    expires: float


class LidDirectory:
    """LID → phone JID through WAHA's ``/api/{session}/lids/{lid}``, cached.

    Args:
        http: the channel's gateway client.
        clock: seconds, monotonic (tests move it to expire entries).
        timeout: seconds one lookup may take before the message goes on without it (the
            webhook is answered after the lookup, and WAHA retries a slow webhook).
        max_entries: cache bound; the least recently used entry goes first.
    """

    def __init__(
        self,
        http: GatewayHttp,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 3.0,
        max_entries: int = 10_000,
    ) -> None:
        self._http = http
        self._clock = clock
        self.timeout = timeout
        self._max = max_entries
        self._cache: OrderedDict[tuple[str, str, str], _Entry] = OrderedDict()
        self._inflight: dict[tuple[str, str, str], asyncio.Future[str | None]] = {}

    def __len__(self) -> int:
        return len(self._cache)

    # ------------------------------------------------------------------ lookups
    async def phone_of(self, settings: CommsSettings, session: str, lid: str) -> str | None:
        """The phone JID (``<digits>@c.us``) WAHA knows for ``lid`` in ``session``, or None
        (unknown, or WAHA could not be asked: logged, cached briefly)."""
        key = (settings.waha_base_url.rstrip("/"), session, user_part(lid))
        entry = self._cache.get(key)
        if entry is not None:
            if entry.expires > self._clock():
                self._cache.move_to_end(key)
                return entry.phone_jid
            del self._cache[key]
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(key, settings))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        # shielded: a caller that gives up does not cancel the lookup the others wait for
        return await asyncio.shield(pending)

    async def _fetch(self, key: tuple[str, str, str], settings: CommsSettings) -> str | None:
        base, session, number = key
        url = f"{base}/api/{quote(session, safe='')}/lids/{quote(number, safe='')}"
        headers = {"X-Api-Key": settings.waha_api_key} if settings.waha_api_key else {}
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._http.request(
                    "GET",
                    url,
                    what="WAHA LID lookup",
                    headers=headers,
                    secrets=(settings.waha_api_key,),
                )
        except (GatewayError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {self.timeout:g} s"
            log.warning("LID %s@lid (session %s): phone not looked up: %s", number, session, reason)
            self._store(key, None, FAILED_TTL)
            return None
        except Exception:  # never lose the message over a lookup (the channel closing, …)
            log.exception("LID %s@lid (session %s): lookup failed", number, session)
            self._store(key, None, FAILED_TTL)
            return None
        phone_jid = _phone_jid(answer)
        self._store(key, phone_jid, FOUND_TTL if phone_jid else MISSING_TTL)
        if phone_jid is None:
            log.info("LID %s@lid (session %s): WAHA knows no phone for it", number, session)
        return phone_jid

    def _store(self, key: tuple[str, str, str], phone_jid: str | None, ttl: float) -> None:
        self._cache[key] = _Entry(phone_jid, self._clock() + ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)

    # ------------------------------------------------------------------ parsed messages
    async def resolve(self, parsed: ParsedWebhook, settings: CommsSettings) -> ParsedWebhook:
        """``parsed`` with the phone behind its LID filled in, when it is a WAHA message,
        takeover or echo that names a user only by LID and WAHA knows the phone; else
        ``parsed`` unchanged."""
        if not settings.waha_lid_lookup:
            return parsed
        if isinstance(parsed, InboundMessage):
            return await self._inbound(parsed, settings)
        if isinstance(parsed, OwnerSignal):
            key = await self._rekeyed(parsed.channel_key, settings)
            return parsed if key is None else replace(parsed, channel_key=key)
        if isinstance(parsed, DeliveryReceipt) and parsed.channel_key is not None:
            key = await self._rekeyed(parsed.channel_key, settings)
            if key is None:
                return parsed
            otherwise = parsed.otherwise
            if otherwise is not None:
                otherwise = replace(otherwise, channel_key=key)
            return replace(parsed, channel_key=key, otherwise=otherwise)
        return parsed

    async def _rekeyed(self, channel_key: str, settings: CommsSettings) -> str | None:
        """The key with the phone JID for a WAHA chat named by LID, if WAHA knows it."""
        address = _waha_address(channel_key)
        if address is None or jid_kind(address.chat_id) != "lid":
            return None
        phone_jid = await self.phone_of(settings, address.instance, address.chat_id)
        if phone_jid is None:
            return None
        return replace(address, chat_id=phone_jid).channel_key

    async def _inbound(self, msg: InboundMessage, settings: CommsSettings) -> InboundMessage:
        address = _waha_address(msg.channel_key)
        contact = msg.contact
        if address is None or contact is None or contact.phone:
            return msg
        lid = _identity(contact, "lid")
        if lid is None:
            return msg
        phone_jid = await self.phone_of(settings, address.instance, lid)
        number = e164(user_part(phone_jid), settings.default_country) if phone_jid else None
        if phone_jid is None or number is None:
            return msg
        identities = [{"kind": "phone", "value": number}, {"kind": "jid", "value": phone_jid}]
        identities += [i for i in contact.metadata.get("identities", []) if i["kind"] != "jid"]
        contact = replace(
            contact,
            external_id=number,
            phone=number,
            metadata={**contact.metadata, "identities": identities},
        )
        context = {**msg.context, "phone": number, "jid": phone_jid, "phone_from": "lid_lookup"}
        metadata = {**msg.metadata, "phone": number}
        if address.chat_id == lid:  # a direct chat: the thread of the phone JID
            address = replace(address, chat_id=phone_jid)
            context["chat_id"] = metadata["chat_id"] = phone_jid
        return replace(
            msg,
            channel_key=address.channel_key,
            contact=contact,
            context=context,
            metadata=metadata,
        )


def _waha_address(channel_key: str) -> ChatAddress | None:
    provider, _, rest = channel_key.partition(":")
    if provider != "waha":
        return None
    instance, _, chat_id = rest.partition(":")
    return ChatAddress(provider, instance, chat_id) if instance and chat_id else None


def _identity(contact: ContactInfo, kind: str) -> str | None:
    for identity in contact.metadata.get("identities", []):
        if isinstance(identity, dict) and identity.get("kind") == kind:
            value = identity.get("value")
            return value if isinstance(value, str) else None
    return None


def _phone_jid(answer: Any) -> str | None:
    """``pn`` of WAHA's answer as ``<digits>@c.us``; None when null or not a user JID."""
    pn = answer.get("pn") if isinstance(answer, dict) else None
    if not isinstance(pn, str) or jid_kind(pn) != "user":
        return None
    digits = user_part(pn).lstrip("+")
    return to_c_us(pn) if digits.isdigit() and 6 <= len(digits) <= 15 else None
