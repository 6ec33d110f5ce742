"""The Telegram account model (keys under ``[providers.telegram]`` / ``accounts.<id>``)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.plugin import AccountConfig

DEFAULT_API_BASE_URL = "https://api.telegram.org"
#: ``getFile`` serves at most 20 MB from the public Bot API (a local Bot API server more).
DEFAULT_DOWNLOAD_MAX_MB = 20.0

_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_GROUP_REF = re.compile(r"^(-?\d+|@[A-Za-z][A-Za-z0-9_]{3,31})$")


class TelegramAccountConfig(AccountConfig):
    """One Telegram bot. ``bot_token`` is filled by the core from the literal key,
    ``bot_token_file`` or (default account only) ``$TELEGRAM_BOT_TOKEN``."""

    bot_token: SecretStr | None = None
    bot_token_file: str | None = None
    api_base_url: str = DEFAULT_API_BASE_URL
    mode: Literal["polling", "webhook"] = "polling"
    #: The public HTTPS URL Telegram posts to; it must reach ``/hooks/telegram/<account>/``.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_secret_file: str | None = None
    #: ``getUpdates`` long-poll timeout; the HTTP read timeout is this plus a margin.
    poll_timeout_s: int = Field(default=30, ge=1, le=50)
    edited_messages: bool = False
    #: Group chat ids (or @usernames) whose membership ``status --probe`` checks.
    audit_groups: tuple[str, ...] = ()

    @field_validator("api_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL such as https://api.telegram.org")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be the public http(s) URL Telegram posts updates to")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _SECRET_TOKEN.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters from A-Z, a-z, 0-9, _ and - (a Telegram rule)")
        return value

    @field_validator("audit_groups", mode="before")
    @classmethod
    def _check_audit_groups(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            groups = tuple(str(v).strip() for v in value)
            bad = [g for g in groups if not _GROUP_REF.match(g)]
            if bad:
                raise ValueError(f"entries must be chat ids (-1001234567890) or @usernames, not {bad[0]!r}")
            return groups
        return value

    @model_validator(mode="after")
    def _webhook_needs_url(self) -> TelegramAccountConfig:
        if self.mode == "webhook" and not self.webhook_url:
            raise ValueError('webhook_url is required when mode = "webhook"')
        return self

    @property
    def token(self) -> str | None:
        return self.bot_token.get_secret_value() if self.bot_token else None

    @property
    def download_max_bytes(self) -> int:
        return int((self.media_max_mb or DEFAULT_DOWNLOAD_MAX_MB) * 1024 * 1024)
