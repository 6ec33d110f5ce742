"""Read, validate and resolve the TOML configuration file.

:func:`load_config` never raises half-way: it collects every problem (each with its dotted
path) and raises one :class:`~gateway.errors.ConfigError` carrying all of them, so
``switchboard config check`` can print them all at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

try:  # the same parser as the standard library's tomllib, compiled: ~2x faster on big files
    import tomli as toml
except ImportError:  # pragma: no cover
    import tomllib as toml  # type: ignore[no-redef]

from gateway.config.accounts import resolve_provider_accounts
from gateway.config.model import GatewayConfig, HandlerConfig
from gateway.errors import ConfigError, ConfigNotFound, ConfigProblem, UnknownProvider
from gateway.plugin import AccountKey, ResolvedAccount
from gateway.registry import Registry

ENV_CONFIG = "SWITCHBOARD_CONFIG"
DEFAULT_CONFIG = Path("~/.config/switchboard/switchboard.toml")
TOP_LEVEL_KEYS = ("gateway", "handler", "providers")


@dataclass(frozen=True)
class Config:
    """A validated configuration: the unit that reload compares and swaps."""

    path: Path | None
    gateway: GatewayConfig
    handler: HandlerConfig
    #: Provider sections keyed by canonical id, as written (aliases resolved).
    providers: Mapping[str, Mapping[str, Any]]
    accounts: Mapping[AccountKey, ResolvedAccount]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def accounts_of(self, provider: str) -> list[ResolvedAccount]:
        return [a for k, a in self.accounts.items() if k.provider == provider]

    def default_account(self, provider: str) -> str | None:
        ids = [a.account_id for a in self.accounts_of(provider)]
        if "default" in ids:
            return "default"
        return ids[0] if ids else None


def resolve_config_path(explicit: str | os.PathLike[str] | None = None,
                        env: Mapping[str, str] | None = None) -> Path:
    """``--config PATH`` > ``$SWITCHBOARD_CONFIG`` > ``~/.config/switchboard/switchboard.toml``."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit).expanduser().absolute()
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser().absolute()
    return DEFAULT_CONFIG.expanduser()


def read_toml(path: Path) -> dict[str, Any]:
    """Read the file; every failure becomes a :class:`ConfigError` that says what to do."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigNotFound(
            f"config file {path} does not exist; create one with `switchboard config init --config {path}`",
            source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}", source=str(path)) from None
    if not data.strip():
        # Almost always a save in progress; to stop everything, disable providers explicitly.
        raise ConfigError(f"config file {path} is empty", source=str(path))
    try:
        return toml.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8: {exc.reason} at byte {exc.start}",
                          source=str(path)) from None
    except toml.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", source=str(path)) from None


def load_config(path: Path, registry: Registry, *, env: Mapping[str, str] | None = None,
                previous: Config | None = None) -> Config:
    return parse_config(read_toml(path), registry, path=path, env=env, previous=previous)


def parse_config(raw: Mapping[str, Any], registry: Registry, *, path: Path | None = None,
                 env: Mapping[str, str] | None = None, previous: Config | None = None) -> Config:
    """Validate a parsed TOML document into a :class:`Config` (or raise every problem).

    With ``previous``, accounts whose effective mapping did not change are reused as they are.
    """
    env = os.environ if env is None else env
    problems: list[ConfigProblem] = []
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            problems.append(ConfigProblem(key, f"unknown key; the top level takes {', '.join(TOP_LEVEL_KEYS)}"))

    gateway = _validate(GatewayConfig, raw.get("gateway", {}), "gateway", problems)
    handler = _validate(HandlerConfig, raw.get("handler", {}), "handler", problems)

    providers: dict[str, Mapping[str, Any]] = {}
    accounts: dict[AccountKey, ResolvedAccount] = {}
    raw_providers = raw.get("providers", {})
    if not isinstance(raw_providers, Mapping):
        problems.append(ConfigProblem("providers", "must be a table"))
        raw_providers = {}
    failed = registry.failed_ids()
    base_dir = path.parent if path is not None else None
    for raw_id, section in raw_providers.items():
        where = f"providers.{raw_id}"
        if not isinstance(section, Mapping):
            problems.append(ConfigProblem(where, "must be a table"))
            continue
        if raw_id in failed:
            providers[raw_id] = section  # the plugin failed to load: reported as a status issue
            continue
        try:
            pid = registry.normalize_provider_id(raw_id)
        except UnknownProvider as exc:
            problems.append(ConfigProblem(where, f"unknown provider; known providers: {', '.join(exc.known)}"))
            continue
        if pid in providers:
            problems.append(ConfigProblem(where, f"is the same provider as providers.{pid}; merge the two tables"))
            continue
        providers[pid] = section
        resolved, account_problems = resolve_provider_accounts(
            registry.get_plugin(pid), section, env=env, base_dir=base_dir,
            previous=previous.accounts if previous is not None else None)
        problems.extend(account_problems)
        for account in resolved:
            accounts[account.key] = account

    if problems or gateway is None or handler is None:
        raise ConfigError(problems, source=str(path) if path else None)
    return Config(path=path, gateway=gateway, handler=handler, providers=providers,
                  accounts=dict(sorted(accounts.items(), key=lambda kv: _order(registry, kv[0]))), raw=raw)


def _order(registry: Registry, key: AccountKey) -> tuple[int, str]:
    ids = registry.ids()
    return (ids.index(key.provider) if key.provider in ids else len(ids), key.account)


def _validate(model: type[Any], data: Any, prefix: str, problems: list[ConfigProblem]) -> Any:
    if not isinstance(data, Mapping):
        problems.append(ConfigProblem(prefix, "must be a table"))
        return None
    try:
        return model(**data) if model is GatewayConfig else model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            problems.append(ConfigProblem(f"{prefix}.{loc}" if loc else prefix, message))
        return None
