"""What every protocol message shares: names, limits, the ``Frame`` base, ``ProtocolError``,
and the frames both sides send (``ping``, ``pong``, ``error_message`` and, since 1.3, the
``system_message`` / ``warning_message`` notices)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from chatbridge.errors import ChatbridgeError
from chatbridge.models import JsonObject

PROTOCOL = "chatbridge/1"

PROTOCOL_REVISION = "1.3"
"""The minor revision of ``chatbridge/1`` this module speaks. 1.1 (conversation policies):
``user_message.fresh``, the ``cancel`` frame, ``handoff.summary``. 1.2 (WhatsApp complete):
``template`` and ``interactive`` on an agent's reply. 1.3 (the whole envelope): status,
progress, notice, file and session frames, files and the addressed agent on a turn, rich
``data`` on a reply, ``agent_handoff``, and ``hello`` negotiating version and features. Only
optional fields and frames an older agent may ignore are added (the bridge sends the new
bridge → agent frames only to an agent that announced their feature), so the wire name does
not change."""

LEGACY_REVISION = "1.2"
"""The revision assumed for an agent whose ``hello`` names none (it predates negotiation)."""

STATUS_MAX = 200
"""Longest ``status_update`` / ``progress_update`` line."""

NOTICE_MAX = 2000
"""Longest ``system_message`` / ``warning_message`` text."""

HANDOFF_SUMMARY_MAX = 4000
"""Longest ``handoff.summary`` kept; a longer one is cut here rather than the handoff refused."""

DEAD_AFTER_INTERVALS = 3
"""No traffic at all for this many heartbeat intervals means the connection is dead."""


class ProtocolError(ChatbridgeError):
    """A frame that is not a valid protocol v1 message.

    ``code`` is what goes into the ``error_message`` answered to the peer: ``invalid_json``
    (not JSON, or not a JSON object), ``unknown_type`` (a ``type`` this side does not read) or
    ``invalid_message`` (a known type whose fields are wrong).
    """

    def __init__(self, code: str, message: str, *, details: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def utc_now_iso() -> str:
    """The current instant as an ISO 8601 UTC string, the protocol's timestamp format."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _timestamp(value: object) -> object:
    """Accept ``datetime`` (naive = UTC) or epoch seconds where the wire wants an ISO string."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
        except (OverflowError, OSError, ValueError):
            return value  # left for the str validator to refuse
    return value


Timestamp = Annotated[str, BeforeValidator(_timestamp)]
"""ISO 8601 UTC instant; ``datetime`` values and epoch seconds are converted on the way in."""


class _Model(BaseModel):
    # Numbers are accepted where ids are strings: the seed format sends Chatwoot ids as ints.
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class Frame(_Model):
    """Fields every message may carry."""

    message_id: str | None = None
    timestamp: Timestamp | None = None
    metadata: JsonObject | None = None


class Ping(Frame):
    """Heartbeat; either side sends it and the other answers ``pong``."""

    type: Literal["ping"] = "ping"


class Pong(Frame):
    """Answer to ``ping``."""

    type: Literal["pong"] = "pong"


class ErrorMessage(Frame):
    """Something failed: a turn on the agent's side, or a frame the receiver could not read.

    Never answered with another ``error_message`` (that could loop).
    """

    type: Literal["error_message"] = "error_message"
    error_code: str
    error_details: Any = None


class _Notice(Frame):
    conversation_id: str = Field(min_length=1)
    content: str = Field(min_length=1, max_length=NOTICE_MAX)


class SystemMessage(_Notice):
    """Since 1.3. A notice in a conversation, shown apart from the dialogue (both directions;
    to an agent only with feature `notices`). From an agent it is kept as a message by
    `system` and reaches the customer's channel only where the route's policy says so."""

    type: Literal["system_message"] = "system_message"


class WarningMessage(_Notice):
    """Since 1.3. Like `system_message`, shown as a warning."""

    type: Literal["warning_message"] = "warning_message"
