"""CRM segments: which people a broadcast goes to, and what each of them gets.

Pure functions, no I/O: the store reads the people with the facts a segment filters on
(``PersonFacts``), these decide. A segment is JSON (``Segment.parse``)::

    {"tags_any": ["vip", "beta"],   # has at least one of these tags
     "tags_all": ["customer"],      # has every one of these tags
     "channel": "whatsapp",         # has a thread on this channel
     "last_contact_after": 1767225600,   # last thread activity at or after (unix seconds)
     "last_contact_before": 1769904000}  # … strictly before

Every condition given must hold; an empty segment is everyone. Opted-out people are in the
segment but are *skipped* (their recipient row says so), never sent to, so an operator sees
how many the opt-outs cost.

A broadcast's parameter values may name the person's fields: ``"{person.name}"``,
``"{person.first_name}"``, ``"{person.phone}"``, ``"{person.email}"``,
``"{person.company}"``, ``"{person.meta.<key>}"``. A person whose field is empty cannot get
the template (Meta refuses a blank parameter): they are skipped with the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chatbridge.store.broadcasts import PersonFacts

SEGMENT_KEYS = ("tags_any", "tags_all", "channel", "last_contact_after", "last_contact_before")
PERSON_FIELD = re.compile(r"\{person\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)?)\}")
PERSON_FIELDS = ("name", "first_name", "phone", "email", "company", "external_ref")
MAX_TAG = 100


class SegmentProblem(ValueError):
    """A segment or a parameter value that cannot be used; the message names it."""


def _tags(raw: Any, key: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise SegmentProblem(f"{key} must be a list of tags")
    cleaned = tuple(normalize_tag(x) for x in raw)
    return tuple(dict.fromkeys(cleaned))


def normalize_tag(tag: str) -> str:
    """A tag as stored and compared: trimmed, lower case, 1 to 100 characters."""
    value = tag.strip().lower()
    if not value or len(value) > MAX_TAG:
        raise SegmentProblem(f"a tag must be 1 to {MAX_TAG} characters: {tag[:120]!r}")
    return value


def normalize_tags(tags: Iterable[str]) -> list[str]:
    """Tags without duplicates, in the order given (``normalize_tag`` each)."""
    return list(dict.fromkeys(normalize_tag(x) for x in tags))


def _time(raw: Any, key: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise SegmentProblem(f"{key} must be a unix time in seconds")
    return float(raw)


@dataclass(frozen=True, slots=True)
class Segment:
    """A filter over people (see the module docstring)."""

    tags_any: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()
    channel: str | None = None
    last_contact_after: float | None = None
    last_contact_before: float | None = None

    @classmethod
    def parse(cls, raw: Any) -> Segment:
        """A segment from its JSON. Raises ``SegmentProblem`` naming the bad key."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise SegmentProblem("segment must be an object")
        unknown = sorted(set(raw) - set(SEGMENT_KEYS))
        if unknown:
            raise SegmentProblem(
                f"unknown segment key(s): {', '.join(unknown)} (known: {', '.join(SEGMENT_KEYS)})"
            )
        channel = raw.get("channel")
        if channel is not None and (not isinstance(channel, str) or not channel.strip()):
            raise SegmentProblem("channel must be a channel name")
        segment = cls(
            tags_any=_tags(raw.get("tags_any"), "tags_any"),
            tags_all=_tags(raw.get("tags_all"), "tags_all"),
            channel=channel.strip() if isinstance(channel, str) else None,
            last_contact_after=_time(raw.get("last_contact_after"), "last_contact_after"),
            last_contact_before=_time(raw.get("last_contact_before"), "last_contact_before"),
        )
        after, before = segment.last_contact_after, segment.last_contact_before
        if after is not None and before is not None and after >= before:
            raise SegmentProblem("last_contact_after must be earlier than last_contact_before")
        return segment

    def body(self) -> dict[str, Any]:
        """The segment as JSON, only the conditions given."""
        out: dict[str, Any] = {}
        if self.tags_any:
            out["tags_any"] = list(self.tags_any)
        if self.tags_all:
            out["tags_all"] = list(self.tags_all)
        for key in ("channel", "last_contact_after", "last_contact_before"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def matches(self, person: PersonFacts) -> bool:
        """Whether ``person`` is in the segment (opt-out is not looked at here)."""
        tags = set(person.tags)
        if self.tags_any and not tags.intersection(self.tags_any):
            return False
        if self.tags_all and not tags.issuperset(self.tags_all):
            return False
        if self.channel is not None and self.channel not in person.channels:
            return False
        last = person.last_contact_at
        if self.last_contact_after is not None and (last is None or last < self.last_contact_after):
            return False
        return not (
            self.last_contact_before is not None
            and (last is None or last >= self.last_contact_before)
        )


def person_fields(parameters: Mapping[str, str]) -> list[str]:
    """The ``{person.…}`` fields the values name, in order; raises ``SegmentProblem`` for a
    field people do not have."""
    found: list[str] = []
    for value in parameters.values():
        for name in PERSON_FIELD.findall(value):
            if name not in PERSON_FIELDS and not name.startswith("meta."):
                raise SegmentProblem(
                    f"unknown person field {{person.{name}}} "
                    f"(known: {', '.join(PERSON_FIELDS)}, meta.<key>)"
                )
            found.append(name)
    return list(dict.fromkeys(found))


def _field(person: PersonFacts, name: str) -> str:
    if name == "first_name":
        return person.name.strip().split(" ", 1)[0] if person.name.strip() else ""
    if name.startswith("meta."):
        value = person.meta.get(name[5:])
        return "" if value is None or isinstance(value, dict | list) else str(value)
    value = getattr(person, name, None)
    return "" if value is None else str(value)


def fill(parameters: Mapping[str, str], person: PersonFacts) -> dict[str, str] | str:
    """The parameter values for ``person`` (``{person.x}`` replaced), or the reason they
    cannot be filled (a field the person lacks, or a value left blank)."""
    out: dict[str, str] = {}
    for slot, value in parameters.items():
        missing: list[str] = []

        def sub(match: re.Match[str], missing: list[str] = missing) -> str:
            text = _field(person, match.group(1)).strip()
            if not text:
                missing.append(match.group(1))
            return text

        filled = PERSON_FIELD.sub(sub, value)
        if missing:
            return f"person has no {', '.join(dict.fromkeys(missing))} (parameter {slot})"
        if not filled.strip():
            return f"parameter {slot} is blank"
        out[slot] = filled
    return out


def skip_reason(person: PersonFacts, address: str | None) -> str | None:
    """Why ``person`` is in the segment but gets nothing, or None to send: opted out first
    (whatever else), then no WhatsApp-reachable phone."""
    if person.opted_out_at is not None:
        return "opted_out"
    if not person.phone or address is None:
        return "no_whatsapp_phone"
    return None


@dataclass(slots=True)
class Snapshot:
    """Who a broadcast goes to: one row per person in the segment, in send order, with the
    chat address (``queued``) or why they are ``skipped``; ``counts`` by state."""

    rows: list[dict[str, Any]]
    counts: dict[str, int]

    @property
    def sendable(self) -> int:
        return self.counts.get("queued", 0)

    def skipped_reasons(self) -> dict[str, int]:
        """How many were skipped for each reason (``person has no …`` reasons grouped)."""
        out: dict[str, int] = {}
        for row in self.rows:
            if row["state"] == "skipped":
                key = str(row["reason"]).split(" (parameter", 1)[0]
                out[key] = out.get(key, 0) + 1
        return out


def snapshot(
    people: Iterable[PersonFacts],
    segment: Segment,
    parameters: Mapping[str, str],
    address_of: Callable[[str], str | None],
) -> Snapshot:
    """The recipient rows for the people in ``segment``.

    Args:
        address_of: a person's E.164 phone → the chat key the template goes to on the
            configured provider, or None if that phone cannot be reached there.
    """
    rows: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for person in people:
        if not segment.matches(person):
            continue
        address = address_of(person.phone) if person.phone else None
        reason = skip_reason(person, address)
        if reason is None:
            filled = fill(parameters, person)
            if isinstance(filled, str):
                reason = filled
        state = "queued" if reason is None else "skipped"
        counts[state] = counts.get(state, 0) + 1
        rows.append(
            {
                "person_id": person.id,
                "name": person.name,
                "address": address,
                "state": state,
                "reason": reason,
            }
        )
    return Snapshot(rows, counts)
