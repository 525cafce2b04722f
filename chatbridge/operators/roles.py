"""Who a request comes from, and what the ``agent`` role may not do.

Two roles: ``admin`` (everything) and ``agent`` (conversations: read, reply, notes,
take-over, assignment, canned replies of their own). The admin key — a bearer for machines,
or a console session opened with it — acts as an admin; so does a client on this machine
when no admin key is set.

``admin_only`` is the one list of admin screens and APIs: routes (and the agent keys they
carry), the comms settings, operator accounts, the audit log, and dead-letter actions. It is
a plain function of the method and path so that it is tested without a server, and a new
admin API is added here, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["admin", "agent"]
ROLES: tuple[Role, ...] = ("admin", "agent")
Via = Literal["key", "local", "session"]

# (methods, path prefix): None means every method.
_ADMIN_ONLY: tuple[tuple[frozenset[str] | None, str], ...] = (
    (None, "/config/mappings"),  # routes and the agents' keys
    (frozenset({"POST", "PUT", "PATCH", "DELETE"}), "/dead-letters/"),  # retry, discard
    (None, "/api/comms/settings"),
    (None, "/api/comms/provider"),  # transcription provider settings and test
    (None, "/api/audit"),
    (frozenset({"POST", "PUT", "PATCH", "DELETE"}), "/api/operators"),
)
# An operator's own account stays theirs to change (their password).
_OWN = "/api/operators/me"


def admin_only(method: str, path: str) -> bool:
    """Whether ``method path`` is an admin action an ``agent``-role operator is refused."""
    method = method.upper()
    if path == _OWN or path.startswith(_OWN + "/"):
        return False
    for methods, prefix in _ADMIN_ONLY:
        base = prefix.rstrip("/")
        if (path == base or path.startswith(base + "/")) and (methods is None or method in methods):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: an operator's session, or the admin key (``via`` ``key``, or ``local``
    for a direct local client with no key set)."""

    role: Role
    via: Via
    operator_id: str | None = None
    name: str = "Admin key"
    email: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> str:
        """How the audit log names them: ``Ada <ada@example.com>``, or ``admin key``."""
        if self.operator_id is None:
            return "admin key" if self.via != "local" else "local admin"
        return f"{self.name} <{self.email}>"

    def attribution(self) -> dict[str, Any]:
        """What a message, note or owner change they make keeps of them."""
        return {"operator_id": self.operator_id, "operator_name": self.name}

    def body(self) -> dict[str, Any]:
        """The principal as ``GET /api/operators/me`` answers it."""
        return {
            "id": self.operator_id,
            "name": self.name,
            "email": self.email,
            "role": self.role,
            "via": self.via,
        }


KEY_ADMIN = Principal(role="admin", via="key")
LOCAL_ADMIN = Principal(role="admin", via="local", name="Local admin")
