"""The handler's view of a message (DESIGN.md §7) and the replies a handler gives back.

The envelope is the one JSON shape every handler kind sees: the webhook body, the command's
stdin, the python handler's argument. It is also what the inbox stores, so a message
handled after a restart looks exactly like one handled at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.plugin import Chat, ChatType, InboundMessage, MediaKind, MediaRef, Sender

ENVELOPE_VERSION = 1


class ReplyFormatError(ValueError):
    """A handler returned something that is not a reply (the message says what was expected)."""


@dataclass(frozen=True)
class Reply:
    """One reply message: text and/or media (paths, URLs or data URLs the outbox loads)."""

    text: str = ""
    media: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.text.strip() and not self.media


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z``: seconds, or milliseconds when there are any."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def to_envelope(message: InboundMessage, *, received_at: datetime | None = None) -> dict[str, Any]:
    """The §7 JSON object for ``message`` (``timestamp`` falls back to the receive time)."""
    moment = message.timestamp or received_at or datetime.now(UTC)
    return {
        "v": ENVELOPE_VERSION,
        "type": message.type,
        "provider": message.provider,
        "account": message.account,
        "message": {
            "id": message.id,
            "chat": {"id": message.chat.id, "type": message.chat.type.value, "title": message.chat.title},
            "sender": {"id": message.sender.id, "name": message.sender.name, "username": message.sender.username},
            "text": message.text,
            "media": [{"kind": m.kind.value, "ref": m.ref, "mime": m.mime, "size": m.size, "filename": m.filename}
                      for m in message.media],
            "reply_to": message.reply_to,
            "thread": message.thread,
            "mentioned": message.mentioned,
            "timestamp": format_timestamp(moment),
        },
    }


def from_envelope(envelope: Mapping[str, Any]) -> InboundMessage:
    """Rebuild the :class:`InboundMessage` an envelope was made from (without ``raw``)."""
    body = envelope["message"]
    chat, sender = body["chat"], body["sender"]
    timestamp = body.get("timestamp")
    return InboundMessage(
        provider=envelope["provider"], account=envelope["account"], id=body["id"],
        chat=Chat(chat["id"], ChatType(chat["type"]), chat.get("title")),
        sender=Sender(sender["id"], sender.get("name"), sender.get("username")),
        text=body.get("text") or "",
        media=tuple(MediaRef(MediaKind(m["kind"]), m["ref"], m.get("mime"), m.get("size"), m.get("filename"))
                    for m in body.get("media") or ()),
        reply_to=body.get("reply_to"), thread=body.get("thread"), mentioned=bool(body.get("mentioned")),
        timestamp=datetime.fromisoformat(timestamp) if timestamp else None,
        type=envelope.get("type", "message"),
    )


def parse_replies(value: Any) -> list[Reply]:
    """Normalise what a handler returned: ``None``, a string, a reply dict, or a list of them.

    A webhook's ``{"replies": [...]}`` body is accepted too.
    """
    if value is None:
        return []
    if isinstance(value, Mapping) and "replies" in value:
        value = value["replies"]
        if value is None:
            return []
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, Sequence):
        raise ReplyFormatError(f"expected a string, a reply object or a list of them, got {type(value).__name__}")
    replies = [_one_reply(item, i) for i, item in enumerate(value)]
    return [r for r in replies if not r.empty]


def _one_reply(item: Any, index: int) -> Reply:
    if isinstance(item, str):
        return Reply(text=item)
    if not isinstance(item, Mapping):
        raise ReplyFormatError(f"replies[{index}] must be a string or an object, got {type(item).__name__}")
    unknown = set(item) - {"text", "media"}
    if unknown:
        raise ReplyFormatError(f"replies[{index}] has unknown keys {sorted(unknown)}; a reply takes text and media")
    text = item.get("text") or ""
    media = item.get("media") or []
    if not isinstance(text, str):
        raise ReplyFormatError(f"replies[{index}].text must be a string")
    if isinstance(media, str):
        media = [media]
    if not isinstance(media, Sequence) or not all(isinstance(m, str) and m for m in media):
        raise ReplyFormatError(f"replies[{index}].media must be a list of paths, URLs or data URLs")
    return Reply(text=text, media=tuple(media))
