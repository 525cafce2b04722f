"""Signatures on what the bridge POSTs to an http-webhook agent: ``X-Chatbridge-Signature``.

The bridge signs each request body (``chatbridge.transports.webhook``) and an agent checks it
(the SDK's ``chatbridge.agent.webhook``, or any server)::

    X-Chatbridge-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret>

This is Meta's ``X-Hub-Signature-256`` scheme. Both sides import this module, so it sits on
the ground floor: standard library only, importable by an agent that installed the SDK alone.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Chatbridge-Signature"


def sha256_signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, body)>``: Meta's ``X-Hub-Signature-256`` and our own
    ``X-Chatbridge-Signature``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes) -> str:
    """The ``X-Chatbridge-Signature`` value of ``body`` (the exact bytes sent)."""
    return sha256_signature(secret, body)


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of the raw ``body``, compared in constant time.

    Args:
        secret: the route's ``agent_config.secret``.
        body: the request body exactly as received (never re-serialised JSON).
        header: the ``X-Chatbridge-Signature`` value, or ``None`` when it is missing.
    """
    return header is not None and hmac.compare_digest(sign(secret, body), header.strip())
