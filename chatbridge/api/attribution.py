"""Naming the operator behind a line of a thread: a message, a private note, a take-over.

The principal ``require_admin`` admitted (``chatbridge.api.console_auth.request_principal``)
is kept on the message's ``meta``: ``operator_id`` and ``operator_name`` (the admin key has
no id and the name "Admin key"). Channels that show a sender (web chat) get ``sender_name``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from chatbridge.api.console_auth import request_principal
from chatbridge.pipeline.bridge import Bridge


def attribution(request: Request) -> dict[str, Any]:
    """What a message, note or owner change made by this request keeps of its operator."""
    return request_principal(request).attribution()


def sender_name(request: Request) -> str | None:
    """The operator's display name, for channels that show a sender (web chat); None for
    the admin key."""
    principal = request_principal(request)
    return principal.name if principal.operator_id else None


async def owner_change_note(
    bridge: Bridge, request: Request, conversation_id: str, owner: str
) -> None:
    """Leave the line "Ada took over" / "Ada handed back to the bot" in the thread."""
    who = request_principal(request).name
    text = f"{who} took over" if owner == "human" else f"{who} handed back to the bot"
    meta = {"kind": "owner_change", "owner": owner, **attribution(request)}
    await bridge.store.add_thread_note(conversation_id, text, meta)
