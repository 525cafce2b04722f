"""The channel adapter extension point, and an in-memory fake for tests.

An adapter only translates: ``send`` turns a neutral ``OutboundAction`` into the channel's API
call. Parsing inbound webhooks is a plain function in each channel's module.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from chatbridge.models import OutboundAction, SendResult


@runtime_checkable
class ChannelAdapter(Protocol):
    name: str

    async def send(self, action: OutboundAction) -> SendResult:
        """Perform ``action`` at the channel.

        Raises:
            RetryableDelivery: connect error, timeout, 429 or 5xx (with ``retry_after`` if known).
            PermanentDelivery: any other refusal; the delivery is dead-lettered.
        """
        ...

    async def already_sent(self, action: OutboundAction) -> bool | None:
        """Whether a message with this idempotency key already reached the channel.

        Called before re-sending a delivery whose earlier attempt had an unknown outcome (the
        process died mid-send). ``None`` means the channel cannot tell.
        """
        ...

    async def aclose(self) -> None: ...


class MemoryChannel:
    """Fake adapter: records every action; a test can make it fail with ``fail_next``."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.actions: list[OutboundAction] = []
        self.fail_next: list[Exception] = []

    async def send(self, action: OutboundAction) -> SendResult:
        if self.fail_next:
            raise self.fail_next.pop(0)
        self.actions.append(action)
        return SendResult(external_id=str(len(self.actions)))

    async def already_sent(self, action: OutboundAction) -> bool | None:
        return any(a.idempotency_key == action.idempotency_key for a in self.actions)

    async def aclose(self) -> None:
        return None
