"""Webhook payloads of the three WhatsApp gateways, for tests, the demo and the fake gateways.

The ``*_message`` / ``*_status`` builders return payloads shaped like the contract's examples
(the providers' documented payloads; see ``docs/whatsapp.md``): WAHA (``waha_message``,
``waha_ack``) in the shape of each of its engines (WEBJS, NOWEB, GOWS), Evolution API v2
(``evolution_message``, ``evolution_status``) and the Meta Cloud API (``meta_webhook`` around
``meta_text`` / ``meta_status``). ``chatbridge.testing.fake_whatsapp`` builds its echoes with
them.
"""

from __future__ import annotations

from typing import Any, Literal

WahaEngine = Literal["WEBJS", "NOWEB", "GOWS"]
WAHA_ENGINES: tuple[WahaEngine, ...] = ("WEBJS", "NOWEB", "GOWS")
WAHA_ME = "15550001111@c.us"


def s_whatsapp(jid: str) -> str:
    """``<number>@c.us`` as the Baileys-based engines write it: ``<number>@s.whatsapp.net``."""
    return jid.replace("@c.us", "@s.whatsapp.net")


def waha_message(
    text: str = "Is this in stock?",
    *,
    msg_id: str = "3EB0C0BD05DCA97A7C09CB",
    chat: str = "919876543210@c.us",
    from_me: bool = False,
    source: str = "app",
    event: str = "message",
    session: str = "default",
    push_name: str = "Asha",
    media: dict[str, Any] | None = None,
    participant: str | None = None,
    remote_jid_alt: str | None = None,
    engine: WahaEngine = "NOWEB",
) -> dict[str, Any]:
    """A WAHA ``message`` / ``message.any`` webhook as ``engine`` fills it (the contract §1).

    ``chat`` is the chat in WAHA's form (``@c.us``, ``@lid``, ``@g.us``); ``participant`` the
    group member who wrote. Where the engines differ:

    * WEBJS: ``from`` = the sender (me when ``fromMe``; the group in groups), ``to`` = the
      receiver (the chat when ``fromMe``, else me); no ``source``; ``_data`` is WhatsApp
      Web's message (``id {fromMe, remote, id, _serialized}``, ``notifyName``, ``author``).
    * NOWEB (current): ``from`` = the chat whoever wrote; ``to`` and ``participant`` only in
      groups; ``_data`` is the Baileys message (``key {remoteJid, fromMe, id, participant,
      remoteJidAlt}``, ``pushName``).
    * GOWS: ``from`` = the chat; ``to`` and ``participant`` = the sender in groups, else
      ``null``; ``_data`` is whatsmeow's (``Info {Chat, Sender, IsFromMe, IsGroup, ID,
      PushName, Timestamp}``, ``Message``).
    """
    group = chat.endswith("@g.us")
    sender = WAHA_ME if from_me else (participant if group and participant else chat)
    serialized = f"{str(from_me).lower()}_{chat}_{msg_id}"
    if group and sender:
        serialized += f"_{sender}"
    payload: dict[str, Any] = {
        "id": serialized,
        "timestamp": 1750699027,
        "fromMe": from_me,
        "body": text,
        "hasMedia": media is not None,
        "media": media,
        "ack": 2,
        "ackName": "DEVICE",
    }
    if engine == "WEBJS":
        payload["from"] = chat if group or not from_me else WAHA_ME
        payload["to"] = chat if from_me else WAHA_ME
        raw: dict[str, Any] = {
            "id": {"fromMe": from_me, "remote": chat, "id": msg_id, "_serialized": serialized},
            "body": text,
            "type": "chat",
            "t": 1750699027,
            "from": payload["from"],
            "to": payload["to"],
            "self": "out" if from_me else "in",
            "notifyName": push_name,
        }
        if group and participant:
            raw["author"] = participant
    elif engine == "GOWS":
        payload.update(
            source=source,
            **{"from": chat, "to": sender if group else None},
            participant=sender if group else None,
        )
        info: dict[str, Any] = {
            "Chat": s_whatsapp(chat),
            "Sender": s_whatsapp(sender),
            "IsFromMe": from_me,
            "IsGroup": group,
            "ID": msg_id,
            "PushName": push_name,
            "Timestamp": "2025-06-23T17:17:07Z",
        }
        if remote_jid_alt:
            info["RecipientAlt" if from_me else "SenderAlt"] = remote_jid_alt
        raw = {"Info": info, "Message": {"conversation": text}}
    else:
        payload.update(source=source, **{"from": chat})
        key: dict[str, Any] = {"remoteJid": s_whatsapp(chat), "fromMe": from_me, "id": msg_id}
        if group:
            payload["to"] = chat
            payload["participant"] = sender
            key["participant"] = s_whatsapp(sender)
        if remote_jid_alt:
            key["remoteJidAlt"] = remote_jid_alt
        raw = {"key": key, "pushName": push_name, "message": {"conversation": text}}
    payload["_data"] = raw
    return {
        "id": "evt_01jyewpavw2ns6gc9j48ta562t",
        "timestamp": 1750699027412,
        "event": event,
        "session": session,
        "me": {"id": WAHA_ME, "pushName": "Shop"},
        "engine": engine,
        "payload": payload,
    }


