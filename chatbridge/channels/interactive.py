"""Choices offered to a customer (protocol 1.2 ``interactive``), on any channel.

An agent's reply may carry ``interactive: {kind, title?, button?, options: [{id, title,
description?}]}``. A channel with native buttons or lists (Meta's Cloud API, the web chat
widget) shows them as such; every other channel sends the reply as numbered text::

    Which size?

    1. Small
    2. Large

The customer's answer comes back as a normal message. A tap on a native button names its
option; a typed answer ("2", "2.", "#2" or an option's title) is matched here against the
offer open in the conversation (``chatbridge.policies.choices``, matched by the store at
ingest against ``conversations.meta.offer``), so the agent always sees the choice the same
way: ``metadata.interactive = {id, title}`` on the customer's message.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import and_, select

from chatbridge.models import OutboundAction
from chatbridge.policies.choices import (
    MAX_CHOICE_CHARS,
    Offer,
    Option,
    choice_metadata,
    could_be_choice,
    match_choice,
)
from chatbridge.store import tables as t
from chatbridge.store.conversations import OFFER_KEY

if TYPE_CHECKING:
    from chatbridge.store import Store


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


async def open_offer(store: Store, channel: str, channel_key: str) -> Offer | None:
    """The choices open in the conversation (``conversations.meta.offer``: those of our
    newest reply, if it offered any), or None."""
    c = t.conversations
    query = select(c.c.meta).where(and_(c.c.channel == channel, c.c.channel_key == channel_key))
    async with store._tx() as conn:
        row = (await conn.execute(query)).first()
    if row is None or not isinstance(row.meta, dict):
        return None
    return Offer.from_json(row.meta.get(OFFER_KEY))


__all__ = [
    "MAX_CHOICE_CHARS",
    "Offer",
    "Option",
    "choice_metadata",
    "could_be_choice",
    "match_choice",
    "numbered_text",
    "open_offer",
    "with_numbered_choices",
]
