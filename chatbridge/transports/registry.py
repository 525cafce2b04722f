"""The ``AgentTransport`` class of each transport kind, imported on first use.

What each kind needs (its ``TransportSpec``) is plain data on the settings floor,
``chatbridge.transport_kinds``, which ``config`` validates with; this module re-exports it for
the transports and adds ``load()``, which imports a kind's class only when an agent uses it
(as uvicorn does with its protocol names: the openai transport's code loads only for an
openai agent).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from chatbridge.transport_kinds import (
    DEFAULT_KIND,
    SPECS,
    Placement,
    TransportSpec,
    implied_kind,
    spec,
)

if TYPE_CHECKING:
    from chatbridge.transports.base import AgentTransport

__all__ = [
    "DEFAULT_KIND",
    "SPECS",
    "Placement",
    "TransportSpec",
    "implied_kind",
    "load",
    "spec",
]

_loaded: dict[str, type[AgentTransport]] = {}


def load(kind: str) -> type[AgentTransport]:
    """The ``AgentTransport`` class of ``kind``, imported on first use.

    Raises:
        ConfigError: no such transport.
    """
    cls = _loaded.get(kind)
    if cls is None:
        module_name, _, attr = spec(kind).target.partition(":")
        cls = _loaded[kind] = getattr(importlib.import_module(module_name), attr)
    return cls
