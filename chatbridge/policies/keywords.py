"""Keyword matching for handoff, resume and window-closing keywords.

A keyword matches a message that *is* the keyword, ignoring case, accents' case folding,
punctuation and extra spaces: "Human!" and " human " match ``human``; "I am not a human"
does not. Whole-message matching is what WhatsApp bot runners do, and it keeps a word
used in passing from handing a conversation over.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NOT_WORD.sub(" ", folded).split())


def matches(text: str, keywords: Iterable[str]) -> bool:
    said = normalize(text)
    return bool(said) and any(said == normalize(k) for k in keywords if normalize(k))
