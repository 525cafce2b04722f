"""The pure segment filter, parameter filling and the token bucket."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbridge.crm.segments import (
    Segment,
    SegmentProblem,
    fill,
    person_fields,
    skip_reason,
    snapshot,
)
from chatbridge.pipeline.broadcasts import PairPacer, TokenBucket
from chatbridge.store.broadcasts import PersonFacts

TAGS = st.lists(st.sampled_from(["vip", "beta", "lead", "churned"]), max_size=4)


def person(**kw: object) -> PersonFacts:
    base: dict[str, object] = {"id": "ps_1", "name": "Asha Rao", "phone": "+15550000001"}
    return PersonFacts(**{**base, **kw})  # type: ignore[arg-type]


@given(person_tags=TAGS, any_=TAGS, all_=TAGS)
def test_tags_any_and_all_mean_what_they_say(
    person_tags: list[str], any_: list[str], all_: list[str]
) -> None:
    segment = Segment.parse({"tags_any": any_, "tags_all": all_})
    p = person(tags=tuple(person_tags))
    expected = (not any_ or bool(set(any_) & set(person_tags))) and set(all_) <= set(person_tags)
    assert segment.matches(p) is expected


@given(
    last=st.none() | st.floats(0, 2e9),
    after=st.none() | st.floats(0, 1e9),
    before=st.none() | st.floats(1e9 + 1, 2e9),
)
def test_last_contact_window(last: float | None, after: float | None, before: float | None) -> None:
    segment = Segment.parse({"last_contact_after": after, "last_contact_before": before})
    inside = (after is None or (last is not None and last >= after)) and (
        before is None or (last is not None and last < before)
    )
    assert segment.matches(person(last_contact_at=last)) is inside


def test_channel_and_empty_segment() -> None:
    assert Segment.parse({}).matches(person())
    wa = Segment.parse({"channel": "whatsapp"})
    assert not wa.matches(person())
    assert wa.matches(person(channels=frozenset({"whatsapp", "webchat"})))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "must be an object"),
        ({"tags": ["x"]}, "unknown segment key"),
        ({"tags_any": "vip"}, "list of tags"),
        ({"tags_any": [""]}, "a tag must be"),
        ({"last_contact_after": "yesterday"}, "unix time"),
        ({"last_contact_after": 5, "last_contact_before": 5}, "earlier than"),
        ({"channel": ""}, "channel name"),
    ],
)
def test_bad_segments_are_named(raw: object, message: str) -> None:
    with pytest.raises(SegmentProblem, match=message):
        Segment.parse(raw)


def test_tags_are_normalised() -> None:
    assert Segment.parse({"tags_any": [" VIP ", "vip"]}).tags_any == ("vip",)


def test_fill_person_fields_and_reasons() -> None:
    p = person(company="Acme", meta={"city": "Pune"})
    params = {"1": "{person.first_name}", "2": "{person.company} in {person.meta.city}"}
    assert fill(params, p) == {"1": "Asha", "2": "Acme in Pune"}
    assert fill({"1": "{person.email}"}, p) == "person has no email (parameter 1)"
    assert person_fields(params) == ["first_name", "company", "meta.city"]
    with pytest.raises(SegmentProblem, match="unknown person field"):
        person_fields({"1": "{person.password}"})


def test_skips_opted_out_first_then_unreachable() -> None:
    assert skip_reason(person(opted_out_at=1.0, phone=None), None) == "opted_out"
    assert skip_reason(person(phone=None), None) == "no_whatsapp_phone"
    assert skip_reason(person(), "waha:default:15550000001@c.us") is None
    snap = snapshot(
        [person(id="a"), person(id="b", opted_out_at=1.0), person(id="c", tags=("x",))],
        Segment.parse({}),
        {"1": "{person.name}"},
        lambda phone: f"k:{phone}",
    )
    assert [r["state"] for r in snap.rows] == ["queued", "skipped", "queued"]
    assert snap.counts == {"queued": 2, "skipped": 1}
    assert snap.skipped_reasons() == {"opted_out": 1}


def test_token_bucket_paces_at_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(10.0, burst=1.0, clock=lambda: now[0])
    waits = [bucket.reserve() for _ in range(5)]  # asked all at once: 0, .1, .2, .3, .4
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    now[0] = 10.0  # idle for long: at most one token saved
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.1)
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_pair_pacer_waits_six_seconds_per_recipient() -> None:
    now = [100.0]
    pacer = PairPacer(6.0, clock=lambda: now[0])
    assert pacer.wait_for("a") == 0.0
    pacer.sent("a")
    now[0] = 102.0
    assert pacer.wait_for("a") == pytest.approx(4.0)
    assert pacer.wait_for("b") == 0.0
    now[0] = 200.0
    assert pacer.wait_for("a") == 0.0
