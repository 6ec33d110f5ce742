"""Rendered log lines: JSON off a TTY, secrets redacted by the last processor."""

from __future__ import annotations

import io
import json

import structlog
from pydantic import SecretStr

from gateway.logging import configure_logging
from gateway.secrets import SecretRedactor, redact_mapping


def test_json_lines_redact_known_secrets_and_secret_keys():
    out = io.StringIO()
    redactor = SecretRedactor()
    redactor.register(["123456:ABCDEF-secret"])
    configure_logging("auto", "info", redactor=redactor, stream=out)
    try:
        log = structlog.get_logger("t").bind(provider="telegram", account="alerts")
        log.warning("http.failed", url="https://api.telegram.org/bot123456:ABCDEF-secret/getMe",
                    authorization="Bearer abc", token=SecretStr("zzz"), error=RuntimeError("bad 123456:ABCDEF-secret"))
        log.debug("hidden")
    finally:
        structlog.reset_defaults()
    (line,) = out.getvalue().splitlines()
    event = json.loads(line)
    assert event["event"] == "http.failed" and event["provider"] == "telegram" and event["account"] == "alerts"
    assert "123456:ABCDEF-secret" not in line
    assert event["url"] == "https://api.telegram.org/bot***/getMe"
    assert event["authorization"] == "***" and event["token"] == "***"
    assert event["error"] == "RuntimeError: bad ***"


def test_redact_mapping_blanks_secret_looking_keys_but_keeps_file_paths():
    data = {"providers": {"telegram": {"bot_token": "1:abc", "bot_token_file": "/run/secrets/tg",
                                       "accounts": {"a": {"webhook_secret": "s", "name": "A"}}}},
            "handler": {"secret": "h", "url": "http://x"}}
    assert redact_mapping(data) == {
        "providers": {"telegram": {"bot_token": "***", "bot_token_file": "/run/secrets/tg",
                                   "accounts": {"a": {"webhook_secret": "***", "name": "A"}}}},
        "handler": {"secret": "***", "url": "http://x"}}
