"""Operators: the people who answer customers in the console.

An operator has an account (email, display name, ``admin`` or ``agent`` role, an argon2id
password hash) made by an admin: created with a password, or invited (the invitation link
lets them choose one). The admin key stays for machines and first set-up and acts as an
admin. Everything an operator does in a thread (a message, a private note, a take-over, a
hand-back) names them; admin actions leave a row in the audit log.

- ``passwords``: hashing and checking passwords, invitation tokens;
- ``roles``: who a request comes from (``Principal``) and what an agent-role operator may
  not do (``admin_only``) — decisions without I/O;
- ``audit``: which requests are admin actions worth an audit row (``audited``).

The rows live in ``chatbridge.store.operators``; the API in ``chatbridge.api.operators``.
"""

from chatbridge.operators.roles import ROLES, Principal, Role, admin_only

__all__ = ["ROLES", "Principal", "Role", "admin_only"]
