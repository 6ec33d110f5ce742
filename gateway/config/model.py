"""Pydantic models for the ``[gateway]`` and ``[handler]`` tables.

``[gateway]`` is a pydantic-settings model: ``SWITCHBOARD_GATEWAY__RELOAD__MODE=hot`` in the
environment overrides ``gateway.reload.mode`` from the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReloadConfig(_Strict):
    mode: Literal["off", "restart", "hot", "hybrid"] = "hybrid"
    debounce_ms: int = Field(300, ge=0, le=60_000)


class RestartConfig(_Strict):
    """Supervisor backoff for crashed accounts."""

    initial_ms: int = Field(1000, ge=1, le=3_600_000)
    max_ms: int = Field(300_000, ge=1, le=86_400_000)
    factor: float = Field(2.0, ge=1.0, le=10.0)
    jitter: float = Field(0.2, ge=0.0, le=1.0)
    stable_after_s: float = Field(60.0, ge=0.0, le=86_400.0)
    stop_timeout_s: float = Field(10.0, gt=0.0, le=600.0)

    @model_validator(mode="after")
    def _max_above_initial(self) -> RestartConfig:
        if self.max_ms < self.initial_ms:
            raise ValueError(f"max_ms ({self.max_ms}) must be >= initial_ms ({self.initial_ms})")
        return self


class ControlConfig(_Strict):
    #: Unix socket path, relative to ``state_dir`` unless absolute.
    socket: str = "control.sock"
    #: Optional TCP listener ``host:port`` for the web UI, webhooks and the API (bearer token).
    listen: str | None = None
    token_file: str | None = None
    max_body_kb: int = Field(1024, ge=1, le=102_400)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"must be host:port (e.g. 127.0.0.1:8787), got {value!r}")
        return value


class OutboxConfig(_Strict):
    max_attempts: int = Field(10, ge=1, le=1000)
    retry_initial_ms: int = Field(1000, ge=1, le=3_600_000)
    retry_max_ms: int = Field(300_000, ge=1, le=86_400_000)
    flush_timeout_s: float = Field(10.0, ge=0.0, le=600.0)
    idempotency_ttl_s: int = Field(86_400, ge=60, le=30 * 86_400)


class GatewayConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_GATEWAY__", env_nested_delimiter="__",
                                      extra="forbid", frozen=True)

    state_dir: str = "~/.local/state/switchboard"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    reload: ReloadConfig = ReloadConfig()
    restart: RestartConfig = RestartConfig()
    control: ControlConfig = ControlConfig()
    outbox: OutboxConfig = OutboxConfig()

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (the file arrives as init kwargs).
        return (env_settings, init_settings)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser()

    @property
    def socket_path(self) -> Path:
        path = Path(self.control.socket).expanduser()
        return path if path.is_absolute() else self.state_path / path


class HandlerConfig(_Strict):
    """Where inbound messages go (see ``docs/handlers.md``)."""

    kind: Literal["echo", "webhook", "command", "python", "none"] = "echo"
    url: str | None = None
    secret: SecretStr | None = None
    secret_file: str | None = None
    command: tuple[str, ...] | None = None
    function: str | None = None
    timeout_s: float = Field(30.0, gt=0, le=3600)
    max_attempts: int = Field(5, ge=1, le=100)
    retry_initial_ms: int = Field(500, ge=1, le=3_600_000)
    retry_max_ms: int = Field(60_000, ge=1, le=86_400_000)
    concurrency: int = Field(8, ge=1, le=1024)

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, value: Any) -> Any:
        if isinstance(value, str):
            import shlex

            return tuple(shlex.split(value))
        return value

    @model_validator(mode="after")
    def _kind_needs(self) -> HandlerConfig:
        needs = {"webhook": "url", "command": "command", "python": "function"}
        field = needs.get(self.kind)
        if field and not getattr(self, field):
            raise ValueError(f"handler kind {self.kind!r} needs `{field}`")
        if self.kind == "python" and self.function and ":" not in self.function:
            raise ValueError("function must be 'module:function'")
        return self
