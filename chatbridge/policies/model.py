"""A route's conversation policies: what a bot runner's users expect, one pydantic model.

Every field's default keeps the bridge's behaviour without policies (each message its own
turn, answered in order; no keywords; no expiry; one channel message per reply; always
open). The same model is read from ``INBOX_AGENT_MAPPINGS``, the management API and the
console's route editor, and stored as JSON on the route.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chatbridge.policies.keywords import normalize

InFlight = Literal["queue", "merge_next", "supersede"]
Outside = Literal["bot", "away_handoff", "hold"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")

Keyword = Field(min_length=1, max_length=100)


def _keywords(values: list[str]) -> list[str]:
    cleaned = [v.strip() for v in values]
    for v in cleaned:
        if not v or len(v) > 100:
            raise ValueError("a keyword is 1 to 100 characters")
        if not normalize(v):
            # matching ignores punctuation and symbols: this one could never match
            raise ValueError(f"keyword {v!r} has no letter or digit, so it can never match")
    return cleaned


def parse_range(text: str) -> tuple[int, int]:
    """``"09:00-17:30"`` → minutes of the day ``(540, 1050)``; ``24:00`` ends a day."""
    m = _RANGE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a time range like 09:00-17:30")
    start = int(m[1]) * 60 + int(m[2])
    end = int(m[3]) * 60 + int(m[4])
    if end > 24 * 60 or end <= start:
        raise ValueError(f"{text!r}: the range must end after it starts, by 24:00 at the latest")
    return start, end


class BusinessHours(BaseModel):
    """When a human team is at work: a weekly schedule in one time zone, and holidays."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = Field(default="UTC", max_length=64, description="an IANA zone, Europe/Berlin")
    weekly: dict[Weekday, list[str]] = Field(
        default_factory=dict,
        description='open ranges per weekday, e.g. {"mon": ["09:00-12:00", "13:00-17:30"]}; '
        "a day not listed is closed",
    )
    holidays: list[date] = Field(default_factory=list, max_length=400)
    outside: Outside = Field(
        default="bot",
        description="outside hours: bot (answer as always), away_handoff (send away_text and "
        "hand to a human), hold (no answer: the message waits for a human)",
    )
    away_text: str | None = Field(default=None, max_length=4000)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name like Europe/Berlin)"
            ) from None
        return value

    @field_validator("weekly")
    @classmethod
    def _ranges(cls, value: dict[Weekday, list[str]]) -> dict[Weekday, list[str]]:
        for day, ranges in value.items():
            if len(ranges) > 12:
                raise ValueError(f"{day}: at most 12 ranges")
            for r in ranges:
                parse_range(r)
        return value

    @model_validator(mode="after")
    def _away(self) -> BusinessHours:
        if self.outside == "away_handoff" and not (self.away_text or "").strip():
            raise ValueError("outside=away_handoff needs an away_text")
        return self


class IgnoreList(BaseModel):
    """Senders whose messages are stored but never reach the agent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    contact_ids: list[str] = Field(default_factory=list, max_length=1000)
    phones: list[str] = Field(
        default_factory=list, max_length=1000, description="E.164, like +14155550123"
    )
    jids: list[str] = Field(
        default_factory=list, max_length=1000, description="WhatsApp ids, like 14155550123@c.us"
    )
    group_patterns: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="shell-style patterns on the chat id, like *@g.us (every WhatsApp group)",
    )

    @field_validator("phones")
    @classmethod
    def _phones(cls, value: list[str]) -> list[str]:
        for phone in value:
            # compared by digits: an entry without a number's digits would never match
            if not 6 <= sum(c.isdigit() for c in phone) <= 15:
                raise ValueError(f"{phone!r} is not a phone number (E.164, like +14155550123)")
        return value

    def empty(self) -> bool:
        return not (self.contact_ids or self.phones or self.jids or self.group_patterns)


class RoutePolicies(BaseModel):
    """How a route's bot behaves in a conversation (see the README's "Policies")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    debounce_ms: int = Field(
        default=0,
        ge=0,
        le=60_000,
        description="messages closer together than this become one turn (0: every message "
        "is its own turn)",
    )
    max_wait_ms: int = Field(
        default=10_000,
        ge=0,
        le=600_000,
        description="a debounce window closes this long after its first message at the latest",
    )
    close_on_media: bool = Field(
        default=True, description="a message with an attachment closes the window at once"
    )
    close_keywords: list[str] = Field(default_factory=list, max_length=50)
    in_flight: InFlight = Field(
        default="queue",
        description="a message while the agent answers: queue (answer each in order), "
        "merge_next (one next turn for all of them), supersede (cancel the running turn)",
    )
    handoff_keywords: list[str] = Field(default_factory=list, max_length=50)
    resume_keywords: list[str] = Field(default_factory=list, max_length=50)
    customer_can_resume: bool = Field(
        default=False,
        description="a customer's resume keyword gives the conversation back to the bot "
        "(an operator's always does)",
    )
    expire_after_seconds: float | None = Field(
        default=None,
        gt=0,
        le=365 * 86400,
        description="after this much silence the agent starts a fresh session",
    )
    expire_returns_to_bot: bool = Field(
        default=False,
        description="on expiry a conversation a human held goes back to the bot",
    )
    split_replies: bool = Field(
        default=False, description="send a long reply as one message per paragraph"
    )
    ms_per_char: int = Field(default=30, ge=0, le=1000)
    max_typing_ms: int = Field(default=3000, ge=0, le=60_000)
    business_hours: BusinessHours | None = None
    handoff_summary: bool = Field(
        default=False,
        description="on handoff, leave the human a private note: the agent's summary, or "
        "the last messages",
    )
    summary_messages: int = Field(default=10, ge=1, le=100)
    ignore: IgnoreList = Field(default_factory=IgnoreList)
    working_notice_after: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="on channels without a live status (all but the web chat): when a turn "
        "has run this many seconds without an answer, send the customer working_notice_text "
        "once (empty: never)",
    )
    working_notice_text: str = Field(
        default="Working on it…",
        min_length=1,
        max_length=1000,
        description="the one notice a slow turn sends (working_notice_after)",
    )
    notices_to_channel: bool = Field(
        default=False,
        description="an agent's system and warning notices are sent to the channel too (the "
        "web chat and the console always show them)",
    )

    _kw = field_validator("close_keywords", "handoff_keywords", "resume_keywords", mode="after")(
        classmethod(lambda cls, v: _keywords(v))
    )

    @field_validator("working_notice_text")
    @classmethod
    def _notice_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the working notice needs words")
        return value

    @model_validator(mode="after")
    def _window(self) -> RoutePolicies:
        if self.debounce_ms and self.max_wait_ms < self.debounce_ms:
            raise ValueError("max_wait_ms must be at least debounce_ms")
        return self

    def windowed(self) -> bool:
        """Whether an inbound message must look at its conversation's open turns."""
        return self.debounce_ms > 0 or self.in_flight != "queue"

    def is_default(self) -> bool:
        # identity first: routes read from the store share the one default object
        return self is DEFAULT_POLICIES or self == DEFAULT_POLICIES

    def stored(self) -> dict[str, object] | None:
        """The JSON kept on the route: only what differs from the defaults (None: none)."""
        out = self.model_dump(mode="json", exclude_defaults=True)
        return out or None


DEFAULT_POLICIES = RoutePolicies()
