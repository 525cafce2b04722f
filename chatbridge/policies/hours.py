"""Business hours: is a route's team at work at a given moment?"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from chatbridge.policies.model import WEEKDAYS, BusinessHours, parse_range


def is_open(hours: BusinessHours, ts: float) -> bool:
    """Whether Unix time ``ts`` falls in an open range of ``hours`` (in its time zone).

    Holidays are closed all day. A range is start-inclusive, end-exclusive: ``09:00-17:00``
    is open at 09:00 and closed at 17:00. Local time is wall-clock time, so on the day a
    clock changes a range means what the team's clocks show.
    """
    local = datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(hours.timezone))
    if local.date() in hours.holidays:
        return False
    minute = local.hour * 60 + local.minute
    for text in hours.weekly.get(WEEKDAYS[local.weekday()], []):
        start, end = parse_range(text)
        if start <= minute < end:
            return True
    return False
