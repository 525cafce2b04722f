"""WhatsApp message templates: their parameter slots, checking the values, and sending them.

A template keeps Meta's component shape whatever its source::

    {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"}          # or IMAGE/VIDEO/DOCUMENT
    {"type": "BODY", "text": "Hi {{first_name}}, it ships on {{date}}."}
    {"type": "FOOTER", "text": "Reply STOP to opt out"}
    {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://x/{{1}}"}]}

**Slots** are what a sender fills (``TemplateReply.parameters`` of protocol 1.2), keyed:

* body ``{{1}}`` → ``"1"``; a named ``{{order_id}}`` anywhere → ``"order_id"`` (one value
  fills every place the name appears);
* a positional header ``{{1}}`` → ``"header.1"`` (the body has its own ``{{1}}``); a media
  header (IMAGE / VIDEO / DOCUMENT) → ``"header.image"`` (… ``.video``, ``.document``): the
  media's https URL;
* a URL button's ``{{1}}`` → ``"button.<index>"``; a COPY_CODE button → ``"button.<index>"``
  (the coupon code).

Every slot needs a non-blank value and no value may name a slot the template lacks: both are
refused **before** anything is sent, naming the slots (``TemplateProblem``).

Sending: Meta gets a ``type: "template"`` message (allowed outside the 24-hour customer
service window — the only thing that is); its ``parameters`` are ``{"type": "text", "text"}``
in slot order for positional templates, with ``parameter_name`` for named ones. WAHA,
Evolution and the mock have no templates: they get the rendered text (a media header is sent
as that media with the text as its caption), and have no window either. Other channels get
the rendered text too (``as_text_action``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from chatbridge.channels.whatsapp.gateway import GatewayError, GatewayHttp
from chatbridge.channels.whatsapp.ids import ChatAddress
from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import PermanentDelivery
from chatbridge.models import Attachment, OutboundAction, SendResult
from chatbridge.store.templates import TemplateRecord

if TYPE_CHECKING:
    from chatbridge.channels.whatsapp.base import WhatsAppChannel
    from chatbridge.channels.whatsapp.meta import Provider as MetaProvider
    from chatbridge.store import Store

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
MEDIA_FORMATS = ("IMAGE", "VIDEO", "DOCUMENT")
COMPONENT_TYPES = ("HEADER", "BODY", "FOOTER", "BUTTONS")
BUTTON_TYPES = ("QUICK_REPLY", "URL", "PHONE_NUMBER", "COPY_CODE", "OTP", "FLOW", "CATALOG")
MAX_VALUE = 1024  # Meta's body text limit; no single value can be longer
SYNC_FIELDS = "name,language,status,category,components,id"
SYNC_PAGE = 100
SYNC_MAX_PAGES = 200


class TemplateProblem(ValueError):
    """A template cannot be sent as asked: unknown, ambiguous, not approved, or its parameters
    do not fit its slots (``missing`` / ``unknown`` name them)."""

    def __init__(
        self, message: str, *, missing: list[str] | None = None, unknown: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.missing = missing or []
        self.unknown = unknown or []


@dataclass(frozen=True, slots=True)
class Slot:
    """One value a template needs.

    ``key`` is what parameters are keyed by; ``component`` header | body | button; ``name``
    the placeholder as written (``"1"``, ``"order_id"``) or, for a media header, its format
    in lower case; ``button_index`` / ``button_type`` for button slots.
    """

    key: str
    component: str
    name: str
    button_index: int | None = None
    button_type: str | None = None

    @property
    def named(self) -> bool:
        return not self.name.isdigit()

    @property
    def media(self) -> bool:
        return self.component == "header" and self.name in ("image", "video", "document")


def _placeholders(text: str | None) -> list[str]:
    """The placeholders of ``text``, first appearance order, each once."""
    seen: list[str] = []
    for name in PLACEHOLDER.findall(text or ""):
        if name not in seen:
            seen.append(name)
    return seen


def _ordered(names: list[str]) -> list[str]:
    """Positional placeholders in number order (how Meta takes them); named as written."""
    if names and all(n.isdigit() for n in names):
        return sorted(names, key=int)
    return names


def _component(template: TemplateRecord, kind: str) -> dict[str, Any] | None:
    for component in template.components:
        if str(component.get("type", "")).upper() == kind:
            return component
    return None


def slots(template: TemplateRecord) -> list[Slot]:
    """Every slot of ``template``: header, body, then buttons."""
    out: list[Slot] = []
    header = _component(template, "HEADER")
    if header is not None:
        fmt = str(header.get("format") or "TEXT").upper()
        if fmt in MEDIA_FORMATS:
            out.append(Slot(f"header.{fmt.lower()}", "header", fmt.lower()))
        else:
            for name in _ordered(_placeholders(header.get("text"))):
                key = f"header.{name}" if name.isdigit() else name
                out.append(Slot(key, "header", name))
    body = _component(template, "BODY")
    if body is not None:
        out.extend(Slot(n, "body", n) for n in _ordered(_placeholders(body.get("text"))))
    buttons = _component(template, "BUTTONS")
    for index, button in enumerate((buttons or {}).get("buttons") or []):
        kind = str(button.get("type", "")).upper()
        if kind == "URL" and _placeholders(button.get("url")):
            out.append(Slot(f"button.{index}", "button", "1", index, "url"))
        elif kind == "COPY_CODE":
            out.append(Slot(f"button.{index}", "button", "1", index, "copy_code"))
    return out


def slot_keys(template: TemplateRecord) -> list[str]:
    """The parameter names ``template`` needs, each once, in slot order."""
    keys: list[str] = []
    for slot in slots(template):
        if slot.key not in keys:
            keys.append(slot.key)
    return keys


def check_parameters(template: TemplateRecord, parameters: dict[str, str]) -> None:
    """Refuse parameters that do not fit ``template``'s slots, before anything is sent.

    Raises:
        TemplateProblem: a slot without a (non-blank) value, a value for no slot, a value
            longer than 1024 characters, or a media header that is not an http(s) URL.
    """
    needed = slot_keys(template)
    missing = [k for k in needed if not str(parameters.get(k) or "").strip()]
    unknown = sorted(k for k in parameters if k not in needed)
    label = f"template {template.name!r} ({template.language})"
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing parameter(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown parameter(s) {', '.join(unknown)}")
        slots_text = ", ".join(needed) if needed else "none"
        raise TemplateProblem(
            f"{label}: {'; '.join(parts)} (its slots: {slots_text})",
            missing=missing,
            unknown=unknown,
        )
    for key in needed:
        value = str(parameters[key])
        if len(value) > MAX_VALUE:
            raise TemplateProblem(f"{label}: parameter {key} is longer than {MAX_VALUE}")
    for slot in slots(template):
        if slot.media and not str(parameters[slot.key]).startswith(("https://", "http://")):
            raise TemplateProblem(f"{label}: parameter {slot.key} must be an http(s) URL")


# ------------------------------------------------------------------ Meta's message


def _text_parameter(slot: Slot, value: str) -> dict[str, Any]:
    if slot.named:
        return {"type": "text", "parameter_name": slot.name, "text": value}
    return {"type": "text", "text": value}


def meta_components(template: TemplateRecord, parameters: dict[str, str]) -> list[dict[str, Any]]:
    """The ``template.components`` of Meta's send body for checked ``parameters``."""
    header: list[dict[str, Any]] = []
    body: list[dict[str, Any]] = []
    buttons: list[dict[str, Any]] = []
    for slot in slots(template):
        value = str(parameters[slot.key])
        if slot.media:
            header.append({"type": slot.name, slot.name: {"link": value}})
        elif slot.component == "header":
            header.append(_text_parameter(slot, value))
        elif slot.component == "body":
            body.append(_text_parameter(slot, value))
        elif slot.button_type == "copy_code":
            buttons.append(
                {
                    "type": "button",
                    "sub_type": "copy_code",
                    "index": str(slot.button_index),
                    "parameters": [{"type": "coupon_code", "coupon_code": value}],
                }
            )
        else:
            buttons.append(
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": str(slot.button_index),
                    "parameters": [{"type": "text", "text": value}],
                }
            )
    out: list[dict[str, Any]] = []
    if header:
        out.append({"type": "header", "parameters": header})
    if body:
        out.append({"type": "body", "parameters": body})
    return out + buttons


