"""Log lines about agents and their turns, in one format for the whole ``agents`` package.

Every line reads ``event agent_id=… turn=… key=value`` and carries the same keys in
``extra``. The logger is ``chatbridge.transports``, shared with ``dial_out``.
"""

from __future__ import annotations

import logging

log = logging.getLogger("chatbridge.transports")


def log_event(
    level: int,
    event: str,
    agent_id: str,
    turn_key: str | None = None,
    *,
    exc_info: bool = False,
    **fields: object,
) -> None:
    """One line about an agent (and a turn): ``event agent_id=… turn=… k=v``, keys in ``extra``."""
    if not log.isEnabledFor(level):
        return
    parts = [f"agent_id={agent_id}"]
    if turn_key is not None:
        parts.append(f"turn={turn_key}")
    parts += [f"{key}={value}" for key, value in fields.items()]
    extra = {"agent_id": agent_id, "turn_key": turn_key, **fields}
    log.log(level, "%s %s", event, " ".join(parts), exc_info=exc_info, extra=extra)
