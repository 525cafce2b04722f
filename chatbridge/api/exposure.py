"""Webhooks that anyone could call: named once at start-up, and never served on a public
address unless the operator says so.

A channel's webhook is *unauthenticated* when the bridge has no secret to check it with:
Chatwoot without ``chatwoot_webhook_secret``, WAHA without ``waha_hmac_key``, Evolution
without ``evolution_webhook_header_value`` or ``evolution_jwt_key``, Meta without
``meta_app_secret``, and the mock WhatsApp provider always. Whoever reaches such a webhook can
write customer messages, or silence the bot with a fake human reply.

At start-up the bridge logs one WARNING per such channel. Bound to an address other than
loopback it refuses to start while any remains, unless ``allow_unsigned_webhooks`` is set
(``CHATBRIDGE_ALLOW_UNSIGNED_WEBHOOKS=true``, e.g. when a proxy in front authenticates them).
The decisions are plain functions; ``check_webhook_exposure`` only logs and raises.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from chatbridge.config import Settings
from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import ConfigError

log = logging.getLogger("chatbridge.api.exposure")


@dataclass(frozen=True)
class OpenWebhook:
    """One channel whose webhook accepts requests without authentication."""

    channel: str
    path: str
    fix: str

    def warning(self) -> str:
        return (
            f"{self.channel} webhooks ({self.path}) are accepted WITHOUT authentication: anyone "
            f"who can reach this port can inject messages; set {self.fix}"
        )


def open_webhooks(
    settings: Settings, comms: CommsSettings, *, chatwoot_in_use: bool
) -> list[OpenWebhook]:
    """The channels in use whose webhooks nobody has to authenticate to.

    Args:
        settings: the bridge's settings.
        comms: the WhatsApp settings in force (environment plus stored changes).
        chatwoot_in_use: whether Chatwoot is configured (an API token or a Chatwoot route);
            without a route an unsigned Chatwoot webhook is refused (404) and stores nothing.
    """
    found: list[OpenWebhook] = []
    if chatwoot_in_use and settings.chatwoot_webhook_secret is None:
        found.append(
            OpenWebhook(
                "Chatwoot",
                "/webhook/chatwoot",
                "CHATWOOT_WEBHOOK_SECRET to the secret Chatwoot shows for the webhook / agent bot",
            )
        )
    provider = comms.provider
    path = "/api/comms/webhooks/"
    if provider == "mock":
        found.append(
            OpenWebhook(
                "WhatsApp (mock provider)",
                path + "mock",
                "CHATBRIDGE_COMMS_PROVIDER to a real provider (the mock is for demos)",
            )
        )
    elif provider == "waha" and not comms.waha_hmac_key:
        found.append(
            OpenWebhook(
                "WhatsApp (WAHA)",
                path + "waha",
                "CHATBRIDGE_COMMS_WAHA_HMAC_KEY and the same hmac.key on WAHA's webhook",
            )
        )
    elif provider == "evolution" and not (
        comms.evolution_jwt_key or comms.evolution_webhook_header_value
    ):
        found.append(
            OpenWebhook(
                "WhatsApp (Evolution)",
                path + "evolution",
                "CHATBRIDGE_COMMS_EVOLUTION_JWT_KEY or "
                "CHATBRIDGE_COMMS_EVOLUTION_WEBHOOK_HEADER_VALUE",
            )
        )
    elif provider == "meta_cloud" and not comms.meta_app_secret:
        found.append(
            OpenWebhook("WhatsApp (Meta)", path + "meta", "CHATBRIDGE_COMMS_META_APP_SECRET")
        )
    return found


def chatwoot_configured(settings: Settings, route_channels: Iterable[str] = ()) -> bool:
    """Whether Chatwoot is in use: an API token, or a route (configured or stored) for it."""
    channels = {m.channel for m in settings.inbox_agent_mappings} | set(route_channels)
    return bool(settings.chatwoot_api_access_token) or "chatwoot" in channels


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the bridge reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name (or "" / "0.0.0.0"-like wildcards): reachable from outside


def exposure_problem(settings: Settings, found: list[OpenWebhook]) -> str | None:
    """Why the bridge must not start (bound to a public address with open webhooks), or
    None."""
    if not found or settings.allow_unsigned_webhooks or is_loopback(settings.host):
        return None
    names = ", ".join(o.channel for o in found)
    return (
        f"refusing to serve on {settings.host}: the webhooks of {names} are unauthenticated. "
        "Set their secrets (see the warnings above), bind to 127.0.0.1, or set "
        "CHATBRIDGE_ALLOW_UNSIGNED_WEBHOOKS=true if something in front authenticates them."
    )


def check_webhook_exposure(settings: Settings, found: list[OpenWebhook]) -> None:
    """Log one WARNING per unauthenticated channel; refuse a public bind with any.

    Raises:
        ConfigError: bound to a non-loopback address with open webhooks and
            ``allow_unsigned_webhooks`` not set.
    """
    for hook in found:
        log.warning(hook.warning())
    problem = exposure_problem(settings, found)
    if problem is not None:
        log.error(problem)
        raise ConfigError(problem)
