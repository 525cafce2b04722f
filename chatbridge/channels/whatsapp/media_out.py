"""Media a reply sends on WhatsApp: checked against WhatsApp's limits before anything goes out,
and the bridge's own stored files sent as bytes (never a link the gateway may not reach).

An attachment (``{url, mime?, size?, name?}``) is either

* a link anywhere: sent by URL (WAHA ``file.url``, Evolution ``media``, Meta ``link``); or
* a file in the bridge's media store, named ``media:<media id>`` (what ``POST
  /api/agent/media`` and the console's upload answer) or by its signed bridge URL
  (``{public base}/media/<id>?exp=…&sig=…``, what an agent got for a customer's file): its
  bytes are read from the store and sent as data (WAHA ``file.data``, Evolution base64,
  Meta: uploaded to ``POST /{phone number id}/media`` first, then sent by ``id``).

``prepare`` does the checks for every attachment of a reply before the first is sent, so a
refused reply sends nothing: WhatsApp takes images as JPEG or PNG up to 5 MB; audio as AAC,
AMR, MP3, MP4 audio or OGG (Opus) up to 16 MB; video as MP4 or 3GPP up to 16 MB; stickers as
WebP up to 500 KB; any other file as a document up to 100 MB (Meta Cloud API, "Supported
media types"; WAHA and Evolution carry the same WhatsApp messages). A refusal is a
``PermanentDelivery`` whose reason names the file, its type or size and the limit: the dead
letter says why.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from chatbridge.errors import PermanentDelivery
from chatbridge.media.files import open_media
from chatbridge.media.limits import KIND_MAX_BYTES, Kind, base_type, kind_for
from chatbridge.media.signing import public_base
from chatbridge.models import Attachment

if TYPE_CHECKING:
    from chatbridge.config import Settings
    from chatbridge.store import Store

MB = 1024 * 1024
SCHEME = "media:"

# What WhatsApp accepts per kind of message (a type not listed is refused for that kind).
SEND_TYPES: dict[str, frozenset[str]] = {
    "image": frozenset({"image/jpeg", "image/png"}),
    "audio": frozenset(
        {"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg", "audio/opus"}
    ),
    "video": frozenset({"video/mp4", "video/3gpp"}),
    "sticker": frozenset({"image/webp"}),
}
HINTS = {
    "image": "JPEG or PNG",
    "audio": "AAC, AMR, MP3, MP4 audio or OGG/Opus",
    "video": "MP4 or 3GPP",
    "sticker": "WebP",
}


@dataclass(slots=True)
class StoredAttachment(Attachment):
    """An attachment whose bytes the bridge holds (its media store): sent as data."""

    data: bytes = b""
    media_id: str | None = None

    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


def send_kind(mime: str | None) -> Kind:
    """The WhatsApp message kind an attachment goes as (voice notes are audio)."""
    kind = kind_for(mime)
    return "audio" if kind == "voice" else kind


def _size(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB / 10 else f"{n / 1024:.0f} KB"


def check_outbound(attachment: Attachment) -> None:
    """Refuse what WhatsApp would refuse: a type its kind may not have, or a file over the
    kind's size cap (when the size is known: a stored file's always is).

    Raises:
        PermanentDelivery: the reason, naming the file and the limit.
    """
    name = attachment.name or attachment.url.rsplit("/", 1)[-1][:80] or "the attachment"
    mime = base_type(attachment.mime)
    kind = send_kind(attachment.mime)
    allowed = SEND_TYPES.get(kind)
    if allowed is not None and mime not in allowed:
        raise PermanentDelivery(
            f"whatsapp cannot send {name!r}: {mime} is not a type WhatsApp sends as {kind} "
            f"({HINTS[kind]})"
        )
    limit = KIND_MAX_BYTES[kind]
    label: str = kind
    if kind == "sticker" and isinstance(attachment, StoredAttachment):
        if not animated_webp(attachment.data):
            limit, label = STATIC_STICKER_MAX_BYTES, "a static sticker"
    if attachment.size is not None and attachment.size > limit:
        raise PermanentDelivery(
            f"whatsapp cannot send {name!r}: {_size(attachment.size)} is over WhatsApp's "
            f"{_size(limit)} limit for {label}"
        )


# Meta: a static sticker is at most 100 KB, an animated one 500 KB (KIND_MAX_BYTES).
STATIC_STICKER_MAX_BYTES = 100 * 1024


def animated_webp(data: bytes) -> bool:
    """Whether ``data`` is an animated WebP: an extended (``VP8X``) file whose flags byte
    has the animation bit (0x02), per the WebP container specification."""
    return (
        len(data) >= 21
        and data[:4] == b"RIFF"
        and data[8:12] == b"WEBP"
        and data[12:16] == b"VP8X"
        and bool(data[20] & 0x02)
    )


def stored_media_id(url: str, public_base: str | None = None) -> str | None:
    """The media id of a bridge-stored file named by ``url`` (``media:<id>``, or a
    ``/media/<id>`` URL on the bridge's public base); None for any other link."""
    if url.startswith(SCHEME):
        return url[len(SCHEME) :] or None
    if public_base:
        base = public_base.rstrip("/")
        if url.startswith(base + "/media/"):
            return urlsplit(url).path.rsplit("/", 1)[-1] or None
    return None


async def resolve(
    attachment: Attachment, store: Store | None, settings: Settings | None
) -> Attachment:
    """``attachment`` with a stored file's bytes, type, size and name when it names one.

    Raises:
        PermanentDelivery: it names a stored file that does not exist (or not yet).
    """
    base = public_base(settings) if settings is not None else None
    media_id = stored_media_id(attachment.url, base)
    if media_id is None:
        return attachment
    opened = await open_media(store, settings, media_id) if store and settings else None
    if opened is None:
        raise PermanentDelivery(f"whatsapp: no stored media {media_id!r} to send")
    row, data = opened
    return StoredAttachment(
        url=attachment.url,
        mime=attachment.mime or row.mime,
        size=len(data),
        name=attachment.name or row.name,
        data=data,
        media_id=media_id,
    )


async def prepare(
    attachments: list[Attachment], store: Store | None, settings: Settings | None
) -> list[Attachment]:
    """Every attachment of a reply resolved (stored files read) and checked, before the
    first is sent.

    Raises:
        PermanentDelivery: one of them cannot be sent (the reason names it).
    """
    out = [await resolve(a, store, settings) for a in attachments]
    for attachment in out:
        check_outbound(attachment)
    return out
