"""What the media store accepts: the kinds of media, the types each kind may be, their size
caps, and a check of the bytes themselves (magic numbers) against the type that was declared.

Everything here is a plain function without I/O: ``check_media`` is the one decision, called
on a download before it is written and on an upload before it is stored. A refusal is a
``MediaRefused`` whose message says why in words an operator can act on ("declared image/png
but the bytes are a PDF", "12.0 MiB is over the 5.0 MiB limit of an image").

WhatsApp's own limits (Meta Cloud API "Supported media types", the same on WAHA and Evolution,
which carry WhatsApp's messages): image 5 MB (JPEG, PNG), audio 16 MB (AAC, AMR, MP3, MP4
audio, OGG with the OPUS codec), video 16 MB (MP4, 3GPP), document 100 MB, sticker 500 KB
(animated WebP; static 100 KB). The bridge's own cap (``CHATBRIDGE_MEDIA_MAX_BYTES``) applies
on top of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chatbridge.errors import BadInput

Kind = Literal["image", "audio", "voice", "video", "document", "sticker"]
KINDS: tuple[Kind, ...] = ("image", "audio", "voice", "video", "document", "sticker")

MB = 1024 * 1024

# WhatsApp's per-kind caps (bytes); a voice note is an audio message.
KIND_MAX_BYTES: dict[Kind, int] = {
    "image": 5 * MB,
    "audio": 16 * MB,
    "voice": 16 * MB,
    "video": 16 * MB,
    "document": 100 * MB,
    "sticker": 500 * 1024,
}

# The declared types each kind may have (without parameters such as "; codecs=opus").
_AUDIO = {
    "audio/aac",
    "audio/amr",
    "audio/mpeg",
    "audio/mp4",
    "audio/ogg",
    "audio/opus",
    "audio/x-m4a",
    "audio/m4a",
    "audio/wav",
    "audio/x-wav",
    "audio/webm",
}
ALLOWED_TYPES: dict[Kind, frozenset[str]] = {
    "image": frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"}),
    "audio": frozenset(_AUDIO),
    "voice": frozenset(_AUDIO),
    "video": frozenset({"video/mp4", "video/3gpp", "video/quicktime", "video/webm"}),
    "sticker": frozenset({"image/webp", "image/png"}),
    "document": frozenset(
        {
            "application/pdf",
            "text/plain",
            "text/csv",
            "application/msword",
            "application/vnd.ms-excel",
            "application/vnd.ms-powerpoint",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "application/zip",
            "application/octet-stream",
        }
    ),
}

# What a sniffed family may be declared as: the declared type must be one of these.
_FAMILY_TYPES: dict[str, frozenset[str]] = {
    "jpeg": frozenset({"image/jpeg"}),
    "png": frozenset({"image/png"}),
    "gif": frozenset({"image/gif"}),
    "webp": frozenset({"image/webp"}),
    "pdf": frozenset({"application/pdf", "application/octet-stream"}),
    "ogg": frozenset({"audio/ogg", "audio/opus"}),
    "mp3": frozenset({"audio/mpeg"}),
    "amr": frozenset({"audio/amr"}),
    "aac": frozenset({"audio/aac"}),
    "wav": frozenset({"audio/wav", "audio/x-wav"}),
    "webm": frozenset({"audio/webm", "video/webm"}),
    # ISO base media (ftyp box): MP4 video, M4A audio, 3GPP, QuickTime
    "isobmff": frozenset(
        {"video/mp4", "video/3gpp", "video/quicktime", "audio/mp4", "audio/x-m4a", "audio/m4a"}
    ),
    "zip": frozenset(
        {
            "application/zip",
            "application/octet-stream",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        }
    ),
    "ole": frozenset(
        {
            "application/msword",
            "application/vnd.ms-excel",
            "application/vnd.ms-powerpoint",
            "application/octet-stream",
        }
    ),
    "text": frozenset({"text/plain", "text/csv", "application/octet-stream"}),
}

_FAMILY_NAMES = {
    "jpeg": "a JPEG image",
    "png": "a PNG image",
    "gif": "a GIF image",
    "webp": "a WebP image",
    "pdf": "a PDF",
    "ogg": "OGG audio",
    "mp3": "MP3 audio",
    "amr": "AMR audio",
    "aac": "AAC audio",
    "wav": "WAV audio",
    "webm": "WebM media",
    "isobmff": "MP4/3GPP media",
    "zip": "a ZIP (or Office) file",
    "ole": "an old Office file",
    "text": "plain text",
}


class MediaRefused(BadInput):
    """Media the store will not keep: too large, a type its kind may not have, or bytes that
    are not what their declared type says. ``code`` names which (``media_too_large``,
    ``media_type_not_allowed``, ``media_type_mismatch``, ``media_empty``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, status_code=413 if code == "media_too_large" else 422)


@dataclass(frozen=True, slots=True)
class Checked:
    """Media that passed: its kind and its type (without parameters)."""

    kind: Kind
    mime: str


