"""Operator passwords, hashed with argon2id (argon2-cffi's defaults, RFC 9106's low-memory
profile), and invitation tokens (random, stored only as their SHA-256).

A password is never stored or logged as it was typed; ``verify`` takes constant time in the
hash, and checking an unknown email still spends one hash (``verify_nothing``) so the answer
time does not tell which emails have accounts.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 256

_hasher = PasswordHasher()
# A hash of a password nobody has, checked when the email is unknown (same cost).
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


class WeakPassword(ValueError):
    """The password is too short or too long (the message says which)."""


def check_strength(password: str) -> None:
    """Refuse a password shorter than ``MIN_LENGTH`` or longer than ``MAX_LENGTH``.

    Raises:
        WeakPassword: with a message an operator can act on.
    """
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"the password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"the password may have at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    """The argon2id hash (``$argon2id$v=19$…``) to store for ``password``."""
    return _hasher.hash(password)


def verify(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (None: an invited operator with no
    password yet, which nothing matches)."""
    if stored_hash is None:
        verify_nothing(password)
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_nothing(password: str) -> None:
    """Spend the time of one check, for an email without an account."""
    try:
        _hasher.verify(_DUMMY, password)
    except VerificationError:
        pass


def needs_rehash(stored_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


def new_invite_token() -> str:
    """A new invitation token (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of an invitation token."""
    return hashlib.sha256(token.encode()).hexdigest()
