"""Typed answers to the choices a reply offered (protocol 1.2 ``interactive``): pure.

A channel without buttons shows choices as numbered text; the customer's typed answer ("2",
"2.", "#2" or an option's title) is matched here against the conversation's open offer. The
store keeps that offer on the conversation row (``meta.offer``, set when a reply with choices
goes out, cleared by the next message of ours) and matches at ingest, so a customer message
costs no extra read for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

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
