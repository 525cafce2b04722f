"""Keyword matching for handoff, resume and window-closing keywords.

A keyword matches a message that *is* the keyword, ignoring case (``ATENÇÃO`` is
``atenção``), Unicode compatibility forms (full-width letters, a decomposed ``ç``),
punctuation and extra spaces: "Human!" and " human " match ``human``; "I am not a human"
does not. Whole-message matching is what WhatsApp bot runners do, and it keeps a word
used in passing from handing a conversation over. Accents still count: ``humano`` is not
``humáno``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

_SPACE = ord(" ")


class _Separators(dict[int, int]):
    """``str.translate`` table: letters, digits and combining marks stay, anything else
    becomes a space. A vowel sign (Devanagari, Thai) or an accent NFKC cannot compose is
    part of its word, not a break in it (``re``'s ``\\W`` would split the word there).
    Filled on first sight of a character, so the hot path is a C loop."""

    def __missing__(self, cp: int) -> int:
        kept = cp if unicodedata.category(chr(cp))[0] in "LMN" else _SPACE
        if len(self) < 20_000:  # every code point ever seen would be ~1M entries
            self[cp] = kept
        return kept


_SEPARATORS = _Separators()


def normalize(text: str) -> str:
    """``text`` as keywords compare it: NFKC, case-folded, words joined by single spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.translate(_SEPARATORS).split())


def matches(text: str, keywords: Iterable[str]) -> bool:
    """Whether the whole of ``text`` is one of ``keywords`` (see the module docstring)."""
    wanted = {normalize(k) for k in keywords} - {""}
    return bool(wanted) and normalize(text) in wanted
