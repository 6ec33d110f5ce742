"""Bot API updates to :class:`~gateway.plugin.InboundMessage`.

Message ids are ``<chat id>:<message id>`` because Telegram numbers messages per chat and the
inbound pipeline dedupes on (provider, account, message id). ``reply_to`` uses the same form;
the send path accepts it (or a bare message id) as ``reply_to``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.errors import AccountUnavailable
from gateway.plugin import AccountContext, AccountKey, Chat, ChatType, InboundMessage, MediaKind, MediaRef, Sender

from .client import BotInfo, TelegramClient, TelegramError
from .config import TelegramAccountConfig
from .errors import to_send_error

#: What ``getUpdates``/``setWebhook`` ask for. Edits are always requested and filtered here,
#: so ``edited_messages`` can change without re-registering anything.
ALLOWED_UPDATES = ("message", "edited_message", "channel_post", "edited_channel_post", "poll_answer")

_CHAT_TYPES = {"private": ChatType.DIRECT, "group": ChatType.GROUP, "supergroup": ChatType.GROUP,
               "channel": ChatType.CHANNEL}

POLL_KEY_PREFIX = "poll:"


@dataclass(frozen=True)
class PollRecord:
    """What the send path remembers about a poll so votes can name their chat."""

    chat_id: str
    chat_type: str
    message_id: str
    options: tuple[str, ...]

    def to_store(self) -> dict[str, Any]:
        return {"chat_id": self.chat_id, "chat_type": self.chat_type, "message_id": self.message_id,
                "options": list(self.options)}

    @classmethod
    def from_store(cls, value: Mapping[str, Any]) -> PollRecord:
        return cls(str(value["chat_id"]), str(value.get("chat_type") or "private"), str(value["message_id"]),
                   tuple(value.get("options") or ()))


def message_ref(chat_id: Any, message_id: Any) -> str:
    return f"{chat_id}:{message_id}"


def poll_id_of(update: Mapping[str, Any]) -> str | None:
    answer = update.get("poll_answer")
    return str(answer["poll_id"]) if isinstance(answer, Mapping) and "poll_id" in answer else None


def parse_update(update: Mapping[str, Any], *, key: AccountKey, bot: BotInfo, edited_messages: bool,
                 poll: PollRecord | None = None) -> InboundMessage | None:
    """One update to one inbound message, or ``None`` for updates Switchboard does not handle."""
    if "poll_answer" in update:
        return _poll_vote(update, key=key, poll=poll)
    for field, edited in (("message", False), ("channel_post", False),
                          ("edited_message", True), ("edited_channel_post", True)):
        message = update.get(field)
        if isinstance(message, Mapping):
            if edited and not edited_messages:
                return None
            return _message(update, message, key=key, bot=bot, edited=edited)
    return None


def _message(update: Mapping[str, Any], message: Mapping[str, Any], *, key: AccountKey, bot: BotInfo,
             edited: bool) -> InboundMessage | None:
    text = message.get("text") or message.get("caption") or ""
    media = _media(message)
    if not text and not media:
        return None  # service messages (joins, pins, topic edits), locations, contacts...
    chat = message.get("chat") or {}
    chat_id = chat.get("id")
    is_topic = bool(message.get("is_topic_message"))
    thread = str(message["message_thread_id"]) if is_topic and "message_thread_id" in message else None

    reply = message.get("reply_to_message")
    # In a forum topic every message "replies" to the topic's creation message.
    if isinstance(reply, Mapping) and is_topic and str(reply.get("message_id")) == thread:
        reply = None
    reply_to = message_ref(chat_id, reply["message_id"]) if isinstance(reply, Mapping) else None

    message_id = message_ref(chat_id, message.get("message_id"))
    if edited:
        message_id += f":edit:{message.get('edit_date') or update.get('update_id')}"
    stamp = message.get("edit_date") if edited else message.get("date")
    return InboundMessage(
        provider=key.provider,
        account=key.account,
        id=message_id,
        chat=Chat(id=str(chat_id), type=_CHAT_TYPES.get(str(chat.get("type")), ChatType.GROUP),
                  title=chat.get("title") or _full_name(chat)),
        sender=_sender(message),
        text=text,
        media=media,
        reply_to=reply_to,
        thread=thread,
        mentioned=_mentions_bot(message, bot, reply if isinstance(reply, Mapping) else None),
        timestamp=datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, (int, float)) else None,
        raw=update,
    )


def _sender(message: Mapping[str, Any]) -> Sender:
    user = message.get("from")
    if isinstance(user, Mapping):
        return Sender(id=str(user.get("id")), name=_full_name(user), username=user.get("username"))
    chat = message.get("sender_chat") or message.get("chat") or {}
    return Sender(id=str(chat.get("id")), name=chat.get("title") or _full_name(chat), username=chat.get("username"))


def _full_name(who: Mapping[str, Any]) -> str | None:
    name = " ".join(p for p in (who.get("first_name"), who.get("last_name")) if p)
    return name or None


def _media(message: Mapping[str, Any]) -> tuple[MediaRef, ...]:
    refs: list[MediaRef] = []
    photos = message.get("photo")
    if isinstance(photos, Sequence) and photos:
        largest = max(photos, key=lambda p: (p.get("width", 0) * p.get("height", 0), p.get("file_size", 0)))
        refs.append(MediaRef(MediaKind.IMAGE, str(largest["file_id"]), "image/jpeg", largest.get("file_size")))
    defaults = (("animation", "video/mp4"), ("video", "video/mp4"), ("video_note", "video/mp4"),
                ("voice", "audio/ogg"), ("audio", "audio/mpeg"), ("sticker", "image/webp"),
                ("document", "application/octet-stream"))
    for field, default_mime in defaults:
        item = message.get(field)
        if not isinstance(item, Mapping) or "file_id" not in item:
            continue
        if field == "document" and "animation" in message:
            continue  # Telegram repeats an animation as a document for old clients
        mime = str(item.get("mime_type") or default_mime)
        refs.append(MediaRef(MediaKind.from_mime(mime), str(item["file_id"]), mime, item.get("file_size"),
                             item.get("file_name")))
    return tuple(refs)


def _mentions_bot(message: Mapping[str, Any], bot: BotInfo, reply: Mapping[str, Any] | None) -> bool:
    if reply is not None and (reply.get("from") or {}).get("id") == bot.id:
        return True
    handle = "@" + bot.username.lower() if bot.username else None
    for text_field, entities_field in (("text", "entities"), ("caption", "caption_entities")):
        text = message.get(text_field)
        entities = message.get(entities_field)
        if not text or not isinstance(entities, Sequence):
            continue
        encoded = text.encode("utf-16-le")
        for entity in entities:
            kind = entity.get("type")
            if kind == "text_mention" and (entity.get("user") or {}).get("id") == bot.id:
                return True
            if kind in ("mention", "bot_command") and handle:
                # Entity offsets count UTF-16 code units.
                start, length = int(entity.get("offset", 0)), int(entity.get("length", 0))
                word = encoded[2 * start:2 * (start + length)].decode("utf-16-le", "replace").lower()
                if (kind == "mention" and word == handle) or (kind == "bot_command" and word.endswith(handle)):
                    return True
    return False


def _poll_vote(update: Mapping[str, Any], *, key: AccountKey, poll: PollRecord | None) -> InboundMessage:
    answer = update["poll_answer"]
    user = answer.get("user")
    voter = (Sender(id=str(user.get("id")), name=_full_name(user), username=user.get("username"))
             if isinstance(user, Mapping) else _sender({"sender_chat": answer.get("voter_chat") or {}}))
    option_ids = [int(i) for i in answer.get("option_ids") or ()]
    if poll is not None:
        chosen = [poll.options[i] if 0 <= i < len(poll.options) else str(i) for i in option_ids]
        chat = Chat(id=poll.chat_id, type=_CHAT_TYPES.get(poll.chat_type, ChatType.GROUP))
        reply_to: str | None = message_ref(poll.chat_id, poll.message_id)
    else:
        # A poll this account did not send (or sent before it remembered polls): the vote
        # carries no chat, so it is attributed to the voter's private chat.
        chosen = [str(i) for i in option_ids]
        chat = Chat(id=voter.id, type=ChatType.DIRECT)
        reply_to = None
    return InboundMessage(
        provider=key.provider,
        account=key.account,
        id=f"poll_answer:{answer.get('poll_id')}:{voter.id}:{update.get('update_id')}",
        chat=chat,
        sender=voter,
        text=", ".join(chosen),
        reply_to=reply_to,
        type="poll_vote",
        raw=update,
    )


async def download_media(ctx: AccountContext, media: MediaRef) -> bytes:
    """Fetch inbound media lazily (``getFile`` + the file URL), capped by ``media_max_mb``."""
    client = ctx.client
    if not isinstance(client, TelegramClient):
        raise AccountUnavailable("telegram client is not open")
    account = ctx.account
    max_bytes = account.download_max_bytes if isinstance(account, TelegramAccountConfig) else 20 * 1024 * 1024
    try:
        return await client.download(media.ref, max_bytes=max_bytes)
    except TelegramError as exc:
        raise to_send_error(exc, f"file {media.ref}") from None
