"""The workers: a claim loop each for agent turns and for channel deliveries.

Each is a ``ClaimLoop`` (``store.claim_loop``, the one shape of every worker) around a
runner: ``TurnRunner`` (``turn_runner``) runs a claimed turn on its agent and writes its
outcome; ``DeliveryRunner`` (``delivery_runner``) sends a claimed delivery through its
channel. What to do after a failure is the retry decision (``chatbridge.retry``); what the
runners need of the ``Bridge`` that runs them is ``host.Host``.

This module keeps the names the rest of the package imports from it.
"""

from __future__ import annotations

from chatbridge.pipeline.delivery_runner import DeliveryRunner, to_action
from chatbridge.pipeline.host import Host
from chatbridge.pipeline.turn_runner import TurnRunner, TypingStart, build_user_message, iso
from chatbridge.store.claim_loop import ClaimLoop

__all__ = [
    "ClaimLoop",
    "DeliveryRunner",
    "Host",
    "TurnRunner",
    "TypingStart",
    "build_user_message",
    "iso",
    "to_action",
]
