"""Configuration: TOML loading, env overlay, per-plugin account models, secrets."""

from gateway.config.accounts import DEFAULT_ACCOUNT, normalize_account_id
from gateway.config.loader import Config, load_config, parse_config, read_toml, resolve_config_path
from gateway.config.model import ControlConfig, GatewayConfig, HandlerConfig, ReloadConfig, RestartConfig

__all__ = [
    "DEFAULT_ACCOUNT", "Config", "ControlConfig", "GatewayConfig", "HandlerConfig", "ReloadConfig",
    "RestartConfig", "load_config", "normalize_account_id", "parse_config", "read_toml", "resolve_config_path",
]
