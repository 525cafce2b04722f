"""The channel extension point (its in-memory fake is ``chatbridge.channels.memory``).

A channel translates both ways and nothing else: ``parse`` turns one webhook request (its
signature checked, our own echoes screened) into neutral inbound events, ``send`` turns a
neutral ``OutboundAction`` into the channel's API call, and ``capabilities`` says honestly what
the channel can show (typing, read receipts, ...). The pipeline never learns a channel's JSON.

A channel's own settings are a ``ChannelSettings`` model read from ``CHATBRIDGE_<NAME>_*``
(every webhook channel has ``allowed_networks``); a channel with more declares a subclass as
``SETTINGS`` in its module, and ``ChannelContext.own`` hands it to its ``build``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Protocol, TypeVar, runtime_checkable

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from chatbridge.errors import BadInput
from chatbridge.models import InboundMessage, OutboundAction, ParsedWebhook, SendResult

if TYPE_CHECKING:
    from chatbridge.channels.webchat_live import LiveHub
    from chatbridge.config import Settings
    from chatbridge.crm.settings import CommsSettings
    from chatbridge.metrics import Metrics
    from chatbridge.store import Store


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel can show a customer. The pipeline reads these instead of channel names:
    a typing indicator is queued only where ``typing`` is true, and so on. Honest values: a
    channel that would silently drop an action says ``False``.

    ``notes``: the channel can show the human team a private note that the customer never
    sees (a ``"note"`` action, e.g. the handoff summary: a Chatwoot private note). Where it is
    false the delivery runner finishes a note without a send, and the channel's ``send``
    refuses one (``PermanentDelivery``) rather than show it to the customer.

    ``choices``: the channel shows a reply's protocol 1.2 ``interactive`` choices itself
    (WhatsApp: Meta's buttons, numbered text on the other gateways; web chat: buttons). Where
    it is false the delivery runner sends them as numbered text in the reply
    (``channels.interactive.with_numbered_choices``)."""

    typing: bool = False
    read_receipts: bool = False
    media: bool = False
    interactive: bool = False
    templates: bool = False
    streaming: bool = False
    notes: bool = False
    choices: bool = False


@dataclass(slots=True)
class InboundRequest:
    """One webhook request as a channel sees it, before anything in it is trusted.

    ``headers`` has lower-case names (the first of each); ``path`` holds the route's path
    parameters (``{"inbox": "7"}``); ``client`` is the caller's address after the trusted-proxy
    rules.
    """

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    path: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    client: str | None = None
    received_at: float = field(default_factory=time.time)


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


def field_error(path: str, message: str) -> NoReturn:
    """Refuse a payload for one field: 400 ``invalid_payload`` naming it (``details.field``).

    Raises:
        BadInput: always.
    """
    raise BadInput("invalid_payload", f"{path} {message}", details={"field": path})


_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]+")


def text_field(
    obj: Mapping[str, Any],
    key: str,
    path: str,
    *,
    required: bool = False,
    max_length: int | None = None,
    printable: bool = False,
) -> str | None:
    """``obj[key]`` as a string (``None`` when absent and not ``required``).

    Raises:
        BadInput: ``field_error`` at ``path``: missing, not a string, too long, or (with
            ``printable``) empty or holding control characters.
    """
    value = obj.get(key)
    if value is None:
        if required:
            field_error(path, "is required (a string)")
        return None
    if not isinstance(value, str):
        field_error(path, "must be a string")
    if max_length is not None and len(value) > max_length:
        field_error(path, f"is longer than {max_length} characters")
    if printable and not _PRINTABLE.fullmatch(value):
        field_error(path, "must be non-empty printable text")
    return value


def object_field(obj: Mapping[str, Any], key: str, path: str) -> dict[str, Any] | None:
    """``obj[key]`` as a JSON object (``None`` when absent).

    Raises:
        BadInput: ``field_error`` at ``path`` when it is something else.
    """
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        field_error(path, "must be an object")
    return value


@runtime_checkable
class ChannelAdapter(Protocol):
    """The outbound half of ``Channel`` (what the delivery workers call)."""

    name: str

    async def send(self, action: OutboundAction) -> SendResult:
        """Perform ``action`` at the channel.

        Raises:
            RetryableDelivery: connect error, timeout, 429 or 5xx (with ``retry_after`` if known).
                ``outcome_unknown=True`` when the request may have reached the channel (a
                timeout on the answer, a connection dropped before it): the delivery is then
                retried only after ``already_sent`` / the receipt wait.
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


@runtime_checkable
class Channel(ChannelAdapter, Protocol):
    """A channel, inbound and outbound: the one contract every channel implements.

    ``parse`` checks the request (signature, replay window) and returns the neutral events it
    holds (Meta batches several messages in one request), with the channel's echoes of our
    own replies already turned into ``DeliveryReceipt`` / ``Ignored``.
    """

    capabilities: Capabilities

    async def parse(self, request: InboundRequest) -> list[ParsedWebhook]:
        """The events in ``request``.

        Raises:
            BadInput: 400 malformed, 401 bad signature or outside the replay window, 404 the
                channel is off or the inbox unknown, 415 not JSON.
        """
        ...

    def stored(self, message: InboundMessage) -> None:
        """Called once an inbound message is durably stored (WhatsApp marks it read)."""
        ...


class ChannelSettings(BaseSettings):
    """One channel's own settings, read from ``CHATBRIDGE_<NAME>_*`` (environment and
    ``.env``) with the values ``Settings.channel_settings[<name>]`` gives on top.

    The registry builds them once per ``Settings`` (``registry.channel_settings``), with the
    prefix made from the channel's name, so the class itself names no channel. A channel with
    settings of its own subclasses this and names the subclass ``SETTINGS`` in its module.
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated client networks (CIDRs such as 10.0.0.0/8 or 192.168.1.5) "
        "allowed to call the channel's webhook, the client resolved through the "
        "trusted-proxy settings; others get 403 before their body is read; empty: any "
        "client",
    )

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        """A comma-separated string (or a list) of CIDRs, each checked: a typo is a clear
        start-up error, not an allowlist that lets nobody (or everybody) in."""
        if value is None:
            return []
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            return value
        networks: list[str] = []
        for item in items:
            text = str(item).strip()
            if not text:
                continue
            try:
                networks.append(str(ipaddress.ip_network(text, strict=False)))
            except ValueError:
                raise ValueError(
                    f"{text[:100]!r} is not a network (CIDR such as 10.0.0.0/8 or 192.168.1.5)"
                ) from None
        return networks


Own = TypeVar("Own", bound=ChannelSettings)


@dataclass(slots=True)
class ChannelContext:
    """What a channel is built from (``build(context) -> Channel`` in each channel module,
    found through ``chatbridge.channels.registry``): the bridge's pieces a channel may use.

    ``comms_settings`` returns the WhatsApp/CRM settings in force; it is called on every use,
    so a change made through the API applies at once. ``channel_settings`` is the settings of
    the channel being built (the registry sets it); its ``build`` reads them with ``own``.
    """

    settings: Settings
    store: Store
    metrics: Metrics
    live: LiveHub
    comms_settings: Callable[[], CommsSettings]
    channel_settings: ChannelSettings | None = None

    def own(self, model: type[Own]) -> Own:
        """The channel's own settings, as ``model`` (the ``SETTINGS`` of its module).

        Raises:
            TypeError: the context holds no settings of that model (a build called directly
                with a context the registry did not make).
        """
        found = self.channel_settings
        if not isinstance(found, model):
            got = type(found).__name__
            raise TypeError(f"the channel context holds no {model.__name__} (but {got})")
        return found
