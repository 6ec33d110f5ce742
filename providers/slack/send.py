"""The outbound adapter: text, files (upload v2) and polls emulated with Block Kit buttons."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import aiohttp

from gateway.errors import AccountUnavailable, InvalidRequest, PayloadTooLarge, TransientSendError
from gateway.plugin import (
    AccountConfig,
    AccountContext,
    BaseOutbound,
    ChatType,
    InboundMessage,
    MediaKind,
    MediaPayload,
    Poll,
    SendOptions,
    SendResult,
    Target,
)

from .client import SlackClient, api_error, slack_errors
from .mrkdwn import to_mrkdwn
from .targets import TS_PATTERN, parse_target, thread_ts

#: action_id of poll buttons is ``switchboard_poll:<poll_id>:<option index>``.
POLL_ACTION_PREFIX = "switchboard_poll"
POLL_MAX_OPTIONS = 25          # Block Kit: at most 25 elements in an actions block
_SECTION_TEXT_LIMIT = 3000     # Block Kit: section text
_BUTTON_TEXT_LIMIT = 75        # Block Kit: button text
_MAX_FILE_BYTES = 1024 ** 3    # files.getUploadURLExternal: 1 GiB


class SlackOutbound(BaseOutbound):
    """Sends through the account's shared :class:`SlackClient` (``ctx.client``)."""

    text_chunk_limit: int = 4000
    chunker: Literal["markdown", "plain", "none"] = "markdown"
    caption_limit: int | None = 4000
    media_max_bytes: Mapping[MediaKind, int] = MappingProxyType(dict.fromkeys(MediaKind, _MAX_FILE_BYTES))
    poll_max_options: int | None = POLL_MAX_OPTIONS

    def resolve_target(self, raw: str, account: AccountConfig) -> Target:
        return parse_target(raw)

    def render(self, text: str) -> str:
        return to_mrkdwn(text)

    def reply_target(self, message: InboundMessage) -> str:
        """The chat of ``message``, in the thread a reply belongs to.

        A reply on Slack is a thread reply, and the thread rides in the target so that every
        chunk of a long reply lands in it (the outbox passes ``reply_to`` on the first only).
        A direct message outside a thread is answered in the conversation itself, as a person
        would.
        """
        thread = message.thread
        if thread is None and message.chat.type == ChatType.DIRECT:
            return f"channel:{message.chat.id}"
        if thread is None:
            reference = message.reply_to if message.type == "poll_vote" else message.id
            ts = (reference or "").rpartition(":")[2]
            thread = ts if TS_PATTERN.fullmatch(ts) else None
        return f"channel:{message.chat.id}" + (f":thread:{thread}" if thread else "")

    async def send_text(self, ctx: AccountContext, target: Target, text: str, opts: SendOptions) -> SendResult:
        client = _client(ctx)
        channel = await _channel(client, target)
        payload: dict[str, Any] = {"channel": channel, "text": self.render(text)}
        payload.update(_thread(target, opts))
        return await _post_message(client, payload)

    async def send_media(self, ctx: AccountContext, target: Target, media: MediaPayload,
                         caption: str | None, opts: SendOptions) -> SendResult:
        client = _client(ctx)
        channel = await _channel(client, target)
        thread = _thread(target, opts).get("thread_ts")
        with slack_errors("files.getUploadURLExternal", transient=TransientSendError):
            ticket = await client.web.files_getUploadURLExternal(filename=media.filename, length=len(media.data))
        file_id, upload_url = ticket.get("file_id"), ticket.get("upload_url")
        if not file_id or not upload_url:
            raise TransientSendError("files.getUploadURLExternal returned no upload_url/file_id")
        await _upload(client, upload_url, media)
        with slack_errors("files.completeUploadExternal", transient=TransientSendError):
            await client.web.files_completeUploadExternal(
                files=[{"id": file_id, "title": media.filename}], channel_id=channel, thread_ts=thread,
                initial_comment=self.render(caption) if caption else None)
        return SendResult(message_id=str(file_id), chat_id=channel, extra={"file_id": str(file_id)})

    async def send_poll(self, ctx: AccountContext, target: Target, poll: Poll, opts: SendOptions) -> SendResult:
        client = _client(ctx)
        channel = await _channel(client, target)
        poll_id = uuid.uuid4().hex[:12]
        payload: dict[str, Any] = {"channel": channel, "text": self._poll_fallback(poll),
                                   "blocks": self.poll_blocks(poll_id, poll)}
        payload.update(_thread(target, opts))
        result = await _post_message(client, payload)
        return SendResult(message_id=result.message_id, chat_id=result.chat_id, extra={"poll_id": poll_id})

    def poll_blocks(self, poll_id: str, poll: Poll) -> list[dict[str, Any]]:
        """A section with the question and one button per option."""
        if len(poll.options) > POLL_MAX_OPTIONS:
            raise InvalidRequest(f"Slack polls take at most {POLL_MAX_OPTIONS} options, got {len(poll.options)}")
        question = self.render(poll.question)
        if len(question) > _SECTION_TEXT_LIMIT:
            raise InvalidRequest(f"Slack poll question is {len(question)} characters after formatting; "
                                 f"Block Kit allows {_SECTION_TEXT_LIMIT}")
        buttons = [{"type": "button", "action_id": f"{POLL_ACTION_PREFIX}:{poll_id}:{index}", "value": str(index),
                    "text": {"type": "plain_text", "text": _shorten(option, _BUTTON_TEXT_LIMIT), "emoji": True}}
                   for index, option in enumerate(poll.options)]
        return [
            {"type": "section", "block_id": f"{POLL_ACTION_PREFIX}:{poll_id}",
             "text": {"type": "mrkdwn", "text": question}},
            {"type": "actions", "block_id": f"{POLL_ACTION_PREFIX}:{poll_id}:options", "elements": buttons},
        ]

    def _poll_fallback(self, poll: Poll) -> str:
        # Shown in notifications and by clients that cannot render blocks.
        lines = [self.render(poll.question)]
        lines += [f"{index + 1}. {self.render(option)}" for index, option in enumerate(poll.options)]
        return "\n".join(lines)


