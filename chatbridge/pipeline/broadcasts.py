"""The broadcast worker: sends a leased broadcast's template to its recipients, paced.

One broadcast at a time per process, one process at a time per broadcast (the store's lease,
renewed every third of its length; a worker that loses it, or whose broadcast was paused or
cancelled, stops before its next send). Recipients go in ``seq`` order through a token bucket
at the broadcast's ``rate_per_second`` (burst ``BURST``); on Meta, never two messages to one
recipient within ``META_PAIR_SECONDS`` (Meta's pair rate limit).

Exactly once, across crashes: each send is ``start_send`` (committed ``sending``) → gateway
call → ``end_send``. A recipient found ``sending`` when a broadcast is claimed again was cut off
mid-send; a ``Reconcile`` (the provider asked whether the message is in the chat) settles it
where the provider can answer, otherwise it becomes ``uncertain`` with the reason and is never
sent again unless an operator says so (``retry_uncertain``). Nobody gets the template twice
because of a crash; a cut-off recipient may get none until the operator acts.

A gateway error that is retryable (unreachable, 429, 5xx) puts the recipient back in the queue
and the worker waits (exponential, ``RETRY_BASE`` up to ``RETRY_MAX``) before going on; after
``MAX_ATTEMPTS`` it is ``failed``. A permanent refusal fails that recipient only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chatbridge.channels.base import ChannelAdapter
from chatbridge.channels.whatsapp.ids import ChatAddress, phone_digits
from chatbridge.crm.segments import fill
from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import PermanentDelivery, RetryableDelivery
from chatbridge.models import ConversationRef, OutboundAction
from chatbridge.store import Store
from chatbridge.store.broadcasts import BroadcastRecord, Recipient

log = logging.getLogger("chatbridge.pipeline.broadcasts")

BURST = 1.0
META_PAIR_SECONDS = 6.0
# Meta Cloud API's default throughput per business phone number (messages per second,
# text and template together); higher tiers are granted by Meta on request.
META_DEFAULT_RATE = 80.0
MAX_ATTEMPTS = 3
RETRY_BASE = 1.0
RETRY_MAX = 30.0
BATCH = 50

Send = Callable[[str, str, dict[str, Any]], Awaitable[str | None]]
"""(chat key, idempotency key, template ``{name, language, parameters}``) → the provider's
message id. Raises ``RetryableDelivery`` / ``PermanentDelivery``."""

Reconcile = Callable[[Recipient, dict[str, Any]], Awaitable[str | bool | None]]
"""A cut-off send: the provider's id of the message found in the chat (sent), ``False`` (surely
not sent: queue it again) or ``None`` (cannot tell: ``uncertain``)."""


def address_for(settings: CommsSettings, phone: str) -> str | None:
    """The chat key a template to ``phone`` (E.164) goes to on the configured provider, in the
    form that provider's inbound messages key the thread by; None when WhatsApp is off."""
    digits = phone_digits(phone)
    if digits is None:
        return None
    if settings.provider == "waha":
        return ChatAddress("waha", settings.waha_session, f"{digits}@c.us").channel_key
    if settings.provider == "evolution":
        chat = f"{digits}@s.whatsapp.net"
        return ChatAddress("evolution", settings.evolution_instance, chat).channel_key
    if settings.provider == "meta_cloud":
        if not settings.meta_phone_number_id:
            return None
        return ChatAddress("meta_cloud", settings.meta_phone_number_id, digits).channel_key
    if settings.provider == "mock":
        return ChatAddress("mock", "mock", f"{digits}@c.us").channel_key
    return None


def default_rate(settings: CommsSettings) -> float:
    """The rate a broadcast gets when none is asked: Meta's throughput, else the safe rate."""
    if settings.provider == "meta_cloud":
        return settings.broadcast_meta_rate
    return settings.broadcast_rate


