"""The Telegram account model and the exported plugin object."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.plugin import ChatType, PollSupport
from gateway.testing import resolved_account
from providers.telegram import TelegramAccountConfig, plugin


def test_defaults_poll_the_public_bot_api():
    config = resolved_account(plugin, bot_token="1:a").config
    assert isinstance(config, TelegramAccountConfig)
    assert (config.api_base_url, config.mode, config.poll_timeout_s) == ("https://api.telegram.org", "polling", 30)
    assert (config.edited_messages, config.audit_groups, config.webhook_url) == (False, (), None)
    assert config.download_max_bytes == 20 * 1024 * 1024


def test_secrets_stay_hidden_in_reprs():
    config = TelegramAccountConfig(bot_token="123:SECRET", webhook_secret="hook-secret")
    assert "SECRET" not in repr(config) and "hook-secret" not in repr(config)
    assert config.token == "123:SECRET"


def test_webhook_mode_needs_a_webhook_url():
    with pytest.raises(ValidationError, match='webhook_url is required when mode = "webhook"'):
        TelegramAccountConfig(bot_token="1:a", mode="webhook")


@pytest.mark.parametrize(("keys", "message"), [
    ({"webhook_secret": "has spaces"}, "1-256 characters"),
    ({"api_base_url": "api.telegram.org"}, "http"),
    ({"audit_groups": ["general"]}, "chat ids"),
    ({"poll_timeout_s": 0}, "greater than or equal to 1"),
    ({"mode": "push"}, "polling"),
    ({"bot_tokn": "1:a"}, "Extra inputs"),
])
def test_invalid_keys_are_rejected_with_a_reason(keys, message):
    with pytest.raises(ValidationError, match=message):
        TelegramAccountConfig(bot_token="1:a", **keys)


def test_base_url_trailing_slash_and_group_ids_are_normalised():
    config = TelegramAccountConfig(api_base_url="http://127.0.0.1:8081/", audit_groups=[-1001, "@team_chat"])
    assert config.api_base_url == "http://127.0.0.1:8081"
    assert config.audit_groups == ("-1001", "@team_chat")


def test_plugin_exports_the_contract():
    assert plugin.id == "telegram"
    assert plugin.meta.label == "Telegram" and plugin.meta.aliases == ("tg",)
    assert plugin.config.model is TelegramAccountConfig
    assert [(s.field, s.env, s.required) for s in plugin.config.secrets] == [
        ("bot_token", "TELEGRAM_BOT_TOKEN", True), ("webhook_secret", None, False)]
    assert plugin.capabilities.polls is PollSupport.NATIVE
    assert ChatType.THREAD in plugin.capabilities.chat_types
    outbound = plugin.outbound
    assert (outbound.text_chunk_limit, outbound.chunker, outbound.caption_limit, outbound.poll_max_options) == (
        4096, "markdown", 1024, 12)
    assert outbound.measure("😀") == 2
    assert plugin.open_client is not None
    assert {"edited_messages", "audit_groups"} <= plugin.live_keys


def test_describe_account_has_no_secrets():
    account = resolved_account(plugin, bot_token="123:SECRET", webhook_secret="hooksecret", mode="webhook",
                               webhook_url="https://bot.example/tg")
    described = plugin.config.describe_account(account)
    assert "SECRET" not in str(described) and "hooksecret" not in str(described)
    assert described["mode"] == "webhook" and described["token_source"] == "config"
