"""The decisions without I/O: which requests an agent-role operator is refused, which are
audited, and the password hashing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbridge.operators import admin_only, passwords
from chatbridge.operators.audit import audited


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/config/mappings"),
        ("DELETE", "/config/mappings/4"),
        ("POST", "/dead-letters/3/retry"),
        ("POST", "/dead-letters/3/discard"),
        ("GET", "/api/comms/settings"),
        ("PATCH", "/api/comms/settings"),
        ("POST", "/api/comms/provider/test"),
        ("GET", "/api/audit"),
        ("POST", "/api/operators"),
        ("PATCH", "/api/operators/op_1"),
    ],
)
def test_admin_screens_are_refused_to_agents(method: str, path: str) -> None:
    assert admin_only(method, path)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/comms/threads"),
        ("POST", "/api/comms/threads/c_1/messages"),
        ("POST", "/api/comms/threads/c_1/owner"),
        ("GET", "/dead-letters"),
        ("GET", "/api/operators"),
        ("GET", "/api/operators/me"),
        ("POST", "/api/operators/me/password"),
        ("POST", "/api/canned-replies"),
        ("GET", "/config/mappingsx"),
    ],
)
def test_conversation_work_is_open_to_agents(method: str, path: str) -> None:
    assert not admin_only(method, path)


def test_admin_actions_are_audited_with_their_target() -> None:
    assert audited("PUT", "/config/mappings/7") == ("route.save", "7")
    assert audited("POST", "/dead-letters/12/discard") == ("dead_letter.discard", "12")
    assert audited("PATCH", "/api/comms/settings") == ("settings.change", None)
    assert audited("PATCH", "/api/operators/op_ABC") == ("operator.change", "op_ABC")
    assert audited("GET", "/config/mappings") is None
    assert audited("POST", "/api/comms/threads/c_1/messages") is None


def test_a_password_is_stored_as_an_argon2id_hash_only() -> None:
    stored = passwords.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert passwords.hash_password("correct horse battery") != stored  # salted
    assert passwords.verify(stored, "correct horse battery")
    assert not passwords.verify(stored, "correct horse battery!")
    assert not passwords.verify(None, "anything")  # invited: no password yet
    assert not passwords.verify("not a hash", "anything")
    assert not passwords.needs_rehash(stored)
    with pytest.raises(passwords.WeakPassword):
        passwords.check_strength("short")
    token = passwords.new_invite_token()
    assert len(token) >= 40 and passwords.token_hash(token) != token


_SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
_METHOD = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"])


@given(_METHOD, st.lists(_SEGMENT, max_size=3))
def test_everything_under_routes_and_the_audit_log_is_for_admins(
    method: str, rest: list[str]
) -> None:
    for prefix in ("/config/mappings", "/api/audit", "/api/comms/settings"):
        assert admin_only(method, "/".join([prefix, *rest]))


@given(_METHOD, _SEGMENT, st.lists(_SEGMENT, max_size=2))
def test_threads_and_canned_replies_are_never_admin_only(
    method: str, thread: str, rest: list[str]
) -> None:
    assert not admin_only(method, "/".join(["/api/comms/threads", thread, *rest]))
    assert not admin_only(method, "/".join(["/api/canned-replies", thread]))
    assert not admin_only(method, "/".join(["/api/operators/me", *rest]))


@given(_METHOD, st.text(max_size=60))
def test_only_changes_are_audited(method: str, path: str) -> None:
    found = audited(method, path)
    if found is not None:
        assert method != "GET"
        action, _ = found
        assert action.split(".")[0] in ("route", "dead_letter", "settings", "operator")
