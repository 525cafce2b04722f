"""Negotiation (protocol 1.3): the revision and optional features an agent and the bridge
agree on, and which bridge → agent frames a feature gates."""

from __future__ import annotations

from collections.abc import Iterable

from chatbridge.protocol.base import LEGACY_REVISION, PROTOCOL_REVISION

FEATURES = frozenset(
    ("status", "progress", "notices", "sessions", "files", "file_events", "rich_data",
     "agent_handoff")
)  # fmt: skip
"""Optional features of revision 1.3 an agent may announce (``hello.features``, or its config
options' ``features`` on the transports without a ``hello``)."""

FEATURE_OF: dict[str, str] = {
    "session_created": "sessions",
    "session_updated": "sessions",
    "session_expired": "sessions",
    "system_message": "notices",
    "warning_message": "notices",
}
"""The bridge → agent frame types only an agent that announced their feature receives."""


def _revision(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    major, _, minor = value.strip().partition(".")
    if not (major.isdigit() and (minor.isdigit() or not minor)):
        return None
    return int(major), int(minor or 0)


def negotiate(agent_version: str | None, announced: Iterable[str]) -> tuple[str, frozenset[str]]:
    """The revision and features a connection uses, from what the agent announced.

    Args:
        agent_version: ``hello.version``; None (or unreadable) for an agent from before
            negotiation, which is taken to speak ``LEGACY_REVISION``.
        announced: ``hello.features`` and ``hello.capabilities`` (or the agent config's
            ``options.features``); names the bridge does not know are ignored.

    Returns:
        The lower of the agent's revision and ``PROTOCOL_REVISION``, and the announced
        features the bridge knows.
    """
    ours = _revision(PROTOCOL_REVISION)
    theirs = _revision(agent_version)
    assert ours is not None
    if theirs is None:
        version = LEGACY_REVISION
    elif theirs < ours:
        version = f"{theirs[0]}.{theirs[1]}"
    else:
        version = PROTOCOL_REVISION
    features = frozenset(name for name in announced if isinstance(name, str)) & FEATURES
    return version, features


def agent_may_receive(frame_type: str, features: Iterable[str]) -> bool:
    """Whether a bridge → agent frame of ``frame_type`` may go to an agent with ``features``:
    always, unless the type belongs to a feature (``FEATURE_OF``) the agent did not announce."""
    feature = FEATURE_OF.get(frame_type)
    return feature is None or feature in features
