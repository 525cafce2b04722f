"""Which channels exist: a name → ``"module:attr"`` of its ``build(context) -> Channel``.

Imported only when chosen (uvicorn's way with its protocol classes): a bridge that never
builds a channel never imports its module or that module's dependencies. Adding a channel
is one module with a ``build`` function plus one line here.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping

from chatbridge.channels.base import Channel, ChannelAdapter, ChannelContext
from chatbridge.errors import ChatbridgeError

log = logging.getLogger("chatbridge.channels")

CHANNELS: dict[str, str] = {
    "chatwoot": "chatbridge.channels.chatwoot_channel:build",
    "webchat": "chatbridge.channels.webchat:build",
    "whatsapp": "chatbridge.channels.whatsapp:build",
    "http": "chatbridge.channels.http:build",
    "memory": "chatbridge.channels.memory:build",
}
"""Every channel the bridge knows, by the name its conversations carry."""

DEFAULT_CHANNELS = ("chatwoot", "webchat", "whatsapp", "http")
"""What a bridge builds when its caller names none (``memory`` is for tests and the demo)."""

WEBHOOK_CHANNELS = frozenset({"chatwoot", "whatsapp", "http", "memory"})
"""The channels whose customers' messages arrive as webhooks (``POST /webhook/{channel}``);
the web chat's arrive through its own API (``chatbridge.api.webchat``)."""

Builder = Callable[[ChannelContext], Channel]


class ChannelUnavailable(ChatbridgeError):
    """A channel name the registry does not know, or whose module cannot be imported."""


def builder(name: str) -> Builder:
    """The ``build`` function of channel ``name`` (its module imported now).

    Raises:
        ChannelUnavailable: no such channel, or its module (or a dependency) is missing.
    """
    target = CHANNELS.get(name)
    if target is None:
        raise ChannelUnavailable(f"no channel named {name!r}; known: {', '.join(CHANNELS)}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ChannelUnavailable(
            f"channel {name!r} cannot be loaded: module {exc.name!r} is not installed"
        ) from exc
    build: Builder | None = getattr(module, attr, None)
    if build is None:
        raise ChannelUnavailable(f"channel {name!r}: {module_name} has no {attr!r}")
    return build


def build_channel(name: str, context: ChannelContext) -> Channel:
    """Channel ``name`` built for ``context``.

    Raises:
        ChannelUnavailable: as ``builder``.
    """
    return builder(name)(context)


def build_channels(
    context: ChannelContext,
    names: Iterable[str] = DEFAULT_CHANNELS,
    *,
    given: Mapping[str, ChannelAdapter] | None = None,
) -> dict[str, ChannelAdapter]:
    """The channels ``names``; those in ``given`` are kept as they are (a test's fakes may
    be outbound-only ``ChannelAdapter`` values).

    A default channel whose module is not there (an optional one not installed) is left out
    with a log line; a channel the caller named explicitly is required.
    """
    channels: dict[str, ChannelAdapter] = dict(given or {})
    explicit = names is not DEFAULT_CHANNELS
    for name in names:
        if name in channels:
            continue
        try:
            channels[name] = build_channel(name, context)
        except ChannelUnavailable as exc:
            if explicit:
                raise
            log.debug("%s", exc)
    return channels