def meta_template(template: TemplateRecord, parameters: dict[str, str]) -> dict[str, Any]:
    """The ``template`` object of Meta's ``type: "template"`` message."""
    out: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    components = meta_components(template, parameters)
    if components:
        out["components"] = components
    return out


# ------------------------------------------------------------------ rendered text


@dataclass(slots=True)
class Rendered:
    """A template as a plain message: its text and, for a media header, the media."""

    text: str
    media: Attachment | None = None
    lines: list[str] = field(default_factory=list)


def _fill(text: str, parameters: dict[str, str], *, header: bool) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        key = f"header.{name}" if header and name.isdigit() else name
        return str(parameters.get(key, match.group(0)))

    return PLACEHOLDER.sub(value, text)


_MEDIA_MIME = {"image": "image/jpeg", "video": "video/mp4", "document": "application/pdf"}


def render(template: TemplateRecord, parameters: dict[str, str]) -> Rendered:
    """``template`` with ``parameters`` filled in, as the text a gateway without templates
    sends: header (bold), body, footer (italic), then link and phone buttons as lines."""
    parts: list[str] = []
    media: Attachment | None = None
    header = _component(template, "HEADER")
    if header is not None:
        fmt = str(header.get("format") or "TEXT").upper()
        if fmt in MEDIA_FORMATS:
            media = Attachment(
                url=str(parameters.get(f"header.{fmt.lower()}", "")),
                mime=_MEDIA_MIME[fmt.lower()],
            )
        elif header.get("text"):
            parts.append(f"*{_fill(str(header['text']), parameters, header=True)}*")
    body = _component(template, "BODY")
    if body is not None and body.get("text"):
        parts.append(_fill(str(body["text"]), parameters, header=False))
    footer = _component(template, "FOOTER")
    if footer is not None and footer.get("text"):
        parts.append(f"_{footer['text']}_")
    lines: list[str] = []
    buttons = _component(template, "BUTTONS")
    for index, button in enumerate((buttons or {}).get("buttons") or []):
        kind = str(button.get("type", "")).upper()
        label = str(button.get("text") or "")
        if kind == "URL":
            url = str(button.get("url") or "")
            suffix = str(parameters.get(f"button.{index}", ""))
            url = PLACEHOLDER.sub(suffix.replace("\\", "\\\\"), url)
            lines.append(f"{label}: {url}")
        elif kind == "PHONE_NUMBER":
            lines.append(f"{label}: {button.get('phone_number', '')}")
        elif kind == "COPY_CODE":
            lines.append(f"{label}: {parameters.get(f'button.{index}', '')}")
        elif label:
            lines.append(f"• {label}")
    if lines:
        parts.append("\n".join(lines))
    return Rendered("\n\n".join(p for p in parts if p), media, lines)


