"""Slots from components, the checks before sending, Meta's components and the rendered text:
pure functions, no I/O."""

from __future__ import annotations

import pytest

from chatbridge.channels.whatsapp.templates import (
    TemplateProblem,
    check_components,
    check_parameters,
    meta_components,
    render,
    slot_keys,
)
from chatbridge.store.templates import TemplateRecord

RICH = TemplateRecord(
    id="tp_1",
    name="shipped",
    language="en",
    category="utility",
    status="approved",
    components=[
        {"type": "HEADER", "format": "IMAGE"},
        {"type": "BODY", "text": "{{name}}, order {{order_id}} is on its way, {{name}}!"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Thanks"},
                {"type": "URL", "text": "Track", "url": "https://t.example/{{1}}"},
                {"type": "COPY_CODE", "text": "Copy code", "example": "SAVE10"},
                {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550100"},
            ],
        },
    ],
)
VALUES = {
    "header.image": "https://cdn.example/box.jpg",
    "name": "Asha",
    "order_id": "A-17",
    "button.1": "A-17",
    "button.2": "SAVE10",
}


def test_slots_of_every_component() -> None:
    assert slot_keys(RICH) == ["header.image", "name", "order_id", "button.1", "button.2"]


def test_meta_components_of_a_media_header_named_body_and_buttons() -> None:
    assert meta_components(RICH, VALUES) == [
        {
            "type": "header",
            "parameters": [{"type": "image", "image": {"link": "https://cdn.example/box.jpg"}}],
        },
        {
            "type": "body",
            "parameters": [
                {"type": "text", "parameter_name": "name", "text": "Asha"},
                {"type": "text", "parameter_name": "order_id", "text": "A-17"},
            ],
        },
        {
            "type": "button",
            "sub_type": "url",
            "index": "1",
            "parameters": [{"type": "text", "text": "A-17"}],
        },
        {
            "type": "button",
            "sub_type": "copy_code",
            "index": "2",
            "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}],
        },
    ]


def test_rendered_text_and_media() -> None:
    rendered = render(RICH, VALUES)
    assert rendered.media is not None and rendered.media.url == "https://cdn.example/box.jpg"
    assert rendered.text == (
        "Asha, order A-17 is on its way, Asha!\n\n"
        "• Thanks\nTrack: https://t.example/A-17\nCopy code: SAVE10\nCall us: +15550100"
    )


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"name": ""}, "missing parameter(s) name"),
        ({"extra": "x"}, "unknown parameter(s) extra"),
        ({"header.image": "file:///etc/passwd"}, "must be an http(s) URL"),
        ({"order_id": "x" * 1025}, "longer than 1024"),
    ],
)
def test_parameters_that_do_not_fit_are_refused(change: dict[str, str], words: str) -> None:
    with pytest.raises(TemplateProblem, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_parameters(RICH, {**VALUES, **change})


@pytest.mark.parametrize(
    ("components", "words"),
    [
        ([{"type": "BODY"}], "BODY needs its text"),
        ([{"type": "BODY", "text": "x"}, {"type": "body", "text": "y"}], "one BODY"),
        ([{"type": "HEADER", "text": "{{1}} {{2}}"}, {"type": "BODY", "text": "b"}], "at most 1"),
        ([{"type": "FOOTER", "text": "{{1}}"}, {"type": "BODY", "text": "b"}], "no parameters"),
        (
            [
                {"type": "BODY", "text": "b"},
                {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "t"}]},
            ],
            "http(s) url",
        ),
    ],
)
def test_malformed_components_are_refused(components: list[dict[str, object]], words: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_components(components)
    assert words in str(caught.value)
