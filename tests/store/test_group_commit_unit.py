"""``GroupCommit`` on its own: batching, concurrency, a failing item, the flusher hand-over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from chatbridge.store.hot import GroupCommit


class FakeDb:
    """Transactions that record what they wrote; a ``gate`` holds commits back."""

    def __init__(self) -> None:
        self.committed: list[list[Any]] = []
        self.open = 0
        self.most_open = 0
        self.gate: asyncio.Event | None = None

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[list[Any]]:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        written: list[Any] = []
        try:
            yield written
            if self.gate is not None:
                await self.gate.wait()
            self.committed.append(written)
        finally:
            self.open -= 1


async def write(tx: list[Any], item: Any) -> str:
    if item == "bad":
        raise ValueError("refused")
    tx.append(item)
    return f"ok {item}"


def outage(_exc: BaseException) -> bool:
    return False


async def test_what_is_submitted_together_is_written_in_one_transaction() -> None:
    db = FakeDb()
    group = GroupCommit(db.tx, write, is_outage=outage)
    results = await asyncio.gather(*(group.submit(i) for i in range(5)))
    assert results == [f"ok {i}" for i in range(5)]
    assert db.committed == [[0, 1, 2, 3, 4]]


async def test_an_item_at_fault_fails_alone() -> None:
    db = FakeDb()
    group = GroupCommit(db.tx, write, is_outage=outage)
    results = await asyncio.gather(
        *(group.submit(i) for i in ["a", "bad", "b"]), return_exceptions=True
    )
    assert results[0] == "ok a" and results[2] == "ok b"
    assert isinstance(results[1], ValueError)
    assert db.committed == [["a"], ["b"]]  # the batch went again, one by one


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_a_second_batch_starts_while_the_first_commits_only_when_allowed(
    concurrency: int,
) -> None:
    db = FakeDb()
    db.gate = asyncio.Event()
    group = GroupCommit(db.tx, write, is_outage=outage, concurrency=concurrency)
    first = asyncio.create_task(group.submit("first"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # its flusher has begun and waits to commit
    second = asyncio.create_task(group.submit("second"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert db.open == concurrency  # with 1, the second waits for the first to commit
    db.gate.set()
    assert await first == "ok first" and await second == "ok second"
    assert db.committed == [["first"], ["second"]]


async def test_an_item_submitted_as_the_flusher_finishes_is_written() -> None:
    """A caller answered by the flusher's last batch submits again at once: its turn of the
    event loop comes before the flusher's task is done, and it must still be written."""
    db = FakeDb()
    group = GroupCommit(db.tx, write, is_outage=outage)

    async def caller() -> str:
        await group.submit("early")
        return await group.submit("late")

    assert await asyncio.wait_for(caller(), 10) == "ok late"
    assert db.committed == [["early"], ["late"]]
