"""The Discord monitor (run_account) against the wire-level fake gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from gateway.errors import AuthFailed, ConfigInvalid, RateLimited
from gateway.plugin import ChatType, InboundMessage, MediaKind, Poll, SendOptions, Target
from gateway.testing import MemoryStore, RecordingContext, resolved_account
from providers.discord import plugin
from providers.discord import monitor as discord_monitor
from tests.fakes.discord_api import DiscordFake

WAIT = 5.0  # generous timeout for anything we wait for; never a sleep


class CountingContext(RecordingContext):
    """Counts every emit call, duplicates included (RecordingContext drops duplicates silently)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.emit_calls: list[str] = []

    async def emit(self, message: InboundMessage) -> bool:
        self.emit_calls.append(message.id)
        return await super().emit(message)


def make_context(fake: DiscordFake, store: MemoryStore | None = None, **keys: Any) -> CountingContext:
    resolved = resolved_account(plugin, token=fake.token, api_base_url=fake.api_base_url, **keys)
    return CountingContext(resolved, store=store)


@asynccontextmanager
async def running(ctx: CountingContext) -> AsyncIterator[None]:
    """Run the account (client opened as the core does) until the block ends."""
    assert plugin.open_client is not None
    async with plugin.open_client(ctx.resolved) as client, anyio.create_task_group() as tg:
        ctx.client = client
        tg.start_soon(plugin.gateway.run_account, ctx)
        with anyio.fail_after(WAIT):
            await ctx.connected.wait()
        yield
        tg.cancel_scope.cancel()


async def run_until_error(ctx: CountingContext) -> BaseException:
    assert plugin.open_client is not None
    async with plugin.open_client(ctx.resolved) as client:
        ctx.client = client
        with anyio.fail_after(WAIT), pytest.raises(Exception) as caught:
            await plugin.gateway.run_account(ctx)
    return caught.value


async def test_identifies_and_reports_the_bot() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        async with running(ctx):
            assert fake.identify_count == 1
            identify = fake.identifies[0]
            assert identify["token"] == fake.token
            assert identify["intents"] == 50369025
            assert fake.connections[0].query == {"v": "10", "encoding": "json"}
            assert ctx.status["bot"] == {"id": "100", "username": "gwbot"}
            assert ctx.status["application"]["intents"]["message_content"] == "enabled"
            assert ctx.status["session_start_remaining"] == 999


async def test_guild_message_becomes_an_inbound_channel_message() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        async with running(ctx):
            data = fake.message_payload("hello <@100>", mentions=[{"id": "100", "username": "gwbot"}],
                                        member={"nick": "Ali"})
            await fake.dispatch("MESSAGE_CREATE", data)
            [message] = await ctx.wait_inbound(1)
    assert message.provider == "discord" and message.account == "default"
    assert message.id == data["id"]
    assert message.chat.id == "300" and message.chat.type is ChatType.CHANNEL and message.chat.title == "general"
    assert (message.sender.id, message.sender.name, message.sender.username) == ("500", "Ali", "alice")
    assert message.text == "hello <@100>"
    assert message.mentioned is True
    assert message.timestamp is not None and message.timestamp.year == 2026


async def test_direct_and_thread_messages_get_their_chat_types() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        async with running(ctx):
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("dm", channel_id="600", guild_id=None))
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("in thread", channel_id="310"))
            dm, threaded = await ctx.wait_inbound(2)
    assert dm.chat.type is ChatType.DIRECT and dm.chat.id == "600" and dm.mentioned is False
    assert threaded.chat.type is ChatType.THREAD and threaded.thread == "310" and threaded.chat.id == "310"


async def test_replies_reach_the_chat_a_message_came_from() -> None:
    assert plugin.outbound is not None
    outbound = plugin.outbound
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        async with running(ctx):
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("in channel"))
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("in thread", channel_id="310"))
            for message in await ctx.wait_inbound(2):
                target = outbound.resolve_target(outbound.reply_target(message), ctx.account)
                await outbound.send_text(ctx, target, "reply", SendOptions(reply_to=message.id, thread=message.thread))
    assert [m["channel_id"] for m in fake.messages] == ["300", "310"]


async def test_reply_to_the_bot_counts_as_a_mention() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        async with running(ctx):
            data = fake.message_payload("and?", type=19, message_reference={"message_id": "77", "type": 0},
                                        referenced_message={"id": "77", "author": fake.bot_user})
            await fake.dispatch("MESSAGE_CREATE", data)
            [message] = await ctx.wait_inbound(1)
    assert message.reply_to == "77"
    assert message.mentioned is True


async def test_attachments_arrive_as_media_metadata() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        async with running(ctx):
            attachment = {"id": "9", "filename": "cat.png", "size": 1234, "url": "https://cdn.example/cat.png",
                          "content_type": "image/png"}
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("", attachments=[attachment]))
            [message] = await ctx.wait_inbound(1)
    [media] = message.media
    assert (media.kind, media.ref, media.mime, media.size, media.filename) == (
        MediaKind.IMAGE, "https://cdn.example/cat.png", "image/png", 1234, "cat.png")


