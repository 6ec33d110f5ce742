"""Gateway dispatches to :class:`~gateway.plugin.InboundMessage`, plus what that needs to know
about channels (thread or not, parent, name), learned from the GUILDS intent's events."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.plugin import AccountKey, Chat, ChatType, InboundMessage, MediaKind, MediaRef, Sender

from .config import DiscordAccountConfig

THREAD_TYPES = frozenset({10, 11, 12})  # announcement, public and private threads
#: Message types a person writes (DEFAULT, REPLY); joins, pins, boosts... are skipped.
USER_MESSAGE_TYPES = frozenset({0, 19})


@dataclass(frozen=True)
class ChannelInfo:
    type: int
    guild_id: str | None = None
    parent_id: str | None = None
    name: str | None = None


class ChannelDirectory:
    """Channels and threads of the guilds the bot is in, kept current from dispatches."""

    def __init__(self) -> None:
        self._channels: dict[str, ChannelInfo] = {}

    def get(self, channel_id: str) -> ChannelInfo | None:
        return self._channels.get(channel_id)

    def learn(self, event: str, data: Any) -> None:
        if not isinstance(data, Mapping):
            return
        if event == "GUILD_CREATE":
            guild_id = str(data.get("id"))
            for channel in [*data.get("channels", ()), *data.get("threads", ())]:
                self._add(channel, guild_id)
        elif event == "THREAD_LIST_SYNC":
            for channel in data.get("threads", ()):
                self._add(channel, data.get("guild_id"))
        elif event in ("CHANNEL_CREATE", "CHANNEL_UPDATE", "THREAD_CREATE", "THREAD_UPDATE"):
            self._add(data, data.get("guild_id"))
        elif event in ("CHANNEL_DELETE", "THREAD_DELETE"):
            self._channels.pop(str(data.get("id")), None)
        elif event == "GUILD_DELETE" and not data.get("unavailable"):
            gone = str(data.get("id"))
            self._channels = {k: v for k, v in self._channels.items() if v.guild_id != gone}

    def _add(self, channel: Any, guild_id: Any) -> None:
        if isinstance(channel, Mapping) and "id" in channel:
            guild = channel.get("guild_id") or guild_id
            self._channels[str(channel["id"])] = ChannelInfo(
                type=int(channel.get("type", 0)), guild_id=str(guild) if guild else None,
                parent_id=str(channel["parent_id"]) if channel.get("parent_id") else None,
                name=channel.get("name"))


def is_allowed(config: DiscordAccountConfig, guild_id: str | None, channel_id: str,
               channels: ChannelDirectory) -> bool:
    """The ``guilds`` / ``channels`` allowlists (DMs are the core's dm_policy's business)."""
    if guild_id is None:
        return True
    if config.guilds and guild_id not in config.guilds:
        return False
    if config.channels and channel_id not in config.channels:
        info = channels.get(channel_id)
        return bool(info and info.type in THREAD_TYPES and info.parent_id in config.channels)
    return True


def _chat(guild_id: str | None, channel_id: str, channels: ChannelDirectory) -> tuple[Chat, str | None]:
    """The chat and the thread id (threads are chats of their own; replies go into them)."""
    info = channels.get(channel_id)
    if guild_id is None:
        return Chat(channel_id, ChatType.DIRECT), None
    if info is not None and info.type in THREAD_TYPES:
        return Chat(channel_id, ChatType.THREAD, info.name), channel_id
    return Chat(channel_id, ChatType.CHANNEL, info.name if info else None), None


def message_from_create(data: Mapping[str, Any], *, key: AccountKey, bot_user_id: str | None,
                        channels: ChannelDirectory) -> InboundMessage | None:
    """A MESSAGE_CREATE as an InboundMessage; ``None`` for our own messages and system messages."""
    author = data.get("author") or {}
    if bot_user_id is not None and str(author.get("id")) == bot_user_id:
        return None
    if int(data.get("type", 0)) not in USER_MESSAGE_TYPES:
        return None
    guild_id = str(data["guild_id"]) if data.get("guild_id") else None
    chat, thread = _chat(guild_id, str(data["channel_id"]), channels)
    member = data.get("member") or {}
    reference = data.get("message_reference") or {}
    referenced = data.get("referenced_message") or {}
    mentioned = bot_user_id is not None and (
        any(str(m.get("id")) == bot_user_id for m in data.get("mentions") or ())
        or str((referenced.get("author") or {}).get("id")) == bot_user_id)
    return InboundMessage(
        provider=key.provider, account=key.account, id=str(data["id"]), chat=chat,
        sender=Sender(str(author.get("id")), member.get("nick") or author.get("global_name") or author.get("username"),
                      author.get("username")),
        text=str(data.get("content") or ""),
        media=tuple(_media(a) for a in data.get("attachments") or ()),
        reply_to=str(reference["message_id"]) if reference.get("message_id") and reference.get("type", 0) == 0 else None,
        thread=thread, mentioned=mentioned, timestamp=_timestamp(data.get("timestamp")),
        type="message", raw=data)


def vote_from_add(data: Mapping[str, Any], *, key: AccountKey, bot_user_id: str | None,
                  channels: ChannelDirectory, event_id: str,
                  answer_text: Callable[[str, int], str | None]) -> InboundMessage | None:
    """A MESSAGE_POLL_VOTE_ADD as an InboundMessage of type ``poll_vote``.

    ``text`` is the answer's text when the poll was sent through this client, else empty;
    ``reply_to`` is the poll message. ``event_id`` makes re-votes distinct but replays equal.
    """
    user_id = str(data.get("user_id"))
    if bot_user_id is not None and user_id == bot_user_id:
        return None
    guild_id = str(data["guild_id"]) if data.get("guild_id") else None
    chat, thread = _chat(guild_id, str(data["channel_id"]), channels)
    message_id, answer_id = str(data["message_id"]), int(data["answer_id"])
    return InboundMessage(
        provider=key.provider, account=key.account, id=f"vote:{message_id}:{user_id}:{answer_id}:{event_id}",
        chat=chat, sender=Sender(user_id), text=answer_text(message_id, answer_id) or "",
        reply_to=message_id, thread=thread, type="poll_vote", raw=data)


def _media(attachment: Mapping[str, Any]) -> MediaRef:
    filename = attachment.get("filename")
    mime = attachment.get("content_type") or (mimetypes.guess_type(filename)[0] if filename else None)
    return MediaRef(kind=MediaKind.from_mime(mime or "application/octet-stream"),
                    ref=str(attachment.get("url") or attachment.get("id")), mime=mime,
                    size=attachment.get("size"), filename=filename)


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