# ------------------------------------------------------------------ resolving and sending


@dataclass(frozen=True, slots=True)
class TemplateRequest:
    """What a sender asked for: ``{name, language?, parameters}``."""

    name: str
    language: str | None
    parameters: dict[str, str]

    @classmethod
    def of(cls, raw: dict[str, Any]) -> TemplateRequest:
        """Read ``OutboundAction.template``. Raises ``TemplateProblem`` when malformed."""
        name = raw.get("name")
        language = raw.get("language")
        parameters = raw.get("parameters") or {}
        if not isinstance(name, str) or not name:
            raise TemplateProblem("a template needs its name")
        if language is not None and not isinstance(language, str):
            raise TemplateProblem("a template's language must be a string")
        if not isinstance(parameters, dict):
            raise TemplateProblem("a template's parameters must be an object")
        return cls(name, language or None, {str(k): str(v) for k, v in parameters.items()})


async def resolve(store: Store, name: str, language: str | None) -> TemplateRecord:
    """The stored template ``name`` in ``language`` (omitted: the only language it has).

    Raises:
        TemplateProblem: no such template, several languages and none named, or deleted.
    """
    found = await store.find_templates(name, language)
    if not found:
        where = f" in language {language!r}" if language else ""
        raise TemplateProblem(f"no template named {name!r}{where}")
    if len(found) > 1:
        languages = ", ".join(t.language for t in found)
        raise TemplateProblem(
            f"template {name!r} exists in several languages ({languages}): name one"
        )
    template = found[0]
    if template.status == "deleted":
        raise TemplateProblem(f"template {name!r} ({template.language}) was deleted at Meta")
    return template


