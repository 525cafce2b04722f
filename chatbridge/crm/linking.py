"""What the bridge does for comms around its own work: load the stored comms settings, and
link a thread to the person with the contact's phone when a message comes in.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from chatbridge.crm.phones import try_normalize
from chatbridge.crm.settings import CommsSettings
from chatbridge.models import InboundMessage
from chatbridge.store import Store

log = logging.getLogger("chatbridge.crm")


async def load_settings(store: Store, base: CommsSettings | None = None) -> CommsSettings:
    """The environment's settings (``base``) with the ones stored through the API on top.

    A stored value that no longer validates (an older version wrote it) is skipped with a
    warning rather than keeping the bridge from starting.
    """
    settings = base or CommsSettings()
    stored = await store.comms_overrides()
    try:
        return settings.updated(stored)
    except ValidationError:
        usable: dict[str, Any] = {}
        for key, value in stored.items():
            try:
                settings.updated({key: value})
            except ValidationError:
                log.warning("stored comms setting %r is invalid; using the default", key)
                continue
            usable[key] = value
        return settings.updated(usable)


def inbound_phone(msg: InboundMessage, default_country: str) -> str | None:
    """The E.164 phone of who wrote ``msg``, if the channel told us one.

    WhatsApp contacts are known by their number (``919876543210@c.us``) even when no phone
    field is sent, so for them the contact id and the conversation key are tried too.
    """
    candidates: list[str | None] = []
    if msg.contact is not None:
        candidates.append(msg.contact.phone)
    if msg.channel == "whatsapp":
        # WhatsApp ids are international numbers without the "+" (Meta's wa_id, WAHA's jid)
        # (the conversation key is "<provider>:<instance>:<chat id>")
        ids = [msg.contact.external_id if msg.contact else None, msg.channel_key.split(":")[-1]]
        candidates += [f"+{i}" if i and i.isdigit() else i for i in ids]
    for raw in candidates:
        if raw and (phone := try_normalize(raw, default_country)):
            return phone
    return None


async def link_inbound(
    store: Store, settings: CommsSettings, msg: InboundMessage, conversation_id: str
) -> str | None:
    """Auto-link the message's thread to the person with the writer's phone (when the
    ``auto_link`` setting is on and the thread is neither linked nor unlinked by hand).

    Never raises: the message is stored already, and linking can be done by hand.
    Returns the linked person's id.
    """
    if not settings.auto_link:
        return None
    phone = inbound_phone(msg, settings.default_country)
    if phone is None:
        return None
    try:
        return await store.auto_link_thread(conversation_id, phone)
    except Exception:
        log.warning("auto-linking conversation %s failed", conversation_id, exc_info=True)
        return None
