"""The one exception root of Chatbridge.

    ChatbridgeError
    ├── ConfigError                 bad settings or mappings
    ├── BadInput                    a request we must refuse with a 4xx (carries status + code)
    │   ├── BadSignature            401
    │   └── UnknownInbox            404
    ├── StoreError                  the database failed
    ├── AgentError                  reaching or hearing from an agent failed
    │   ├── AgentUnavailable        no connection / circuit open   (retryable until deadline)
    │   ├── AgentTimeout            no answer before the deadline
    │   ├── TurnCancelled           the bridge withdrew the turn (superseded): not a failure
    │   └── AgentReportedError      the agent answered error_message
    └── DeliveryError               sending to a channel failed
        ├── RetryableDelivery       connect error, 429, 5xx: try again later
        │                           (``outcome_unknown``: the request may have landed)
        └── PermanentDelivery       other 4xx: dead-letter now

Library errors are translated at the edge with ``raise OurError(...) from exc``.
"""

from __future__ import annotations

from typing import Any


class ChatbridgeError(Exception):
    """Root of every error Chatbridge raises on purpose."""


class ConfigError(ChatbridgeError):
    """Settings or mappings are invalid."""


class BadInput(ChatbridgeError):
    """A request that must be refused with a clear 4xx JSON error."""

    status_code = 400

    def __init__(
        self, code: str, message: str, *, status_code: int | None = None, details: Any = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        if status_code is not None:
            self.status_code = status_code


class BadSignature(BadInput):
    status_code = 401

    def __init__(self, message: str = "webhook signature missing or invalid") -> None:
        super().__init__("bad_signature", message)


class UnknownInbox(BadInput):
    status_code = 404

    def __init__(self, channel: str, inbox_id: object) -> None:
        super().__init__(
            "unknown_inbox",
            f"no route for {channel} inbox {inbox_id!r}; add one with POST /config/mappings",
            details={"channel": channel, "inbox_id": inbox_id},
        )


class StoreError(ChatbridgeError):
    """The database failed."""


class AgentError(ChatbridgeError):
    """Reaching an agent, or hearing back from it, failed."""

    kind = "agent_error"


class AgentUnavailable(AgentError):
    kind = "disconnected"


class AgentTimeout(AgentError):
    kind = "timeout"


class TurnCancelled(AgentError):
    """The bridge itself withdrew the turn while it waited (``AgentHub.cancel_turn``), e.g. a
    newer customer message superseded it. Not the agent's fault and not a failure to retry:
    no fallback applies, and any answer the agent still sends for it is discarded."""

    kind = "cancelled"

    def __init__(self, turn_key: str, reason: str = "superseded") -> None:
        super().__init__(f"turn {turn_key!r} cancelled ({reason})")
        self.turn_key = turn_key
        self.reason = reason


class AgentElsewhere(AgentError):
    """Another replica holds the agent: the turn goes back to the store for that replica."""

    kind = "elsewhere"

    def __init__(self, replica: str) -> None:
        super().__init__(f"agent is held by replica {replica!r}")
        self.replica = replica


class AgentReportedError(AgentError):
    kind = "error"

    def __init__(self, error_code: str, details: Any = None) -> None:
        super().__init__(f"agent reported error {error_code!r}")
        self.error_code = error_code
        self.details = details


class DeliveryError(ChatbridgeError):
    """Sending to a channel failed."""


class RetryableDelivery(DeliveryError):
    """The send failed in a way that may pass later.

    ``outcome_unknown`` says whether the far side may have the message all the same: the
    request was (or may have been) written and no answer came — a timeout after sending,
    the connection dropped before the response. A connect error, a refused connection or an
    error answer (429, 5xx) is a known non-delivery (False). An unknown outcome is retried
    like a send cut off by a crash: the next attempt looks for the channel's receipt first.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, outcome_unknown: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown


class PermanentDelivery(DeliveryError):
    pass