def check_sendable(template: TemplateRecord, provider: str) -> None:
    """Meta sends only templates its WhatsApp Business Account approved; the gateways
    without templates send any stored one as text.

    Raises:
        TemplateProblem: a local or not-approved template on Meta.
    """
    if provider != "meta_cloud":
        return
    label = f"template {template.name!r} ({template.language})"
    if template.source != "meta":
        raise TemplateProblem(
            f"{label} is a local template; Meta sends only the templates of your WhatsApp "
            "Business Account (sync them: POST /api/comms/templates/sync)"
        )
    if template.status != "approved":
        raise TemplateProblem(f"{label} is {template.status} at Meta, not approved")


async def prepare(
    store: Store | None, raw: dict[str, Any], provider: str
) -> tuple[TemplateRecord, dict[str, str]]:
    """Resolve and check a template send for ``provider``: the template and its values.

    Raises:
        TemplateProblem: why it cannot be sent (see ``resolve``, ``check_sendable``,
            ``check_parameters``).
    """
    if store is None:
        raise TemplateProblem("templates are kept in the store, and this channel has none")
    request = TemplateRequest.of(raw)
    template = await resolve(store, request.name, request.language)
    check_sendable(template, provider)
    check_parameters(template, request.parameters)
    return template, request.parameters


async def send_template(
    channel: WhatsAppChannel, chat: ChatAddress, action: OutboundAction
) -> SendResult:
    """Send ``action.template`` to ``chat`` (the action's text, if any, is not sent: the
    template is the message). Needs no conversation row: a broadcast sends with
    ``conversation.id == ""``. Not subject to Meta's 24-hour window.

    Raises:
        PermanentDelivery: the template cannot be sent (unknown, not approved, parameters
            that do not fit); the gateway refused it.
        RetryableDelivery: the gateway could not be reached or asked us to retry.
    """
    assert action.template is not None
    try:
        template, parameters = await prepare(channel.store, action.template, chat.provider)
    except TemplateProblem as exc:
        raise PermanentDelivery(str(exc)) from exc
    if chat.provider == "meta_cloud":
        provider = cast("MetaProvider", channel.provider("meta_cloud"))
        key = action.idempotency_key
        sent = await provider.send_template(
            chat,
            meta_template(template, parameters),
            callback_data=key if key.startswith("bc:") else None,  # a broadcast's send
        )
        if sent:
            channel.remember_sent(sent)
        return SendResult(external_id=sent)
    rendered = render(template, parameters)
    plain = replace(
        action,
        template=None,
        text=rendered.text,
        attachments=[rendered.media] if rendered.media else [],
    )
    return await channel.send(plain)


async def as_text_action(store: Store | None, action: OutboundAction) -> OutboundAction:
    """For channels without templates (Chatwoot, web chat, http): ``action`` with its
    template rendered into the text (a media header as an attachment). Unchanged when it
    carries no template.

    Raises:
        PermanentDelivery: the template cannot be rendered (see ``prepare``).
    """
    if action.template is None:
        return action
    try:
        template, parameters = await prepare(store, action.template, "text")
    except TemplateProblem as exc:
        raise PermanentDelivery(str(exc)) from exc
    rendered = render(template, parameters)
    media = [rendered.media] if rendered.media else []
    return replace(action, template=None, text=rendered.text, attachments=media)


# ------------------------------------------------------------------ Meta sync


