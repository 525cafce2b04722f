"""Choices offered to a customer (protocol 1.2 ``interactive``), on any channel.

An agent's reply may carry ``interactive: {kind, title?, button?, options: [{id, title,
description?}]}``. A channel with native buttons or lists (Meta's Cloud API, the web chat
widget) shows them as such; every other channel sends the reply as numbered text::

    Which size?

    1. Small
    2. Large

The customer's answer comes back as a normal message. A tap on a native button names its
option; a typed answer ("2", "2.", "#2" or an option's title) is matched here against the
last offer in the conversation (``resolve_choice``), so the agent always sees the choice the
same way: ``metadata.interactive = {id, title}`` on the customer's message.

The matching is pure (``match_choice``); the one store read (``open_offer``) runs only for a
short, single-line message, which is what a choice looks like.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select

from chatbridge.models import InboundMessage, OutboundAction
from chatbridge.store import tables as t

if TYPE_CHECKING:
    from chatbridge.store import Store

# a typed answer longer than this is a sentence, not a choice (WhatsApp's longest option
# title is a list row's 24 characters; ours may be longer, but a choice is typed short)
MAX_CHOICE_CHARS = 40
_NUMBER = re.compile(r"^\s*(?:#|no\.?\s*|option\s+)?(\d{1,2})\s*[.)]?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Option:
    """One choice: ``id`` comes back in the customer's answer."""

    id: str
    title: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Offer:
    """The choices of one reply, read from the protocol's ``interactive`` object."""

    kind: str  # buttons | list
    options: tuple[Option, ...]
    title: str | None = None
    button: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Offer | None:
        """The offer in ``data`` (an ``interactive`` JSON object), or ``None`` when it holds
        no usable option (what the protocol validated is always usable)."""
        if not isinstance(data, dict):
            return None
        options = []
        for item in data.get("options") or []:
            if not isinstance(item, dict):
                continue
            ident, title = item.get("id"), item.get("title")
            if isinstance(ident, str) and ident and isinstance(title, str) and title:
                description = item.get("description")
                options.append(
                    Option(ident, title, description if isinstance(description, str) else None)
                )
        if not options:
            return None
        kind = data.get("kind") if data.get("kind") in ("buttons", "list") else "buttons"
        title, button = data.get("title"), data.get("button")
        return cls(
            kind=str(kind),
            options=tuple(options),
            title=title if isinstance(title, str) and title else None,
            button=button if isinstance(button, str) and button else None,
        )


def numbered_text(text: str | None, offer: Offer) -> str:
    """The reply with its options as a numbered list: what a channel without buttons sends.

    The title (if any) heads the message, the reply's words follow, then one line per option
    (``"2. Large — 500 ml"`` with a description).
    """
    head = [part for part in (offer.title, (text or "").strip()) if part]
    lines = [
        f"{n}. {o.title}" + (f" — {o.description}" if o.description else "")
        for n, o in enumerate(offer.options, 1)
    ]
    return "\n\n".join([*head, "\n".join(lines)])


def with_numbered_choices(action: OutboundAction) -> OutboundAction:
    """``action`` with its choices written into its text as a numbered list, for a channel
    that cannot show them (``Capabilities.choices`` false); unchanged without choices."""
    offer = Offer.from_json(action.interactive)
    if offer is None:
        return action
    return replace(action, text=numbered_text(action.text, offer), interactive=None)


def _fold(text: str) -> str:
    return " ".join(text.casefold().split()).strip(" .!")


def could_be_choice(text: str | None) -> bool:
    """Whether ``text`` is short enough to be a typed choice (a cheap test made before the
    store is asked for the conversation's offer)."""
    return bool(text) and "\n" not in (text or "") and len(text or "") <= MAX_CHOICE_CHARS


def match_choice(text: str | None, offer: Offer) -> Option | None:
    """The option a typed answer picks: its number (``"2"``, ``"2."``, ``"2)"``, ``"#2"``)
    or its title (case and surrounding spaces ignored); ``None`` for anything else."""
    if not text:
        return None
    number = _NUMBER.match(text)
    if number is not None:
        index = int(number.group(1))
        return offer.options[index - 1] if 1 <= index <= len(offer.options) else None
    folded = _fold(text)
    if not folded:
        return None
    return next((o for o in offer.options if _fold(o.title) == folded), None)


def choice_metadata(option: Option) -> dict[str, str]:
    """What the customer's message carries in ``metadata.interactive``."""
    return {"id": option.id, "title": option.title}


async def open_offer(store: Store, channel: str, channel_key: str) -> Offer | None:
    """The choices of the conversation's newest message, if it is a reply of ours with an
    ``interactive`` offer (a later message of ours closes the offer). One indexed read."""
    m, c = t.messages, t.conversations
    query = (
        select(m.c.direction, m.c.meta)
        .select_from(m.join(c, m.c.conversation_id == c.c.id))
        .where(and_(c.c.channel == channel, c.c.channel_key == channel_key, m.c.direction == "out"))
        .order_by(m.c.created_at.desc())
        .limit(1)
    )
    async with store._tx() as conn:
        row = (await conn.execute(query)).first()
    if row is None or not isinstance(row.meta, dict):
        return None
    return Offer.from_json(row.meta.get("interactive"))


async def resolve_choice(store: Store, msg: InboundMessage) -> InboundMessage:
    """``msg`` with ``metadata.interactive`` set when it answers the conversation's open
    offer by number or title; unchanged otherwise (and when the channel already named the
    option, as a native button tap does)."""
    if "interactive" in msg.metadata or not could_be_choice(msg.text):
        return msg
    offer = await open_offer(store, msg.channel, msg.channel_key)
    if offer is None:
        return msg
    option = match_choice(msg.text, offer)
    if option is None:
        return msg
    return replace(msg, metadata={**msg.metadata, "interactive": choice_metadata(option)})
