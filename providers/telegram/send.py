"""The outbound adapter: render, one Bot API call per primitive, errors classified.

Chunking, retries and rate-limit waits live in the core; this module makes exactly one
request per call except in two documented cases: HTML that Telegram cannot parse is sent
again as plain text, and a ``migrate_to_chat_id`` answer (group upgraded to a supergroup)
is followed once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.errors import AccountUnavailable, InvalidRequest
from gateway.plugin import (
    AccountConfig,
    AccountContext,
    BaseOutbound,
    InboundMessage,
    MediaKind,
    MediaPayload,
    Poll,
    SendOptions,
    SendResult,
    Target,
)

from .client import InputFile, TelegramAPIError, TelegramClient, TelegramError
from .errors import to_send_error
from .format import html_to_text, markdown_to_html, utf16_len
from .inbound import POLL_KEY_PREFIX, PollRecord
from .targets import api_chat_id, parse_target

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
POLL_MAX_OPTIONS = 12
POLL_QUESTION_LIMIT = 300
POLL_OPTION_LIMIT = 100
#: ``open_period`` is only sent for polls that close within this many seconds.
POLL_OPEN_PERIOD_MAX_S = 600
_MB = 1024 * 1024
#: Photos above this go as documents (Telegram's photo limit); other uploads stop at 50 MB.
PHOTO_MAX_BYTES = 10 * _MB
UPLOAD_MAX_BYTES = 50 * _MB

_MESSAGE_REF = re.compile(r"^(?:-?\d+:)?(?P<message>\d+)(?::edit:\d+)?$")


class TelegramOutbound(BaseOutbound):
    """The plugin's ``outbound`` adapter."""

    text_chunk_limit = TEXT_LIMIT
    chunker = "markdown"
    caption_limit = CAPTION_LIMIT
    media_max_bytes = {kind: UPLOAD_MAX_BYTES for kind in MediaKind}
    poll_max_options = POLL_MAX_OPTIONS

    def render(self, text: str) -> str:
        return markdown_to_html(text)

    def measure(self, text: str) -> int:
        return utf16_len(text)

    def resolve_target(self, raw: str, account: AccountConfig) -> Target:
        return parse_target(raw)

    def reply_target(self, message: InboundMessage) -> str:
        """Replies to a message in a forum topic go to that topic."""
        return f"{message.chat.id}:topic:{message.thread}" if message.thread else message.chat.id

    async def send_text(self, ctx: AccountContext, target: Target, text: str, opts: SendOptions) -> SendResult:
        """Send one markdown chunk as HTML; if Telegram cannot parse it, as plain text."""
        if not text.strip():
            raise InvalidRequest("message must be non-empty for Telegram sends")
        html = self.render(text)
        params = {**_addressing(target, opts), "text": html, "parse_mode": "HTML"}
        try:
            result = await _call(ctx, "sendMessage", params)
        except _Unparsable:
            params = {**_addressing(target, opts), "text": _plain_fallback(text, html, TEXT_LIMIT)}
            result = await _call(ctx, "sendMessage", params)
        return _result(result)

    async def send_media(self, ctx: AccountContext, target: Target, media: MediaPayload,
                         caption: str | None, opts: SendOptions) -> SendResult:
        """Upload one file with the method its MIME type calls for (multipart)."""
        method, field = media_method(media)
        upload = {field: InputFile(media.data, media.filename, media.mime)}
        params = _addressing(target, opts)
        if not caption or not caption.strip():
            return _result(await _call(ctx, method, params, files=upload))
        html = self.render(caption)
        try:
            result = await _call(ctx, method, {**params, "caption": html, "parse_mode": "HTML"}, files=upload)
        except _Unparsable:
            result = await _call(ctx, method, {**params, "caption": _plain_fallback(caption, html, CAPTION_LIMIT)},
                                 files=upload)
        return _result(result)

    async def send_poll(self, ctx: AccountContext, target: Target, poll: Poll, opts: SendOptions) -> SendResult:
        """A native poll; non-anonymous so votes arrive as ``poll_answer`` updates."""
        _check_poll(poll)
        params: dict[str, Any] = {
            **_addressing(target, opts),
            "question": poll.question,
            "options": [{"text": option} for option in poll.options],
            "is_anonymous": False,
            "allows_multiple_answers": poll.max_selections > 1,
        }
        if poll.duration_hours is not None and poll.duration_hours * 3600 <= POLL_OPEN_PERIOD_MAX_S:
            params["open_period"] = poll.duration_hours * 3600
        try:
            result = await _call(ctx, "sendPoll", params)
        except InvalidRequest as exc:
            if "non-anonymous" not in str(exc).lower():
                raise
            # Channels only take anonymous polls (whose votes Telegram does not report).
            result = await _call(ctx, "sendPoll", {**params, "is_anonymous": True})
        sent = _result(result)
        poll_info = result.get("poll") or {}
        if poll_info.get("id") is not None:
            record = PollRecord(chat_id=str(sent.chat_id), chat_type=str((result.get("chat") or {}).get("type")),
                                message_id=sent.message_id, options=poll.options)
            await ctx.store.set(POLL_KEY_PREFIX + str(poll_info["id"]), record.to_store())
        return SendResult(sent.message_id, sent.chat_id, {**sent.extra, "poll_id": poll_info.get("id")})


