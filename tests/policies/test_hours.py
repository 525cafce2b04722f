"""Business hours: wall-clock ranges in the route's time zone, across clock changes,
holidays, a day that ends at 24:00 and a night split over two days."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbridge.policies.hours import is_open
from chatbridge.policies.model import WEEKDAYS, BusinessHours

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)
BERLIN = ZoneInfo("Europe/Berlin")
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/St_Johns",  # -03:30 / -02:30
    "Asia/Kolkata",  # +05:30, no DST
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Pacific/Chatham",  # +12:45 / +13:45
    "Pacific/Kiritimati",  # +14:00
]
# 2000-01-01 .. 2100-01-01
instants = st.floats(946_684_800, 4_102_444_800, allow_nan=False)


def at(
    zone: ZoneInfo, y: int, mo: int, d: int, h: int, mi: int, s: int = 0, fold: int = 0
) -> float:
    """Unix time of a wall-clock moment in ``zone``."""
    return datetime(y, mo, d, h, mi, s, tzinfo=zone, fold=fold).timestamp()


def utc(y: int, mo: int, d: int, h: int, mi: int) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp()


def hours(**kw: object) -> BusinessHours:
    return BusinessHours.model_validate({"timezone": "Europe/Berlin", **kw})


def test_a_range_opens_at_its_start_and_closes_at_its_end() -> None:
    h = hours(weekly={"mon": ["09:00-17:00"]})
    assert not is_open(h, at(BERLIN, 2025, 6, 2, 8, 59, 59))
    assert is_open(h, at(BERLIN, 2025, 6, 2, 9, 0))
    assert is_open(h, at(BERLIN, 2025, 6, 2, 16, 59, 59))
    assert not is_open(h, at(BERLIN, 2025, 6, 2, 17, 0))
    assert not is_open(h, at(BERLIN, 2025, 6, 3, 10, 0))  # tuesday is not listed


def test_several_ranges_a_day() -> None:
    h = hours(weekly={"fri": ["09:00-12:00", "13:00-17:30"]})
    friday = (2025, 6, 6)
    assert is_open(h, at(BERLIN, *friday, 11, 59))
    assert not is_open(h, at(BERLIN, *friday, 12, 30))
    assert is_open(h, at(BERLIN, *friday, 17, 29))
    assert not is_open(h, at(BERLIN, *friday, 17, 30))


def test_the_time_zone_is_the_routes_not_utc() -> None:
    h = hours(weekly={"mon": ["09:00-17:00"]})
    # 07:30 UTC is 09:30 in Berlin in summer (CEST, +2) and 08:30 in winter (CET, +1)
    assert is_open(h, utc(2025, 6, 2, 7, 30))
    assert not is_open(h, utc(2025, 1, 6, 7, 30))
    assert is_open(h, utc(2025, 1, 6, 8, 30))


def test_across_the_spring_clock_change_ranges_follow_the_wall_clock() -> None:
    # Sunday 2025-03-30: at 02:00 CET Berlin's clocks jump to 03:00 CEST (01:00 UTC)
    h = hours(weekly={"sat": ["09:00-17:00"], "sun": ["09:00-17:00"]})
    assert not is_open(h, utc(2025, 3, 29, 7, 30))  # 08:30 CET
    assert is_open(h, utc(2025, 3, 30, 7, 30))  # 09:30 CEST
    assert not is_open(h, utc(2025, 3, 30, 15, 0))  # 17:00 CEST
    # the skipped hour never happens: a range inside it never opens that day
    gap = hours(weekly={"sun": ["02:00-03:00"]})
    start = utc(2025, 3, 29, 22, 0)
    assert not any(is_open(gap, start + 60 * m) for m in range(26 * 60))


def test_across_the_autumn_clock_change_the_repeated_hour_is_open_twice() -> None:
    # Sunday 2025-10-26: at 03:00 CEST Berlin's clocks go back to 02:00 CET (01:00 UTC)
    h = hours(weekly={"sun": ["02:00-03:00"]})
    start = utc(2025, 10, 25, 22, 0)
    open_minutes = [m for m in range(26 * 60) if is_open(h, start + 60 * m)]
    assert len(open_minutes) == 120
    assert is_open(h, at(BERLIN, 2025, 10, 26, 2, 30, fold=0))  # CEST
    assert is_open(h, at(BERLIN, 2025, 10, 26, 2, 30, fold=1))  # CET, an hour later


def test_a_holiday_is_closed_all_day_in_local_time() -> None:
    h = hours(weekly={d: ["00:00-24:00"] for d in WEEKDAYS}, holidays=["2025-12-25"])
    assert is_open(h, at(BERLIN, 2025, 12, 24, 23, 59))
    assert not is_open(h, utc(2025, 12, 24, 23, 30))  # 00:30 on the 25th in Berlin
    assert not is_open(h, at(BERLIN, 2025, 12, 25, 12, 0))
    assert not is_open(h, at(BERLIN, 2025, 12, 25, 23, 59))
    assert is_open(h, utc(2025, 12, 25, 23, 30))  # 00:30 on the 26th in Berlin


def test_a_range_may_end_at_midnight() -> None:
    h = hours(weekly={"fri": ["17:00-24:00"]})
    assert is_open(h, at(BERLIN, 2025, 6, 6, 23, 59, 59))
    assert not is_open(h, at(BERLIN, 2025, 6, 7, 0, 0))


def test_a_night_shift_is_two_ranges_on_two_days() -> None:
    with pytest.raises(ValueError, match="must end after it starts"):
        hours(weekly={"fri": ["22:00-06:00"]})
    h = hours(weekly={"fri": ["22:00-24:00"], "sat": ["00:00-06:00"]})
    assert not is_open(h, at(BERLIN, 2025, 6, 6, 21, 59))
    assert is_open(h, at(BERLIN, 2025, 6, 6, 22, 0))
    assert is_open(h, at(BERLIN, 2025, 6, 7, 0, 0))
    assert is_open(h, at(BERLIN, 2025, 6, 7, 5, 59))
    assert not is_open(h, at(BERLIN, 2025, 6, 7, 6, 0))


@SETTINGS
@given(instants, st.sampled_from(ZONES), st.lists(st.dates(date(2000, 1, 1)), max_size=5))
def test_a_day_open_around_the_clock_is_always_open_except_on_holidays(
    ts: float, zone: str, holidays: list[date]
) -> None:
    h = BusinessHours(
        timezone=zone, weekly={d: ["00:00-24:00"] for d in WEEKDAYS}, holidays=holidays
    )
    local_day = datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(zone)).date()
    assert is_open(h, ts) is (local_day not in holidays)


@SETTINGS
@given(instants, st.sampled_from(ZONES))
def test_no_ranges_is_always_closed(ts: float, zone: str) -> None:
    assert not is_open(BusinessHours(timezone=zone), ts)
    assert not is_open(BusinessHours(timezone=zone, weekly={d: [] for d in WEEKDAYS}), ts)


@st.composite
def split_day(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A range and the same range cut into pieces that touch."""
    cuts = sorted(draw(st.sets(st.integers(0, 24 * 4), min_size=2, max_size=5)))
    text = [f"{q // 4:02d}:{q % 4 * 15:02d}" for q in cuts]
    return f"{text[0]}-{text[-1]}", [f"{a}-{b}" for a, b in itertools.pairwise(text)]


@SETTINGS
@given(instants, st.sampled_from(ZONES), split_day(), st.sampled_from(WEEKDAYS))
def test_touching_ranges_are_one_range(
    ts: float, zone: str, day: tuple[str, list[str]], weekday: str
) -> None:
    whole, pieces = day
    one = BusinessHours.model_validate({"timezone": zone, "weekly": {weekday: [whole]}})
    cut = BusinessHours.model_validate({"timezone": zone, "weekly": {weekday: pieces}})
    assert is_open(one, ts) is is_open(cut, ts)


@SETTINGS
@given(instants, st.sampled_from(ZONES), split_day())
def test_open_means_the_local_wall_clock_is_inside_a_range(
    ts: float, zone: str, day: tuple[str, list[str]]
) -> None:
    whole, _ = day
    h = BusinessHours(timezone=zone, weekly={d: [whole] for d in WEEKDAYS})
    local = datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(zone))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    wall = local.replace(tzinfo=None) - midnight
    start, end = ([int(x) for x in t.split(":")] for t in whole.split("-"))
    inside = timedelta(hours=start[0], minutes=start[1]) <= wall
    inside &= wall < timedelta(hours=end[0], minutes=end[1])
    assert is_open(h, ts) is inside
