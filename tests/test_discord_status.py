"""Discord probe, status issues, config model and plugin wiring."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.plugin import ChatType, PollSupport
from gateway.testing import RecordingContext, resolved_account
from providers.discord import plugin
from tests.fakes.discord_api import (
    APP_FLAG_MESSAGE_CONTENT_LIMITED,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    DiscordFake,
)

status = plugin.status
assert status is not None


async def probe(fake: DiscordFake, **keys: Any) -> dict[str, Any]:
    resolved = resolved_account(plugin, token=keys.pop("token", fake.token), api_base_url=fake.api_base_url, **keys)
    return dict(await status.probe(None, resolved, 5.0))


# --- probe -----------------------------------------------------------------------------------


async def test_probe_reports_bot_application_and_intents() -> None:
    async with DiscordFake() as fake:
        result = await probe(fake)
    assert result["ok"] is True
    assert result["bot"] == {"id": "100", "username": "gwbot"}
    assert result["application"]["id"] == "100"
    assert result["application"]["intents"] == {"presence": "disabled", "guild_members": "disabled",
                                                "message_content": "enabled"}
    assert [r.path for r in fake.requests] == ["/users/@me", "/oauth2/applications/@me"]


async def test_probe_uses_the_shared_client_when_the_account_runs() -> None:
    async with DiscordFake() as fake:
        resolved = resolved_account(plugin, token=fake.token, api_base_url=fake.api_base_url)
        assert plugin.open_client is not None
        async with plugin.open_client(resolved) as client:
            result = await status.probe(RecordingContext(resolved, client), resolved, 5.0)
    assert result["ok"] is True


async def test_probe_with_a_rejected_token_says_so() -> None:
    async with DiscordFake() as fake:
        result = await probe(fake, token="wrong")
    assert result["ok"] is False
    assert "token was rejected" in result["error"]


async def test_limited_message_content_intent_is_not_an_issue() -> None:
    async with DiscordFake(application_flags=APP_FLAG_MESSAGE_CONTENT_LIMITED) as fake:
        result = await probe(fake)
    assert result["application"]["intents"]["message_content"] == "limited"
    assert status.collect_issues([{"account": "default", "probe": result}]) == []


async def test_disabled_message_content_intent_is_an_intent_issue() -> None:
    async with DiscordFake(application_flags=0) as fake:
        result = await probe(fake)
    [issue] = status.collect_issues([{"provider": "discord", "account": "default", "probe": result}])
    assert (issue.provider, issue.account, issue.kind) == ("discord", "default", "intent")
    assert "Message Content intent is not enabled" in issue.message
    assert issue.fix is not None and "Developer Portal → Bot → Privileged Gateway Intents" in issue.fix


async def test_channel_audit_finds_missing_send_permission() -> None:
    async with DiscordFake() as fake:
        fake.add_channel("301", name="announcements",
                         permission_overwrites=[{"id": "400", "type": 0, "allow": "0", "deny": str(SEND_MESSAGES)}])
        fake.add_channel("302", name="bots-only", permission_overwrites=[
            {"id": "400", "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL | SEND_MESSAGES)},
            {"id": "100", "type": 1, "allow": str(VIEW_CHANNEL | SEND_MESSAGES), "deny": "0"}])
        result = await probe(fake, channels=["300", "301", "302", "999"])
    by_id = {c["id"]: c for c in result["audit"]["channels"]}
    assert by_id["300"] == {"id": "300", "ok": True, "missing": []}
    assert by_id["301"] == {"id": "301", "ok": False, "missing": ["Send Messages"]}
    assert by_id["302"]["ok"] is True  # the member overwrite wins over @everyone's deny
    assert by_id["999"]["ok"] is False and "Unknown Channel" in by_id["999"]["error"]
    issues = status.collect_issues([{"account": "default", "probe": result}])
    assert [(i.kind, i.message.split(":")[0]) for i in issues] == [
        ("permissions", "Channel 301 permission check failed"),
        ("permissions", "Channel 999 permission check failed")]
    assert "missing Send Messages" in issues[0].message


async def test_audit_respects_administrator_and_ownership() -> None:
    async with DiscordFake() as fake:
        fake.guilds["400"]["roles"].append({"id": "401", "name": "admin", "permissions": str(1 << 3)})
        fake.members[("400", "100")]["roles"] = ["401"]
        fake.add_channel("301", permission_overwrites=[{"id": "400", "type": 0, "allow": "0",
                                                        "deny": str(VIEW_CHANNEL | SEND_MESSAGES)}])
        result = await probe(fake, channels=["301"])
    assert result["audit"]["channels"] == [{"id": "301", "ok": True, "missing": []}]


def test_runtime_status_application_feeds_issues_too() -> None:
    snapshot = {"account": "ops", "application": {"id": "1", "flags": 0,
                                                  "intents": {"message_content": "disabled"}}}
    [issue] = status.collect_issues([snapshot])
    assert issue.account == "ops" and issue.kind == "intent"


# --- config and wiring ------------------------------------------------------------------------


def test_defaults() -> None:
    config = plugin.config.model.model_validate({"token": "abc"})
    assert config.api_base_url == "https://discord.com/api/v10"
    assert config.intents == 50369025  # GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT | *_POLLS
    assert config.guilds == () and config.channels == ()
    assert config.dm_policy == "pairing" and config.require_mention is True


def test_intents_accept_names_and_reject_unknown_bits() -> None:
    model = plugin.config.model
    assert model.model_validate({"intents": ["guilds", "guild_message_polls"]}).intents == 1 | 1 << 24
    with pytest.raises(ValidationError, match="unknown intent"):
        model.model_validate({"intents": ["guilds", "typo"]})
    with pytest.raises(ValidationError, match="not Discord gateway intents"):
        model.model_validate({"intents": 1 << 40})


def test_ids_must_be_numeric_and_numbers_are_accepted() -> None:
    model = plugin.config.model
    assert model.model_validate({"channels": [300, "301"]}).channels == ("300", "301")
    with pytest.raises(ValidationError, match="numeric Discord ids"):
        model.model_validate({"guilds": ["my-server"]})


def test_unknown_keys_and_bad_urls_are_errors() -> None:
    model = plugin.config.model
    with pytest.raises(ValidationError):
        model.model_validate({"tokn": "x"})
    with pytest.raises(ValidationError, match="http"):
        model.model_validate({"api_base_url": "discord.com/api/v10"})


def test_plugin_wiring() -> None:
    assert plugin.id == "discord" and plugin.meta.label == "Discord"
    [secret] = plugin.config.secrets
    assert (secret.field, secret.env, secret.strip_prefix) == ("token", "DISCORD_BOT_TOKEN", "Bot ")
    assert plugin.capabilities.polls is PollSupport.NATIVE
    assert plugin.capabilities.chat_types == {ChatType.DIRECT, ChatType.CHANNEL, ChatType.THREAD}
    assert plugin.outbound is not None and plugin.outbound.text_chunk_limit == 2000
    assert getattr(plugin.outbound, "chunk_max_lines") == 17 and plugin.outbound.chunker == "markdown"
    assert {"guilds", "channels"} <= plugin.live_keys
    assert not {"token", "api_base_url", "intents"} & plugin.live_keys


def test_describe_account_never_shows_the_token() -> None:
    resolved = resolved_account(plugin, token="super-secret-token", channels=["300"])
    assert plugin.config.describe_account is not None
    summary = plugin.config.describe_account(resolved)
    assert "super-secret-token" not in repr(summary)
    assert summary["token_source"] == "config" and summary["channels"] == 1


async def test_open_client_without_a_token_is_a_config_error() -> None:
    from gateway.errors import ConfigInvalid

    resolved = resolved_account(plugin)
    assert plugin.open_client is not None
    with pytest.raises(ConfigInvalid, match="token"):
        async with plugin.open_client(resolved):
            pass
