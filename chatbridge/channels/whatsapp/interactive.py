"""Choices (protocol 1.2 ``interactive``) on WhatsApp: Meta's interactive messages, numbered
text on the other gateways, and the customer's tap read back from each provider's webhook.

What each provider does (see docs/whatsapp/interactive.md):

* **Meta Cloud API**: ``type: "interactive"``. Up to 3 options are reply buttons
  (``interactive.type = "button"``, titles ≤ 20 characters); up to 10 are a list
  (``"list"``: one section, row titles ≤ 24, descriptions ≤ 72, the button label ≤ 20).
  Body ≤ 1024 characters, header text ≤ 60, ids ≤ 256 (buttons) / 200 (rows). An offer that
  does not fit is sent as numbered text, never refused. The tap arrives as
  ``messages[].interactive.button_reply`` / ``list_reply`` ``{id, title}``.
* **Evolution API**: numbered text. Its ``/message/sendButtons`` and ``/message/sendList``
  exist, but on the Baileys connection WhatsApp may not show them (Evolution's own SDK docs:
  "Buttons may be discontinued on Baileys mode"; v2.3.7 broke both). Taps on buttons sent
  some other way are still read (``buttonsResponseMessage``, ``listResponseMessage``,
  ``templateButtonReplyMessage``).
* **WAHA**: numbered text (button support depends on the engine; nothing in WAHA's docs says
  it works on WhatsApp today).
* **mock**: numbered text, as the outbox shows it.

A typed answer ("2", an option's title) is matched to the offer by
``chatbridge.channels.interactive.resolve_choice`` on every channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatbridge.channels.interactive import Offer, numbered_text
from chatbridge.channels.whatsapp.inbound import get_obj, get_str

if TYPE_CHECKING:
    from chatbridge.channels.whatsapp.ids import ChatAddress

# Meta's limits for interactive messages (developers.facebook.com, "Interactive reply buttons
# messages" / "Interactive list messages")
META_MAX_BUTTONS = 3
META_BUTTON_TITLE = 20
META_BUTTON_ID = 256
META_MAX_ROWS = 10
META_ROW_TITLE = 24
META_ROW_DESCRIPTION = 72
META_ROW_ID = 200
META_LIST_BUTTON = 20
META_BODY = 1024
META_HEADER = 60
DEFAULT_LIST_BUTTON = "Choose"
DEFAULT_BODY = "Please choose:"


def _fits(value: str | None, limit: int) -> bool:
    return value is None or len(value) <= limit


def meta_interactive(text: str | None, offer: Offer) -> dict[str, Any] | None:
    """The ``interactive`` object of a Meta message for ``offer``, or ``None`` when it
    exceeds Meta's limits (then numbered text is sent instead).

    Up to 3 options whose titles fit are reply buttons; otherwise (or for ``kind: "list"``)
    a one-section list of up to 10 rows.
    """
    body = (text or "").strip() or DEFAULT_BODY
    if len(body) > META_BODY or not _fits(offer.title, META_HEADER):
        return None
    out: dict[str, Any] = {}
    if offer.title:
        out["header"] = {"type": "text", "text": offer.title}
    buttons_fit = (
        offer.kind == "buttons"
        and len(offer.options) <= META_MAX_BUTTONS
        and all(
            _fits(o.title, META_BUTTON_TITLE) and _fits(o.id, META_BUTTON_ID) for o in offer.options
        )
    )
    if buttons_fit:
        buttons = [
            {"type": "reply", "reply": {"id": o.id, "title": o.title}} for o in offer.options
        ]
        return {"type": "button", **out, "body": {"text": body}, "action": {"buttons": buttons}}
    button = offer.button or DEFAULT_LIST_BUTTON
    rows_fit = len(offer.options) <= META_MAX_ROWS and all(
        _fits(o.title, META_ROW_TITLE)
        and _fits(o.id, META_ROW_ID)
        and _fits(o.description, META_ROW_DESCRIPTION)
        for o in offer.options
    )
    if not rows_fit or len(button) > META_LIST_BUTTON:
        return None
    rows = []
    for o in offer.options:
        row = {"id": o.id, "title": o.title}
        if o.description:
            row["description"] = o.description
        rows.append(row)
    return {
        "type": "list",
        **out,
        "body": {"text": body},
        "action": {"button": button, "sections": [{"rows": rows}]},
    }


async def send_offer(
    provider: Any, chat: ChatAddress, text: str | None, offer: Offer
) -> str | None:
    """Send a reply with its choices: Meta's interactive message when the provider has one
    and the offer fits, else the numbered text. Returns the gateway's message id."""
    if getattr(provider, "name", None) == "meta_cloud":
        interactive = meta_interactive(text, offer)
        if interactive is not None:
            sent: str | None = await provider.send_interactive(chat, interactive)
            return sent
    numbered: str | None = await provider.send_text(chat, numbered_text(text, offer))
    return numbered


def meta_choice(kind: str, body: dict[str, Any]) -> dict[str, str] | None:
    """``{id, title}`` of a Meta ``interactive`` reply (``button_reply`` / ``list_reply``)
    or of a template's quick-reply ``button`` (``{payload, text}``)."""
    if kind == "interactive":
        reply = get_obj(body, "button_reply") or get_obj(body, "list_reply")
        ident, title = get_str(reply, "id"), get_str(reply, "title")
    elif kind == "button":
        ident, title = get_str(body, "payload"), get_str(body, "text")
    else:
        return None
    if ident is None:
        return None
    return {"id": ident, "title": title or ident}


def evolution_choice(message: dict[str, Any]) -> dict[str, str] | None:
    """``{id, title}`` of a tap on buttons or a list, as Evolution (Baileys) reports it in
    ``data.message``: ``buttonsResponseMessage {selectedButtonId, selectedDisplayText}``,
    ``listResponseMessage {title, singleSelectReply.selectedRowId}``,
    ``templateButtonReplyMessage {selectedId, selectedDisplayText}``."""
    buttons = get_obj(message, "buttonsResponseMessage")
    if buttons:
        ident = get_str(buttons, "selectedButtonId")
        title = get_str(buttons, "selectedDisplayText")
    elif get_obj(message, "listResponseMessage"):
        listed = get_obj(message, "listResponseMessage")
        ident = get_str(get_obj(listed, "singleSelectReply"), "selectedRowId")
        title = get_str(listed, "title")
    elif get_obj(message, "templateButtonReplyMessage"):
        template = get_obj(message, "templateButtonReplyMessage")
        ident = get_str(template, "selectedId")
        title = get_str(template, "selectedDisplayText")
    else:
        return None
    if ident is None:
        return None
    return {"id": ident, "title": title or ident}
