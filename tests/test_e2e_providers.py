"""End to end, one per provider: the real daemon (a subprocess, real config file, echo handler)
against the provider's wire-level fake running in the test's event loop.

Each test injects one direct message into the fake, waits for the echoed reply to be sent back
to the same chat through the provider's real API, checks the provider was acknowledged the way
DESIGN.md §7 step 3 asks (Telegram offset, Slack envelope ack), then stops the daemon with
SIGTERM and expects exit code 0. Every wait is on the fake's events, bounded by a timeout; a
timeout fails with the daemon's last log lines.
"""

from __future__ import annotations

import signal
import subprocess
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio

from tests.daemon import Daemon
from tests.fakes.discord_api import DiscordFake
from tests.fakes.slack_api import SlackFake
from tests.fakes.telegram_api import TelegramFake

T = TypeVar("T")

#: Budget for one round trip through the daemon (inbox, handler, outbox, provider API).
ROUND_TRIP_S = 10.0
#: Budget for the daemon's start (interpreter, imports, state store): generous for a loaded CI box.
START_S = 30.0


def write_config(tmp_path: Path, provider_table: str) -> Path:
    """A daemon config: echo handler, no TCP listener (no ``gateway.control.listen``), file-watch
    reloads out of the way (60 s debounce), one provider account."""
    path = tmp_path / "switchboard.toml"
    path.write_text(textwrap.dedent(f"""\
        [gateway]
        state_dir = "{tmp_path / 'state'}"
        log_level = "debug"   # policy drops etc. are debug events: they make a timeout readable
        [gateway.reload]
        debounce_ms = 60000
        [handler]
        kind = "echo"
        """) + textwrap.dedent(provider_table))
    return path


@asynccontextmanager
async def running_daemon(config: Path) -> AsyncIterator[Daemon]:
    """Start the daemon, wait for ``gateway.started``; always gone afterwards."""
    daemon = Daemon(config)
    try:
        await anyio.to_thread.run_sync(lambda: daemon.wait_event("gateway.started", timeout=START_S))
        yield daemon
    finally:
        await anyio.to_thread.run_sync(daemon.kill)


async def within(daemon: Daemon, what: str, waiting: Awaitable[T], timeout: float = ROUND_TRIP_S) -> T:
    """Await ``waiting`` (a fake's wait) under ``timeout``; a timeout names ``what`` and shows the daemon log."""
    try:
        with anyio.fail_after(timeout):
            return await waiting
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; daemon "
                             f"{'exited ' + str(daemon.proc.poll()) if daemon.proc.poll() is not None else 'running'}"
                             f", last output:\n{daemon.output()}") from None


async def stop_gracefully(daemon: Daemon) -> None:
    daemon.signal(signal.SIGTERM)
    try:
        code = await anyio.to_thread.run_sync(daemon.wait, 15.0)
    except subprocess.TimeoutExpired:
        raise AssertionError("daemon did not exit within 15s of SIGTERM; last output:\n"
                             + daemon.output()) from None
    # The reader thread sees EOF right after exit: join it so output() is complete on failure.
    await anyio.to_thread.run_sync(daemon.join_output, 5.0)
    assert code == 0, f"exit code {code} after SIGTERM; last output:\n{daemon.output()}"


async def until(changed: Callable[[], Awaitable[Any]], predicate: Callable[[], bool]) -> None:
    """Re-check ``predicate`` each time ``changed()`` returns (a fake's "something happened" wait)."""
    while not predicate():
        await changed()


# --- Telegram (issue 7) -------------------------------------------------------------------------

TG_TOKEN = "123456:TEST-e2e-token"


