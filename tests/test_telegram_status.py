"""Probe and status issues against the Bot API fake."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import pytest

from gateway.testing import RecordingContext, resolved_account
from providers.telegram import plugin
from tests.fakes.telegram_api import TelegramFake

TOKEN = "123456:ABC-status"
status = plugin.status


@pytest.fixture
async def fake():
    async with TelegramFake() as fake:
        fake.add_bot(TOKEN, username="gw_bot", can_read_all_group_messages=False)
        yield fake


def resolved(fake: TelegramFake, token: str = TOKEN, **keys: Any):
    return resolved_account(plugin, bot_token=token, api_base_url=fake.base_url, **keys)


async def test_probe_reports_the_bot_and_its_webhook(fake):
    result = await status.probe(None, resolved(fake), timeout=5)
    assert result["ok"] is True
    assert result["bot"] == {"id": 123456, "username": "gw_bot", "first_name": "GW", "can_join_groups": True,
                             "can_read_all_group_messages": False}
    assert result["webhook"]["url"] is None
    assert result["webhook"]["stray"] is False
    assert isinstance(result["elapsed_ms"], int)
    assert [r.method for r in fake.requests] == ["getMe", "getWebhookInfo"]


async def test_probe_uses_the_running_accounts_client(fake):
    account = resolved(fake)
    async with plugin.open_client(account) as client:
        result = await status.probe(RecordingContext(account, client), account, timeout=5)
    assert result["ok"] is True


async def test_probe_with_a_bad_token_says_so_without_the_token(fake):
    result = await status.probe(None, resolved(fake, token="999:wrong"), timeout=5)
    assert result["ok"] is False
    assert result["status"] == 401
    assert "rejected" in result["error"]
    assert "999:wrong" not in str(result)


async def test_probe_flags_a_stray_webhook_for_a_polling_account(fake):
    fake.bots[TOKEN].webhook_url = "https://old.example/hook"
    result = await status.probe(None, resolved(fake), timeout=5)
    assert result["webhook"]["stray"] is True
    issues = status.collect_issues([{"provider": "telegram", "account": "default", "probe": result}])
    assert [(i.kind, "old.example" in i.message) for i in issues] == [("runtime", True)]


def test_undeliverable_webhook_is_an_issue():
    probe = {"ok": True, "webhook": {"url": "https://bot.example/hooks/telegram/default/", "pending_update_count": 3,
                                     "last_error_message": "Connection refused", "stray": False, "mismatch": False}}
    (issue,) = status.collect_issues([{"provider": "telegram", "account": "default", "probe": probe}])
    assert issue.kind == "runtime"
    assert "Connection refused" in issue.message and "3 updates" in issue.message


async def test_probe_gives_up_after_the_timeout():
    # A listener whose backlog accepts the connection but that never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        silent = f"http://127.0.0.1:{listener.getsockname()[1]}"
        result = await status.probe(None, resolved_account(plugin, bot_token=TOKEN, api_base_url=silent), timeout=0.2)
    assert result["ok"] is False
    assert result["error"] == "no answer within 0.2s"


async def test_audit_reports_groups_the_bot_cannot_reach(fake):
    fake.set_member(-1001111111111, 123456, "member")
    fake.set_member(-1002222222222, 123456, "left")
    account = resolved(fake, audit_groups=["-1001111111111", "-1002222222222", "-1003333333333"])
    result = await status.probe(None, account, timeout=5)
    assert [(g["chat_id"], g["ok"]) for g in result["audit"]] == [
        ("-1001111111111", True), ("-1002222222222", False), ("-1003333333333", False)]
    issues = status.collect_issues([{"provider": "telegram", "account": "default", "probe": result}])
    assert [i.message for i in issues] == [
        "group -1002222222222 is not reachable by the bot (status=left): bot is not in the group",
        "group -1003333333333 is not reachable by the bot: Bad Request: chat not found",
    ]
    assert all(i.kind == "runtime" and i.fix for i in issues)


async def test_running_account_records_what_the_privacy_warning_needs(fake):
    from providers.telegram import Backoff, TelegramGateway

    account = resolved(fake, require_mention=False)
    async with plugin.open_client(account) as client:
        ctx = RecordingContext(account, client)
        async with anyio.create_task_group() as tg:
            tg.start_soon(TelegramGateway(Backoff(initial_s=0.001)).run_account, ctx)
            with anyio.fail_after(5):
                await ctx.connected.wait()
            tg.cancel_scope.cancel()
    snapshot = {"provider": "telegram", "account": "default", "enabled": True, "configured": True, **ctx.status}
    (issue,) = status.collect_issues([snapshot])
    assert issue.kind == "config"
    assert "privacy mode" in issue.message
    assert "/setprivacy" in issue.fix


@pytest.mark.parametrize(("snapshot", "warned"), [
    ({"require_mention": False, "can_read_all_group_messages": False}, True),
    ({"require_mention": False, "can_read_all_group_messages": True}, False),
    ({"require_mention": True, "can_read_all_group_messages": False}, False),
    ({"require_mention": False, "group_policy": "disabled", "can_read_all_group_messages": False}, False),
    ({"require_mention": False, "probe": {"bot": {"can_read_all_group_messages": False}}}, True),
    ({"require_mention": False, "can_read_all_group_messages": False, "enabled": False}, False),
    ({"require_mention": False}, False),
])
def test_privacy_warning_only_when_groups_without_mention_cannot_be_read(snapshot, warned):
    issues = status.collect_issues([{"provider": "telegram", "account": "default", **snapshot}])
    assert bool(issues) is warned
