"""Rich data on an agent's reply (protocol 1.3): typed payloads and their text fallback.

An ``agent_message`` / ``agent_complete`` may carry ``data``: a JSON object whose ``kind``
says what it is. Four kinds have a documented shape the web chat widget renders natively:

- ``cards``: up to ten cards (title, subtitle, text, image, link, buttons);
- ``quick_replies``: up to ten options; a click sends ``value or title`` as the visitor's text;
- ``table``: named columns and rows of strings, numbers or nulls;
- ``chart``: a bar, line or pie chart of labelled series.

A known kind is validated (a malformed one makes the whole frame ``invalid_message``); any
other kind is accepted as it is, extra fields and all, and is never refused. Every channel
without a native rendering gets ``text_fallback(data, content)``: plain, readable text.

Nothing here does I/O.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from chatbridge.models import JsonObject

KNOWN_KINDS = ("cards", "quick_replies", "table", "chart")
"""The kinds with a documented shape; any other ``kind`` is accepted unvalidated."""

FALLBACK_JSON_MAX = 500
"""Longest compact-JSON fallback of an unknown kind that carries no text of its own."""

_TITLE = 200
_TEXT = 2000
_URL = 2000
_VALUE = 1000


class _Shape(BaseModel):
    # Unknown fields are dropped (the protocol's rule), numbers accepted where text is wanted;
    # NaN and infinities (which Python's JSON reader lets through) are not numbers to show.
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, allow_inf_nan=False)


class CardButton(_Shape):
    """A button on a card: opens ``url``, or sends ``value`` (else its title) as a message."""

    title: str = Field(min_length=1, max_length=_TITLE)
    url: str | None = Field(default=None, max_length=_URL)
    value: str | None = Field(default=None, max_length=_VALUE)


class Card(_Shape):
    """One card: a title, optional subtitle, text, image and link, and buttons."""

    title: str = Field(min_length=1, max_length=_TITLE)
    subtitle: str | None = Field(default=None, max_length=_TITLE)
    text: str | None = Field(default=None, max_length=_TEXT)
    image_url: str | None = Field(default=None, max_length=_URL)
    url: str | None = Field(default=None, max_length=_URL)
    buttons: list[CardButton] = Field(default_factory=list, max_length=5)


class Cards(_Shape):
    """Since 1.3. One to ten cards, shown side by side in the widget."""

    kind: Literal["cards"] = "cards"
    cards: list[Card] = Field(min_length=1, max_length=10)


class QuickReply(_Shape):
    """One option; clicking it sends ``value`` (else ``title``) as the visitor's message."""

    title: str = Field(min_length=1, max_length=_TITLE)
    value: str | None = Field(default=None, max_length=_VALUE)


class QuickReplies(_Shape):
    """Since 1.3. One to ten options the visitor can click instead of typing."""

    kind: Literal["quick_replies"] = "quick_replies"
    options: list[QuickReply] = Field(min_length=1, max_length=10)


Cell = str | int | float | None


class Table(_Shape):
    """Since 1.3. Named columns and rows of cells (text, numbers or null); every row has
    exactly one cell per column."""

    model_config = ConfigDict(coerce_numbers_to_str=False)  # cells keep their numbers

    kind: Literal["table"] = "table"
    columns: list[Annotated[str, Field(max_length=_TITLE)]] = Field(min_length=1, max_length=50)
    rows: list[list[Cell]] = Field(default_factory=list, max_length=500)
    caption: str | None = Field(default=None, max_length=_TITLE)

    @model_validator(mode="after")
    def _rows_fit(self) -> Table:
        width = len(self.columns)
        for index, row in enumerate(self.rows):
            if len(row) != width:
                raise ValueError(f"row {index} has {len(row)} cells for {width} columns")
        return self


class Series(_Shape):
    """One named series: a value per label."""

    name: str = Field(min_length=1, max_length=_TITLE)
    values: list[float] = Field(max_length=100)


class Chart(_Shape):
    """Since 1.3. A bar, line or pie chart: ``labels`` along one axis, one value per label in
    each series."""

    kind: Literal["chart"] = "chart"
    chart: Literal["bar", "line", "pie"]
    title: str | None = Field(default=None, max_length=_TITLE)
    labels: list[Annotated[str, Field(max_length=_TITLE)]] = Field(min_length=1, max_length=100)
    series: list[Series] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _series_fit(self) -> Chart:
        for one in self.series:
            if len(one.values) != len(self.labels):
                raise ValueError(
                    f"series {one.name!r} has {len(one.values)} values "
                    f"for {len(self.labels)} labels"
                )
        return self


