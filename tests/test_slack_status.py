"""Slack plugin wiring, config model, client lifecycle, probe and status issues."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pydantic
import pytest

from gateway.plugin import ChatType, PollSupport
from gateway.testing import RecordingContext, resolved_account
from providers.slack import plugin
from providers.slack.config import REQUIRED_SCOPES, SlackAccountConfig
from tests.fakes.slack_api import SlackFake

pytestmark = pytest.mark.anyio

status = plugin.status
assert status is not None


@pytest.fixture
async def fake() -> AsyncIterator[SlackFake]:
    async with SlackFake() as server:
        yield server


# --- plugin and config ------------------------------------------------------------------------


def test_plugin_declares_slack() -> None:
    assert (plugin.id, plugin.meta.label) == ("slack", "Slack")
    assert plugin.capabilities.polls is PollSupport.EMULATED
    assert plugin.capabilities.media and plugin.capabilities.threads
    assert {ChatType.DIRECT, ChatType.CHANNEL, ChatType.THREAD} <= plugin.capabilities.chat_types
    assert [(s.field, s.env) for s in plugin.config.secrets] == [
        ("bot_token", "SLACK_BOT_TOKEN"), ("app_token", "SLACK_APP_TOKEN")]
    assert plugin.config.model is SlackAccountConfig
    assert "allow_bots" in plugin.live_keys and "allow_from" in plugin.live_keys


def test_config_defaults_and_base_url_slash() -> None:
    config = SlackAccountConfig(bot_token="xoxb-1", app_token="xapp-1", api_base_url="http://127.0.0.1:9/api")
    assert config.api_base_url == "http://127.0.0.1:9/api/"
    assert SlackAccountConfig().api_base_url == "https://slack.com/api/"
    assert SlackAccountConfig().dm_policy == "pairing"  # policy keys are inherited


def test_config_rejects_unknown_keys_and_bad_urls() -> None:
    with pytest.raises(pydantic.ValidationError, match="bot_tokn"):
        SlackAccountConfig(bot_tokn="xoxb-1")
    with pytest.raises(pydantic.ValidationError, match="http"):
        SlackAccountConfig(api_base_url="slack.com/api/")


def test_swapped_tokens_are_explained() -> None:
    with pytest.raises(pydantic.ValidationError, match="belongs in app_token"):
        SlackAccountConfig(bot_token="xapp-1-A", app_token="xapp-1-B")
    with pytest.raises(pydantic.ValidationError, match="app-level token"):
        SlackAccountConfig(bot_token="xoxb-1", app_token="xoxb-2")


def test_secrets_are_not_shown() -> None:
    config = SlackAccountConfig(bot_token="xoxb-secret", app_token="xapp-secret")
    assert "secret" not in repr(config)
    resolved = resolved_account(plugin, bot_token="xoxb-secret", app_token="xapp-secret")
    assert plugin.config.describe_account is not None
    summary = plugin.config.describe_account(resolved)
    assert "secret" not in str(summary)
    assert summary["bot_token_source"] == "config"


def test_is_configured_needs_both_tokens() -> None:
    check = plugin.config.is_configured
    assert check is not None
    assert check(resolved_account(plugin, bot_token="xoxb-1", app_token="xapp-1")) == (True, None)
    ok, reason = check(resolved_account(plugin, bot_token="xoxb-1"))
    assert not ok and reason is not None and "app_token" in reason and "SLACK_APP_TOKEN" in reason


async def test_open_client_closes_its_session(fake: SlackFake) -> None:
    resolved = resolved_account(plugin, **fake.account_keys())
    async with plugin.open_client(resolved) as client:
        assert client.web.base_url == fake.api_base_url
        assert client.web.session is client.session
        session = client.session
        assert not session.closed
    assert session.closed


# --- probe ------------------------------------------------------------------------------------


async def test_probe_checks_both_tokens(fake: SlackFake) -> None:
    result = await status.probe(None, resolved_account(plugin, **fake.account_keys()), timeout=5)
    assert result["ok"] is True
    assert result["bot"] == {"id": "U0BOT", "bot_id": "B0BOT", "name": "switchboard"}
    assert result["team"] == {"id": "T1", "name": "Fake Team"}
    assert result["missing_scopes"] == []
    assert result["socket_mode"] == {"ok": True}
    assert [c.method for c in fake.calls] == ["auth.test", "apps.connections.open"]
    assert [c.token for c in fake.calls] == [fake.bot_token, fake.app_token]


async def test_probe_uses_the_running_accounts_client(fake: SlackFake) -> None:
    resolved = resolved_account(plugin, **fake.account_keys())
    async with plugin.open_client(resolved) as client:
        result = await status.probe(RecordingContext(resolved, client), resolved, timeout=5)
        assert not client.session.closed
    assert result["ok"] is True


async def test_probe_reports_missing_scopes(fake: SlackFake) -> None:
    fake.scopes = ("chat:write",)
    result = await status.probe(None, resolved_account(plugin, **fake.account_keys()), timeout=5)
    assert result["missing_scopes"] == [s for s in REQUIRED_SCOPES if s != "chat:write"]
    issues = status.collect_issues([{"provider": "slack", "account": "work", "probe": result}])
    assert [(i.kind, i.account) for i in issues] == [("permissions", "work")]
    assert "im:write" in issues[0].message and issues[0].fix


async def test_probe_without_scope_header_checks_nothing(fake: SlackFake) -> None:
    fake.scopes = None
    result = await status.probe(None, resolved_account(plugin, **fake.account_keys()), timeout=5)
    assert result["ok"] is True and result["scopes"] is None and result["missing_scopes"] == []


async def test_probe_with_rejected_bot_token(fake: SlackFake) -> None:
    keys = {**fake.account_keys(), "bot_token": "xoxb-revoked"}
    result = await status.probe(None, resolved_account(plugin, **keys), timeout=5)
    assert result["ok"] is False
    assert "invalid_auth" in result["error"] and "bot_token" in result["error"]


async def test_probe_with_rejected_app_token_raises_a_socket_mode_issue(fake: SlackFake) -> None:
    keys = {**fake.account_keys(), "app_token": "xapp-revoked"}
    result = await status.probe(None, resolved_account(plugin, **keys), timeout=5)
    assert result["ok"] is False
    assert result["socket_mode"]["ok"] is False and "app_token" in result["socket_mode"]["error"]
    issues = status.collect_issues([{"account": "default", "probe": result}])
    assert [i.kind for i in issues] == ["config"]
    assert "Socket Mode" in issues[0].message


async def test_probe_without_tokens_says_what_is_missing() -> None:
    result = await status.probe(None, resolved_account(plugin), timeout=5)
    assert result["ok"] is False and "bot_token" in result["error"]


def test_no_issues_for_a_healthy_account() -> None:
    snapshot = {"account": "default", "missing_scopes": [], "probe": {"ok": True, "socket_mode": {"ok": True}}}
    assert status.collect_issues([snapshot, {"account": "other", "probe": None}]) == []