def media_method(media: MediaPayload) -> tuple[str, str]:
    """``(Bot API method, file field)`` for a payload, chosen by MIME type and size."""
    mime = media.mime.lower().split(";", 1)[0].strip()
    if mime == "image/gif":
        return "sendAnimation", "animation"
    if mime in ("image/jpeg", "image/png", "image/webp") and len(media.data) <= PHOTO_MAX_BYTES:
        return "sendPhoto", "photo"
    if mime.startswith("video/"):
        return "sendVideo", "video"
    if mime in ("audio/ogg", "audio/opus"):
        return "sendVoice", "voice"
    if mime.startswith("audio/"):
        return "sendAudio", "audio"
    return "sendDocument", "document"


class _Unparsable(Exception):
    """Telegram could not parse our HTML (``can't parse entities``)."""


def _addressing(target: Target, opts: SendOptions) -> dict[str, Any]:
    params: dict[str, Any] = {"chat_id": api_chat_id(target.id)}
    thread = str(opts.thread or target.thread or "").strip()
    if thread:
        if not thread.isdigit():
            raise InvalidRequest(f"Telegram thread must be a forum topic id (a number), not {thread!r}")
        params["message_thread_id"] = int(thread)
    reply_to = _reply_number(opts.reply_to)
    if reply_to is not None:
        params["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
    return params


def _reply_number(value: str | None) -> int | None:
    """The message id in ``42``, ``<chat>:42`` or ``<chat>:42:edit:<date>`` (inbound ids).

    Anything else (a poll vote's id) is not a message: the reply is dropped, not the send.
    """
    match = _MESSAGE_REF.match(str(value or "").strip())
    return int(match.group("message")) if match else None


def _plain_fallback(markdown: str, html: str, limit: int) -> str:
    # The markdown source is closest to what was meant; the visible text of the HTML is
    # never longer than the HTML, which the core already fitted into the limit.
    return markdown if utf16_len(markdown) <= limit else html_to_text(html)


def _check_poll(poll: Poll) -> None:
    if not 1 <= len(poll.options) <= POLL_MAX_OPTIONS:
        raise InvalidRequest(f"Telegram polls take 1-{POLL_MAX_OPTIONS} options, not {len(poll.options)}")
    if not 1 <= utf16_len(poll.question) <= POLL_QUESTION_LIMIT:
        raise InvalidRequest(f"Telegram poll questions are 1-{POLL_QUESTION_LIMIT} characters")
    long = [o for o in poll.options if not 1 <= utf16_len(o) <= POLL_OPTION_LIMIT]
    if long:
        raise InvalidRequest(f"Telegram poll options are 1-{POLL_OPTION_LIMIT} characters: {long[0][:40]!r}")


async def _call(ctx: AccountContext, method: str, params: Mapping[str, Any], *,
                files: Mapping[str, InputFile] | None = None) -> Mapping[str, Any]:
    client = ctx.client
    if not isinstance(client, TelegramClient):
        raise AccountUnavailable("telegram client is not open")
    chat = params.get("chat_id")
    migrated = False
    while True:
        try:
            return await client.call(method, params, files=files)
        except TelegramAPIError as exc:
            if exc.error_code == 400 and exc.mentions("can't parse entities") and params.get("parse_mode"):
                ctx.log.warning("telegram.html_rejected", method=method, description=exc.description)
                raise _Unparsable() from None
            if exc.migrate_to_chat_id is not None and not migrated:
                ctx.log.warning("telegram.chat_migrated", old_chat_id=chat, new_chat_id=exc.migrate_to_chat_id)
                params = {**params, "chat_id": exc.migrate_to_chat_id}
                migrated = True
                continue
            raise to_send_error(exc, params.get("chat_id")) from None
        except TelegramError as exc:
            raise to_send_error(exc, params.get("chat_id")) from None


def _result(result: Mapping[str, Any]) -> SendResult:
    chat = result.get("chat") or {}
    return SendResult(message_id=str(result.get("message_id")), chat_id=str(chat.get("id")),
                      extra={"date": result.get("date")})
