"""Telegram target syntax: ``[telegram:|tg:][group:]<chat>[:topic:<n>]``.

``<chat>`` is a numeric chat id (``42``, ``-1001234567890``), ``@username``, a bare username of
five or more characters, or a ``t.me/<username>`` link. Unlike the original, anything else is
an error that lists the accepted formats instead of being passed to Telegram unchanged.
"""

from __future__ import annotations

import re

from gateway.errors import TargetError
from gateway.plugin import Target

ACCEPTED_FORMATS = (
    "Telegram target must be a chat id (42, -1001234567890), @username, or t.me/<username>, "
    "optionally followed by :topic:<n> for a forum topic (e.g. -1001234567890:topic:7); "
    "the prefixes telegram: and tg: are accepted"
)

_PREFIX = re.compile(r"^(?:telegram|tg|group):", re.IGNORECASE)
_TOPIC = re.compile(r"^(?P<chat>.+?):(?:topic:)?(?P<topic>\d+)$", re.IGNORECASE)
_CHAT_ID = re.compile(r"^-?\d+$")
_USERNAME = re.compile(r"^@?(?P<name>[A-Za-z][A-Za-z0-9_]{3,31})$")
_BARE_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{4,31}$")
_LINK = re.compile(r"^(?:https?://)?(?:www\.)?(?:t|telegram)\.me/(?P<name>[A-Za-z][A-Za-z0-9_]{3,31})/?$",
                   re.IGNORECASE)


def parse_target(raw: str) -> Target:
    """Parse ``raw`` into ``Target(kind="chat", id=<chat id or @username>, thread=<topic>)``."""
    text = (raw or "").strip()
    while True:
        stripped = _PREFIX.sub("", text, count=1).strip()
        if stripped == text:
            break
        text = stripped
    if not text:
        raise TargetError(f"empty target. {ACCEPTED_FORMATS}")

    thread: str | None = None
    topic = _TOPIC.match(text)
    if topic and not _CHAT_ID.match(text):
        text, thread = topic.group("chat"), str(int(topic.group("topic")))

    chat = _chat(text)
    if chat is None:
        raise TargetError(f"{raw.strip()!r} is not a Telegram target. {ACCEPTED_FORMATS}")
    return Target(kind="chat", id=chat, thread=thread)


def _chat(text: str) -> str | None:
    if _CHAT_ID.match(text):
        return str(int(text))
    link = _LINK.match(text)
    if link:
        return "@" + link.group("name")
    if text.startswith("@"):
        name = _USERNAME.match(text)
        return "@" + name.group("name") if name else None
    if _BARE_USERNAME.match(text):
        return "@" + text
    return None


def api_chat_id(chat: str) -> int | str:
    """The ``chat_id`` parameter: an integer for numeric ids, ``@username`` otherwise."""
    return int(chat) if _CHAT_ID.match(chat) else chat
