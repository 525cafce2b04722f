"""Calls between replicas without the wire: waiting for answers, and answering.

A call is a request to one named replica and its answer, over that replica's own channel
(``RedisCluster.call``). Used to hand an HTTP request to the replica that owns an http-pull
agent's offers or runs the http-webhook turn a late reply names, and to send an event to an
agent over another replica's link. ``PendingCalls`` keeps the callers waiting here;
``answer`` runs a service for a caller elsewhere and says how it went.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

from chatbridge.cluster.base import ClusterUnavailable, Payload, Service

log = logging.getLogger("chatbridge.cluster")


class PendingCalls:
    """The calls from this replica still waiting for an answer, by call id."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Payload]] = {}

    def open(self) -> tuple[str, asyncio.Future[Payload]]:
        """A new call id and the future its answer (or failure) will complete."""
        call_id = os.urandom(8).hex()
        fut: asyncio.Future[Payload] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = fut
        return call_id, fut

    def close(self, call_id: str) -> None:
        self._waiting.pop(call_id, None)

    def answered(self, reply: Payload) -> None:
        """A reply arrived (``answer``'s result): complete its call, if still waiting."""
        fut = self._waiting.get(reply.get("id", ""))
        if fut is None or fut.done():
            return
        if reply.get("ok"):
            fut.set_result(reply.get("p") or {})
        else:
            fut.set_exception(ClusterUnavailable(reply.get("error", "call failed")))

    def fail_all(self, reason: str) -> None:
        """Fail every call still waiting with ``ClusterUnavailable(reason)``."""
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ClusterUnavailable(reason))


async def answer(services: Mapping[str, Service], msg: Payload) -> Payload:
    """Run the service a call ``msg`` names; the reply's payload (its ``id``, and ``ok`` with
    the result ``p`` or the ``error``)."""
    service = services.get(msg.get("m", ""))
    try:
        if service is None:
            raise LookupError(f"no service {msg.get('m')!r}")
        result: Payload = {"ok": True, "p": await service(msg.get("p") or {})}
    except Exception as exc:
        log.exception("cluster: call %s failed", msg.get("m"))
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"id": msg.get("id"), **result}
