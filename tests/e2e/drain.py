"""Waiting on an outcome instead of timing it.

A test that must show something happened *soon* (a long-poll woken by news, a retry given up
at once) gives the code a far longer natural wait than the test is willing to give it, and
awaits the outcome with ``within``: arriving at all proves it did not wait its time out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

T = TypeVar("T")


async def within(seconds: float, outcome: Awaitable[T]) -> T:
    """Await ``outcome``; fail the test (a clear failure, not a timeout traceback) if it has
    not come after ``seconds``."""
    try:
        return await asyncio.wait_for(outcome, seconds)
    except TimeoutError:
        pass
    # outside the except block: the report shows this line, not asyncio's cancellation chain
    pytest.fail(f"still waiting after {seconds:g} s")
