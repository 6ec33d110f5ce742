"""Access policy: may this message reach the handler? A pure function of one account's keys.

The keys (``dm_policy``, ``allow_from``, ``group_policy``, ``group_allow_from``,
``require_mention``) are read from the live account configuration for every message, so a
reload applies them at once; pairing approvals come from the store beside ``allow_from``.
See ``docs/inbound.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.plugin import AccountConfig, ChatType, InboundMessage

WILDCARD = "*"


@dataclass(frozen=True)
class Decision:
    """``allowed`` or not, with a stable ``reason`` (logs and docs use it)."""

    allowed: bool
    reason: str
    #: The sender is unknown under ``dm_policy = "pairing"``: offer a pairing code.
    pair: bool = False


def sender_matches(entries: Iterable[str], message: InboundMessage) -> bool:
    """True when an entry is ``*``, the sender's id, or the sender's username (``@`` optional)."""
    sender = message.sender
    username = (sender.username or "").lstrip("@").lower()
    for raw in entries:
        entry = raw.strip().removeprefix(f"{message.provider}:")
        if entry == WILDCARD or entry == sender.id:
            return True
        if username and entry.lstrip("@").lower() == username:
            return True
    return False


def evaluate(account: AccountConfig, message: InboundMessage, is_approved: Callable[[str], bool]) -> Decision:
    """Decide for one message. ``is_approved(sender_id)`` asks the pairing store."""
    if message.chat.type is ChatType.DIRECT:
        return _direct(account, message, is_approved)
    return _group(account, message)


def _direct(account: AccountConfig, message: InboundMessage, is_approved: Callable[[str], bool]) -> Decision:
    policy = account.dm_policy
    if policy == "disabled":
        return Decision(False, "dm_disabled")
    if policy == "open":
        return Decision(True, "dm_open")
    if sender_matches(account.allow_from, message):
        return Decision(True, "allow_from")
    if is_approved(message.sender.id):
        return Decision(True, "approved")
    if policy == "pairing":
        return Decision(False, "pairing_required", pair=True)
    return Decision(False, "not_allowlisted")


def _group(account: AccountConfig, message: InboundMessage) -> Decision:
    policy = account.group_policy
    if policy == "disabled":
        return Decision(False, "group_disabled")
    if policy == "allowlist":
        entries = account.group_allow_from
        if not (sender_matches(entries, message) or message.chat.id in {e.strip() for e in entries}):
            return Decision(False, "group_not_allowlisted")
    # A poll vote answers the bot's own poll: it is never "unmentioned".
    if account.require_mention and not message.mentioned and message.type != "poll_vote":
        return Decision(False, "not_mentioned")
    return Decision(True, "group_allowlist" if policy == "allowlist" else "group_open")
