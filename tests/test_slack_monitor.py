"""Slack Socket Mode monitor against the wire-level fake: inbound, acks, dedupe, refreshes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from gateway.errors import AuthFailed, ConfigInvalid, RateLimited
from gateway.plugin import ChatType, InboundMessage, MediaKind, ResolvedAccount
from gateway.testing import RecordingContext, resolved_account
from providers.slack import plugin
from tests.fakes.slack_api import SlackFake

TS = "1764064800.000100"


def message(text: str = "hello", *, ts: str = TS, channel: str = "C1", user: str = "U2",
            **extra: Any) -> dict[str, Any]:
    return {"type": "message", "channel": channel, "channel_type": "channel", "user": user, "text": text,
            "ts": ts, **extra}


class GatedContext(RecordingContext):
    """``emit`` waits for ``gate``, so a test can look at the wire while the inbox is busy."""

    def __init__(self, resolved: ResolvedAccount, client: Any = None):
        super().__init__(resolved, client)
        self.entered = anyio.Event()
        self.gate = anyio.Event()

    async def emit(self, message: InboundMessage) -> bool:
        self.entered.set()
        await self.gate.wait()
        return await super().emit(message)


class CountingContext(RecordingContext):
    """Counts ``emit`` calls, duplicates included (``inbound`` only keeps the first)."""

    emits = 0

    async def emit(self, message: InboundMessage) -> bool:
        self.emits += 1
        return await super().emit(message)


class FailOnceContext(RecordingContext):
    """The first ``emit`` fails, as if the inbox could not store the message."""

    def __init__(self, resolved: ResolvedAccount, client: Any = None):
        super().__init__(resolved, client)
        self.failed = anyio.Event()

    async def emit(self, message: InboundMessage) -> bool:
        if not self.failed.is_set():
            self.failed.set()
            raise OSError("disk full")
        return await super().emit(message)


@pytest.fixture
async def fake() -> AsyncIterator[SlackFake]:
    async with SlackFake() as server:
        yield server


@asynccontextmanager
async def running(fake: SlackFake, context: Callable[..., RecordingContext] = RecordingContext,
                  *, wait_connected: bool = True, **keys: Any) -> AsyncIterator[RecordingContext]:
    """Run the account in the background; cancelled when the block ends."""
    resolved = resolved_account(plugin, **{**fake.account_keys(), **keys})
    async with plugin.open_client(resolved) as client:
        ctx = context(resolved, client)
        async with anyio.create_task_group() as tg:
            tg.start_soon(plugin.gateway.run_account, ctx)
            if wait_connected:
                with anyio.fail_after(5):
                    await ctx.connected.wait()
            yield ctx
            tg.cancel_scope.cancel()


async def run_until_error(fake: SlackFake, **keys: Any) -> tuple[RecordingContext, BaseException]:
    resolved = resolved_account(plugin, **{**fake.account_keys(), **keys})
    async with plugin.open_client(resolved) as client:
        ctx = RecordingContext(resolved, client)
        with anyio.fail_after(5):
            try:
                await plugin.gateway.run_account(ctx)
            except Exception as exc:  # noqa: BLE001 - returned for the test to inspect
                return ctx, exc
    raise AssertionError("run_account returned without an error")


# --- connecting -----------------------------------------------------------------------------------


async def test_started_only_after_hello(fake: SlackFake) -> None:
    fake.hold_links()
    async with running(fake, wait_connected=False) as ctx:
        await fake.wait_for_call("apps.connections.open")
        assert not ctx.connected.is_set()
        fake.release_links()
        with anyio.fail_after(5):
            await ctx.connected.wait()
        assert ctx.status["bot_user_id"] == "U0BOT"
        assert fake.calls_of("apps.connections.open")[0].token == fake.app_token


async def test_cancelling_the_account_closes_the_websocket(fake: SlackFake) -> None:
    async with running(fake):
        link = await fake.wait_for_links(1)
    await fake.wait_link_closed(link.index)


async def test_invalid_bot_token_fails_auth(fake: SlackFake) -> None:
    _, error = await run_until_error(fake, bot_token="xoxb-wrong")
    assert isinstance(error, AuthFailed)
    assert "bot_token" in str(error)


async def test_invalid_app_token_fails_auth(fake: SlackFake) -> None:
    _, error = await run_until_error(fake, app_token="xapp-wrong")
    assert isinstance(error, AuthFailed)
    assert "app_token" in str(error)


async def test_rate_limited_connection_open_reports_retry_after(fake: SlackFake) -> None:
    fake.fail_next("apps.connections.open", status=429, retry_after=3)
    _, error = await run_until_error(fake)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 3


async def test_missing_scopes_are_put_in_the_status(fake: SlackFake) -> None:
    fake.scopes = ("chat:write", "channels:history")
    async with running(fake) as ctx:
        assert ctx.status["missing_scopes"] == ["app_mentions:read", "files:write", "im:history", "im:write"]
        issues = plugin.status.collect_issues([{"account": "default", **ctx.status}])
    assert [(i.kind, i.account) for i in issues] == [("permissions", "default")]
    assert "files:write" in issues[0].message


async def test_link_disabled_raises_config_invalid_with_an_issue(fake: SlackFake) -> None:
    async with anyio.create_task_group() as tg:
        async def disable() -> None:
            await fake.wait_for_links(1)
            await fake.send_disconnect("link_disabled")

        tg.start_soon(disable)
        ctx, error = await run_until_error(fake)
    assert isinstance(error, ConfigInvalid)
    assert "Socket Mode" in str(error)
    assert [(i.kind, i.message, i.fix) for i in ctx.issues] == [("config", str(error), error.fix)]
    assert "Enable Socket Mode" in (error.fix or "")
    assert len(fake.calls_of("apps.connections.open")) == 1  # no reconnect loop


# --- inbound ------------------------------------------------------------------------------------


async def test_channel_message_is_emitted_and_acked(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        envelope = await fake.inject_event(message("hi &amp; &lt;there&gt;"))
        await fake.wait_for_ack(envelope)
    [msg] = ctx.inbound
    assert (msg.provider, msg.account, msg.id) == ("slack", "default", f"C1:{TS}")
    assert (msg.chat.id, msg.chat.type) == ("C1", ChatType.CHANNEL)
    assert msg.sender.id == "U2"
    assert msg.text == "hi & <there>"
    assert (msg.thread, msg.mentioned, msg.type) == (None, False, "message")
    assert msg.timestamp is not None and msg.timestamp.timestamp() == pytest.approx(float(TS))


async def test_envelope_is_acked_only_after_emit_returned(fake: SlackFake) -> None:
    async with running(fake, GatedContext) as ctx:
        assert isinstance(ctx, GatedContext)
        envelope = await fake.inject_event(message())
        with anyio.fail_after(5):
            await ctx.entered.wait()
        await anyio.wait_all_tasks_blocked()  # any ack already sent has reached the fake by now
        assert fake.ack_attempts(envelope) == 0
        ctx.gate.set()
        await fake.wait_for_ack(envelope)
    assert len(ctx.inbound) == 1


async def test_thread_reply_carries_the_thread(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        await fake.wait_for_ack(await fake.inject_event(message("parent", thread_ts=TS)))
        await fake.wait_for_ack(await fake.inject_event(message("reply", ts="1764064900.000200", thread_ts=TS)))
    parent, reply = ctx.inbound
    assert parent.thread is None
    assert reply.thread == TS


async def test_direct_message_is_direct(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        await fake.wait_for_ack(await fake.inject_event(message(channel="D2", channel_type="im")))
    assert ctx.inbound[0].chat.type == ChatType.DIRECT


async def test_multi_person_dm_is_a_group(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        await fake.wait_for_ack(await fake.inject_event(message(channel="G9", channel_type="mpim")))
    assert ctx.inbound[0].chat.type == ChatType.GROUP


async def test_app_mention_is_mentioned(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        event = message("<@U0BOT> status?") | {"type": "app_mention"}
        await fake.wait_for_ack(await fake.inject_event(event))
    assert ctx.inbound[0].mentioned is True
    assert ctx.inbound[0].text == "<@U0BOT> status?"


async def test_mention_in_text_counts_as_mentioned(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        await fake.wait_for_ack(await fake.inject_event(message("hey <@U0BOT|switchboard> look")))
        await fake.wait_for_ack(await fake.inject_event(message("hey <@U3> look", ts="1764064801.000001")))
    assert [m.mentioned for m in ctx.inbound] == [True, False]


async def test_message_and_app_mention_of_one_message_emit_once(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        first = await fake.inject_event(message("<@U0BOT> hi"))
        second = await fake.inject_event(message("<@U0BOT> hi") | {"type": "app_mention"})
        await fake.wait_for_ack(first)
        await fake.wait_for_ack(second)
    assert [(m.id, m.mentioned) for m in ctx.inbound] == [(f"C1:{TS}", True)]


async def test_files_become_media_metadata(fake: SlackFake) -> None:
    files = [{"id": "F1", "name": "cat.png", "mimetype": "image/png", "size": 1234,
              "url_private": "https://files.slack.com/cat.png"},
             {"id": "F2", "name": "notes.pdf", "mimetype": "application/pdf", "size": 99}]
    async with running(fake) as ctx:
        await fake.wait_for_ack(await fake.inject_event(message("look", subtype="file_share", files=files)))
    media = ctx.inbound[0].media
    assert [(m.kind, m.ref, m.mime, m.size, m.filename) for m in media] == [
        (MediaKind.IMAGE, "F1", "image/png", 1234, "cat.png"),
        (MediaKind.DOCUMENT, "F2", "application/pdf", 99, "notes.pdf"),
    ]


async def test_own_messages_are_ignored_but_acked(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        by_bot_id = await fake.inject_event(message("echo", user="U0BOT", bot_id="B0BOT"))
        by_user = await fake.inject_event(message("echo", user="U0BOT", ts="1764064801.000001"))
        await fake.wait_for_ack(by_bot_id)
        await fake.wait_for_ack(by_user)
    assert ctx.inbound == []


async def test_other_bots_are_ignored_unless_allowed(fake: SlackFake) -> None:
    other_bot = message("beep", user="U9", bot_id="B9", subtype="bot_message")
    async with running(fake) as ctx:
        await fake.wait_for_ack(await fake.inject_event(other_bot))
    assert ctx.inbound == []
    async with running(fake, allow_bots=True) as ctx:
        await fake.wait_for_ack(await fake.inject_event(other_bot))
    assert [m.sender.id for m in ctx.inbound] == ["U9"]


async def test_edits_and_joins_are_not_messages(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        edit = await fake.inject_event({"type": "message", "subtype": "message_changed", "channel": "C1",
                                        "ts": TS, "message": {"text": "edited", "user": "U2"}})
        join = await fake.inject_event(message("joined", subtype="channel_join"))
        await fake.wait_for_ack(edit)
        await fake.wait_for_ack(join)
    assert ctx.inbound == []


def block_actions(action_id: str, *, label: str = "Blue", user: str = "U2",
                  action_ts: str = "1764064900.123456") -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": user, "username": "alice", "name": "alice"},
            "channel": {"id": "C1"}, "container": {"type": "message", "message_ts": TS, "channel_id": "C1"},
            "message": {"ts": TS, "text": "Favourite colour?"},
            "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": "1",
                         "text": {"type": "plain_text", "text": label}, "action_ts": action_ts}]}


async def test_poll_button_click_is_a_poll_vote(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        envelope = await fake.inject_interactive(block_actions("switchboard_poll:abc123:1"))
        await fake.wait_for_ack(envelope)
    [vote] = ctx.inbound
    assert vote.type == "poll_vote"
    assert (vote.chat.id, vote.sender.id, vote.text) == ("C1", "U2", "Blue")
    assert vote.reply_to == f"C1:{TS}"
    assert (vote.raw["poll_id"], vote.raw["option_index"]) == ("abc123", 1)


async def test_other_buttons_are_acked_and_ignored(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        await fake.wait_for_ack(await fake.inject_interactive(block_actions("someone_elses_button")))
    assert ctx.inbound == []


# --- delivery guarantees -------------------------------------------------------------------------


async def test_event_redelivered_with_the_same_event_id_is_emitted_once(fake: SlackFake) -> None:
    async with running(fake, CountingContext) as ctx:
        assert isinstance(ctx, CountingContext)
        first = await fake.inject_event(message(), event_id="Ev42")
        retry = await fake.inject_event(message(), event_id="Ev42")
        await fake.wait_for_ack(first)
        await fake.wait_for_ack(retry)
        assert ctx.emits == 1


async def test_unacked_envelope_redelivered_after_reconnect_is_handled_once(fake: SlackFake) -> None:
    async with running(fake, CountingContext) as ctx:
        assert isinstance(ctx, CountingContext)
        fake.lose_next_acks(1)
        envelope = await fake.inject_event(message())
        await fake.wait_for_ack_attempts(envelope, 1)
        assert not fake.acked(envelope)
        await fake.drop_connection()
        await fake.wait_for_ack(envelope)
        assert ctx.emits == 1
    assert fake.deliveries(envelope) == [(0, 0), (1, 1)]
    assert len(ctx.inbound) == 1


async def test_failed_emit_leaves_the_envelope_for_redelivery(fake: SlackFake) -> None:
    async with running(fake, FailOnceContext) as ctx:
        assert isinstance(ctx, FailOnceContext)
        envelope = await fake.inject_event(message())
        with anyio.fail_after(5):
            await ctx.failed.wait()
        await anyio.wait_all_tasks_blocked()
        assert not fake.acked(envelope)
        await fake.drop_connection()
        await fake.wait_for_ack(envelope)
    assert fake.deliveries(envelope) == [(0, 0), (1, 1)]
    assert len(ctx.inbound) == 1


async def test_events_sent_while_disconnected_arrive_after_reconnect(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        fake.hold_links()
        await fake.drop_connection()
        await fake.wait_for_call("apps.connections.open", 2)
        envelope = await fake.inject_event(message())
        fake.release_links()
        await fake.wait_for_ack(envelope)
    assert fake.deliveries(envelope) == [(1, 0)]
    assert len(ctx.inbound) == 1


async def test_refresh_opens_the_new_link_first_and_loses_nothing(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        fake.hold_links()
        await fake.send_disconnect("refresh_requested")
        await fake.wait_for_call("apps.connections.open", 2)  # the switch has started
        during = await fake.inject_event(message("during the switch"))
        await fake.wait_for_ack(during)  # handled and acked on the old link
        assert fake.deliveries(during) == [(0, 0)]
        fake.release_links()
        await fake.wait_for_links(2)
        await fake.wait_link_closed(0)  # the old link is closed by us, after the new one is up
        after = await fake.inject_event(message("after the switch", ts="1764064801.000001"))
        await fake.wait_for_ack(after)
        assert fake.deliveries(after) == [(1, 0)]
    assert [m.text for m in ctx.inbound] == ["during the switch", "after the switch"]


async def test_warning_disconnect_moves_to_a_new_link(fake: SlackFake) -> None:
    async with running(fake) as ctx:
        await fake.send_disconnect("warning")
        await fake.wait_for_links(2)
        await fake.wait_link_closed(0)
        envelope = await fake.inject_event(message())
        await fake.wait_for_ack(envelope)
    assert fake.deliveries(envelope) == [(1, 0)]
    assert len(ctx.inbound) == 1
