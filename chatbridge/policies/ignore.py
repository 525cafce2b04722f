"""Ignore lists: senders whose messages are stored but never reach the agent."""

from __future__ import annotations

from fnmatch import fnmatchcase

from chatbridge.policies.model import IgnoreList


def _digits(phone: str) -> str:
    return "".join(c for c in phone if c.isdigit())


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
    ``<provider>:<instance>:`` prefix). A JID entry matches the chat
    id exactly, a group pattern matches it shell-style (``*@g.us``), case-insensitively.
    """
    if ignore.empty():
        return False
    if contact_id and contact_id in ignore.contact_ids:
        return True
    if phone and _digits(phone) and _digits(phone) in {_digits(p) for p in ignore.phones}:
        return True
    # a channel key may carry a prefix (WhatsApp: "<provider>:<instance>:<jid>"): the chat
    # id is its last part; patterns may name either
    chats = {chat_id.lower(), chat_id.rsplit(":", 1)[-1].lower()}
    if chats & {j.lower() for j in ignore.jids}:
        return True
    return any(
        fnmatchcase(chat, pattern.lower()) for pattern in ignore.group_patterns for chat in chats
    )
