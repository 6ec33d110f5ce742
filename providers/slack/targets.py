"""Slack target strings -> :class:`Target`, and message references -> ``thread_ts``."""

from __future__ import annotations

import re

from gateway.errors import InvalidRequest, TargetError
from gateway.plugin import Target

FORMATS = ("Slack target must be channel:<id>, #<id>, user:<id> or <@U...> (ids look like C0123ABCD / "
           "U0123ABCD; an optional slack: prefix and a :thread:<ts> suffix are accepted)")

# Slack ids are upper case; channel *names* are always lower case, so "#general" cannot pass.
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]+")
_USER_ID = re.compile(r"[UW][A-Z0-9]+")
_MENTION = re.compile(r"<@([A-Za-z0-9]+)(?:\|[^>]*)?>")
TS_PATTERN = re.compile(r"\d{6,}\.\d{1,6}")


def parse_target(raw: str) -> Target:
    """Parse a target, or raise :class:`TargetError` naming the accepted formats."""
    text = raw.strip()
    if text.lower().startswith("slack:"):
        text = text[len("slack:"):].strip()
    thread = None
    head, sep, tail = text.rpartition(":thread:")
    if sep:
        if not TS_PATTERN.fullmatch(tail.strip()):
            raise TargetError(f"{FORMATS}; {tail!r} is not a message ts such as 1764064800.000100")
        text, thread = head.strip(), tail.strip()
    if not text:
        raise TargetError(FORMATS)

    kind, ident = _split(text)
    if kind == "user":
        if not _USER_ID.fullmatch(ident):
            raise TargetError(f"{FORMATS}; {raw.strip()!r} is not a user id")
        return Target("user", ident, thread)
    if not _CHANNEL_ID.fullmatch(ident):
        hint = " (use the channel id from the channel's details, not its name)" if kind == "#" else ""
        raise TargetError(f"{FORMATS}; {raw.strip()!r} is not a channel id{hint}")
    return Target("channel", ident, thread)


def _split(text: str) -> tuple[str, str]:
    if match := _MENTION.fullmatch(text):
        return "user", match.group(1)
    lowered = text.lower()
    for prefix, kind in (("channel:", "channel"), ("user:", "user"), ("#", "#"), ("@", "user")):
        if lowered.startswith(prefix):
            return kind, text[len(prefix):].strip()
    # A bare id is unambiguous in Slack: the first letter says what it is.
    if _USER_ID.fullmatch(text):
        return "user", text
    return "channel", text


def thread_ts(reference: str) -> str:
    """The ``ts`` in a message reference: ``1764064800.000100`` or ``C123:1764064800.000100``."""
    ts = reference.strip().rpartition(":")[2]
    if not TS_PATTERN.fullmatch(ts):
        raise InvalidRequest(f"Slack thread/reply reference must be a message ts such as 1764064800.000100 "
                             f"(optionally prefixed with '<channel>:'), got {reference!r}")
    return ts
