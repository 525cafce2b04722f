"""Ignore lists: a contact, a phone number in any format, a WhatsApp JID in either
gateway's spelling, or a group pattern keeps a chat's messages from the agent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbridge.policies.ignore import is_ignored
from chatbridge.policies.model import IgnoreList

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)
GROUP = "waha:default:123-456@g.us"
DIRECT = "waha:default:14155550123@c.us"


def ignored(
    chat_id: str, *, contact_id: str | None = None, phone: str | None = None, **lists: list[str]
) -> bool:
    return is_ignored(
        IgnoreList.model_validate(lists), contact_id=contact_id, phone=phone, chat_id=chat_id
    )


def test_an_empty_list_ignores_nobody() -> None:
    assert not ignored(GROUP, contact_id="7", phone="+14155550123")


def test_contact_ids_match_exactly() -> None:
    assert ignored("cw:1:42", contact_id="7", contact_ids=["7"])
    assert not ignored("cw:1:42", contact_id="77", contact_ids=["7"])
    assert not ignored("cw:1:42", contact_id=None, contact_ids=["7"])


@pytest.mark.parametrize(
    "entry", ["+14155550123", "+1 (415) 555-0123", "1-415-555-0123", "14155550123"]
)
@pytest.mark.parametrize("sender", ["+14155550123", "14155550123", "+1 415 555 0123"])
def test_a_phone_matches_in_any_format(entry: str, sender: str) -> None:
    assert ignored("http:x", phone=sender, phones=[entry])
    assert not ignored("http:x", phone="+14155550124", phones=[entry])
    assert not ignored("http:x", phone=None, phones=[entry])


def test_a_phone_matches_the_direct_chat_with_that_number() -> None:
    assert ignored(DIRECT, phones=["+1 415 555 0123"])
    assert ignored("evolution:shop:14155550123@s.whatsapp.net", phones=["+14155550123"])
    assert not ignored(GROUP, phones=["+123456"])
    # a conversation id that happens to be digits is not a phone number
    assert not ignored("chatwoot:1:14155550123", phones=["+14155550123"])


@pytest.mark.parametrize(
    "entry",
    [
        "14155550123@c.us",
        "14155550123@s.whatsapp.net",
        "14155550123:7@s.whatsapp.net",  # copied with a device suffix
        "14155550123@C.US",
        "+14155550123@c.us",
    ],
)
def test_a_jid_matches_in_either_gateways_spelling(entry: str) -> None:
    assert ignored(DIRECT, jids=[entry])
    assert ignored("evolution:shop:14155550123@s.whatsapp.net", jids=[entry])
    assert not ignored("waha:default:14155550124@c.us", jids=[entry])


def test_a_group_jid_matches_that_group_only() -> None:
    assert ignored(GROUP, jids=["123-456@g.us"])
    assert not ignored("waha:default:123-457@g.us", jids=["123-456@g.us"])
    assert not ignored(GROUP, jids=["123@g.us"])


def test_evolutions_server_entries_mean_every_chat_there() -> None:
    assert ignored(GROUP, jids=["@g.us"])
    assert not ignored(DIRECT, jids=["@g.us"])
    assert ignored(DIRECT, jids=["@s.whatsapp.net"])
    assert not ignored(GROUP, jids=["@s.whatsapp.net"])


@pytest.mark.parametrize(
    ("pattern", "chat", "expected"),
    [
        ("*@g.us", GROUP, True),
        ("*@G.US", GROUP, True),
        ("*@g.us", DIRECT, False),
        ("123-*@g.us", GROUP, True),
        ("999-*@g.us", GROUP, False),
        ("waha:default:*", DIRECT, True),  # a pattern may name the whole key
        ("waha:other:*", DIRECT, False),
        ("*@newsletter", "waha:default:1203@newsletter", True),
    ],
)
def test_group_patterns(pattern: str, chat: str, expected: bool) -> None:
    assert ignored(chat, group_patterns=[pattern]) is expected


@SETTINGS
@given(
    st.integers(10**6, 10**15 - 1),
    st.lists(st.sampled_from([" ", "-", "(", ")", ".", "/"]), max_size=8),
    st.randoms(use_true_random=False),
)
def test_a_phone_is_compared_by_its_digits(number: int, noise: list[str], rnd: object) -> None:
    digits = list(str(number))
    for sep in noise:
        digits.insert(rnd.randrange(len(digits) + 1), sep)  # type: ignore[attr-defined]
    formatted = "+" + "".join(digits)
    assert ignored("http:x", phone=str(number), phones=[formatted])
    assert ignored("http:x", phone=formatted, phones=[str(number)])
    assert not ignored("http:x", phone=str(number + 1), phones=[formatted])
