"""Stored files on channels that send attachments as links (Chatwoot, http, web chat).

A reply's attachment may name a file in the bridge's media store (``media:<id>``: an agent's
upload, ``POST /api/agent/media``). WhatsApp sends such a file's bytes itself
(``channels/whatsapp/media_out.py``); every other channel gets a short-lived signed link to it
instead (``{public base}/media/<id>?exp=…&sig=…``, valid ``CHATBRIDGE_MEDIA_URL_TTL_SECONDS``),
so no channel is ever handed the bridge-internal ``media:`` form.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from chatbridge.media.signing import MediaSigner
from chatbridge.models import OutboundAction

if TYPE_CHECKING:
    from chatbridge.config import Settings

SCHEME = "media:"


def with_signed_links(action: OutboundAction, settings: Settings) -> OutboundAction:
    """``action`` with each ``media:<id>`` attachment's url replaced by a signed bridge URL;
    unchanged (the same object) when it has none."""
    if not any(a.url.startswith(SCHEME) for a in action.attachments):
        return action
    signer = MediaSigner.for_settings(settings)
    attachments = [
        replace(a, url=signer.url(a.url[len(SCHEME) :])) if a.url.startswith(SCHEME) else a
        for a in action.attachments
    ]
    return replace(action, attachments=attachments)
