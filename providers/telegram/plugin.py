"""The Telegram provider: meta, capabilities and adapter wiring (transport lives next door)."""

from __future__ import annotations

from gateway.plugin import (
    Capabilities,
    ChatType,
    ConfigSpec,
    PluginMeta,
    PollSupport,
    ProviderPlugin,
    ReloadSpec,
    SecretSpec,
)

from .client import open_client
from .config import TelegramAccountConfig
from .monitor import TelegramGateway
from .send import TelegramOutbound
from .status import TelegramStatus, describe_account

plugin = ProviderPlugin(
    id="telegram",
    meta=PluginMeta(
        label="Telegram",
        selection_label="Telegram (Bot API)",
        docs_url="docs/providers/telegram.md",
        aliases=("tg",),
        blurb="A Telegram bot: long polling or a webhook; direct chats, groups, channels, forum topics.",
    ),
    capabilities=Capabilities(
        chat_types=frozenset({ChatType.DIRECT, ChatType.GROUP, ChatType.CHANNEL, ChatType.THREAD}),
        polls=PollSupport.NATIVE,
        media=True,
        reactions=False,
        threads=True,
    ),
    config=ConfigSpec(
        model=TelegramAccountConfig,
        secrets=(SecretSpec("bot_token", env="TELEGRAM_BOT_TOKEN"),
                 SecretSpec("webhook_secret", required=False)),
        describe_account=describe_account,
    ),
    gateway=TelegramGateway(),
    outbound=TelegramOutbound(),
    status=TelegramStatus(),
    # Read per message or per probe, so they apply without reconnecting the bot.
    reload=ReloadSpec(live_keys=frozenset({"edited_messages", "audit_groups", "media_max_mb"})),
    open_client=open_client,
)
