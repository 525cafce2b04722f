"""Which leased work a live task of this process is doing right now.

Housekeeping renews exactly these leases, and nothing else the process once claimed: a task
that died (a bug, a database error it could not get past) stops being renewed, its lease runs
out and the work is claimed again — by this process or another. A claim that hands back work
a live task here is still doing (its lease ran out during a database outage, and the claim
took it again) is not started a second time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class HeldWork:
    """Ids of the turns and deliveries being worked on, and deliveries whose send began."""

    def __init__(self) -> None:
        self.turns: set[int] = set()
        self.deliveries: set[int] = set()
        self._sending: set[int] = set()

    def hold_turn(self, turn_id: int) -> None:
        self.turns.add(turn_id)

    def drop_turn(self, turn_id: int) -> None:
        self.turns.discard(turn_id)

    def hold_delivery(self, delivery_id: int) -> None:
        self.deliveries.add(delivery_id)

    def drop_delivery(self, delivery_id: int) -> None:
        self.deliveries.discard(delivery_id)
        self._sending.discard(delivery_id)

    def started(self, delivery_id: int) -> None:
        """The delivery's send was marked as begun in the store."""
        self._sending.add(delivery_id)

    def send_started(self, delivery_id: int) -> bool:
        return delivery_id in self._sending


class SendMarks:
    """Marks deliveries "send started" in batches: one transaction for every delivery that
    asks within the same turn of the event loop.

    Each send must wait until its mark is committed (a crash after the send and before the
    mark would make a re-send look safe), but the sends of a burst start together; one
    statement for all of them costs about what one costs.
    """

    def __init__(self, mark: Callable[[list[int]], Awaitable[set[int]]]) -> None:
        self._mark = mark
        self._waiting: dict[int, asyncio.Future[bool]] = {}
        self._flush: asyncio.Task[None] | None = None

    async def mark(self, delivery_id: int) -> bool:
        """Mark one delivery; True once committed, False if its lease is no longer ours.

        Raises what the store raised (the caller's error handling applies)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting[delivery_id] = future
        if self._flush is None:
            self._flush = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        await asyncio.sleep(0)  # let the sends of this loop turn join
        batch, self._waiting = self._waiting, {}
        self._flush = None
        try:
            marked = await self._mark(list(batch))
        except Exception as exc:
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            return
        for delivery_id, future in batch.items():
            if not future.done():
                future.set_result(delivery_id in marked)