def waha_ack(message_id: str, ack: int, *, chat: str = "919876543210@c.us") -> dict[str, Any]:
    """A WAHA ``message.ack`` webhook for a message we sent."""
    names = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
    return {
        "id": "evt_01jyewq0000000000000000000",
        "timestamp": 1750699030000,
        "event": "message.ack",
        "session": "default",
        "engine": "NOWEB",
        "payload": {
            "id": message_id,
            "from": chat,
            "participant": None,
            "fromMe": True,
            "ack": ack,
            "ackName": names[ack],
        },
    }


def evolution_message(
    text: str = "Is this in stock?",
    *,
    msg_id: str = "3A554E20ECABF3D45BB2",
    remote_jid: str = "919876543210@s.whatsapp.net",
    remote_jid_alt: str | None = None,
    from_me: bool = False,
    instance: str = "shop",
    push_name: str = "Asha",
    message: dict[str, Any] | None = None,
    message_type: str = "conversation",
    participant: str | None = None,
    event: str = "messages.upsert",
) -> dict[str, Any]:
    """An Evolution v2 ``messages.upsert`` webhook, as in the contract."""
    key: dict[str, Any] = {"remoteJid": remote_jid, "fromMe": from_me, "id": msg_id}
    if remote_jid_alt:
        key.update(remoteJidAlt=remote_jid_alt, addressingMode="lid")
    if participant:
        key["participant"] = participant
    return {
        "event": event,
        "instance": instance,
        "data": {
            "key": key,
            "pushName": push_name,
            "status": "DELIVERY_ACK",
            "message": message if message is not None else {"conversation": text},
            "messageType": message_type,
            "messageTimestamp": 1717604327,
            "instanceId": "9f3b030d-0000-0000-0000-000000000000",
            "source": "android",
        },
        "destination": "https://bot.example.com/wa",
        "date_time": "2025-06-05T13:18:47.612Z",
        "sender": "15550001111@s.whatsapp.net",
        "server_url": "http://localhost:8080",
        "apikey": None,
    }


def evolution_status(
    key_id: str, status: str, *, remote_jid: str = "919876543210@s.whatsapp.net"
) -> dict[str, Any]:
    """An Evolution v2 ``messages.update`` webhook for a message we sent."""
    return {
        "event": "messages.update",
        "instance": "shop",
        "data": {
            "keyId": key_id,
            "remoteJid": remote_jid,
            "fromMe": True,
            "participant": None,
            "status": status,
            "instanceId": "9f3b030d-0000-0000-0000-000000000000",
            "messageId": "cm0000000000000000000000",
        },
        "date_time": "2025-06-05T13:18:50.000Z",
        "sender": "15550001111@s.whatsapp.net",
        "server_url": "http://localhost:8080",
        "apikey": None,
    }


def meta_webhook(
    *,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    phone_number_id: str = "106540352242922",
) -> dict[str, Any]:
    """A Cloud API ``messages`` webhook holding ``messages`` and/or ``statuses``."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
    }
    if messages is not None:
        value["contacts"] = (
            contacts
            if contacts is not None
            else [{"profile": {"name": "Asha"}, "wa_id": "919876543210"}]
        )
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }


def meta_text(
    text: str = "Is this in stock?",
    *,
    wamid: str = "wamid.HBgLMTY1MDM4AAA=",
    sender: str = "919876543210",
) -> dict[str, Any]:
    """One ``messages[]`` item of type text."""
    return {
        "from": sender,
        "id": wamid,
        "timestamp": "1749416383",
        "type": "text",
        "text": {"body": text},
    }


def meta_status(
    wamid: str,
    status: str,
    *,
    recipient: str = "919876543210",
    callback_data: str | None = None,
) -> dict[str, Any]:
    """One ``statuses[]`` item (with the send's ``biz_opaque_callback_data``, if it had one)."""
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": "1749416390",
        "recipient_id": recipient,
    }
    if callback_data is not None:
        item["biz_opaque_callback_data"] = callback_data
    if status == "failed":
        item["errors"] = [
            {
                "code": 131047,
                "title": "Re-engagement message",
                "error_data": {
                    "details": "Message failed to send because more than 24 hours "
                    "have passed since the customer last replied to this number."
                },
            }
        ]
    return item
