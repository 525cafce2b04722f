"""Failed-authentication budgets: how many wrong credentials one client address may send.

Every credential the bridge checks goes through ``AuthFailures``, one budget per credential
and client address (``CHATBRIDGE_AUTH_FAILURE_LIMIT``, default ``10/minute``):

- ``admin``: the admin key, at ``POST /console/login`` and as the bearer of the management
  and comms APIs (one budget: it is one secret);
- ``password``: operators' passwords at ``POST /console/login`` (per address, whatever the
  email, so guessing across accounts spends one budget);
- ``dial_in``: the token of a WebSocket agent's ``hello``;
- ``pull``: the token of an http-pull agent (and of late http-webhook replies);
- ``action_api``: the web chat action API's API and admin keys.

Before a credential is compared, ``guard()`` refuses an address whose budget is spent
(``RateLimited`` → 429 with ``Retry-After``) without looking at the credential, so a right
guess made over the limit is worth nothing. After a wrong one, ``failed()`` spends one unit.
A successful check spends nothing and waits for nothing: legitimate clients are not slowed.
The counters live in the rate limiter's storage (memory, or Redis when the bridge has one),
so with several replicas an address has one budget, not one per replica.

IPv4 addresses count one by one; IPv6 addresses per /64, the block one host usually holds.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from starlette.requests import HTTPConnection

from chatbridge.config import Settings
from chatbridge.ratelimit import RateLimited, RateLimiter

Credential = Literal["admin", "password", "dial_in", "pull", "action_api"]


def address_key(address: str) -> str:
    """The budget key of a client address: the address itself, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


class AuthFailures:
    """The failed-authentication budgets of one bridge (see the module docstring)."""

    def __init__(self, limiter: RateLimiter, settings: Settings) -> None:
        self._limiter = limiter
        self._settings = settings

    @property
    def _limit(self) -> str:
        return self._settings.auth_failure_limit

    async def retry_after(self, credential: Credential, address: str) -> int | None:
        """Seconds until ``address`` may try ``credential`` again; None if it may now."""
        if not self._limit:
            return None
        return await self._limiter.exhausted(
            f"auth_failed_{credential}", self._limit, address_key(address)
        )

    async def guard(self, credential: Credential, address: str) -> None:
        """Raise ``RateLimited`` when ``address`` has spent its budget for ``credential``."""
        wait = await self.retry_after(credential, address)
        if wait is not None:
            raise RateLimited(f"failed {credential.replace('_', ' ')} authentications", wait)

    async def failed(self, credential: Credential, address: str) -> None:
        """Count one wrong ``credential`` sent from ``address``."""
        if self._limit:
            await self._limiter.spend(
                f"auth_failed_{credential}", self._limit, address_key(address)
            )


def auth_failures(conn: HTTPConnection) -> AuthFailures:
    """The app's ``AuthFailures`` (made on first use from its bridge's rate limiter)."""
    state = conn.app.state
    found: AuthFailures | None = getattr(state, "auth_failures", None)
    if found is None:
        bridge = state.bridge
        found = AuthFailures(bridge.rate_limiter, bridge.settings)
        state.auth_failures = found
    return found
