"""Ignore lists: senders whose messages are stored but never reach the agent."""

from __future__ import annotations

from fnmatch import fnmatchcase

from chatbridge.policies.model import IgnoreList

_USER_SERVERS = ("c.us", "s.whatsapp.net")


def _digits(phone: str) -> str:
    return "".join(c for c in phone if c.isdigit())


def _jid(address: str) -> str:
    """A chat id or JID in one spelling: lower case, and a WhatsApp user in WAHA's form —
    ``+91 98765…:12@s.whatsapp.net`` (Baileys, with a device) is ``9198765…@c.us``, so an
    entry copied from either gateway names the same person."""
    address = address.strip().lower()
    user, at, server = address.rpartition("@")
    if at and server in _USER_SERVERS:
        return f"{user.partition(':')[0].lstrip('+')}@c.us"
    return address


def is_ignored(
    ignore: IgnoreList,
    *,
    contact_id: str | None,
    phone: str | None,
    chat_id: str,
) -> bool:
    """Whether a message from this sender, in this chat, is kept from the agent.

    ``contact_id``: the channel's id of the sender; ``phone``: the sender's number in any
    format (compared by digits); ``chat_id``: the channel's conversation key (a WhatsApp
    JID such as ``14155550123@c.us`` or a group's ``…@g.us``, after any
    ``<provider>:<instance>:`` prefix). A JID entry matches the chat id exactly, in either
    gateway's spelling (``@c.us`` or ``@s.whatsapp.net``); an entry that is only a server,
    like Evolution's ``@g.us`` (every group) or ``@s.whatsapp.net`` (every direct chat),
    matches every chat there; a group pattern matches shell-style (``*@g.us``). All
    case-insensitively. A phone entry also matches the direct chat with that number.
    """
    if ignore.empty():
        return False
    if contact_id and contact_id in ignore.contact_ids:
        return True
    # a channel key may carry a prefix (WhatsApp: "<provider>:<instance>:<jid>"): the chat
    # id is its last part; patterns may name either
    chat = _jid(chat_id.rsplit(":", 1)[-1])
    chats = {chat_id.lower(), chat}
    if ignore.phones:
        numbers = {_digits(p) for p in ignore.phones} - {""}
        direct = chat.removesuffix("@c.us") if chat.endswith("@c.us") else ""
        if numbers & {_digits(phone or ""), direct}:
            return True
    if ignore.jids:
        jids = {_jid(j) for j in ignore.jids}
        if chats & jids:
            return True
        if "@" in chat and "@" + chat.rpartition("@")[2] in jids:
            return True
    return any(
        fnmatchcase(name, pattern.lower()) for pattern in ignore.group_patterns for name in chats
    )
