"""The fake Graph API's message templates: a WhatsApp Business Account's template list, and
template sends checked against it as strictly as Meta does.

* ``GET /{version}/{waba id}/message_templates?fields=…&limit=…&after=…`` (Bearer token):
  ``{"data": […], "paging": {"cursors": {"before", "after"}, "next"?}}`` — ``next`` only when
  another page follows, as Meta does.
* ``POST /{version}/{phone number id}/messages`` with ``type: "template"``: refused unless the
  template exists in that language and is approved (``(#132001)``), and its parameters match
  the template's placeholders in number — and in name for named templates (``(#132000)``).
  An accepted one is answered by the fake's ordinary Meta send (``fake_whatsapp._meta``).

A wrong or missing token is answered as Meta does: 401, ``OAuthException`` code 190. Tests put
templates in the fake's WABA with ``add_template`` (state in ``fake.ext["templates"]``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from fastapi.responses import JSONResponse, Response

if TYPE_CHECKING:
    from fastapi import Request

    from chatbridge.testing.fake_whatsapp import FakeWhatsApp

KEY = "templates"
WABA_ID = "102290129340398"
DEFAULT_FIELDS = ("name", "parameter_format", "components", "language", "status", "category", "id")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def state(fake: FakeWhatsApp) -> dict[str, Any]:
    """The fake WABA: its id, templates (Meta's objects, in the order added) and the query
    strings of the template list requests (``list_queries``)."""
    found: dict[str, Any] = fake.ext.setdefault(KEY, {"waba_id": WABA_ID, "templates": []})
    return found


def add_template(
    fake: FakeWhatsApp,
    name: str,
    components: list[dict[str, Any]],
    *,
    language: str = "en_US",
    status: str = "APPROVED",
    category: str = "UTILITY",
) -> dict[str, Any]:
    """Put a template in the fake WABA (as Meta lists it) and return it."""
    templates = state(fake)["templates"]
    names = [p for c in components for p in _PLACEHOLDER.findall(str(c.get("text") or ""))]
    template = {
        "name": name,
        "parameter_format": "POSITIONAL" if all(n.isdigit() for n in names) else "NAMED",
        "components": components,
        "language": language,
        "status": status,
        "category": category,
        "id": str(1_000_000_000 + len(templates) + 1),
    }
    templates.append(template)
    return template


def _meta_error(status: int, message: str, code: int, details: str | None = None) -> Response:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = "AFakeTraceId"
    return JSONResponse({"error": error}, status_code=status)


def _unauthorized(fake: FakeWhatsApp, headers: dict[str, str]) -> Response | None:
    if fake.meta_token and headers.get("authorization") != f"Bearer {fake.meta_token}":
        return _meta_error(401, "Invalid OAuth access token - Cannot parse access token", 190)
    return None


async def handle(
    fake: FakeWhatsApp,
    request: Request,
    path: str,
    headers: dict[str, str],
    body: Any,
    raw: bytes,
) -> Response | None:
    """Answer the template endpoints; None for every other request."""
    parts = path.strip("/").split("/")
    if len(parts) != 3 or not parts[0].startswith("v"):
        return None
    if parts[2] == "message_templates" and request.method == "GET":
        return _list(fake, parts[1], headers, str(request.url))
    if (
        parts[2] == "messages"
        and request.method == "POST"
        and isinstance(body, dict)
        and body.get("type") == "template"
    ):
        return _check_send(fake, parts[1], headers, body)
    return None


def _list(fake: FakeWhatsApp, waba: str, headers: dict[str, str], url: str) -> Response:
    refused = _unauthorized(fake, headers)
    if refused is not None:
        return refused
    waba_state = state(fake)
    if waba != waba_state["waba_id"]:
        return _meta_error(
            400,
            f"Unsupported get request. Object with ID '{waba}' does not exist, cannot be "
            "loaded due to missing permissions, or does not support this operation",
            100,
        )
    waba_state.setdefault("list_queries", []).append(urlsplit(url).query)
    query = parse_qs(urlsplit(url).query)
    fields = query.get("fields", [",".join(DEFAULT_FIELDS)])[0].split(",")
    limit = int(query.get("limit", ["25"])[0])
    start = int(query.get("after", ["0"])[0] or 0)
    templates = waba_state["templates"]
    page = templates[start : start + limit]
    data = [{k: t[k] for k in fields if k in t} for t in page]
    paging: dict[str, Any] = {"cursors": {"before": str(start), "after": str(start + len(page))}}
    if start + len(page) < len(templates):
        split = urlsplit(url)
        paging["next"] = (
            f"{split.scheme}://{split.netloc}{split.path}?fields={','.join(fields)}"
            f"&limit={limit}&after={start + len(page)}"
        )
    return JSONResponse({"data": data, "paging": paging})


def _component(template: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for component in template.get("components") or []:
        if str(component.get("type", "")).upper() == kind:
            return dict(component)
    return None


def _expected(template: dict[str, Any]) -> dict[str, list[str]]:
    """Placeholders per send component: ``header``, ``body``, ``button.<index>``."""
    out: dict[str, list[str]] = {}
    header = _component(template, "HEADER")
    if header is not None:
        fmt = str(header.get("format") or "TEXT").upper()
        if fmt in ("IMAGE", "VIDEO", "DOCUMENT"):
            out["header"] = [fmt.lower()]
        elif _PLACEHOLDER.findall(str(header.get("text") or "")):
            out["header"] = list(dict.fromkeys(_PLACEHOLDER.findall(str(header["text"]))))
    body = _component(template, "BODY")
    if body is not None:
        names = list(dict.fromkeys(_PLACEHOLDER.findall(str(body.get("text") or ""))))
        if names:
            out["body"] = names
    for index, button in enumerate((_component(template, "BUTTONS") or {}).get("buttons") or []):
        kind = str(button.get("type", "")).upper()
        if (kind == "URL" and _PLACEHOLDER.findall(str(button.get("url") or ""))) or (
            kind == "COPY_CODE"
        ):
            out[f"button.{index}"] = ["1"]
    return out


def _given(components: list[Any]) -> dict[str, list[dict[str, Any]]] | str:
    out: dict[str, list[dict[str, Any]]] = {}
    for component in components:
        if not isinstance(component, dict) or not isinstance(component.get("parameters"), list):
            return "each component needs a type and a parameters list"
        kind = component.get("type")
        if kind == "button":
            key = f"button.{component.get('index')}"
            if component.get("sub_type") not in ("url", "copy_code", "quick_reply"):
                return "button components need a sub_type"
        elif kind in ("header", "body"):
            key = str(kind)
        else:
            return f"component type {kind!r} is not valid"
        out[key] = component["parameters"]
    return out


def _check_send(
    fake: FakeWhatsApp, number: str, headers: dict[str, str], body: dict[str, Any]
) -> Response | None:
    refused = _unauthorized(fake, headers)
    if refused is not None:
        return refused
    if number not in fake.meta_phone_numbers:
        return None  # the ordinary send answers an unknown number
    template = body.get("template")
    if not isinstance(template, dict) or not isinstance(template.get("name"), str):
        return _meta_error(400, "(#100) The parameter template['name'] is required.", 100)
    language = template.get("language")
    code = language.get("code") if isinstance(language, dict) else None
    if not isinstance(code, str):
        return _meta_error(400, "(#100) The parameter template['language'] is required.", 100)
    known = next(
        (
            t
            for t in state(fake)["templates"]
            if t["name"] == template["name"] and t["language"] == code
        ),
        None,
    )
    if known is None or known["status"] != "APPROVED":
        return _meta_error(
            404,
            "(#132001) Template name does not exist in the translation",
            132001,
            f"template name ({template['name']}) does not exist in {code}",
        )
    given = _given(template.get("components") or [])
    if isinstance(given, str):
        return _meta_error(400, f"(#100) Invalid parameter: {given}", 100)
    expected = _expected(known)
    named = known["parameter_format"] == "NAMED"
    for key in sorted(set(expected) | set(given)):
        want = expected.get(key, [])
        got = given.get(key, [])
        if len(want) != len(got):
            return _meta_error(
                400,
                "(#132000) Number of parameters does not match the expected number of params",
                132000,
                f"{key}: number of localizable_params ({len(got)}) does not match the "
                f"expected number of params ({len(want)})",
            )
        if named and key in ("header", "body"):
            names = [p.get("parameter_name") for p in got if isinstance(p, dict)]
            if sorted(str(n) for n in names) != sorted(want):
                return _meta_error(
                    400,
                    "(#132000) Number of parameters does not match the expected number of params",
                    132000,
                    f"{key}: parameter names {names} do not match {want}",
                )
        for parameter in got:
            if not isinstance(parameter, dict) or not parameter.get("type"):
                return _meta_error(400, "(#100) Invalid parameter: each needs a type", 100)
            kind = parameter["type"]
            if kind == "text" and not str(parameter.get("text") or "").strip():
                return _meta_error(
                    400, "(#131008) Required parameter is missing", 131008, "text is empty"
                )
    return None
