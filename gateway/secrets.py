"""Keeping secrets out of logs, status and error messages."""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from typing import Any

from pydantic import BaseModel, SecretStr

from gateway.plugin import ResolvedAccount

REDACTED = "***"
#: Field names whose values are never shown, whatever their type.
SECRET_KEY = re.compile(r"(token|secret|password|passwd|authorization|api_key|apikey|cookie)(?!_file|_source)",
                        re.IGNORECASE)
_MIN_SECRET_LEN = 4


def secret_values(model: BaseModel) -> list[str]:
    """Every ``SecretStr`` value on ``model`` (top level)."""
    values = []
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        if isinstance(value, SecretStr):
            raw = value.get_secret_value()
            if len(raw) >= _MIN_SECRET_LEN:
                values.append(raw)
    return values


def redact_text(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_account(text: str, resolved: ResolvedAccount) -> str:
    """``text`` with the account's secrets (and their URL-encoded forms) blanked out."""
    values = secret_values(resolved.config)
    from urllib.parse import quote

    return redact_text(text, [*values, *(quote(v, safe="") for v in values)])


def redact_mapping(data: Any) -> Any:
    """A copy of ``data`` with secret-looking keys blanked, recursively (for ``config show``)."""
    if isinstance(data, dict):
        return {k: (REDACTED if SECRET_KEY.search(str(k)) and v not in (None, "") and not isinstance(v, dict)
                    else redact_mapping(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [redact_mapping(v) for v in data]
    if isinstance(data, SecretStr):
        return REDACTED
    return data


class SecretRedactor:
    """A structlog processor: blanks known secret values and secret-looking keys in every event."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def register(self, values: Iterable[str]) -> None:
        self._secrets.update(v for v in values if len(v) >= _MIN_SECRET_LEN)

    def replace(self, values: Iterable[str]) -> None:
        self._secrets = {v for v in values if len(v) >= _MIN_SECRET_LEN}

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in list(event.items()):
            if SECRET_KEY.search(key) and value not in (None, ""):
                event[key] = REDACTED
            elif isinstance(value, SecretStr):
                event[key] = REDACTED
            elif isinstance(value, str) and self._secrets:
                event[key] = redact_text(value, self._secrets)
            elif isinstance(value, BaseException) and self._secrets:
                event[key] = redact_text(f"{type(value).__name__}: {value}", self._secrets)
        return event
