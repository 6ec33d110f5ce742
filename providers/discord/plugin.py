"""The Discord provider plugin: metadata and wiring only (transport lives in sibling modules)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.plugin import (
    Capabilities,
    ChatType,
    ConfigSpec,
    PluginMeta,
    PollSupport,
    ProviderPlugin,
    ReloadSpec,
    ResolvedAccount,
    SecretSpec,
)

from .config import DEFAULT_API_BASE_URL, DiscordAccountConfig
from .monitor import DiscordGateway
from .rest import open_client
from .send import DiscordOutbound
from .status import DiscordStatus


def describe_account(resolved: ResolvedAccount) -> Mapping[str, Any]:
    """A safe summary: never the token, only where it came from."""
    config = resolved.config
    assert isinstance(config, DiscordAccountConfig)
    summary: dict[str, Any] = {"token_source": resolved.secret_sources.get("token", "none"),
                               "intents": config.intents, "guilds": len(config.guilds),
                               "channels": len(config.channels)}
    if config.api_base_url != DEFAULT_API_BASE_URL:
        summary["api_base_url"] = config.api_base_url
    return summary


plugin = ProviderPlugin(
    id="discord",
    meta=PluginMeta(label="Discord", selection_label="Discord (bot)",
                    docs_url="docs/providers/discord.md",
                    blurb="A Discord bot: DMs, server channels and threads over the gateway websocket."),
    capabilities=Capabilities(chat_types=frozenset({ChatType.DIRECT, ChatType.CHANNEL, ChatType.THREAD}),
                              polls=PollSupport.NATIVE, media=True, threads=True),
    config=ConfigSpec(model=DiscordAccountConfig,
                      secrets=(SecretSpec("token", env="DISCORD_BOT_TOKEN", strip_prefix="Bot "),),
                      describe_account=describe_account),
    gateway=DiscordGateway(),
    outbound=DiscordOutbound(),
    status=DiscordStatus(),
    # The allowlists are read per message; token, api_base_url and intents need a new session.
    reload=ReloadSpec(live_keys=frozenset({"guilds", "channels"})),
    open_client=open_client,
)
