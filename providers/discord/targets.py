"""Parse outbound target strings: ``channel:<id>``, ``user:<id>``, ``<@id>``, ``<#id>``..."""

from __future__ import annotations

import re

from gateway.errors import TargetError
from gateway.plugin import Target

FORMATS = ("channel:<id>", "channel:<id>:thread:<id>", "user:<id>", "<#id>", "<@id>")

_USER_MENTION = re.compile(r"^<@!?(\d+)>$")
_CHANNEL_MENTION = re.compile(r"^<#(\d+)>$")
_PREFIXED = re.compile(r"^(channel|user|thread):(\d+)(?::thread:(\d+))?$", re.IGNORECASE)
_SNOWFLAKE = re.compile(r"^\d{1,20}$")


def resolve_target(raw: str) -> Target:
    """``Target(kind="channel"|"user", id, thread)`` or TargetError naming the accepted formats."""
    value = raw.strip()
    if value.lower().startswith("discord:"):
        value = value[len("discord:"):].strip()
    if _SNOWFLAKE.match(value):
        raise TargetError(
            f"Discord target must be channel:<id> or user:<id> (a bare number is ambiguous: "
            f"use user:{value} for a DM or channel:{value} for a channel or thread)")
    if match := _USER_MENTION.match(value):
        return Target("user", match.group(1))
    if match := _CHANNEL_MENTION.match(value):
        return Target("channel", match.group(1))
    if value.startswith("@") and _SNOWFLAKE.match(value[1:]):
        return Target("user", value[1:])
    if match := _PREFIXED.match(value):
        kind, ident, thread = match.group(1).lower(), match.group(2), match.group(3)
        if kind == "user" and thread:
            raise TargetError(f"Discord target {raw!r}: a DM has no threads; use user:{ident}")
        return Target("user" if kind == "user" else "channel", ident, thread)
    raise TargetError(f"Discord target {raw!r} is not valid; use one of: {', '.join(FORMATS)} "
                      "(ids are numbers: Developer Mode → right-click → Copy ID)")
