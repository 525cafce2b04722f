"""Which requests are admin actions, and how the audit log names them.

An audit row is written for every successful (2xx) change to routes, the comms settings,
operator accounts, canned replies shared with the team, and dead letters. ``audited`` maps a
method and path to ``(action, target)`` — a decision without I/O — and the API's audit
middleware (``chatbridge.api.audit``) writes the row once the response is known. Request
bodies are not copied into the log (they may hold agent tokens and passwords); where it
helps, the handler adds safe details (which settings changed, which role) to the request
state.
"""

from __future__ import annotations

import re

_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/config/mappings$"), "route.create"),
    ("PUT", re.compile(r"^/config/mappings/(?P<target>[^/]+)$"), "route.save"),
    ("DELETE", re.compile(r"^/config/mappings/(?P<target>[^/]+)$"), "route.delete"),
    ("POST", re.compile(r"^/dead-letters/(?P<target>\d+)/retry$"), "dead_letter.retry"),
    ("POST", re.compile(r"^/dead-letters/(?P<target>\d+)/discard$"), "dead_letter.discard"),
    ("PATCH", re.compile(r"^/api/comms/settings$"), "settings.change"),
    ("POST", re.compile(r"^/api/operators$"), "operator.create"),
    ("PATCH", re.compile(r"^/api/operators/(?P<target>op_[A-Za-z0-9]+)$"), "operator.change"),
    (
        "POST",
        re.compile(r"^/api/operators/(?P<target>op_[A-Za-z0-9]+)/invitation$"),
        "operator.invite",
    ),
)


def audited(method: str, path: str) -> tuple[str, str | None] | None:
    """``(action, target)`` when ``method path`` is an audited admin action; else None."""
    method = method.upper()
    for want, pattern, action in _RULES:
        if method != want:
            continue
        found = pattern.match(path)
        if found is not None:
            return action, found.groupdict().get("target")
    return None
