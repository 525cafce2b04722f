"""Which channels exist: a name → an ``Entry`` naming the ``"module:attr"`` of its
``build(context) -> Channel``.

Imported only when chosen (uvicorn's way with its protocol classes): a bridge that never
builds a channel never imports its module or that module's dependencies.

Adding a channel is one module plus one line in ``CHANNELS``. The module has ``build`` and,
when the channel has settings of its own, ``SETTINGS``: a ``ChannelSettings`` subclass, read
from ``CHATBRIDGE_<NAME>_*`` (``<NAME>`` is the entry's name in upper case, ``-`` as ``_``).
Every channel's settings have ``allowed_networks``, its webhook's source allowlist
(``CHATBRIDGE_<NAME>_ALLOWED_NETWORKS``). A test (or a plug-in outside the package) may add
its own entry to ``CHANNELS``: ``WEBHOOK_CHANNELS`` and ``DEFAULT_CHANNELS`` follow it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import SettingsError

from chatbridge.channels.base import Channel, ChannelAdapter, ChannelContext, ChannelSettings
from chatbridge.config import Settings
from chatbridge.errors import ChatbridgeError

log = logging.getLogger("chatbridge.channels")


@dataclass(frozen=True, slots=True)
class Entry:
    """One channel in the registry."""

    target: str
    """``"module:attr"`` of its ``build(context) -> Channel``."""
    webhook: bool = True
    """Its customers' messages arrive at ``POST /webhook/<name>[/<inbox>]`` (the web chat's
    come through its own API, ``chatbridge.api.webchat``)."""
    default: bool = True
    """Built when the bridge's caller names no channels (``memory`` is for tests and the
    demo)."""


CHANNELS: dict[str, Entry] = {
    "chatwoot": Entry("chatbridge.channels.chatwoot_channel:build"),
    "webchat": Entry("chatbridge.channels.webchat:build", webhook=False),
    "whatsapp": Entry("chatbridge.channels.whatsapp:build"),
    "http": Entry("chatbridge.channels.http:build"),
    "memory": Entry("chatbridge.channels.memory:build", default=False),
}
"""Every channel the bridge knows, by the name its conversations carry."""


class _Names(Set[str]):
    """The names in ``CHANNELS`` whose entry passes ``keep``, as a live set: an entry added
    later (by a test) is in it at once."""

    __slots__ = ("_keep",)

    def __init__(self, keep: Callable[[Entry], bool]) -> None:
        self._keep = keep

    def __contains__(self, name: object) -> bool:
        entry = CHANNELS.get(name) if isinstance(name, str) else None
        return entry is not None and self._keep(entry)

    def __iter__(self) -> Iterator[str]:
        return (name for name, entry in CHANNELS.items() if self._keep(entry))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"{{{', '.join(map(repr, self))}}}"


DEFAULT_CHANNELS: Set[str] = _Names(lambda entry: entry.default)
"""What a bridge builds when its caller names none."""

WEBHOOK_CHANNELS: Set[str] = _Names(lambda entry: entry.webhook)
"""The channels whose customers' messages arrive as webhooks (``POST /webhook/{channel}``)."""

Builder = Callable[[ChannelContext], Channel]


class ChannelUnavailable(ChatbridgeError):
    """A channel name the registry does not know, or whose module cannot be imported."""


def _module(name: str) -> tuple[ModuleType, str]:
    """Channel ``name``'s module (imported now) and the name of its ``build``."""
    entry = CHANNELS.get(name)
    if entry is None:
        raise ChannelUnavailable(f"no channel named {name!r}; known: {', '.join(CHANNELS)}")
    module_name, _, attr = entry.target.partition(":")
    try:
        return importlib.import_module(module_name), attr
    except ModuleNotFoundError as exc:
        raise ChannelUnavailable(
            f"channel {name!r} cannot be loaded: module {exc.name!r} is not installed"
        ) from exc


def builder(name: str) -> Builder:
    """The ``build`` function of channel ``name`` (its module imported now).

    Raises:
        ChannelUnavailable: no such channel, or its module (or a dependency) is missing.
    """
    module, attr = _module(name)
    build: Builder | None = getattr(module, attr, None)
    if build is None:
        raise ChannelUnavailable(f"channel {name!r}: {module.__name__} has no {attr!r}")
    return build