class OtherRichData(BaseModel):
    """Since 1.3. A kind this revision does not document: accepted as it is (every field
    kept) and shown as text (its ``text``, ``title`` or ``fallback`` field, else its JSON)."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(
        min_length=1,
        max_length=100,
        json_schema_extra={"not": {"enum": list(KNOWN_KINDS)}},
    )


def _kind_tag(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if kind in KNOWN_KINDS else "other"


RichData = Annotated[
    Annotated[Cards, Tag("cards")]
    | Annotated[QuickReplies, Tag("quick_replies")]
    | Annotated[Table, Tag("table")]
    | Annotated[Chart, Tag("chart")]
    | Annotated[OtherRichData, Tag("other")],
    Discriminator(_kind_tag),
]
"""Since 1.3. A typed payload on an agent's reply, told apart by ``kind``."""

_ADAPTER: TypeAdapter[RichData] = TypeAdapter(RichData)


def parse_rich_data(data: object) -> RichData:
    """Validate ``data`` as rich data (a known kind against its shape).

    Raises:
        pydantic.ValidationError: not an object, no ``kind``, or a malformed known kind.
    """
    return _ADAPTER.validate_python(data)


def dump_rich_data(data: RichData) -> JsonObject:
    """``data`` as the plain JSON a reply's payload and message meta keep (no nulls)."""
    return data.model_dump(mode="json", exclude_none=True)


# --------------------------------------------------------------------------------------------
# text fallback


def _number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return _number(value)
    return " ".join(str(value).split())


def _cards_text(data: Cards) -> str:
    blocks = []
    for card in data.cards:
        lines = [card.title]
        lines += [part for part in (card.subtitle, card.text, card.url) if part]
        for button in card.buttons:
            lines.append(f"- {button.title}: {button.url}" if button.url else f"- {button.title}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _quick_replies_text(data: QuickReplies) -> str:
    return "\n".join(f"{n}. {option.title}" for n, option in enumerate(data.options, 1))


def _table_text(data: Table) -> str:
    grid = [list(data.columns)] + [[_cell(value) for value in row] for row in data.rows]
    widths = [max(len(row[i]) for row in grid) for i in range(len(data.columns))]

    def line(row: list[str]) -> str:
        return " | ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()

    lines = [line(grid[0]), "-+-".join("-" * width for width in widths)]
    lines += [line(row) for row in grid[1:]]
    if data.caption:
        lines.insert(0, data.caption)
    return "\n".join(lines)


def _chart_text(data: Chart) -> str:
    lines = []
    for one in data.series:
        head = one.name if not data.title else f"{data.title} ({one.name})"
        if data.title and len(data.series) == 1:
            head = data.title
        points = ", ".join(
            f"{label} {_number(value)}"
            for label, value in zip(data.labels, one.values, strict=True)
        )
        lines.append(f"{head}: {points}")
    return "\n".join(lines)


def _other_text(data: JsonObject) -> str:
    for key in ("text", "title", "fallback"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    # keys sorted: a payload read back from PostgreSQL's jsonb has its keys reordered, and
    # the same reply must read the same on every store
    compact = json.dumps(
        data, separators=(",", ":"), ensure_ascii=False, default=str, sort_keys=True
    )
    if len(compact) > FALLBACK_JSON_MAX:
        compact = compact[: FALLBACK_JSON_MAX - 1] + "…"
    return compact


def data_text(data: JsonObject) -> str:
    """The readable text of one rich data payload alone (see ``text_fallback``)."""
    try:
        parsed = parse_rich_data(data)
    except ValidationError:
        return _other_text(data)  # a malformed known kind still degrades, never breaks
    match parsed:
        case Cards():
            return _cards_text(parsed)
        case QuickReplies():
            return _quick_replies_text(parsed)
        case Table():
            return _table_text(parsed)
        case Chart():
            return _chart_text(parsed)
        case _:
            return _other_text(data)


def text_fallback(data: JsonObject | None, content: str | None) -> str:
    """What a channel without a native rendering sends for a reply with rich data.

    The reply's ``content`` comes first, then the data as plain text (a blank line between):
    cards as title, subtitle, text and links; quick replies as numbered options; a table as
    aligned rows; a chart as one "title: label value, …" line per series; an unknown kind as
    its ``text`` / ``title`` / ``fallback`` field, else its JSON cut to 500 characters.

    Args:
        data: the reply's ``data`` as JSON (None: the text is ``content`` alone).
        content: the reply's text, if any.
    """
    parts = [content.strip()] if content and content.strip() else []
    if data:
        text = data_text(data)
        if text:
            parts.append(text)
    return "\n\n".join(parts)
