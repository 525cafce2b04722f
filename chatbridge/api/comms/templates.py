"""Message templates: the store (list, create, read, change, delete), the sync from Meta's
WhatsApp Business Account, and sending a template into a thread — the only message Meta lets
a business send once the customer's 24-hour service window has closed.

Local templates are edited here; synced (``source: meta``) ones are Meta's wording and are
read-only (deleting one only forgets it locally until the next sync). A thread's template is
checked (known, sendable on its provider, every slot filled, no unknown parameter) before
anything is queued: a refusal is a 4xx naming the slots, and nothing is written.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from chatbridge.api.attribution import attribution
from chatbridge.api.comms.base import ERRORS, Body, Id, Limit, Offset, not_found, storing
from chatbridge.api.errors import error_responses
from chatbridge.api.management import get_bridge
from chatbridge.api.shapes import OperatorSent
from chatbridge.channels.whatsapp import lookups
from chatbridge.channels.whatsapp.base import SERVICE_WINDOW_SECONDS
from chatbridge.channels.whatsapp.gateway import GatewayHttp
from chatbridge.channels.whatsapp.ids import ChatAddress
from chatbridge.channels.whatsapp.templates import (
    SyncFailed,
    TemplateProblem,
    check_components,
    check_parameters,
    check_sendable,
    fetch_meta_templates,
    render,
    resolve,
    slots,
)
from chatbridge.errors import BadInput
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store.records import DeliverySpec
from chatbridge.store.templates import TemplateRecord, TemplateTaken

router = APIRouter()

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[a-z0-9_]+$")]
Language = Annotated[
    str, Field(min_length=2, max_length=20, pattern=r"^[A-Za-z]{2,3}(_[A-Za-z0-9]{2,4})?$")
]
Category = Literal["marketing", "utility", "authentication"]
TEMPLATE_ERRORS = {
    **ERRORS,
    **error_responses({409: "read-only, name taken, or in use", 422: "invalid template"}),
}


class NewTemplate(Body):
    name: Name = Field(description="lower case letters, digits and underscores, as Meta wants")
    language: Language = Field(description="a language code: `en`, `en_US`, `pt_BR`")
    category: Category = "utility"
    components: list[dict[str, Any]] = Field(
        description="Meta's shape: HEADER (TEXT/IMAGE/VIDEO/DOCUMENT), BODY, FOOTER, BUTTONS",
        max_length=4,
    )


class TemplateChanges(Body):
    name: Name | None = None
    language: Language | None = None
    category: Category | None = None
    components: list[dict[str, Any]] | None = Field(default=None, max_length=4)


class TemplateSend(Body):
    name: Name = Field(description="the stored template's name")
    language: Language | None = Field(default=None, description="omitted: its only language")
    parameters: dict[str, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict, description="a value per slot (see the template's `slots`)"
    )


def _view(template: TemplateRecord) -> dict[str, Any]:
    out = template.body()
    out["slots"] = [
        {"key": s.key, "component": s.component, "name": s.name, "media": s.media}
        for s in slots(template)
    ]
    out["editable"] = template.source == "local"
    return out


def _components(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        components = check_components(raw)
    except ValueError as exc:
        raise BadInput("invalid_template", str(exc), status_code=422) from exc
    names = [
        s.name
        for s in slots(TemplateRecord("", "", "", "", "", components))
        if s.component != "button" and not s.media
    ]
    if names and any(n.isdigit() for n in names) and not all(n.isdigit() for n in names):
        raise BadInput(
            "invalid_template",
            "a template's parameters are all positional ({{1}}) or all named ({{name}})",
            status_code=422,
        )
    return components


def _taken(exc: TemplateTaken, name: str, language: str) -> BadInput:
    return BadInput(
        "template_exists",
        f"a template {name!r} in {language} exists already ({exc.other_id})",
        status_code=409,
        details={"template_id": exc.other_id},
    )


@router.get("/templates", responses=ERRORS)
async def list_templates(
    q: Annotated[str | None, Query(max_length=200, description="name contains")] = None,
    source: Literal["meta", "local"] | None = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Limit = 200,
    offset: Offset = 0,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    """Templates by name and language, each with its parameter ``slots``."""
    async with storing():
        found, total = await bridge.store.list_templates(
            q=q, source=source, status=status, limit=limit, offset=offset
        )
    return {"templates": [_view(t) for t in found], "total": total}


@router.post("/templates", status_code=201, responses=TEMPLATE_ERRORS)
async def create_template(
    body: NewTemplate, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """A local template (for WAHA and Evolution, which send its text; Meta sends only the
    templates its WhatsApp Business Account approved — sync those)."""
    components = _components(body.components)
    try:
        async with storing():
            template = await bridge.store.create_template(
                name=body.name,
                language=body.language,
                category=body.category,
                components=components,
            )
    except TemplateTaken as exc:
        raise _taken(exc, body.name, body.language) from None
    return {"template": _view(template)}


@router.post(
    "/templates/sync", responses={**TEMPLATE_ERRORS, **error_responses({502: "Meta failed"})}
)
async def sync_templates(bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """Read every template of the configured WhatsApp Business Account from Meta and make
    the synced templates match it (local ones of the same name and language become Meta's)."""
    settings = bridge.comms_settings()
    http = GatewayHttp(timeout=30)
    try:
        items = await fetch_meta_templates(http, settings)
    except SyncFailed as exc:
        if not settings.meta_waba_id or not settings.meta_access_token:
            raise BadInput("meta_not_configured", str(exc), status_code=409) from exc
        raise BadInput("sync_failed", str(exc), status_code=502) from exc
    finally:
        await http.aclose()
    async with storing():
        counts = await bridge.store.sync_meta_templates(items)
    return {
        "fetched": len(items),
        "added": counts.added,
        "updated": counts.updated,
        "removed": counts.removed,
        "kept_deleted": counts.kept_deleted,
        "synced_at": time.time(),
    }


async def _template(bridge: Bridge, template_id: str) -> TemplateRecord:
    template = await bridge.store.get_template(template_id)
    if template is None:
        raise not_found("template", template_id)
    return template


@router.get("/templates/{template_id}", responses=ERRORS)
async def get_template(template_id: Id, bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    return {"template": _view(await _template(bridge, template_id))}


@router.patch("/templates/{template_id}", responses=TEMPLATE_ERRORS)
async def patch_template(
    template_id: Id, body: TemplateChanges, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """Change a local template (a synced one is Meta's: 409)."""
    current = await _template(bridge, template_id)
    if current.source != "local":
        raise BadInput(
            "template_read_only",
            f"template {current.name!r} is synced from Meta; change it in WhatsApp Manager "
            "and sync again",
            status_code=409,
        )
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "components" in changes:
        changes["components"] = _components(changes["components"])
    try:
        async with storing():
            updated = await bridge.store.update_template(template_id, **changes)
    except TemplateTaken as exc:
        name = changes.get("name", current.name)
        raise _taken(exc, name, changes.get("language", current.language)) from None
    if updated is None:
        raise not_found("template", template_id)
    return {"template": _view(updated)}


@router.delete("/templates/{template_id}", status_code=204, responses=TEMPLATE_ERRORS)
async def delete_template(template_id: Id, bridge: Bridge = Depends(get_bridge)) -> Response:
    """Delete a template (a synced one comes back with the next sync), unless a broadcast
    refers to it (409)."""
    outcome = await bridge.store.delete_template(template_id)
    if outcome == "missing":
        raise not_found("template", template_id)
    if outcome == "in_use":
        raise BadInput(
            "template_in_use",
            f"template {template_id} is used by a broadcast and is kept for its history",
            status_code=409,
        )
    return Response(status_code=204)


# ------------------------------------------------------------------ threads


async def service_window(
    bridge: Bridge, conversation_id: str, channel: str, key: str
) -> dict[str, Any]:
    """Meta's 24-hour customer service window of a thread: ``{open, closes_at,
    last_inbound_at}``. Only Meta has one; for every other channel and provider it is
    ``{open: true, closes_at: null}``."""
    if channel != "whatsapp" or not key.startswith("meta_cloud:"):
        return {"open": True, "closes_at": None, "applies": False}
    last = await lookups.last_inbound(bridge.store, conversation_id)
    if last is None:
        return {"open": False, "closes_at": None, "last_inbound_at": None, "applies": True}
    closes = last[0] + SERVICE_WINDOW_SECONDS
    return {
        "open": time.time() < closes,
        "closes_at": closes,
        "last_inbound_at": last[0],
        "applies": True,
    }


async def require_open_window(bridge: Bridge, conversation_id: str, channel: str, key: str) -> None:
    """Refuse a free-form message the customer's channel would not take (409).

    Raises:
        BadInput: ``outside_service_window``: a Meta thread whose customer has not written
            for 24 hours (or never): only a template can go.
    """
    window = await service_window(bridge, conversation_id, channel, key)
    if not window["open"]:
        raise BadInput(
            "outside_service_window",
            "the customer has not written in the last 24 hours, so Meta accepts only a "
            "template message: send one with POST /api/comms/threads/{id}/template",
            status_code=409,
            details={"service_window": window},
        )


@router.post(
    "/threads/{thread_id}/template",
    status_code=201,
    responses={
        201: {"description": "the template message, stored and queued", "model": OperatorSent},
        **ERRORS,
        **error_responses({422: "unknown template or parameters that do not fit"}),
    },
)
async def send_thread_template(
    http: Request, thread_id: Id, body: TemplateSend, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    """An operator sends a template into the thread (inside or outside Meta's window). It is
    checked first — known, sendable on the thread's provider, every slot filled and no
    unknown parameter — then queued like an operator message (the thread becomes the
    operator's). The stored message's text is the rendered template."""
    conv = await bridge.store.get_conversation(thread_id)
    if conv is None:
        raise not_found("thread", thread_id)
    provider = "text"
    if conv.channel == "whatsapp":
        try:
            provider = ChatAddress.parse(conv.channel_key).provider
        except Exception:
            provider = "text"
    try:
        template = await resolve(bridge.store, body.name, body.language)
        check_sendable(template, provider)
        check_parameters(template, body.parameters)
    except TemplateProblem as exc:
        details = {"missing": exc.missing, "unknown": exc.unknown}
        raise BadInput("invalid_template", str(exc), status_code=422, details=details) from exc
    rendered = render(template, body.parameters)
    request = {"name": template.name, "language": template.language, "parameters": body.parameters}
    spec = DeliverySpec(
        "message",
        bridge.settings.delivery_max_attempts,
        text=rendered.text,
        payload={"template": request},
    )
    attachments = (
        [{"url": rendered.media.url, "mime": rendered.media.mime}] if rendered.media else []
    )
    async with storing():
        done = await bridge.store.add_outbound(
            conv.id,
            text=rendered.text,
            author="human",
            deliveries=[spec],
            attachments=attachments,
            respect_owner=False,
            handoff=True,
            meta={"operator": True, "template": request, **attribution(http)},
        )
    if not done.ok:
        raise not_found("thread", thread_id)
    bridge.wake_deliveries()
    if conv.owner != "human":
        route = bridge.route_for(conv.channel, conv.inbox_id)
        if route is not None:
            await bridge.notify_agent_owner(route.agent_id, conv.id, "human", "operator")
    return JSONResponse(
        {
            "message_id": done.reply_message_id,
            "owner": "human",
            "queued": done.delivered,
            "template_id": template.id,
            "text": rendered.text,
        },
        status_code=201,
    )


_SUGGEST: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "full_name": ("name",),
    "customer_name": ("name",),
    "contact_name": ("name",),
    "first_name": ("first_name",),
    "firstname": ("first_name",),
    "last_name": ("last_name",),
    "lastname": ("last_name",),
    "phone": ("phone",),
    "phone_number": ("phone",),
    "mobile": ("phone",),
    "email": ("email",),
    "email_address": ("email",),
    "company": ("company",),
    "company_name": ("company",),
    "business": ("company",),
}


def _known_values(thread: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """What the thread tells about the customer: value and where it came from (the linked
    person wins over the channel's contact)."""
    out: dict[str, tuple[str, str]] = {}
    for source in ("contact", "person"):
        record = thread.get(source) or {}
        for field_name in ("name", "phone", "email", "company"):
            value = record.get(field_name)
            if isinstance(value, str) and value.strip():
                out[field_name] = (value.strip(), source)
    if "name" in out:
        name, source = out["name"]
        words = name.split()
        out["first_name"] = (words[0], source)
        if len(words) > 1:
            out["last_name"] = (words[-1], source)
    return out


@router.get("/threads/{thread_id}/templates/{template_id}/defaults", responses=ERRORS)
async def template_defaults(
    thread_id: Id, template_id: Id, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """Suggested values for the template's slots, from the thread's contact and linked CRM
    person, for slots named like what they know (``name``, ``first_name``, ``phone``,
    ``email``, ``company``, …). Positional slots get no suggestion."""
    thread = await bridge.store.get_thread(thread_id)
    if thread is None:
        raise not_found("thread", thread_id)
    template = await _template(bridge, template_id)
    known = _known_values(dict(thread))
    out: list[dict[str, Any]] = []
    parameters: dict[str, str] = {}
    for slot in slots(template):
        if any(s["key"] == slot.key for s in out):
            continue
        fields = _SUGGEST.get(slot.key.lower(), ())
        found = next((known[f] for f in fields if f in known), None)
        if found is not None:
            parameters[slot.key] = found[0]
        out.append(
            {
                "key": slot.key,
                "component": slot.component,
                "media": slot.media,
                "value": found[0] if found else None,
                "from": found[1] if found else None,
            }
        )
    window = await service_window(bridge, thread_id, thread["channel"], thread["channel_key"])
    return {
        "template_id": template.id,
        "slots": out,
        "parameters": parameters,
        "service_window": window,
    }
