"""Request bodies of ``POST /v1/send`` and ``POST /v1/poll`` (validated at the edge)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    provider: str = Field(min_length=1, description="provider id or alias (`telegram`, `tg`, ...)")
    account: str | None = Field(None, description="account id; the provider's default account when omitted")
    to: str = Field(min_length=1, description="target, in the provider's format (`chat:42`, `user:7`, ...)")
    thread: str | None = None
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("account", "thread", "idempotency_key", mode="after")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


class SendBody(_Body):
    text: str = ""
    media: tuple[str, ...] = Field((), description="file paths (on the daemon's host), URLs, or data: URLs")
    reply_to: str | None = None

    @field_validator("media", mode="after")
    @classmethod
    def _no_blank_media(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not item.strip() for item in value):
            raise ValueError("media entries must not be empty")
        return value

    @model_validator(mode="after")
    def _something_to_send(self) -> SendBody:
        if not self.text and not self.media:
            raise ValueError("give text, media, or both")
        return self


class PollBody(_Body):
    question: str = Field(min_length=1)
    options: tuple[str, ...] = Field(min_length=2, description="at least two answers")
    max_selections: int = Field(1, ge=1)
    duration_hours: int | None = Field(None, ge=1, le=24 * 31)

    @field_validator("options", mode="after")
    @classmethod
    def _options(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(option.strip() for option in value)
        if any(not option for option in cleaned):
            raise ValueError("options must not be empty")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("options must be different from each other")
        return cleaned

    @model_validator(mode="after")
    def _selections_fit(self) -> PollBody:
        if self.max_selections > len(self.options):
            raise ValueError(f"max_selections ({self.max_selections}) cannot exceed the number of options "
                             f"({len(self.options)})")
        return self
