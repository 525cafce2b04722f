"""A web chat visitor's files: checked, stored in the media store, and sent with a message.

The widget uploads a file (``POST /api/webchat/upload``) and gets its ``file_id``; its next
message names the ids in ``files``. A file is held to the web chat's own cap
(``CHATBRIDGE_WEBCHAT_UPLOAD_MAX_BYTES``) and type list (``CHATBRIDGE_WEBCHAT_UPLOAD_TYPES``),
then to the media store's check (``media.limits.check_media``: the bytes must be the declared
type). A refused file leaves nothing behind: the check runs before the file is written, and
the row is written after it (``media.files.put``).

The media row records whose upload it is (``provider = "webchat"``, ``source.session_id``):
a message may name the files of its own session only, so a file id seen elsewhere is of no
use to another visitor. The message that first sends a file is written on its row
(``message_id``); a file no message sent within a day is forgotten, row and bytes
(``pipeline.webchat_sessions.forget_unsent_files``, in the bridge's housekeeping).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from chatbridge.errors import BadInput
from chatbridge.media.files import put
from chatbridge.media.limits import Kind, base_type, recognised_type
from chatbridge.models import Attachment
from chatbridge.store.media import MediaRecord
from chatbridge.store.webchat import WEBCHAT

if TYPE_CHECKING:
    from chatbridge.config import Settings
    from chatbridge.store import Store

PROVIDER = WEBCHAT  # media.provider of a visitor's upload
MAX_FILES = 10
"""How many files one visitor message may carry."""
FILE_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
SCHEME = "media:"


def type_allowed(mime: str, allowed: Sequence[str]) -> bool:
    """Whether ``mime`` (a base type) is in ``allowed`` (exact types, or ``image/*``)."""
    major = mime.partition("/")[0]
    return any(a == mime or (a.endswith("/*") and a[:-2] == major) for a in allowed)


def upload_type(data: bytes, declared: str | None, allowed: Sequence[str]) -> str:
    """The type a visitor's file is stored as: the declared one, or, when the browser
    declared none (or only ``application/octet-stream``), the one its bytes say.

    Raises:
        BadInput: ``upload_type_not_allowed`` (415) for a type not in ``allowed``.
    """
    mime = base_type(declared)
    if mime in ("", "application/octet-stream"):
        mime = recognised_type(data) or mime or "application/octet-stream"
    if not type_allowed(mime, allowed):
        raise BadInput(
            "upload_type_not_allowed",
            f"{mime} files cannot be sent here (allowed: {', '.join(allowed)})",
            status_code=415,
            details={"mime": mime, "allowed": list(allowed)},
        )
    return mime


def file_name(name: str | None) -> str | None:
    """A file name as shown and sent: without folders or control characters, at most 255
    characters; None when nothing is left."""
    if not name:
        return None
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(c for c in name if c >= " " and c != "\x7f").strip()
    return name[:255] or None


async def store_upload(
    store: Store,
    settings: Settings,
    session_id: str,
    data: bytes,
    declared: str | None,
    name: str | None,
) -> MediaRecord:
    """Check and store a visitor's file as the upload of session ``session_id``.

    Raises:
        BadInput: ``upload_type_not_allowed`` (415); ``MediaRefused``: ``media_too_large``
            (413), ``media_empty``, ``media_type_mismatch`` or ``media_type_not_allowed``
            (422). Nothing is stored then.
    """
    mime = upload_type(data, declared, settings.webchat_upload_types)
    kind: Kind = "image" if mime.startswith("image/") else "document"
    return await put(
        store,
        settings,
        data,
        mime,
        file_name(name),
        kind=kind,
        max_bytes=settings.webchat_upload_max_bytes,
        kind_caps=False,  # a web chat file stays on the bridge: WhatsApp's caps do not apply
        owner=(PROVIDER, {"session_id": session_id}),
    )


def upload_view(row: MediaRecord) -> dict[str, Any]:
    """What ``POST /api/webchat/upload`` answers."""
    return {
        "file_id": row.id,
        "file_name": row.name or row.id,
        "mime": row.mime,
        "size": row.size,
    }


def owned_by(row: MediaRecord, session_id: str) -> bool:
    """Whether ``row`` is a finished upload of web chat session ``session_id``."""
    return (
        row.origin == "upload"
        and row.state == "done"
        and row.provider == PROVIDER
        and (row.source or {}).get("session_id") == session_id
    )


def check_file_ids(files: Any) -> list[str]:
    """The ``files`` of a visitor message: a list of distinct file ids, at most ``MAX_FILES``.

    Raises:
        BadInput: ``invalid_files`` (422).
    """
    if files is None:
        return []
    if not isinstance(files, list) or not all(
        isinstance(f, str) and FILE_ID.match(f) for f in files
    ):
        raise BadInput(
            "invalid_files",
            "files must be a list of file ids from POST /api/webchat/upload",
            status_code=422,
        )
    if len(files) > MAX_FILES:
        raise BadInput("invalid_files", f"at most {MAX_FILES} files per message", status_code=422)
    return list(dict.fromkeys(files))


async def session_files(store: Store, session_id: str, file_ids: list[str]) -> list[Attachment]:
    """The attachments of a visitor message that names ``file_ids``, in that order.

    Raises:
        BadInput: ``unknown_file`` (422) naming the first id that is not an upload of this
            session (never uploaded, refused, or another session's).
    """
    if not file_ids:
        return []
    rows = await store.media_by_ids(file_ids)
    out = []
    for file_id in file_ids:
        row = rows.get(file_id)
        if row is None or not owned_by(row, session_id):
            raise BadInput(
                "unknown_file",
                f"no file {file_id!r} was uploaded in this session",
                status_code=422,
                details={"file_id": file_id},
            )
        out.append(
            Attachment(url=SCHEME + row.id, mime=row.mime, size=row.size, name=row.name or row.id)
        )
    return out
