"""Opaque, time-ordered ids (``c_01JD…``) for conversations, messages and contacts.

ULID-shaped: 48 bits of milliseconds and 80 random bits in Crockford base32, so ids sort
by creation time in indexes and never collide between bridge processes.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str) -> str:
    """Return ``prefix_`` followed by a 26-character ULID."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