class TokenBucket:
    """Pacing: ``rate`` tokens a second, at most ``burst`` saved. ``reserve()`` takes one and
    says how long to wait before using it (the debt is kept, so waits add up exactly)."""

    def __init__(
        self, rate: float, burst: float = BURST, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def reserve(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class PairPacer:
    """Meta's pair rate: the wait before another message to one recipient (bounded memory)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._last: OrderedDict[str, float] = OrderedDict()

    def wait_for(self, address: str) -> float:
        now = self._clock()
        while self._last and next(iter(self._last.values())) < now - self.seconds:
            self._last.popitem(last=False)
        last = self._last.get(address)
        return 0.0 if last is None else max(0.0, last + self.seconds - now)

    def sent(self, address: str) -> None:
        self._last[address] = self._clock()
        self._last.move_to_end(address)


@dataclass(slots=True)
class _Run:
    broadcast: BroadcastRecord
    stop: bool = False


class BroadcastWorker:
    """Claims broadcasts and sends them (see the module docstring).

    Args:
        store: the bridge's store.
        settings_source: the current comms settings (the provider decides the pair rate).
        send: sends one template (the WhatsApp channel's ``send`` in the bridge).
        owner: this process's instance id (the lease owner).
        reconcile: asks the provider about a cut-off send, when it can tell.
    """

    def __init__(
        self,
        store: Store,
        settings_source: Callable[[], CommsSettings],
        send: Send,
        *,
        owner: str,
        lease_seconds: float = 30.0,
        poll_interval: float = 2.0,
        reconcile: Reconcile | None = None,
    ) -> None:
        self.store = store
        self.settings_source = settings_source
        self.send = send
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.reconcile = reconcile
        self.pairs = PairPacer(META_PAIR_SECONDS)
        self._wake = asyncio.Event()
        self._stopping = False
        self._current: _Run | None = None

    def wake(self) -> None:
        """A broadcast was created or resumed: claim now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and send broadcasts until ``stop``."""
        while not self._stopping:
            try:
                worked = await self.run_once()
            except Exception:
                log.exception("broadcast worker round failed")
                worked = False
            if worked or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            self._wake.clear()

    async def run_until_idle(self) -> None:
        """Send every claimable broadcast, then return (tests, ``chatbridge broadcast``)."""
        while await self.run_once():
            pass

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Stop after the send in flight (so it is recorded), for at most ``drain_seconds``."""
        self._stopping = True
        self._wake.set()
        if self._current is not None:
            self._current.stop = True
        deadline = time.monotonic() + drain_seconds
        while self._current is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def run_once(self) -> bool:
        """Claim one broadcast and send it until it ends, pauses or the lease is lost."""
        broadcast = await self.store.claim_broadcast(self.owner, lease_seconds=self.lease_seconds)
        if broadcast is None:
            return False
        run = _Run(broadcast)
        self._current = run
        renewer = asyncio.create_task(self._renew(run))
        try:
            await self._send_all(run)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            self._current = None
        return True

    async def _renew(self, run: _Run) -> None:
        while not run.stop:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                held = await self.store.renew_broadcast(
                    run.broadcast.id, self.owner, self.lease_seconds
                )
            except Exception as exc:
                log.warning("broadcast %s: lease not renewed: %s", run.broadcast.id, exc)
                continue
            if not held:
                run.stop = True

    async def _template(self, broadcast: BroadcastRecord) -> dict[str, Any] | None:
        template = await self.store.get_template(broadcast.template_id)
        if template is None:
            return None
        return {"name": template.name, "language": template.language}

    async def _send_all(self, run: _Run) -> None:
        b = run.broadcast
        template = await self._template(b)
        if template is None:
            log.error("broadcast %s: template %s is gone", b.id, b.template_id)
            await self.store.fail_broadcast(b.id, self.owner, f"template {b.template_id} is gone")
            run.stop = True
            return
        await self._settle_cut_off(b, template)
        bucket = TokenBucket(b.rate_per_second)
        meta = self.settings_source().provider == "meta_cloud"
        while not run.stop and not self._stopping:
            batch = await self.store.next_recipients(b.id, BATCH)
            if not batch:
                break
            people = await self.store.person_facts([r.person_id for r in batch])
            for recipient in batch:
                if run.stop or self._stopping:
                    break
                wait = bucket.reserve()
                if meta and recipient.address:
                    wait = max(wait, self.pairs.wait_for(recipient.address))
                if wait > 0:
                    await asyncio.sleep(wait)
                if not await self.store.start_send(b.id, recipient.person_id, self.owner):
                    run.stop = True  # paused, cancelled or taken over: not ours to send
                    break
                delay = await self._send_one(
                    b, recipient, template, people.get(recipient.person_id)
                )
                if delay is not None:
                    await asyncio.sleep(delay)
                    break  # read the queue again: the recipient is back in it
        if not run.stop and not self._stopping:
            await self.store.finish_broadcast(b.id, self.owner)
        elif self._stopping:
            await self.store.release_broadcast(b.id, self.owner)

    async def _send_one(
        self, b: BroadcastRecord, recipient: Recipient, template: dict[str, Any], person: Any
    ) -> float | None:
        """Send to one recipient (already ``sending``) and record the outcome. Returns how
        long to wait before going on when the gateway asked to retry, else None."""
        pid = recipient.person_id
        if person is None:
            await self.store.end_send(b.id, pid, state="failed", reason="person was deleted")
            return None
        if person.opted_out_at is not None:  # opted out after the broadcast was created
            await self.store.end_send(b.id, pid, state="skipped", reason="opted_out")
            return None
        filled = fill(b.parameters, person)
        if isinstance(filled, str) or not recipient.address:
            reason = filled if isinstance(filled, str) else "no address"
            await self.store.end_send(b.id, pid, state="failed", reason=reason)
            return None
        try:
            external_id = await self.send(
                recipient.address, f"bc:{b.id}:{pid}", {**template, "parameters": filled}
            )
        except RetryableDelivery as exc:
            if exc.outcome_unknown:  # written, no answer: it may be in the chat
                await self._settle(b, recipient, {**template, "parameters": filled}, str(exc))
                return None
            if recipient.attempts >= MAX_ATTEMPTS:
                await self.store.end_send(b.id, pid, state="failed", reason=str(exc)[:500])
                return None
            await self.store.end_send(b.id, pid, state="queued", reason=str(exc)[:500])
            backoff = min(RETRY_MAX, RETRY_BASE * 2 ** (recipient.attempts - 1))
            return float(exc.retry_after if exc.retry_after is not None else backoff)
        except PermanentDelivery as exc:
            await self.store.end_send(b.id, pid, state="failed", reason=str(exc)[:500])
            return None
        except Exception as exc:  # we cannot know whether it left: never resend blindly
            log.exception("broadcast %s: send to %s failed unexpectedly", b.id, pid)
            await self.store.end_send(
                b.id, pid, state="uncertain", reason=f"unexpected error: {exc!r}"[:500]
            )
            return None
        self.pairs.sent(recipient.address)
        await self.store.end_send(b.id, pid, state="sent", external_id=external_id)
        return None

    async def _settle_cut_off(self, b: BroadcastRecord, template: dict[str, Any]) -> None:
        """Recipients left ``sending`` by a worker that stopped mid-send: asked about, or
        ``uncertain`` — never sent again without knowing."""
        cut_off = await self.store.cut_off_sends(b.id)
        if not cut_off:
            return
        people = await self.store.person_facts([r.person_id for r in cut_off])
        for recipient in cut_off:
            person = people.get(recipient.person_id)
            filled = fill(b.parameters, person) if person is not None else "person was deleted"
            full = {**template, "parameters": filled} if isinstance(filled, dict) else None
            await self._settle(b, recipient, full, "the bridge stopped during this send")

    async def _settle(
        self,
        b: BroadcastRecord,
        recipient: Recipient,
        template: dict[str, Any] | None,
        why: str,
    ) -> None:
        """A ``sending`` recipient whose send may or may not have gone out: the provider is
        asked (``reconcile``) where it can tell; otherwise ``uncertain``."""
        found: str | bool | None = None
        if self.reconcile is not None and template is not None:
            try:
                found = await self.reconcile(recipient, template)
            except Exception as exc:
                log.warning("broadcast %s: reconcile %s: %s", b.id, recipient.person_id, exc)
                found = None
        pid = recipient.person_id
        if isinstance(found, str):
            await self.store.end_send(b.id, pid, state="sent", external_id=found)
        elif found is False:
            await self.store.end_send(b.id, pid, state="queued", reason="not sent: " + why)
        else:
            await self.store.end_send(
                b.id,
                pid,
                state="uncertain",
                reason=f"{why}; the provider cannot say whether it went out: check the chat, "
                "then retry if it did not",
            )


def channel_send(channels: Mapping[str, ChannelAdapter]) -> Send:
    """``Send`` through the bridge's WhatsApp channel: a template action with no conversation
    row (the channel renders it as text on WAHA / Evolution / mock, sends Meta a template)."""

    async def send(address: str, idempotency_key: str, template: dict[str, Any]) -> str | None:
        channel = channels.get("whatsapp")
        if channel is None:
            raise PermanentDelivery("the whatsapp channel is not enabled")
        action = OutboundAction(
            kind="message",
            conversation=ConversationRef(
                id="", channel="whatsapp", channel_key=address, inbox_id=0
            ),
            idempotency_key=idempotency_key,
            template=template,
        )
        return (await channel.send(action)).external_id

    return send
