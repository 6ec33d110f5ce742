"""Through the gateway: reloading one Telegram account leaves another's long poll alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.inbound import InboundPipeline
from gateway.plugin import AccountKey
from gateway.registry import Registry
from gateway.reload import Reloader
from gateway.testing import wait_for_status
from providers.telegram import plugin as telegram
from tests.fakes.telegram_api import TelegramFake
from tests.support import running_gateway

A_TOKEN, B_TOKEN = "111:alpha-token", "222:bravo-token"


@pytest.fixture
async def fake():
    async with TelegramFake() as server:
        server.add_bot(A_TOKEN, username="alpha_bot")
        server.add_bot(B_TOKEN, username="bravo_bot")
        yield server


def config(tmp_path: Path, base_url: str, a_timeout: int) -> Path:
    path = tmp_path / "switchboard.toml"
    path.write_text(f"""
[gateway]
state_dir = "{tmp_path / 'state'}"
[gateway.reload]
debounce_ms = 60000
[handler]
kind = "none"
[providers.telegram]
api_base_url = "{base_url}"
dm_policy = "open"
[providers.telegram.accounts.alpha]
bot_token = "{A_TOKEN}"
poll_timeout_s = {a_timeout}
[providers.telegram.accounts.bravo]
bot_token = "{B_TOKEN}"
""")
    return path


async def test_reloading_one_account_does_not_touch_the_other_accounts_long_poll(tmp_path, fake):
    path = config(tmp_path, fake.base_url, a_timeout=20)
    alpha, bravo = AccountKey("telegram", "alpha"), AccountKey("telegram", "bravo")
    async with running_gateway(path, Registry([telegram]), services=[InboundPipeline, Reloader]) as gw:
        await wait_for_status(gw.status, lambda s: s.state(alpha) == s.state(bravo) == "running", timeout=10)
        (bravo_poll,) = await fake.wait_for_request("getUpdates", 1, token=B_TOKEN)

        config(tmp_path, fake.base_url, a_timeout=25)
        result = await gw.service(Reloader).reload("test")
        assert result.plan.restart == (alpha,)
        await wait_for_status(gw.status, lambda s: s.get(alpha)["starts"] == 2 and s.state(alpha) == "running")

        # bravo's long poll is the very request that was open before the reload.
        assert bravo_poll.status is None
        assert gw.status.get(bravo)["starts"] == 1
        assert len(fake.calls("getMe", B_TOKEN)) == 1 and len(fake.calls("getMe", A_TOKEN)) == 2
        update = fake.inject_message(B_TOKEN, "still polling")
        await fake.wait_for_answer(bravo_poll)
        assert bravo_poll.status == 200 and bravo_poll.result == [update]


async def test_the_offset_survives_a_gateway_restart_with_nothing_lost_or_handled_twice(tmp_path, fake):
    path = config(tmp_path, fake.base_url, a_timeout=20)
    registry = Registry([telegram])
    alpha = AccountKey("telegram", "alpha")

    def handled(gw) -> list[str]:  # noqa: ANN001
        entries = gw.service(InboundPipeline).inbox.list(limit=100)
        return sorted(e.envelope["message"]["text"] for e in entries if e.account == "alpha")

    first = fake.inject_message(A_TOKEN, "before restart")
    async with running_gateway(path, registry, services=[InboundPipeline]) as gw:
        await wait_for_status(gw.status, lambda s: s.state(alpha) == "running", timeout=10)
        await fake.wait_for_request("getUpdates", 2, token=A_TOKEN)  # the second one confirms the first
        assert handled(gw) == ["before restart"]

    second = fake.inject_message(A_TOKEN, "while down")
    polls_before = len(fake.calls("getUpdates", A_TOKEN))
    async with running_gateway(path, registry, services=[InboundPipeline]) as gw:
        await wait_for_status(gw.status, lambda s: s.state(alpha) == "running", timeout=10)
        polls = await fake.wait_for_request("getUpdates", polls_before + 2, token=A_TOKEN)
        # The first poll of the new run resumes after the update handled before the restart.
        resumed = polls[polls_before].params.get("offset")
        assert str(resumed) == str(first["update_id"] + 1)
        assert handled(gw) == ["before restart", "while down"]
        assert fake.pending(A_TOKEN) == []
    assert second["update_id"] == first["update_id"] + 1