def _client(ctx: AccountContext) -> SlackClient:
    client = ctx.client
    if not isinstance(client, SlackClient):
        raise AccountUnavailable("the Slack account has no open client (is it running?)")
    return client


async def _channel(client: SlackClient, target: Target) -> str:
    if target.kind == "user":
        return await client.dm_channel(target.id)
    return target.id


def _thread(target: Target, opts: SendOptions) -> dict[str, str]:
    # Slack has no reply-to: a reply is a thread under the replied-to message -- except in a
    # direct conversation (ids starting with D), where a top-level answer reads naturally.
    reply_to = opts.reply_to if not target.id.startswith("D") else None
    reference = opts.thread or target.thread or reply_to
    return {"thread_ts": thread_ts(reference)} if reference else {}


async def _post_message(client: SlackClient, payload: dict[str, Any]) -> SendResult:
    with slack_errors("chat.postMessage", transient=TransientSendError):
        response = await client.web.chat_postMessage(**payload)
    return SendResult(message_id=str(response.get("ts")), chat_id=str(response.get("channel") or payload["channel"]))


async def _upload(client: SlackClient, url: str, media: MediaPayload) -> None:
    """Step two of the v2 flow: POST the raw bytes to the URL Slack handed out."""
    try:
        async with client.session.post(url, data=media.data,
                                       headers={"Content-Type": "application/octet-stream"}) as response:
            body = await response.text()
            status = response.status
            headers = response.headers
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise TransientSendError(f"Slack file upload failed: network error: {exc!r}") from None
    if status == 200:
        return
    if status == 413:
        raise PayloadTooLarge(f"Slack refused the upload of {media.filename} ({len(media.data)} bytes): HTTP 413")
    raise api_error("file upload", _UploadResponse(status, headers, body), transient=TransientSendError)


class _UploadResponse:
    """Adapts the upload endpoint's plain-text answer to :func:`api_error`."""

    def __init__(self, status: int, headers: Any, body: str):
        self.status_code, self.headers, self.data = status, headers, {"error": f"HTTP {status}: {body[:200]}"}


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
