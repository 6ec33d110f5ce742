"""Build every account of one provider from its ``[providers.<id>]`` table.

Provider-level keys are defaults for every account; ``accounts.<id>`` tables override them
key by key. No ``accounts`` table means one account called ``default``. Secrets are resolved
here (literal, ``<field>_file``, or the conventional environment variable for the default
account only) and recorded with their source; the raw secret never leaves the model's
``SecretStr``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from gateway.errors import ConfigProblem
from gateway.plugin import AccountKey, ProviderPlugin, ResolvedAccount

DEFAULT_ACCOUNT = "default"
_VALID_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_INVALID_RUN = re.compile(r"[^a-z0-9_-]+")


def normalize_account_id(raw: Any) -> str:
    """Trim and lower-case; other character runs become ``-``; empty means ``default``."""
    value = str(raw if raw is not None else "").strip().lower()
    if _VALID_ID.match(value):
        return value
    value = _INVALID_RUN.sub("-", value).strip("-")[:64].strip("-")
    if value and not value[0].isalnum():
        value = value.lstrip("_-")
    return value or DEFAULT_ACCOUNT


def secret_fingerprint(value: str) -> str:
    """What the reload diff compares instead of the secret itself."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def resolve_provider_accounts(
    plugin: ProviderPlugin,
    section: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    base_dir: Path | None = None,
    previous: Mapping[AccountKey, ResolvedAccount] | None = None,
) -> tuple[list[ResolvedAccount], list[ConfigProblem]]:
    """Resolve and validate every account of ``plugin``; returns accounts and problems.

    ``previous`` (the running config's accounts) lets a reload skip re-validating accounts
    whose effective mapping is unchanged: with a thousand accounts, validation dominates.
    """
    prefix = f"providers.{plugin.id}"
    problems: list[ConfigProblem] = []
    provider_enabled = section.get("enabled", True)
    if not isinstance(provider_enabled, bool):
        problems.append(ConfigProblem(f"{prefix}.enabled", "must be true or false"))
        provider_enabled = True
    base = {k: v for k, v in section.items() if k != "accounts"}

    raw_accounts = section.get("accounts")
    tables: dict[str, tuple[str, Mapping[str, Any]]] = {}
    if raw_accounts is None:
        tables[DEFAULT_ACCOUNT] = (DEFAULT_ACCOUNT, {})
    elif not isinstance(raw_accounts, Mapping):
        problems.append(ConfigProblem(f"{prefix}.accounts", "must be a table of accounts"))
    else:
        for raw_id, table in raw_accounts.items():
            if not isinstance(table, Mapping):
                problems.append(ConfigProblem(f"{prefix}.accounts.{raw_id}", "must be a table"))
                continue
            account_id = normalize_account_id(raw_id)
            if account_id in tables:
                problems.append(ConfigProblem(
                    f"{prefix}.accounts.{raw_id}",
                    f"normalises to {account_id!r}, which account {tables[account_id][0]!r} already uses"))
                continue
            tables[account_id] = (str(raw_id), table)
        if not tables:
            problems.append(ConfigProblem(f"{prefix}.accounts", "is empty; remove it or add an account"))

    accounts: list[ResolvedAccount] = []
    for account_id, (raw_id, table) in tables.items():
        account_prefix = f"{prefix}.accounts.{raw_id}" if raw_accounts is not None else prefix
        merged = {**base, **table}
        merged.pop("enabled", None)
        enabled = provider_enabled and table.get("enabled", True) is not False
        resolved, account_problems = _resolve_one(plugin, AccountKey(plugin.id, account_id), merged, table,
                                                  enabled=enabled, provider_enabled=provider_enabled,
                                                  prefix=prefix, account_prefix=account_prefix, env=env,
                                                  base_dir=base_dir, previous=previous)
        problems.extend(account_problems)
        if resolved is not None:
            accounts.append(resolved)
    return accounts, problems


def _resolve_one(
    plugin: ProviderPlugin,
    key: AccountKey,
    merged: dict[str, Any],
    table: Mapping[str, Any],
    *,
    enabled: bool,
    provider_enabled: bool,
    prefix: str,
    account_prefix: str,
    env: Mapping[str, str],
    base_dir: Path | None,
    previous: Mapping[AccountKey, ResolvedAccount] | None,
) -> tuple[ResolvedAccount | None, list[ConfigProblem]]:
    problems: list[ConfigProblem] = []

    def where(field: str) -> str:
        return f"{account_prefix}.{field}" if field in table else f"{prefix}.{field}"

    effective: dict[str, Any] = dict(merged)
    sources: dict[str, str] = {}
    values = dict(merged)
    for spec in plugin.config.secrets:
        file_key = f"{spec.field}_file"
        literal = merged.get(spec.field)
        file_name = merged.get(file_key)
        value: str | None = None
        if literal not in (None, ""):
            value, sources[spec.field] = str(literal), "config"
        elif file_name not in (None, ""):
            path = Path(str(file_name)).expanduser()
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            try:
                value = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
                problems.append(ConfigProblem(where(file_key), f"cannot read secret file {path}: {reason}"))
                continue
            if not value:
                problems.append(ConfigProblem(where(file_key), f"secret file {path} is empty"))
                continue
            sources[spec.field] = "file"
        elif spec.env and key.account == DEFAULT_ACCOUNT and env.get(spec.env):
            value, sources[spec.field] = env[spec.env].strip(), "env"
        else:
            sources[spec.field] = "none"
        if value is not None and spec.strip_prefix and value.startswith(spec.strip_prefix):
            value = value[len(spec.strip_prefix):].strip()
        if value is None:
            if spec.required and enabled:
                hint = f" (or {file_key}" + (f", or ${spec.env} for the default account)" if spec.env else ")")
                problems.append(ConfigProblem(f"{account_prefix}.{spec.field}", "required" + hint))
            values.pop(spec.field, None)
            continue
        values[spec.field] = SecretStr(value)
        effective[spec.field] = secret_fingerprint(value)
        effective.pop(file_key, None)

    if not problems and previous is not None:
        before = previous.get(key)
        if before is not None and before.enabled == enabled and before.effective == effective \
                and type(before.config) is plugin.config.model:
            return before, []

    try:
        model = plugin.config.model.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [str(part) for part in err["loc"]]
            field = loc[0] if loc else ""
            path = where(field) if field else account_prefix
            if len(loc) > 1:
                path += "." + ".".join(loc[1:])
            message = "unknown key" if err["type"] == "extra_forbidden" else _clean(err["msg"])
            problems.append(ConfigProblem(path, message))
        return None, problems
    if problems:
        return None, problems

    disabled_reason = None
    if not enabled:
        disabled_reason = "provider disabled" if not provider_enabled else "account disabled"
    return ResolvedAccount(key=key, config=model, secret_sources=sources, effective=effective,
                           enabled=enabled, disabled_reason=disabled_reason), []


def _clean(message: str) -> str:
    return message.removeprefix("Value error, ")