def base_type(mime: str | None) -> str:
    """``"audio/ogg; codecs=opus"`` → ``"audio/ogg"`` (lower case, no parameters)."""
    return (mime or "").split(";", 1)[0].strip().lower()


def is_voice_type(mime: str | None) -> bool:
    """Whether a type is what WhatsApp voice notes are: OGG with the OPUS codec."""
    value = (mime or "").lower().replace(" ", "")
    return (value.startswith("audio/ogg") and "opus" in value) or value == "audio/opus"


def kind_for(mime: str | None, *, voice: bool = False, sticker: bool = False) -> Kind:
    """The kind of media a type is (a flag from the provider wins: ``ptt``, ``voice``,
    ``sticker``); anything that is not image, audio or video is a document."""
    major = base_type(mime).partition("/")[0]
    if sticker:
        return "sticker"
    if major == "audio":
        return "voice" if voice or is_voice_type(mime) else "audio"
    if major == "image":
        return "sticker" if base_type(mime) == "image/webp" else "image"
    if major == "video":
        return "video"
    return "document"


def sniff(data: bytes) -> str | None:
    """The family of file ``data`` is, by its first bytes; None if unknown."""
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "mp3"
    if head[:2] in (b"\xff\xf1", b"\xff\xf9"):
        return "aac"
    if head.startswith(b"#!AMR"):
        return "amr"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head[4:8] == b"ftyp":
        return "isobmff"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole"
    sample = data[:4096]
    if sample and b"\x00" not in sample:
        try:
            sample.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(sample) - 4:  # a cut in the middle of the last character is fine
                return None
        return "text"
    return None


# The type a recognised family is when nobody declared one (or only application/octet-stream);
# families of several types (old Office files, MP4-like media) are not guessed.
_FAMILY_TYPE = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "pdf": "application/pdf",
    "text": "text/plain",
    "zip": "application/zip",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
}


def recognised_type(data: bytes) -> str | None:
    """The type ``data`` is by its first bytes, where they say one type; else None."""
    family = sniff(data)
    return _FAMILY_TYPE.get(family) if family else None


def _size(n: int) -> str:
    return f"{n / MB:.1f} MiB" if n >= MB else f"{n / 1024:.0f} KiB"


def too_large(size: int | None, max_bytes: int) -> MediaRefused:
    """The refusal of a file over the bridge's cap (``size`` None: it was cut off at it)."""
    what = f"{_size(size)} is" if size is not None else "the file is"
    return MediaRefused(
        "media_too_large",
        f"{what} over the bridge's limit of {_size(max_bytes)} ({max_bytes} bytes)",
    )


def check_size(kind: Kind, size: int, max_bytes: int, *, kind_caps: bool = True) -> None:
    """Refuse ``size`` bytes of ``kind`` over the bridge's cap or (``kind_caps``) WhatsApp's
    for the kind.

    Raises:
        MediaRefused: ``media_too_large``.
    """
    limit = min(max_bytes, KIND_MAX_BYTES[kind]) if kind_caps else max_bytes
    if size > limit:
        whose = "the bridge's limit" if limit == max_bytes else f"WhatsApp's limit for {kind}"
        raise MediaRefused(
            "media_too_large", f"{_size(size)} is over {whose} of {_size(limit)} ({limit} bytes)"
        )


def check_media(
    data: bytes,
    declared: str | None,
    *,
    kind: Kind | None = None,
    max_bytes: int,
    kind_caps: bool = True,
) -> Checked:
    """The one check every stored file passes: not empty, not over the caps, a type its kind
    may have, and bytes that are what that type says.

    Args:
        data: the whole file.
        declared: the type the provider or the uploader declared (may carry parameters);
            None: the sniffed type is taken if the kind allows it.
        kind: the kind the provider said it is; None: from the type.
        max_bytes: the bridge's cap (``CHATBRIDGE_MEDIA_MAX_BYTES``).
        kind_caps: also hold the file to WhatsApp's cap for its kind (False: a file that
            stays on the bridge, such as a web chat visitor's upload).

    Raises:
        MediaRefused: with a message that says what is wrong.
    """
    if not data:
        raise MediaRefused("media_empty", "the file is empty")
    family = sniff(data)
    mime = base_type(declared)
    if not mime:
        if family is None:
            raise MediaRefused("media_type_not_allowed", "no type declared and none recognised")
        mime = sorted(_FAMILY_TYPES[family])[0]
    kind = kind or kind_for(declared)
    check_size(kind, len(data), max_bytes, kind_caps=kind_caps)
    if mime not in ALLOWED_TYPES[kind]:
        allowed = ", ".join(sorted(ALLOWED_TYPES[kind]))
        raise MediaRefused(
            "media_type_not_allowed", f"{mime} is not allowed for {kind} (allowed: {allowed})"
        )
    if family is None or mime not in _FAMILY_TYPES[family]:
        what = _FAMILY_NAMES[family] if family else "of no type recognised"
        raise MediaRefused("media_type_mismatch", f"declared {mime} but the bytes are {what}")
    return Checked(kind, mime)