def settings_model(name: str) -> type[ChannelSettings]:
    """The settings model of channel ``name``: its module's ``SETTINGS``, else the plain
    ``ChannelSettings`` (also for a channel whose module cannot be imported: its source
    allowlist is still read and checked)."""
    try:
        module, _ = _module(name)
    except ChannelUnavailable:
        return ChannelSettings
    model: type[ChannelSettings] = getattr(module, "SETTINGS", ChannelSettings)
    return model


def env_prefix(name: str) -> str:
    """``CHATBRIDGE_<NAME>_``: where channel ``name``'s settings are read from."""
    return f"CHATBRIDGE_{name.upper().replace('-', '_')}_"


def channel_settings(settings: Settings, name: str) -> ChannelSettings:
    """Channel ``name``'s own settings: built on first use from its environment
    (``CHATBRIDGE_<NAME>_*``) and ``settings.channel_settings[name]``, then kept with
    ``settings`` (later calls return the same object).

    Raises:
        pydantic.ValidationError: a bad value; each error is located as the flat setting
            (``http_inboxes.7.secret``, ``chatwoot_allowed_networks``), as ``Settings``
            locates its own, so the CLI reports it the same way.
        pydantic_settings.SettingsError: an environment value that is not valid JSON.
    """
    built = settings.built_channel_settings
    found = built.get(name)
    if isinstance(found, ChannelSettings):
        return found
    model = settings_model(name)
    prefix = env_prefix(name)
    # the values are the caller's, untyped until the model has validated them
    values: dict[str, Any] = {"_env_prefix": prefix, **settings.channel_settings.get(name, {})}
    try:
        found = model(**values)
    except ValidationError as exc:
        raise ValidationError.from_exception_data("Settings", _details(exc, f"{name}_")) from None
    except SettingsError as exc:
        # name the setting as the environment does, not the model's field
        raise SettingsError(str(exc).replace('field "', f'field "{name}_', 1)) from exc
    built[name] = found
    return found


def _details(exc: ValidationError, prefix: str = "") -> list[InitErrorDetails]:
    """``exc``'s errors, each located from ``prefix`` + its first part on, messages kept."""
    details: list[InitErrorDetails] = []
    for error in exc.errors():
        head, *rest = error["loc"] or ("",)
        details.append(
            {
                "type": PydanticCustomError(error["type"], error["msg"]),
                "loc": (f"{prefix}{head}", *rest),
                "input": error["input"],
            }
        )
    return details


def load_settings(settings: Settings, names: Iterable[str] = DEFAULT_CHANNELS) -> None:
    """Build (and so check) the settings of channels ``names``, all of them even when one is
    bad: the start-up check of a bridge that will run those channels.

    Raises:
        pydantic.ValidationError: every bad value of every channel (see
            ``channel_settings``).
    """
    details: list[InitErrorDetails] = []
    for name in names:
        try:
            channel_settings(settings, name)
        except ValidationError as exc:
            details += _details(exc)
    if details:
        raise ValidationError.from_exception_data("Settings", details)


def build_channel(name: str, context: ChannelContext) -> Channel:
    """Channel ``name`` built for ``context``, with its own settings in it.

    Raises:
        ChannelUnavailable: as ``builder``.
        pydantic.ValidationError: as ``channel_settings``.
    """
    build = builder(name)
    own = channel_settings(context.settings, name)
    return build(replace(context, channel_settings=own))


def build_channels(
    context: ChannelContext,
    names: Iterable[str] = DEFAULT_CHANNELS,
    *,
    given: Mapping[str, ChannelAdapter] | None = None,
) -> dict[str, ChannelAdapter]:
    """The channels ``names``; those in ``given`` are kept as they are (a test's fakes may
    be outbound-only ``ChannelAdapter`` values).

    Every channel's own settings are built first, the given ones' too (their webhooks' source
    allowlists), so a bad value stops the start, naming every bad setting at once. A default
    channel whose module is not there (an optional one not installed) is left out with a log
    line; a channel the caller named explicitly is required.

    Raises:
        ChannelUnavailable: an explicitly named channel cannot be built.
        pydantic.ValidationError: as ``load_settings``.
    """
    explicit = names is not DEFAULT_CHANNELS
    names = list(names)
    channels: dict[str, ChannelAdapter] = dict(given or {})
    load_settings(context.settings, dict.fromkeys([*names, *channels]))
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
