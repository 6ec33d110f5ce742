"""The Slack account model and the scopes the bot token needs."""

from __future__ import annotations

from pydantic import SecretStr, field_validator, model_validator

from gateway.plugin import AccountConfig, ResolvedAccount

DEFAULT_API_BASE_URL = "https://slack.com/api/"

#: Bot token scopes Switchboard relies on (checked against auth.test's ``x-oauth-scopes``).
REQUIRED_SCOPES: tuple[str, ...] = (
    "app_mentions:read",  # app_mention events
    "channels:history",   # message events in public channels
    "chat:write",         # chat.postMessage (text and polls)
    "files:write",        # files.getUploadURLExternal / completeUploadExternal
    "im:history",         # message events in DMs
    "im:write",           # conversations.open for user:<id> targets
)


class SlackAccountConfig(AccountConfig):
    """One Slack app installation: a bot token (Web API) and an app-level token (Socket Mode)."""

    bot_token: SecretStr | None = None
    bot_token_file: str | None = None
    app_token: SecretStr | None = None
    app_token_file: str | None = None
    api_base_url: str = DEFAULT_API_BASE_URL
    #: Deliver messages posted by *other* bots and integrations (our own are always ignored).
    allow_bots: bool = False

    @field_validator("api_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"api_base_url must be an http(s) URL such as {DEFAULT_API_BASE_URL}, got {value!r}")
        # slack_sdk joins method names onto the base URL, so the trailing slash matters.
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _tokens_not_swapped(self) -> SlackAccountConfig:
        bot = self.bot_token.get_secret_value() if self.bot_token else ""
        app = self.app_token.get_secret_value() if self.app_token else ""
        if bot.startswith("xapp-"):
            raise ValueError("bot_token holds an app-level token (xapp-...); it belongs in app_token, "
                             "and bot_token takes the Bot User OAuth Token (xoxb-...)")
        if app.startswith(("xoxb-", "xoxp-")):
            raise ValueError("app_token holds a bot/user token (xox...); app_token takes an app-level token "
                             "(xapp-...) with the connections:write scope (Basic Information > App-Level Tokens)")
        return self


def is_configured(resolved: ResolvedAccount) -> tuple[bool, str | None]:
    """Both tokens are needed: the bot token for the Web API, the app token for Socket Mode."""
    config = resolved.config
    missing = [name for name in ("bot_token", "app_token") if getattr(config, name, None) is None]
    if not missing:
        return True, None
    hints = {"bot_token": "bot_token (xoxb-..., env SLACK_BOT_TOKEN)",
             "app_token": "app_token (xapp-..., env SLACK_APP_TOKEN)"}
    return False, "missing " + " and ".join(hints[name] for name in missing)


def describe_account(resolved: ResolvedAccount) -> dict[str, object]:
    """A safe summary for listings: where each token came from, never the token."""
    config = resolved.config
    return {
        "bot_token_source": resolved.secret_sources.get("bot_token", "none"),
        "app_token_source": resolved.secret_sources.get("app_token", "none"),
        "api_base_url": getattr(config, "api_base_url", DEFAULT_API_BASE_URL),
    }
