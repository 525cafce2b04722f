"""Which leases a process renews, and how sends are marked started (no I/O: fakes for the
store call)."""

from __future__ import annotations

import asyncio

import pytest

from chatbridge.pipeline.leases import HeldWork, SendMarks


async def test_marks_asked_together_go_in_one_call_and_answer_each() -> None:
    calls: list[list[int]] = []

    async def mark(ids: list[int]) -> set[int]:
        calls.append(sorted(ids))
        return {i for i in ids if i != 2}  # 2's lease was taken over meanwhile

    marks = SendMarks(mark)
    results = await asyncio.gather(marks.mark(1), marks.mark(2), marks.mark(3))
    assert results == [True, False, True]
    assert calls == [[1, 2, 3]]
    assert await marks.mark(4) is True  # a later one: its own call
    assert calls[-1] == [4]


async def test_a_failed_mark_fails_every_send_that_waited_for_it() -> None:
    async def mark(ids: list[int]) -> set[int]:
        raise ConnectionRefusedError("database away")

    marks = SendMarks(mark)
    results = await asyncio.gather(marks.mark(1), marks.mark(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionRefusedError) for r in results)
    with pytest.raises(ConnectionRefusedError):
        await marks.mark(3)


def test_held_work_forgets_a_started_send_with_its_delivery() -> None:
    held = HeldWork()
    held.hold_delivery(7)
    held.started(7)
    assert held.send_started(7) and held.deliveries == {7}
    held.drop_delivery(7)
    assert not held.send_started(7) and held.deliveries == set()
