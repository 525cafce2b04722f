"""Which leased work a live task of this process is doing right now.

Housekeeping renews exactly these leases, and nothing else the process once claimed: a task
that died (a bug, a database error it could not get past) stops being renewed, its lease runs
out and the work is claimed again — by this process or another. A claim that hands back work
a live task here is still doing (its lease ran out during a database outage, and the claim
took it again) is not started a second time.
"""

from __future__ import annotations


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
