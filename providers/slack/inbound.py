"""Slack events and button clicks -> :class:`InboundMessage`.

Message ids are ``<channel>:<ts>`` -- stable across redeliveries, and shared by the ``message``
and ``app_mention`` events of one message, so the core's dedupe keeps exactly one of them.
The send path accepts the same form as ``reply_to``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.plugin import Chat, ChatType, InboundMessage, MediaKind, MediaRef, Sender

from .send import POLL_ACTION_PREFIX

#: ``message`` subtypes that are still a person saying something; the rest (edits, deletes,
#: joins, topic changes, ...) are not messages for the handler.
_MESSAGE_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})
_CHANNEL_TYPES = {"im": ChatType.DIRECT, "mpim": ChatType.GROUP, "channel": ChatType.CHANNEL,
                  "group": ChatType.CHANNEL}


@dataclass(frozen=True)
class BotIdentity:
    """What "ourselves" looks like in events."""

    user_id: str
    bot_id: str | None


def message_from_event(event: Mapping[str, Any], *, provider: str, account: str, me: BotIdentity,
                       allow_bots: bool = False) -> InboundMessage | None:
    """Normalise a ``message``/``app_mention`` event; ``None`` for events that are not for the handler."""
    kind = event.get("type")
    if kind not in ("message", "app_mention"):
        return None
    subtype = event.get("subtype")
    if kind == "message" and subtype not in _MESSAGE_SUBTYPES and subtype != "bot_message":
        return None
    user = event.get("user")
    bot_id = event.get("bot_id")
    if (me.bot_id and bot_id == me.bot_id) or (user and user == me.user_id):
        return None  # our own post, echoed back
    if (bot_id or subtype == "bot_message") and not allow_bots:
        return None
    channel, ts = event.get("channel"), event.get("ts")
    if not channel or not ts:
        return None
    text = str(event.get("text") or "")
    thread = event.get("thread_ts")
    profile = event.get("user_profile") or {}
    return InboundMessage(
        provider=provider, account=account, id=f"{channel}:{ts}",
        chat=Chat(id=str(channel), type=_chat_type(str(channel), event.get("channel_type"))),
        sender=Sender(id=str(user or bot_id or ""), name=profile.get("real_name") or profile.get("display_name")
                      or event.get("username"), username=profile.get("name")),
        text=_plain(text),
        media=tuple(_media(f) for f in event.get("files") or () if isinstance(f, Mapping) and f.get("id")),
        thread=str(thread) if thread and thread != ts else None,
        mentioned=kind == "app_mention" or mentions(text, me.user_id),
        timestamp=_time(ts),
        raw=dict(event),
    )


def votes_from_block_actions(payload: Mapping[str, Any], *, provider: str, account: str) -> list[InboundMessage]:
    """One ``poll_vote`` per click on a Switchboard poll button in a ``block_actions`` payload."""
    if payload.get("type") != "block_actions":
        return []
    user = payload.get("user") or {}
    channel = str((payload.get("channel") or {}).get("id") or (payload.get("container") or {}).get("channel_id") or "")
    message = payload.get("message") or {}
    poll_ts = str(message.get("ts") or (payload.get("container") or {}).get("message_ts") or "")
    thread = message.get("thread_ts")
    votes = []
    for action in payload.get("actions") or ():
        parsed = parse_poll_action(str(action.get("action_id") or ""))
        if parsed is None or not channel:
            continue
        poll_id, index = parsed
        label = str((action.get("text") or {}).get("text") or index)
        action_ts = str(action.get("action_ts") or "")
        votes.append(InboundMessage(
            provider=provider, account=account, id=f"{channel}:{poll_ts}:vote:{user.get('id')}:{action_ts}",
            chat=Chat(id=channel, type=_chat_type(channel, None)),
            sender=Sender(id=str(user.get("id") or ""), name=user.get("name"), username=user.get("username")),
            text=label, reply_to=f"{channel}:{poll_ts}" if poll_ts else None,
            thread=str(thread) if thread and thread != poll_ts else None,
            timestamp=_time(action_ts), type="poll_vote",
            raw={"poll_id": poll_id, "option_index": index, "option": label, "block_actions": dict(payload)},
        ))
    return votes


def parse_poll_action(action_id: str) -> tuple[str, int] | None:
    """``switchboard_poll:<poll_id>:<index>`` -> ``(poll_id, index)``."""
    prefix, _, rest = action_id.partition(":")
    poll_id, _, index = rest.partition(":")
    if prefix != POLL_ACTION_PREFIX or not poll_id or not index.isdigit():
        return None
    return poll_id, int(index)


def mentions(text: str, user_id: str) -> bool:
    """True when ``text`` (raw mrkdwn) contains ``<@user_id>`` or ``<@user_id|name>``."""
    return bool(user_id) and re.search(rf"<@{re.escape(user_id)}(?:\|[^>]*)?>", text) is not None


def _chat_type(channel: str, channel_type: object) -> ChatType:
    if isinstance(channel_type, str) and channel_type in _CHANNEL_TYPES:
        return _CHANNEL_TYPES[channel_type]
    return ChatType.DIRECT if channel.startswith("D") else ChatType.CHANNEL


def _media(file: Mapping[str, Any]) -> MediaRef:
    mime = file.get("mimetype") or None
    size = file.get("size")
    return MediaRef(kind=MediaKind.from_mime(mime or ""), ref=str(file["id"]), mime=mime,
                    size=int(size) if isinstance(size, int) else None, filename=file.get("name") or None)


def _plain(text: str) -> str:
    # Slack escapes exactly these three; mentions and links keep their <...> form.
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _time(ts: object) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(str(ts)), UTC)
    except (TypeError, ValueError, OverflowError):
        return None