async def test_own_messages_are_ignored() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        async with running(ctx):
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("echo of myself", author_id="100",
                                                                       username="gwbot"))
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("from a person"))
            messages = await ctx.wait_inbound(1)
    assert [m.text for m in messages] == ["from a person"]
    assert len(ctx.emit_calls) == 1


async def test_guild_and_channel_allowlists_filter_guild_messages_only() -> None:
    async with DiscordFake() as fake:
        fake.add_channel("320", name="other")
        ctx = make_context(fake, channels=["300"])
        async with running(ctx):
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("elsewhere", channel_id="320"))
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("other server", channel_id="900",
                                                                       guild_id="401"))
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("thread of 300", channel_id="310"))
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("dm", channel_id="600", guild_id=None))
            messages = await ctx.wait_inbound(2)
    assert [m.text for m in messages] == ["thread of 300", "dm"]


async def test_guild_allowlist_drops_other_servers() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake, guilds=["400"])
        async with running(ctx):
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("other server", guild_id="401"))
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("our server"))
            messages = await ctx.wait_inbound(1)
    assert [m.text for m in messages] == ["our server"]


async def test_poll_vote_arrives_as_poll_vote_message() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        async with running(ctx):
            vote = {"user_id": "500", "channel_id": "300", "message_id": "42", "guild_id": "400", "answer_id": 2}
            await fake.dispatch("MESSAGE_POLL_VOTE_ADD", vote)
            [message] = await ctx.wait_inbound(1)
    assert message.type == "poll_vote"
    assert message.reply_to == "42" and message.sender.id == "500" and message.chat.id == "300"
    assert message.raw["answer_id"] == 2


async def test_vote_on_a_poll_we_sent_carries_the_answer_text() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        async with running(ctx):
            assert plugin.outbound is not None
            sent = await plugin.outbound.send_poll(ctx, Target("channel", "300"), Poll("Lunch?", ("Pizza", "Sushi")),
                                                   SendOptions())
            vote = {"user_id": "500", "channel_id": "300", "message_id": sent.message_id, "guild_id": "400",
                    "answer_id": 2}
            await fake.dispatch("MESSAGE_POLL_VOTE_ADD", vote)
            await fake.dispatch("MESSAGE_POLL_VOTE_ADD", {**vote, "user_id": "100"})  # our own vote
            await fake.dispatch("MESSAGE_POLL_VOTE_ADD", vote)  # voted again after removing it
            messages = await ctx.wait_inbound(2)
    assert [(m.type, m.text, m.reply_to) for m in messages] == [("poll_vote", "Sushi", sent.message_id)] * 2
    assert messages[0].id != messages[1].id


async def test_resume_after_dropped_socket_replays_missed_events_exactly_once() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        async with running(ctx):
            first_seq = await fake.dispatch("MESSAGE_CREATE", fake.message_payload("before"))
            await ctx.wait_inbound(1)
            await fake.drop_connection()
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("while away 1"))
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("while away 2"))
            messages = await ctx.wait_inbound(3)
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("after"))
            messages = await ctx.wait_inbound(4)
    assert [m.text for m in messages] == ["before", "while away 1", "while away 2", "after"]
    assert len(ctx.emit_calls) == 4  # nothing emitted twice, not even as a duplicate
    assert fake.identify_count == 1 and fake.resume_count == 1
    assert fake.resumes[0]["seq"] == first_seq and fake.resumes[0]["session_id"] == fake.session_id
    assert fake.replayed == 2


async def test_missing_heartbeat_ack_closes_the_zombie_and_resumes() -> None:
    async with DiscordFake(heartbeat_interval_ms=100) as fake:
        ctx = make_context(fake)
        async with running(ctx):
            await fake.wait_for(lambda: len(fake.heartbeats) >= 1, WAIT)
            fake.withhold_acks()
            await fake.wait_for(lambda: fake.resume_count == 1, WAIT)
            await fake.wait_connected()
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("still here"))
            await ctx.wait_inbound(1)
    assert fake.identify_count == 1
    assert fake.client_close_codes[0] not in (1000, 1001, None)  # a 1000 would end the session


async def test_heartbeat_request_is_answered_at_once() -> None:
    async with DiscordFake() as fake:  # 41 s interval: no beat of its own during the test
        ctx = make_context(fake)
        async with running(ctx):
            first = await fake.dispatch("MESSAGE_CREATE", fake.message_payload("x"))
            await ctx.wait_inbound(1)
            before = len(fake.heartbeats)
            await fake.request_heartbeat()
            await fake.wait_for(lambda: len(fake.heartbeats) > before, WAIT)
    assert fake.heartbeats[-1] == first


