"""Opaque, time-ordered ids (``c_01JD…``) for conversations, messages and contacts.

ULID-shaped: 48 bits of milliseconds and 80 random bits in Crockford base32, so ids sort
by creation time in indexes and never collide between bridge processes.
"""

from __future__ import annotations

import os
import random
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# two digits per 10 bits: 13 lookups for the 130 bits of 26 digits
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))
# The 80 random bits come from a generator of this process's own, seeded from the OS (and
# seeded again in a forked child, so two processes never share a stream): a system call per
# id showed in profiles, and ids are unique names, not secrets.
_RANDOM = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _RANDOM.seed(os.urandom(32)))


def new_id(prefix: str) -> str:
    """Return ``prefix_`` followed by a 26-character ULID (several are made per message: the
    encoding is 13 table lookups, not a loop over 26 digits, which showed in profiles)."""
    return f"{prefix}_{encode((int(time.time() * 1000) << 80) | _RANDOM.getrandbits(80))}"


def encode(value: int) -> str:
    """A 128-bit value as 26 Crockford base32 digits, most significant first."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])