async def test_telegram_private_message_is_echoed_and_the_offset_advances(tmp_path: Path):
    async with TelegramFake() as fake:
        fake.add_bot(TG_TOKEN, username="gw_bot")
        config = write_config(tmp_path, f"""\
            [providers.telegram.accounts.default]
            bot_token = "{TG_TOKEN}"
            api_base_url = "{fake.base_url}"
            poll_timeout_s = 5
            dm_policy = "open"
            """)
        async with running_daemon(config) as daemon:
            first_poll = await within(daemon, "the first getUpdates",
                                      fake.wait_for_request("getUpdates", 1, timeout=60, token=TG_TOKEN))
            assert "getMe" in [r.method for r in fake.requests]
            assert int(first_poll[0].params.get("offset") or 0) == 0

            update = fake.inject_message(TG_TOKEN, "hello from telegram", chat_id=4242, from_id=4242)
            update_id = update["update_id"]

            sent = await within(daemon, "sendMessage with the echo",
                                fake.wait_for_request("sendMessage", 1, timeout=60, token=TG_TOKEN))
            assert len(sent) == 1, [r.params for r in sent]
            reply = await within(daemon, "the answer to sendMessage", fake.wait_for_answer(sent[0], timeout=60))
            assert str(reply.params["chat_id"]) == "4242"
            assert reply.params["text"] == "hello from telegram"
            assert reply.status == 200, reply.result

            # The offset was advanced after the inbox stored the update: the next poll confirms it.
            def confirmed() -> bool:
                return any(int(r.params.get("offset") or 0) == update_id + 1
                           for r in fake.calls("getUpdates", TG_TOKEN))

            await within(daemon, f"a getUpdates with offset {update_id + 1}",
                         until(lambda: fake.wait_for_request("getUpdates", len(fake.calls("getUpdates")) + 1,
                                                             timeout=60), confirmed))
            assert fake.pending(TG_TOKEN) == []
            # Never below the confirmed offset again (no redelivery).
            offsets = [int(r.params.get("offset") or 0) for r in fake.calls("getUpdates", TG_TOKEN)]
            assert offsets == sorted(offsets), offsets

            await stop_gracefully(daemon)
        assert len(fake.calls("sendMessage")) == 1


# --- Discord (issue 8) --------------------------------------------------------------------------

DM_CHANNEL = "600123"


async def test_discord_dm_is_echoed_to_the_dm_channel(tmp_path: Path):
    async with DiscordFake(token="discord-e2e-token") as fake:
        fake.add_channel(DM_CHANNEL, type=1, guild_id=None,
                         recipients=[{"id": "500", "username": "alice", "discriminator": "0"}])
        config = write_config(tmp_path, f"""\
            [providers.discord.accounts.default]
            token = "{fake.token}"
            api_base_url = "{fake.api_base_url}"
            dm_policy = "open"
            """)
        async with running_daemon(config) as daemon:
            await within(daemon, "the gateway session (IDENTIFY → READY)", fake.wait_connected(timeout=60))
            assert fake.identify_count == 1

            created = fake.message_payload("hello from discord", channel_id=DM_CHANNEL, guild_id=None,
                                           author_id="500", username="alice")
            await fake.dispatch("MESSAGE_CREATE", created)

            route = f"/channels/{DM_CHANNEL}/messages"
            await within(daemon, f"POST {route}",
                         fake.wait_for(lambda: any(r.status is not None for r in fake.requests_to("POST", route)),
                                       timeout=60))
            posts = fake.requests_to("POST", route)
            assert len(posts) == 1, [p.body for p in posts]
            assert posts[0].status == 200, posts[0]
            assert posts[0].body["content"] == "hello from discord"
            assert [m["content"] for m in fake.messages] == ["hello from discord"]
            # Nothing went to any other channel.
            assert [r.path for r in fake.requests if r.method == "POST" and r.path.endswith("/messages")] == [route]

            await stop_gracefully(daemon)


# --- Slack (issue 9) ----------------------------------------------------------------------------

IM_CHANNEL = "D0E2E"


async def test_slack_im_is_echoed_and_the_envelope_acked(tmp_path: Path):
    async with SlackFake(channels=("C1", "C2", "G1", IM_CHANNEL)) as fake:
        config = write_config(tmp_path, f"""\
            [providers.slack.accounts.default]
            bot_token = "{fake.bot_token}"
            app_token = "{fake.app_token}"
            api_base_url = "{fake.api_base_url}"
            dm_policy = "open"
            """)
        async with running_daemon(config) as daemon:
            await within(daemon, "the Socket Mode link (hello)", fake.wait_for_links(1, timeout=60))

            envelope = await fake.inject_event({
                "type": "message", "channel": IM_CHANNEL, "channel_type": "im", "user": "U2",
                "text": "hello from slack", "ts": "1764064800.000100", "event_ts": "1764064800.000100"})

            await within(daemon, f"the ack of {envelope}", fake.wait_for_ack(envelope, timeout=60))
            posted = await within(daemon, "chat.postMessage with the echo",
                                  fake.wait_for_call("chat.postMessage", 1, timeout=60))
            assert len(posted) == 1, [c.params for c in posted]
            assert posted[0].token == fake.bot_token
            assert posted[0].params["channel"] == IM_CHANNEL
            assert [(m["channel"], m["text"]) for m in fake.messages] == [(IM_CHANNEL, "hello from slack")]
            assert fake.ack_attempts(envelope) == 1
            assert fake.deliveries(envelope) == [(0, 0)]  # acked in time: never redelivered

            await stop_gracefully(daemon)
