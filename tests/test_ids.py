"""Ids: ULID-shaped, time-ordered, unique between processes."""

from __future__ import annotations

import os
import random

from chatbridge import ids


def reference(value: int) -> str:
    """The ULID encoding as its specification states it: 5 bits per digit, from the right."""
    digits = []
    for _ in range(26):
        digits.append(ids._ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(digits))


def test_the_encoding_is_the_ulid_one() -> None:
    rng = random.Random(7)
    for value in [0, 1, 31, 32, 2**128 - 1, 2**80, *(rng.getrandbits(128) for _ in range(2000))]:
        assert ids.encode(value) == reference(value)


def test_ids_sort_by_the_millisecond_they_were_made_in() -> None:
    earlier = ids.encode((1_700_000_000_000 << 80) | (2**80 - 1))
    later = ids.encode(1_700_000_000_001 << 80)
    assert earlier < later
    made = ids.new_id("m")
    assert made.startswith("m_") and len(made) == 28
    assert set(made[2:]) <= set(ids._ALPHABET)


def test_a_forked_child_draws_other_random_bits() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id's random part, then leave at once
        os.write(write, ids.new_id("x")[-16:].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert ids.new_id("x")[-16:] != child