async def test_reconnect_request_resumes() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        async with running(ctx):
            await fake.send_reconnect()
            await fake.wait_for(lambda: fake.resume_count == 1, WAIT)
            await fake.wait_connected()
    assert fake.identify_count == 1


async def test_invalid_session_not_resumable_identifies_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord_monitor, "INVALID_SESSION_DELAY", (0.0, 0.01))
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        async with running(ctx):
            old_session = fake.session_id
            await fake.invalidate_session(resumable=False)
            await fake.wait_for(lambda: fake.identify_count == 2, WAIT)
            await fake.wait_connected()
            assert fake.session_id != old_session
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("new session"))
            await ctx.wait_inbound(1)
    assert fake.resume_count == 0


async def test_other_close_codes_resume() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        async with running(ctx):
            await fake.close_with(4000, "Unknown error")
            await fake.wait_for(lambda: fake.resume_count == 1, WAIT)
            await fake.wait_connected()
    assert fake.identify_count == 1


async def test_resume_state_survives_a_restart_of_run_account() -> None:
    async with DiscordFake() as fake:
        store = MemoryStore()
        first = make_context(fake, store=store)
        async with running(first):
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("before restart"))
            await first.wait_inbound(1)
        await fake.wait_for(lambda: not any(not c.closed for c in fake.connections), WAIT)
        await fake.dispatch("MESSAGE_CREATE", fake.message_payload("during restart"))

        second = make_context(fake, store=store)
        async with running(second):
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("after restart", author_id="100"))
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload("after restart"))
            messages = await second.wait_inbound(2)
    assert [m.text for m in messages] == ["during restart", "after restart"]  # own message still ignored
    assert fake.identify_count == 1 and fake.resume_count == 1
    assert second.status["bot"]["id"] == "100"


async def test_disallowed_message_content_intent_is_a_config_error_with_an_issue() -> None:
    async with DiscordFake(application_flags=0) as fake:  # the portal switch is off: Discord closes 4014
        ctx = make_context(fake)
        error = await run_until_error(ctx)
    assert isinstance(error, ConfigInvalid)
    assert "Message Content intent is not enabled for this application" in str(error)
    [issue] = ctx.issues
    assert issue.kind == "intent"
    assert issue.fix is not None and "Privileged Gateway Intents" in issue.fix
    assert not ctx.connected.is_set()


async def test_close_4014_while_running_is_a_config_error() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        assert plugin.open_client is not None
        async with plugin.open_client(ctx.resolved) as client:
            ctx.client = client
            async with anyio.create_task_group() as tg:
                async def close_when_connected() -> None:
                    await ctx.connected.wait()
                    await fake.close_with(4014, "Disallowed intent(s).")

                tg.start_soon(close_when_connected)
                with anyio.fail_after(WAIT), pytest.raises(ConfigInvalid):
                    await plugin.gateway.run_account(ctx)
    assert [i.kind for i in ctx.issues] == ["intent"]
    assert fake.resume_count == 0


async def test_rejected_token_on_the_gateway_is_auth_failed() -> None:
    async with DiscordFake() as fake:
        ctx = make_context(fake)
        assert plugin.open_client is not None
        async with plugin.open_client(ctx.resolved) as client:
            ctx.client = client
            async with anyio.create_task_group() as tg:
                async def revoke_and_close() -> None:
                    await ctx.connected.wait()
                    fake.token = "rotated"
                    await fake.close_with(4004, "Authentication failed.")

                tg.start_soon(revoke_and_close)
                with anyio.fail_after(WAIT), pytest.raises(AuthFailed):
                    await plugin.gateway.run_account(ctx)


async def test_rejected_token_on_rest_is_auth_failed_before_connecting() -> None:
    async with DiscordFake() as fake:
        ctx = CountingContext(resolved_account(plugin, token="wrong", api_base_url=fake.api_base_url))
        error = await run_until_error(ctx)
    assert isinstance(error, AuthFailed)
    assert fake.connections == []


async def test_used_up_session_start_limit_is_rate_limited() -> None:
    async with DiscordFake(session_start_remaining=0, session_start_reset_after_ms=3_600_000) as fake:
        ctx = make_context(fake)
        error = await run_until_error(ctx)
    assert isinstance(error, RateLimited)
    assert error.retry_after == pytest.approx(3600)
    assert fake.identify_count == 0


async def test_stale_stored_session_falls_back_to_identify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord_monitor, "INVALID_SESSION_DELAY", (0.0, 0.01))
    async with DiscordFake() as fake:
        store = MemoryStore({discord_monitor.RESUME_KEY: {
            "session_id": "gone", "resume_gateway_url": fake.gateway_url, "seq": 12}})
        ctx = make_context(fake, store=store)
        async with running(ctx):
            pass
    assert fake.resume_count == 1 and fake.identify_count == 1