class SyncFailed(Exception):
    """Meta's template list could not be read; the message says why in plain words."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


async def fetch_meta_templates(http: GatewayHttp, settings: CommsSettings) -> list[dict[str, Any]]:
    """Every template of the configured WhatsApp Business Account.

    ``GET {graph}/{version}/{waba id}/message_templates?fields=…&limit=100`` with the Bearer
    token, following ``paging.cursors.after`` while Meta gives a ``paging.next`` (it leaves
    ``next`` out on the last page).

    Raises:
        SyncFailed: no WABA id or token configured, Meta unreachable or refusing.
    """
    if not settings.meta_waba_id:
        raise SyncFailed(
            "no WhatsApp Business Account id is set (meta_waba_id, CHATBRIDGE_COMMS_META_WABA_ID)"
        )
    token = settings.meta_access_token
    if not token:
        raise SyncFailed("no Meta access token is set (meta_access_token)")
    base = f"{settings.meta_graph_url.rstrip('/')}/{settings.meta_api_version}"
    url = f"{base}/{settings.meta_waba_id}/message_templates"
    headers = {"Authorization": f"Bearer {token}"}
    out: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(SYNC_MAX_PAGES):
        query = f"?fields={SYNC_FIELDS}&limit={SYNC_PAGE}"
        if after:
            query += f"&after={after}"
        try:
            page = await http.request(
                "GET", url + query, what="Meta templates", headers=headers, secrets=(token,)
            )
        except GatewayError as exc:
            if exc.status in (401, 403):
                message = (
                    "Meta refused the access token (wrong, expired, or without the "
                    f"whatsapp_business_management permission): {exc}"
                )
            else:
                message = str(exc)
            raise SyncFailed(message, status=exc.status) from exc
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise SyncFailed("Meta answered the template list without its data")
        out.extend(
            item
            for item in page["data"]
            if isinstance(item, dict) and item.get("name") and item.get("language")
        )
        paging = page.get("paging")
        paging = paging if isinstance(paging, dict) else {}
        cursors = paging.get("cursors")
        cursors = cursors if isinstance(cursors, dict) else {}
        after = cursors.get("after") if isinstance(cursors.get("after"), str) else None
        if not paging.get("next") or not after:
            return out
    raise SyncFailed(f"Meta's template list has more than {SYNC_MAX_PAGES} pages")


def check_components(raw: Any) -> list[dict[str, Any]]:
    """A local template's components, checked and with Meta's upper-case types.

    Raises:
        ValueError: what is wrong, in plain words.
    """
    if not isinstance(raw, list) or not raw:
        raise ValueError("components must be a non-empty list")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ValueError(f"components[{index}] must be an object")
        kind = str(item.get("type", "")).upper()
        if kind not in COMPONENT_TYPES:
            raise ValueError(
                f"components[{index}].type must be one of {', '.join(COMPONENT_TYPES)}"
            )
        if kind in seen:
            raise ValueError(f"components[{index}]: a template has one {kind}")
        seen.add(kind)
        component = {**item, "type": kind}
        if kind == "HEADER":
            fmt = str(item.get("format") or "TEXT").upper()
            if fmt not in ("TEXT", *MEDIA_FORMATS):
                raise ValueError(
                    f"components[{index}].format must be TEXT, IMAGE, VIDEO or DOCUMENT"
                )
            component["format"] = fmt
            if fmt == "TEXT":
                if not isinstance(item.get("text"), str) or not item["text"].strip():
                    raise ValueError(f"components[{index}]: a TEXT header needs its text")
                if len(_placeholders(item["text"])) > 1:
                    raise ValueError(f"components[{index}]: a header takes at most 1 parameter")
        elif kind in ("BODY", "FOOTER"):
            if not isinstance(item.get("text"), str) or not item["text"].strip():
                raise ValueError(f"components[{index}]: {kind} needs its text")
            if kind == "FOOTER" and _placeholders(item["text"]):
                raise ValueError(f"components[{index}]: a footer takes no parameters")
        else:
            buttons = item.get("buttons")
            if not isinstance(buttons, list) or not buttons:
                raise ValueError(f"components[{index}].buttons must be a non-empty list")
            fixed = []
            for b, button in enumerate(buttons):
                if not isinstance(button, dict) or not button.get("text"):
                    raise ValueError(f"components[{index}].buttons[{b}] needs its text")
                button_type = str(button.get("type", "")).upper()
                if button_type not in BUTTON_TYPES:
                    raise ValueError(
                        f"components[{index}].buttons[{b}].type must be one of "
                        f"{', '.join(BUTTON_TYPES)}"
                    )
                if button_type == "URL" and not str(button.get("url") or "").startswith(
                    ("https://", "http://")
                ):
                    raise ValueError(f"components[{index}].buttons[{b}] needs an http(s) url")
                fixed.append({**button, "type": button_type})
            component["buttons"] = fixed
        out.append(component)
    if "BODY" not in seen:
        raise ValueError("a template needs a BODY component")
    return out
