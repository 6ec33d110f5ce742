"""The outbound adapter: one Discord message per call (the core chunks, retries and queues)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

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

from .rest import DiscordClient
from .targets import resolve_target

TEXT_LIMIT = 2000
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # 10 MiB; boosted servers allow more
POLL_MAX_ANSWERS, POLL_QUESTION_LIMIT, POLL_ANSWER_LIMIT = 10, 300, 55
POLL_DEFAULT_HOURS, POLL_MAX_HOURS = 24, 768

#: Users may be pinged (a reply addressing someone), but never @everyone, @here or roles,
#: whatever text a handler relays.
ALLOWED_MENTIONS: Mapping[str, Any] = {"parse": ["users"], "replied_user": True}


class DiscordOutbound(BaseOutbound):
    """Sends through ``ctx.client`` (:class:`~providers.discord.rest.DiscordClient`)."""

    text_chunk_limit = TEXT_LIMIT
    chunker: Literal["markdown", "plain", "none"] = "markdown"
    #: Soft line limit per chunk: tall messages are hard to read in Discord's client.
    chunk_max_lines = 17
    caption_limit = TEXT_LIMIT
    media_max_bytes = {kind: DEFAULT_UPLOAD_LIMIT for kind in MediaKind}
    poll_max_options = POLL_MAX_ANSWERS

    def resolve_target(self, raw: str, account: AccountConfig) -> Target:
        return resolve_target(raw)

    def reply_target(self, message: InboundMessage) -> str:
        # A bare chat id would be ambiguous; DMs, channels and threads all have a channel id.
        return f"channel:{message.chat.id}"

    async def send_text(self, ctx: AccountContext, target: Target, text: str, opts: SendOptions) -> SendResult:
        if not text.strip():
            raise InvalidRequest("cannot send an empty Discord message")
        if len(text) > TEXT_LIMIT:
            raise InvalidRequest(f"Discord messages are at most {TEXT_LIMIT} characters, this one has {len(text)}")
        return await self._post(ctx, target, opts, {"content": text})

    async def send_media(self, ctx: AccountContext, target: Target, media: MediaPayload,
                         caption: str | None, opts: SendOptions) -> SendResult:
        payload = {"content": caption} if caption else {}
        return await self._post(ctx, target, opts, payload, files=((media.filename, media.data, media.mime),))

    async def send_poll(self, ctx: AccountContext, target: Target, poll: Poll, opts: SendOptions) -> SendResult:
        if not 1 <= len(poll.options) <= POLL_MAX_ANSWERS:
            raise InvalidRequest(f"a Discord poll has 1 to {POLL_MAX_ANSWERS} answers, not {len(poll.options)}")
        if len(poll.question) > POLL_QUESTION_LIMIT:
            raise InvalidRequest(f"a Discord poll question is at most {POLL_QUESTION_LIMIT} characters")
        if long := [o for o in poll.options if len(o) > POLL_ANSWER_LIMIT]:
            raise InvalidRequest(f"Discord poll answers are at most {POLL_ANSWER_LIMIT} characters: {long[0]!r}")
        hours = min(max(poll.duration_hours or POLL_DEFAULT_HOURS, 1), POLL_MAX_HOURS)
        return await self._post(ctx, target, opts, {"poll": {
            "question": {"text": poll.question},
            "answers": [{"poll_media": {"text": option}} for option in poll.options],
            "duration": hours,
            "allow_multiselect": poll.max_selections > 1,
            "layout_type": 1,
        }})

    async def _post(self, ctx: AccountContext, target: Target, opts: SendOptions, payload: dict[str, Any],
                    files: tuple[tuple[str, bytes, str], ...] = ()) -> SendResult:
        client = ctx.client
        if not isinstance(client, DiscordClient):
            raise AccountUnavailable(f"{ctx.key}: the Discord client is not open")
        if target.kind == "user":
            channel_id = await client.dm_channel(target.id)
        else:
            channel_id = opts.thread or target.thread or target.id
        payload["allowed_mentions"] = dict(ALLOWED_MENTIONS)
        if opts.reply_to:
            # The core passes reply_to on the first chunk only; a deleted original is not an error.
            payload["message_reference"] = {"message_id": opts.reply_to, "fail_if_not_exists": False}
        message = await client.create_message(channel_id, payload, files)
        return SendResult(message_id=str(message["id"]), chat_id=str(message.get("channel_id") or channel_id))
