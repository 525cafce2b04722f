"""Sending a stored template through the WhatsApp channel, against the fake gateways: Meta's
exact request for positional and named parameters, the rendered text on WAHA and Evolution,
and refusals before anything reaches the gateway. Store on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from chatbridge.channels.whatsapp import WhatsAppChannel
from chatbridge.errors import PermanentDelivery
from chatbridge.models import ConversationRef, OutboundAction
from chatbridge.store import Store
from chatbridge.testing.fake_wa_templates import add_template
from chatbridge.testing.fake_whatsapp import FakeWhatsApp, create_fake_whatsapp
from chatbridge.testing.servers import serve_app
from tests.channels.whatsapp.rig import gateways_at

META = "meta_cloud:106540352242922:919876543210"
WAHA = "waha:default:919876543210@c.us"
EVO = "evolution:shop:919876543210@s.whatsapp.net"

POSITIONAL = [
    {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
    {"type": "BODY", "text": "Hi {{1}}, your order ships on {{2}}."},
    {"type": "FOOTER", "text": "Lucky Shrub"},
    {
        "type": "BUTTONS",
        "buttons": [{"type": "URL", "text": "Track", "url": "https://t.example/{{1}}"}],
    },
]
NAMED = [
    {"type": "BODY", "text": "Hi {{first_name}}, table for {{guests}} is booked."},
]


@dataclass
class Env:
    fake: FakeWhatsApp
    channel: WhatsAppChannel
    store: Store
    url: str


@pytest.fixture
async def env(store: Store) -> AsyncIterator[Env]:
    app = create_fake_whatsapp()
    async with serve_app(app) as url:
        settings = gateways_at(url)
        channel = WhatsAppChannel(lambda: settings, store=store, timeout=5)
        try:
            yield Env(app.state.fake, channel, store, url)
        finally:
            await channel.aclose()


def action(
    key: str, template: dict[str, Any] | None, conv_id: str = "", text: str | None = None
) -> OutboundAction:
    conv = ConversationRef(id=conv_id, channel="whatsapp", channel_key=key, inbox_id=1)
    return OutboundAction(
        kind="message", conversation=conv, idempotency_key="k1", text=text, template=template
    )


async def meta_templates(env: Env) -> None:
    for name, components in (("order_update", POSITIONAL), ("booking", NAMED)):
        add_template(env.fake, name, components)
        await env.store.create_template(
            name=name,
            language="en_US",
            category="utility",
            components=components,
            source="meta",
            status="approved",
        )


async def test_meta_positional_template_exact_body(env: Env) -> None:
    await meta_templates(env)
    params = {"header.1": "A-17", "1": "Asha", "2": "Friday", "button.0": "A-17"}
    result = await env.channel.send(action(META, {"name": "order_update", "parameters": params}))
    req = env.fake.requests[-1]
    assert (req.method, req.path) == ("POST", "/v23.0/106540352242922/messages")
    assert req.headers["authorization"] == "Bearer meta-token"
    assert req.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+919876543210",
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": [
                {"type": "header", "parameters": [{"type": "text", "text": "A-17"}]},
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Asha"},
                        {"type": "text", "text": "Friday"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": "A-17"}],
                },
            ],
        },
    }
    assert result.external_id is not None and result.external_id.startswith("wamid.")
    assert await env.channel.is_own_message(result.external_id)


async def test_meta_named_template_outside_the_window(env: Env) -> None:
    """A conversation whose customer never wrote (window closed): free text is refused, the
    template goes."""
    await meta_templates(env)
    with pytest.raises(PermanentDelivery, match="24-hour"):
        await env.channel.send(action(META, None, conv_id="c_nobody", text="Hello?"))
    assert env.fake.requests == []
    template = {
        "name": "booking",
        "language": "en_US",
        "parameters": {"guests": 4, "first_name": "Asha"},
    }
    await env.channel.send(action(META, template, conv_id="c_nobody"))
    assert env.fake.requests[-1].json["template"] == {
        "name": "booking",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "parameter_name": "first_name", "text": "Asha"},
                    {"type": "text", "parameter_name": "guests", "text": "4"},
                ],
            }
        ],
    }


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"1": "Asha", "2": "Friday", "button.0": "A-17"}, "missing parameter(s) header.1"),
        (
            {"header.1": "A", "1": "Asha", "2": " ", "button.0": "x", "coupon": "y"},
            "missing parameter(s) 2; unknown parameter(s) coupon",
        ),
    ],
)
async def test_missing_or_unknown_parameters_are_refused_before_sending(
    env: Env, params: dict[str, str], reason: str
) -> None:
    await meta_templates(env)
    with pytest.raises(PermanentDelivery) as caught:
        await env.channel.send(action(META, {"name": "order_update", "parameters": params}))
    assert reason in str(caught.value)
    assert "its slots: header.1, 1, 2, button.0" in str(caught.value)
    assert env.fake.requests == []


async def test_unknown_local_or_unapproved_templates_are_refused(env: Env) -> None:
    await env.store.create_template(
        name="local_hi", language="en", category="utility", components=NAMED
    )
    await env.store.create_template(
        name="paused_one",
        language="en",
        category="marketing",
        components=NAMED,
        source="meta",
        status="paused",
    )
    cases = [
        ({"name": "nope"}, "no template named 'nope'"),
        ({"name": "local_hi", "parameters": {"first_name": "A", "guests": "2"}}, "local template"),
        (
            {"name": "paused_one", "parameters": {"first_name": "A", "guests": "2"}},
            "paused at Meta",
        ),
    ]
    for template, reason in cases:
        with pytest.raises(PermanentDelivery, match=reason):
            await env.channel.send(action(META, template))
    assert env.fake.requests == []


async def test_waha_and_evolution_send_the_rendered_text(env: Env) -> None:
    await env.store.create_template(
        name="order_update", language="en_US", category="utility", components=POSITIONAL
    )
    params = {"header.1": "A-17", "1": "Asha", "2": "Friday", "button.0": "A-17"}
    text = (
        "*Order A-17*\n\nHi Asha, your order ships on Friday.\n\n_Lucky Shrub_\n\n"
        "Track: https://t.example/A-17"
    )
    await env.channel.send(action(WAHA, {"name": "order_update", "parameters": params}))
    req = env.fake.requests[-1]
    assert (req.path, req.json) == (
        "/api/sendText",
        {"session": "default", "chatId": "919876543210@c.us", "text": text},
    )
    await env.channel.send(action(EVO, {"name": "order_update", "parameters": params}))
    req = env.fake.requests[-1]
    assert (req.path, req.headers["apikey"], req.json) == (
        "/message/sendText/shop",
        "evo-key",
        {"number": "919876543210", "text": text},
    )


async def test_the_fake_refuses_a_wrong_token_like_meta(env: Env) -> None:
    """The fake answers a wrong Bearer token as Meta does; the channel gives up for good."""
    await meta_templates(env)
    env.fake.meta_token = "another-token"
    params = {"first_name": "A", "guests": "2"}
    with pytest.raises(PermanentDelivery, match="HTTP 401"):
        await env.channel.send(action(META, {"name": "booking", "parameters": params}))
    assert env.fake.requests[-1].path == "/v23.0/106540352242922/messages"
    meta_401 = {
        "error": {
            "message": "Invalid OAuth access token - Cannot parse access token",
            "type": "OAuthException",
            "code": 190,
            "fbtrace_id": "AFakeTraceId",
        }
    }
    async with httpx.AsyncClient(base_url=env.url) as gateway:
        for method, path in (
            ("GET", "/v23.0/102290129340398/message_templates"),
            ("POST", "/v23.0/106540352242922/messages"),
        ):
            for headers in ({}, {"Authorization": "Bearer meta-token"}):
                body = {"messaging_product": "whatsapp", "type": "template", "template": {}}
                r = await gateway.request(method, path, headers=headers, json=body)
                assert (r.status_code, r.json()) == (401, meta_401)
