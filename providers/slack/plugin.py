"""The Slack provider plugin: Socket Mode in, Web API out (slack_sdk, no Bolt)."""

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
from .config import SlackAccountConfig, describe_account, is_configured
from .monitor import SlackGateway
from .send import SlackOutbound
from .status import SlackStatus

plugin = ProviderPlugin(
    id="slack",
    meta=PluginMeta(
        label="Slack",
        selection_label="Slack (Socket Mode)",
        blurb="A Slack app's bot over Socket Mode: no public URL needed.",
    ),
    capabilities=Capabilities(
        chat_types=frozenset({ChatType.DIRECT, ChatType.GROUP, ChatType.CHANNEL, ChatType.THREAD}),
        polls=PollSupport.EMULATED,
        media=True,
        threads=True,
    ),
    config=ConfigSpec(
        model=SlackAccountConfig,
        secrets=(SecretSpec("bot_token", env="SLACK_BOT_TOKEN"), SecretSpec("app_token", env="SLACK_APP_TOKEN")),
        is_configured=is_configured,
        describe_account=describe_account,
    ),
    gateway=SlackGateway(),
    outbound=SlackOutbound(),
    status=SlackStatus(),
    # allow_bots is read per event from ctx.account, so it applies without a reconnect.
    reload=ReloadSpec(live_keys=frozenset({"allow_bots"})),
    open_client=open_client,
)
