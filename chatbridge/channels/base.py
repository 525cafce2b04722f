"""The channel adapter extension point, and an in-memory fake for tests.

An adapter only translates: ``send`` turns a neutral ``OutboundAction`` into the channel's API
call. Parsing inbound webhooks is a plain function in each channel's module.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

from chatbridge.errors import BadInput
from chatbridge.models import OutboundAction, SendResult


def load_object(body: bytes) -> dict[str, Any]:
    """A webhook body as a JSON object (every channel's parser starts here).

    Raises:
        BadInput: ``invalid_json`` when it is not one.
    """
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadInput("invalid_json", "body is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise BadInput("invalid_json", "body must be a JSON object")
    return payload


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
        process died mid-send). ``True``: it is there, do not send. ``False``: it is surely
        not there (a send cut off in flight cannot still land), or sending again is harmless:
        send now. ``None``: the channel cannot tell; the bridge waits for a receipt (the
        channel's echo) for up to ``receipt_wait_seconds`` before sending again.
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
