"""The ``webchat`` provider: meta, config, and the adapters wired together.

One account (``default``) serves a small page at ``path`` (``/chat``) on the daemon's control
listener. Each browser tab is one direct chat whose id the page generates and keeps in
``sessionStorage``; the sender is that chat. Replies are pushed over the tab's websocket.
"""

from __future__ import annotations

import base64
import re
import uuid

import anyio
from pydantic import Field, field_validator

from gateway.errors import AccountUnavailable, ConfigInvalid, TargetError
from gateway.plugin import (
    AccountConfig,
    AccountContext,
    BaseOutbound,
    Capabilities,
    ChatType,
    ConfigSpec,
    MediaKind,
    MediaPayload,
    PluginMeta,
    ProviderPlugin,
    ReloadSpec,
    SendOptions,
    SendResult,
    Target,
)
from gateway.status import utcnow_iso
from providers.webchat.hub import WebchatHub, open_hub
from providers.webchat.server import CHAT_ID, WebchatServer

MEDIA_MAX_BYTES = 5 * 1024 * 1024


class WebchatAccount(AccountConfig):
    """Keys of ``[providers.webchat]``."""

    #: Where the page is served on the control listener.
    path: str = "/chat"
    #: Shown in the page's header and tab title.
    title: str = "Switchboard"
    max_message_chars: int = Field(4000, ge=1, le=100_000)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        value = "/" + value.strip().strip("/")
        if value == "/" or not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
            raise ValueError("must be a URL path like /chat")
        return value


class WebchatGateway:
    async def run_account(self, ctx: AccountContext) -> None:
        account = ctx.account
        hub = ctx.client
        assert isinstance(account, WebchatAccount) and isinstance(hub, WebchatHub)
        base_url = getattr(ctx.webhooks, "base_url", "")
        if base_url is None:
            raise ConfigInvalid("the web chat is served on the control TCP listener, and none is configured",
                                fix='set gateway.control.listen (e.g. "127.0.0.1:8787") or disable providers.webchat')
        server = WebchatServer(ctx, hub, account.path)
        try:
            path = ctx.webhooks.mount_path(account.path, server, methods=("GET",))
        except ValueError as exc:
            raise ConfigInvalid(f"providers.webchat.path: {exc}") from None
        try:
            hub.on_change = lambda count: ctx.set_status(open_chats=count)
            url = f"{base_url}{path}"
            ctx.set_status(url=url, open_chats=len(hub))
            ctx.started()
            ctx.log.info("webchat.ready", url=url)
            await anyio.sleep_forever()
        finally:
            ctx.webhooks.unmount_path(path)
            hub.on_change = lambda _count: None


class WebchatOutbound(BaseOutbound):
    text_chunk_limit = 8000
    chunker = "plain"
    caption_limit = 8000
    media_max_bytes = {kind: MEDIA_MAX_BYTES for kind in MediaKind}

    def resolve_target(self, raw: str, account: AccountConfig) -> Target:
        value = raw.strip().removeprefix("webchat:").removeprefix("chat:")
        if not CHAT_ID.match(value):
            raise TargetError(f"Webchat target must be chat:<id> or <id>, the chat id of a browser tab "
                              f"(8-64 characters of A-Z a-z 0-9 _ -), got {raw!r}")
        return Target("chat", value)

    async def send_text(self, ctx: AccountContext, target: Target, text: str, opts: SendOptions) -> SendResult:
        message_id = uuid.uuid4().hex
        await _hub(ctx).push(target.id, {"type": "message", "id": message_id, "text": text,
                                         "reply_to": _client_id(opts.reply_to), "at": utcnow_iso()})
        return SendResult(message_id, chat_id=target.id)

    async def send_media(self, ctx: AccountContext, target: Target, media: MediaPayload,
                         caption: str | None, opts: SendOptions) -> SendResult:
        message_id = uuid.uuid4().hex
        data = f"data:{media.mime};base64,{base64.b64encode(media.data).decode()}"
        await _hub(ctx).push(target.id, {"type": "media", "id": message_id, "kind": media.kind.value,
                                         "mime": media.mime, "filename": media.filename, "data": data,
                                         "caption": caption, "reply_to": _client_id(opts.reply_to),
                                         "at": utcnow_iso()})
        return SendResult(message_id, chat_id=target.id)


def _hub(ctx: AccountContext) -> WebchatHub:
    if not isinstance(ctx.client, WebchatHub):
        raise AccountUnavailable("the web chat is not running")
    return ctx.client


def _client_id(reply_to: str | None) -> str | None:
    """Our message ids are ``<chat>:<page id>``; the page knows only its own part."""
    return reply_to.rpartition(":")[2] if reply_to else None


plugin = ProviderPlugin(
    id="webchat",
    meta=PluginMeta(label="Web chat", selection_label="Web chat (built-in page at /chat)",
                    blurb="A chat page served by the daemon itself: try a handler in a browser."),
    capabilities=Capabilities(chat_types=frozenset({ChatType.DIRECT}), media=True),
    config=ConfigSpec(model=WebchatAccount),
    gateway=WebchatGateway(),
    outbound=WebchatOutbound(),
    reload=ReloadSpec(live_keys=frozenset({"title", "max_message_chars"})),
    open_client=open_hub,
)
