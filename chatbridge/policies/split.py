"""Human-paced replies (``split_replies``): a reply cut into paragraphs, each typed for a while.

Pure: text in, parts out; a part's typing time from the route's policies. The outbox does
the pacing (``pipeline.decisions.plan_outcome`` plans a typing pair around each part, and the
delivery runner holds a part back for its ``hold_ms`` after its typing indicator went out).

Splitting never loses or reorders text: only the whitespace between paragraphs goes. A blank
line inside a fenced code block (```` ``` ````) does not split it, since a code block cut in
two is broken in both messages.
"""

from __future__ import annotations

import re

from chatbridge.policies.model import RoutePolicies

MAX_PARTS = 10
"""At most this many channel messages per reply; the rest goes, whole, with the last.

Why a cap: each part costs three outbox rows and up to three channel calls, and waits up to
``max_typing_ms`` — a 40-paragraph answer would keep the conversation busy for minutes and
hit the channels' rate limits (WhatsApp's per-contact pacing, Chatwoot's API limits) while
the customer watches messages trickle in. Ten short messages is already a long answer in a
chat; anything longer reads better as one block.
"""

# a paragraph break: a line with nothing but whitespace on it (so ``\r\n\r\n`` too), or
# Unicode's own paragraph separator; captured, so a code block keeps its own blank lines
_BREAK = re.compile(r"(\n\s*\n|\u2029)")
_FENCE = "```"
_JOIN = "\n\n"


def split_reply(text: str, *, max_parts: int = MAX_PARTS) -> list[str]:
    """The paragraphs of ``text``, trimmed, empty ones dropped, in order.

    A text with no paragraph break is one part; blank text is none. A fenced code block
    stays whole, its inside untouched. Beyond ``max_parts`` the tail is joined (by a blank
    line) into the last part.
    """
    if max_parts < 1:
        raise ValueError("max_parts must be at least 1")
    tokens = _BREAK.split(text)  # piece, break, piece, break, …, piece
    parts: list[str] = []
    open_fence = False  # the part being built has an unclosed ``` block
    for k in range(0, len(tokens), 2):
        piece = tokens[k]
        if open_fence:
            parts[-1] += tokens[k - 1] + piece
        elif piece.strip():
            parts.append(piece)
        else:
            continue
        if piece.count(_FENCE) % 2:
            open_fence = not open_fence
    parts = [p.strip() for p in parts]
    if len(parts) > max_parts:
        parts[max_parts - 1 :] = [_JOIN.join(parts[max_parts - 1 :])]
    return parts


def typing_ms(part: str, policies: RoutePolicies) -> int:
    """How long the typing indicator shows before ``part``: its length times
    ``ms_per_char``, at most ``max_typing_ms`` (a long part must not keep the customer
    waiting for a minute)."""
    return max(0, min(len(part) * policies.ms_per_char, policies.max_typing_ms))
