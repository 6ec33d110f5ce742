"""The Discord account model and the gateway intent bits it uses."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator

from gateway.plugin import AccountConfig

DEFAULT_API_BASE_URL = "https://discord.com/api/v10"

#: Gateway intents by the names used in Discord's documentation (lower-case).
INTENTS: dict[str, int] = {
    "guilds": 1 << 0,
    "guild_members": 1 << 1,
    "guild_moderation": 1 << 2,
    "guild_expressions": 1 << 3,
    "guild_integrations": 1 << 4,
    "guild_webhooks": 1 << 5,
    "guild_invites": 1 << 6,
    "guild_voice_states": 1 << 7,
    "guild_presences": 1 << 8,
    "guild_messages": 1 << 9,
    "guild_message_reactions": 1 << 10,
    "guild_message_typing": 1 << 11,
    "direct_messages": 1 << 12,
    "direct_message_reactions": 1 << 13,
    "direct_message_typing": 1 << 14,
    "message_content": 1 << 15,
    "guild_scheduled_events": 1 << 16,
    "auto_moderation_configuration": 1 << 20,
    "auto_moderation_execution": 1 << 21,
    "guild_message_polls": 1 << 24,
    "direct_message_polls": 1 << 25,
}

#: Intents the Developer Portal must switch on before IDENTIFY may ask for them.
PRIVILEGED_INTENTS: dict[int, str] = {
    INTENTS["guild_members"]: "Server Members",
    INTENTS["guild_presences"]: "Presence",
    INTENTS["message_content"]: "Message Content",
}

# Poll vote intents are not privileged: on by default so votes on our polls come back.
DEFAULT_INTENTS = (INTENTS["guilds"] | INTENTS["guild_messages"] | INTENTS["direct_messages"]
                   | INTENTS["message_content"] | INTENTS["guild_message_polls"]
                   | INTENTS["direct_message_polls"])
POLL_INTENTS = INTENTS["guild_message_polls"] | INTENTS["direct_message_polls"]
_ALL_INTENTS = sum(INTENTS.values())


class DiscordAccountConfig(AccountConfig):
    """``[providers.discord]`` / ``[providers.discord.accounts.<id>]``."""

    token: SecretStr | None = None
    token_file: str | None = None
    api_base_url: str = DEFAULT_API_BASE_URL
    #: Gateway intents: an integer bitmask or a list of intent names (``"message_content"``).
    intents: int = Field(default=DEFAULT_INTENTS, ge=0)
    #: Guild (server) ids to listen to; empty means every guild the bot is in.
    guilds: tuple[str, ...] = ()
    #: Channel ids to listen to (a thread counts as its parent channel); empty means all.
    channels: tuple[str, ...] = ()

    @field_validator("api_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL such as https://discord.com/api/v10")
        return value

    @field_validator("intents", mode="before")
    @classmethod
    def _parse_intents(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            bits = 0
            for name in value:
                key = str(name).strip().lower()
                if key not in INTENTS:
                    raise ValueError(f"unknown intent {name!r}; known: {', '.join(sorted(INTENTS))}")
                bits |= INTENTS[key]
            return bits
        return value

    @field_validator("intents")
    @classmethod
    def _check_intents(cls, value: int) -> int:
        if value & ~_ALL_INTENTS:
            raise ValueError(f"{value} has bits that are not Discord gateway intents")
        return value

    @field_validator("guilds", "channels", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            ids = tuple(str(v).strip() for v in value)
            bad = [v for v in ids if not v.isdigit()]
            if bad:
                raise ValueError(f"must be numeric Discord ids (snowflakes), got {', '.join(map(repr, bad))}")
            return ids
        return value


def privileged_intent_names(intents: int) -> list[str]:
    """Names of the privileged intents included in ``intents``."""
    return [name for bit, name in PRIVILEGED_INTENTS.items() if intents & bit]
