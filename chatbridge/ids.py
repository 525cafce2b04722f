"""Opaque, time-ordered ids (``c_01JD…``) for conversations, messages and contacts.

ULID-shaped: 48 bits of milliseconds and 80 random bits in Crockford base32, so ids sort
by creation time in indexes and never collide between bridge processes.
"""

from __future__ import annotations

import base64
import os
import random
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# base64's base32 alphabet, digit for digit, turned into Crockford's
_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())
# The 80 random bits come from a generator of this process's own, seeded from the OS (and
# seeded again in a forked child, so two processes never share a stream): a system call per
# id showed in profiles, and ids are unique names, not secrets.
_RANDOM = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _RANDOM.seed(os.urandom(32)))


def new_id(prefix: str) -> str:
    """Return ``prefix_`` followed by a 26-character ULID.

    The 128 bits sit right-aligned in 20 bytes (160 bits, 32 base32 digits, no padding), so
    the last 26 digits are exactly the ULID's; C does the encoding (several ids are made per
    message, and a Python loop over 26 digits showed in profiles)."""
    return f"{prefix}_{encode((int(time.time() * 1000) << 80) | _RANDOM.getrandbits(80))}"


def encode(value: int) -> str:
    """A 128-bit value as 26 Crockford base32 digits, most significant first."""
    return base64.b32encode(value.to_bytes(20, "big"))[6:].translate(_CROCKFORD).decode()
