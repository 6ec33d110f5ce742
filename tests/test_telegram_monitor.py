"""run_account against the Bot API fake: polling, offsets, conflicts, errors, webhook mode."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from gateway.errors import AccountNotReady, AuthFailed, ConfigInvalid, RateLimited
from gateway.plugin import AccountKey, InboundMessage
from gateway.testing import MemoryStore, RecordingContext, resolved_account
from providers.telegram import Backoff, TelegramGateway, plugin
from tests.fakes.telegram_api import TelegramFake

TOKEN = "123456:ABC-main"
OTHER_TOKEN = "654321:XYZ-other"
FAST = TelegramGateway(Backoff(initial_s=0.001, max_s=0.01, max_failures=3))


@pytest.fixture
async def fake():
    async with TelegramFake() as fake:
        fake.add_bot(TOKEN, username="gw_bot")
        yield fake


@asynccontextmanager
async def account(fake: TelegramFake, token: str = TOKEN, *, name: str = "default", store: MemoryStore | None = None,
                  ctx_class: type[RecordingContext] = RecordingContext, **keys: Any) -> AsyncIterator[RecordingContext]:
    resolved = resolved_account(plugin, name, bot_token=token, api_base_url=fake.base_url, **keys)
    async with plugin.open_client(resolved) as client:
        yield ctx_class(resolved, client, store=store)


@asynccontextmanager
async def running(ctx: RecordingContext, gateway: TelegramGateway = FAST) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(gateway.run_account, ctx)
        with anyio.fail_after(5):
            await ctx.connected.wait()
        yield
        tg.cancel_scope.cancel()


class GatedContext(RecordingContext):
    """emit() blocks until the test opens the gate (an inbox that is slow to persist)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.entered = anyio.Event()
        self.gate = anyio.Event()

    async def emit(self, message: InboundMessage) -> bool:
        self.entered.set()
        await self.gate.wait()
        return await super().emit(message)


async def first_inbound(ctx: RecordingContext) -> InboundMessage:
    return (await ctx.wait_inbound(1))[0]


# --- start ------------------------------------------------------------------------------------


async def test_account_is_running_once_get_me_succeeded_and_the_webhook_is_gone(fake):
    async with account(fake) as ctx, running(ctx):
        await fake.wait_for_request("getUpdates", 1)
        assert [r.method for r in fake.requests[:2]] == ["getMe", "deleteWebhook"]
        assert ctx.status["bot_username"] == "gw_bot"
        assert ctx.status["can_read_all_group_messages"] is False


async def test_a_stray_webhook_is_deleted_so_polling_works(fake):
    fake.bots[TOKEN].webhook_url = "https://stale.example/hook"
    async with account(fake) as ctx, running(ctx):
        fake.inject_message(TOKEN, "after the webhook")
        assert (await first_inbound(ctx)).text == "after the webhook"


async def test_unknown_token_raises_auth_failed(fake):
    async with account(fake, token="999:not-a-bot") as ctx:
        with anyio.fail_after(5), pytest.raises(AuthFailed, match="rejected the bot token"):
            await FAST.run_account(ctx)
    assert not ctx.connected.is_set()


async def test_unreachable_api_at_start_raises_account_not_ready():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    resolved = resolved_account(plugin, bot_token=TOKEN, api_base_url=f"http://127.0.0.1:{port}")
    async with plugin.open_client(resolved) as client:
        ctx = RecordingContext(resolved, client)
        with anyio.fail_after(5), pytest.raises(AccountNotReady, match="unreachable"):
            await FAST.run_account(ctx)


async def test_token_never_appears_in_errors():
    resolved = resolved_account(plugin, bot_token=TOKEN, api_base_url="http://127.0.0.1:1")
    async with plugin.open_client(resolved) as client:
        with pytest.raises(AccountNotReady) as caught:
            await FAST.run_account(RecordingContext(resolved, client))
    assert TOKEN not in str(caught.value)
    assert TOKEN.split(":")[1] not in repr(caught.value)


# --- polling ------------------------------------------------------------------------------------


async def test_direct_text_message_is_emitted(fake):
    async with account(fake) as ctx, running(ctx):
        fake.inject_message(TOKEN, "hello", chat_id=42, from_id=42, first_name="Alice", username="alice")
        message = await first_inbound(ctx)
    assert message.provider == "telegram" and message.account == "default"
    assert message.id == "42:1"
    assert (message.chat.id, message.chat.type) == ("42", "direct")
    assert (message.sender.id, message.sender.name, message.sender.username) == ("42", "Alice", "alice")
    assert message.text == "hello"
    assert message.timestamp is not None and message.timestamp.year == 2025
    assert message.mentioned is False


async def test_offset_advances_only_after_emit_returned(fake):
    store = MemoryStore()
    async with account(fake, store=store, ctx_class=GatedContext) as ctx, running(ctx):
        assert isinstance(ctx, GatedContext)
        update = fake.inject_message(TOKEN, "slow inbox")
        with anyio.fail_after(5):
            await ctx.entered.wait()
        assert "offset" not in store.data
        assert len(fake.calls("getUpdates")) == 1
        assert fake.pending(TOKEN) == [update]

        ctx.gate.set()
        polls = await fake.wait_for_request("getUpdates", 2)
        assert polls[1].params["offset"] == update["update_id"] + 1
        assert store.data["offset"] == update["update_id"] + 1


async def test_offset_survives_a_restart_without_duplicates_or_losses(fake):
    store = MemoryStore()
    async with account(fake, store=store) as first, running(first):
        fake.inject_message(TOKEN, "one")
        two = fake.inject_message(TOKEN, "two")
        await first.wait_inbound(2)
    polls_before_restart = len(fake.calls("getUpdates"))
    fake.inject_message(TOKEN, "three (sent while stopped)")

    async with account(fake, store=store) as second, running(second):
        fake.inject_message(TOKEN, "four")
        await second.wait_inbound(2)
    assert [m.text for m in first.inbound] == ["one", "two"]
    assert [m.text for m in second.inbound] == ["three (sent while stopped)", "four"]
    assert fake.calls("getUpdates")[polls_before_restart].params["offset"] == two["update_id"] + 1
    assert store.data["offset"] == second.inbound[-1].raw["update_id"] + 1


async def test_two_accounts_poll_side_by_side_and_stopping_one_leaves_the_other(fake):
    fake.add_bot(OTHER_TOKEN, username="other_bot")
    async with account(fake, OTHER_TOKEN, name="other") as other, running(other):
        async with account(fake, TOKEN, name="main") as main, running(main):
            await fake.wait_for_request("getUpdates", 1, token=TOKEN)
            (other_poll,) = await fake.wait_for_request("getUpdates", 1, token=OTHER_TOKEN)
        # "main" is stopped and its session closed; the other bot's poll is still the same request.
        assert other_poll.status is None
        update = fake.inject_message(OTHER_TOKEN, "still here")
        message = await first_inbound(other)
        await fake.wait_for_answer(other_poll)
    assert message.text == "still here" and message.account == "other"
    assert other_poll.status == 200 and other_poll.result == [update]
    assert all(r.status != 409 for r in fake.requests)
    assert main.inbound == []


async def test_conflict_409_raises_a_runtime_issue_and_keeps_polling(fake):
    fake.fail_next("getUpdates", 409, "Conflict: terminated by other getUpdates request; make sure that only one "
                                      "bot instance is running")
    async with account(fake) as ctx, running(ctx):
        await fake.wait_for_request("getUpdates", 2)
        assert [(i.kind, i.message) for i in ctx.issues] == [("runtime", "another instance is polling this bot")]
        assert ctx.issues[0].fix
        fake.inject_message(TOKEN, "recovered")
        await first_inbound(ctx)
        assert ctx.issues == []


async def test_a_second_poller_on_the_same_token_is_reported(fake):
    async with account(fake) as ctx, running(ctx):
        (ours,) = await fake.wait_for_request("getUpdates", 1)
        async with aiohttp.ClientSession() as session:
            await session.post(f"{fake.base_url}/bot{TOKEN}/getUpdates", json={"timeout": 0})
        await fake.wait_for_answer(ours)
        await fake.wait_for_request("getUpdates", 3)
        assert ours.status == 409
        assert any(i.message == "another instance is polling this bot" for i in ctx.issues)


async def test_rate_limit_on_get_updates_raises_rate_limited(fake):
    fake.fail_next("getUpdates", 429, "Too Many Requests: retry after 7", retry_after=7)
    async with account(fake) as ctx:
        with anyio.fail_after(5), pytest.raises(RateLimited) as caught:
            await FAST.run_account(ctx)
    assert caught.value.retry_after == 7


async def test_server_errors_while_polling_are_retried_inside_the_monitor(fake):
    fake.fail_next("getUpdates", 502, "Bad Gateway", times=2)
    async with account(fake) as ctx, running(ctx):
        fake.inject_message(TOKEN, "after the outage")
        assert (await first_inbound(ctx)).text == "after the outage"
    assert [r.status for r in fake.calls("getUpdates")[:2]] == [502, 502]


async def test_too_many_failures_in_a_row_hand_over_to_the_supervisor(fake):
    fake.fail_next("getUpdates", 500, "Internal Server Error", times=10)
    async with account(fake) as ctx:
        with anyio.fail_after(5), pytest.raises(AccountNotReady, match="getUpdates failed 4 times"):
            await FAST.run_account(ctx)
    assert ctx.connected.is_set()


# --- inbound shapes -----------------------------------------------------------------------------


async def test_group_message_mentioning_the_bot_is_marked_mentioned(fake):
    text = "héllo 👋 @GW_bot, what's up?"
    entity = {"type": "mention", "offset": len("héllo 👋 ".encode("utf-16-le")) // 2, "length": 7}
    async with account(fake) as ctx, running(ctx):
        fake.inject_message(TOKEN, text, chat_id=-100777, chat_type="supergroup", title="Team",
                            entities=[entity])
        fake.inject_message(TOKEN, "no mention here @someone_else", chat_id=-100777, chat_type="supergroup",
                            entities=[{"type": "mention", "offset": 16, "length": 13}])
        mentioned, plain = await ctx.wait_inbound(2)
    assert (mentioned.chat.type, mentioned.chat.title, mentioned.mentioned) == ("group", "Team", True)
    assert plain.mentioned is False


@pytest.mark.parametrize("fields", [
    {"entities": [{"type": "text_mention", "offset": 0, "length": 2, "user": {"id": 123456, "is_bot": True}}]},
    {"entities": [{"type": "bot_command", "offset": 0, "length": 14}], "text": "/status@gw_bot"},
    {"reply_to_message": {"message_id": 3, "from": {"id": 123456, "is_bot": True}, "chat": {"id": -5}}},
], ids=["text_mention", "command_for_this_bot", "reply_to_the_bot"])
async def test_other_ways_of_addressing_the_bot_count_as_mentions(fake, fields):
    fields = dict(fields)
    text = fields.pop("text", "GW, please")
    async with account(fake) as ctx, running(ctx):
        fake.inject_message(TOKEN, text, chat_id=-5, chat_type="group", **fields)
        assert (await first_inbound(ctx)).mentioned is True


async def test_forum_topic_messages_carry_the_thread_and_real_replies_only(fake):
    topic = {"message_thread_id": 7, "is_topic_message": True}
    async with account(fake) as ctx, running(ctx):
        fake.inject_message(TOKEN, "in topic", chat_id=-100900, chat_type="supergroup", **topic,
                            reply_to_message={"message_id": 7, "chat": {"id": -100900}})
        fake.inject_message(TOKEN, "a reply", chat_id=-100900, chat_type="supergroup", **topic,
                            reply_to_message={"message_id": 12, "chat": {"id": -100900}})
        plain, reply = await ctx.wait_inbound(2)
    assert (plain.thread, plain.reply_to) == ("7", None)
    assert (reply.thread, reply.reply_to) == ("7", "-100900:12")


async def test_photo_with_caption_carries_text_and_the_largest_size(fake):
    photo = [{"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90, "file_size": 100},
             {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 960, "file_size": 9000}]
    async with account(fake) as ctx, running(ctx):
        fake.inject_message(TOKEN, None, caption="look", photo=photo)
        message = await first_inbound(ctx)
    assert message.text == "look"
    assert [(m.kind, m.ref, m.size) for m in message.media] == [("image", "large", 9000)]


async def test_documents_and_voice_notes_become_media_refs(fake):
    document = {"file_id": "doc1", "file_unique_id": "d", "file_name": "report.pdf", "mime_type": "application/pdf",
                "file_size": 2048}
    voice = {"file_id": "voice1", "file_unique_id": "v", "duration": 3, "mime_type": "audio/ogg", "file_size": 512}
    async with account(fake) as ctx, running(ctx):
        fake.inject_message(TOKEN, None, document=document)
        fake.inject_message(TOKEN, None, voice=voice)
        doc, note = await ctx.wait_inbound(2)
    assert [(m.kind, m.mime, m.filename) for m in doc.media] == [("document", "application/pdf", "report.pdf")]
    assert [(m.kind, m.ref) for m in note.media] == [("audio", "voice1")]


async def test_inbound_media_downloads_lazily_through_get_file(fake):
    from providers.telegram import download_media

    file_id = fake.add_file(b"\x89PNG fake bytes", file_path="photos/file_1.png", mime="image/png")
    async with account(fake) as ctx, running(ctx):
        fake.inject_message(TOKEN, None, photo=[{"file_id": file_id, "file_unique_id": "u", "width": 1, "height": 1}])
        message = await first_inbound(ctx)
        assert fake.calls("getFile") == []
        assert await download_media(ctx, message.media[0]) == b"\x89PNG fake bytes"
    assert fake.calls("getFile")[0].params["file_id"] == file_id


async def test_downloads_above_media_max_mb_are_refused(fake):
    from gateway.errors import PayloadTooLarge
    from gateway.plugin import MediaKind, MediaRef
    from providers.telegram import download_media

    file_id = fake.add_file(b"x" * 2048)
    async with account(fake, media_max_mb=0.001) as ctx:
        with pytest.raises(PayloadTooLarge, match="too big"):
            await download_media(ctx, MediaRef(MediaKind.DOCUMENT, file_id))


async def test_edited_messages_are_ignored_unless_configured(fake):
    edit = {"edit_date": 1764064900}
    async with account(fake) as ctx, running(ctx):
        fake.inject_message(TOKEN, "edited", update_type="edited_message", **edit)
        fake.inject_message(TOKEN, "fresh")
        assert [m.text for m in await ctx.wait_inbound(1)] == ["fresh"]
    async with account(fake, edited_messages=True) as ctx, running(ctx):
        fake.inject_message(TOKEN, "edited again", update_type="edited_message", message_id=1, **edit)
        message = await first_inbound(ctx)
    assert message.text == "edited again"
    assert message.id == "42:1:edit:1764064900"


async def test_service_messages_are_skipped_and_acknowledged(fake):
    store = MemoryStore()
    async with account(fake, store=store) as ctx, running(ctx):
        joined = fake.inject_message(TOKEN, None, chat_id=-5, chat_type="group",
                                     new_chat_members=[{"id": 9, "is_bot": False, "first_name": "Bob"}])
        fake.inject_message(TOKEN, "after the join", chat_id=-5, chat_type="group")
        assert [m.text for m in await ctx.wait_inbound(1)] == ["after the join"]
    assert store.data["offset"] > joined["update_id"] + 1


async def test_channel_posts_come_from_the_channel(fake):
    post = {"message_id": 4, "chat": {"id": -1001234, "type": "channel", "title": "News"},
            "sender_chat": {"id": -1001234, "type": "channel", "title": "News"}, "date": 1764064800, "text": "hi"}
    async with account(fake) as ctx, running(ctx):
        fake.inject_update(TOKEN, {"channel_post": post})
        message = await first_inbound(ctx)
    assert (message.chat.type, message.sender.id, message.sender.name) == ("channel", "-1001234", "News")


async def test_poll_answers_become_poll_votes_in_the_poll_chat(fake):
    store = MemoryStore({"poll:77": {"chat_id": "-100500", "chat_type": "supergroup", "message_id": "9",
                                     "options": ["Pizza", "Sushi", "Salad"]}})
    async with account(fake, store=store) as ctx, running(ctx):
        fake.inject_poll_answer(TOKEN, "77", [0, 2], user_id=42)
        fake.inject_poll_answer(TOKEN, "unknown", [1], user_id=43)
        known, unknown = await ctx.wait_inbound(2)
    assert known.type == "poll_vote"
    assert (known.chat.id, known.chat.type, known.reply_to, known.text) == ("-100500", "group", "-100500:9",
                                                                           "Pizza, Salad")
    assert known.sender.id == "42"
    assert (unknown.type, unknown.chat.id, unknown.text) == ("poll_vote", "43", "1")


# --- webhook mode -------------------------------------------------------------------------------


async def post_update(url: str, update: dict[str, Any], secret: str | None) -> int:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    async with aiohttp.ClientSession() as session, session.post(url, json=update, headers=headers) as resp:
        return resp.status


async def test_webhook_mode_registers_the_secret_and_receives_updates(fake):
    contexts: list[RecordingContext] = []
    async with control_listener(contexts) as base:
        url = f"{base}/hooks/telegram/default/"
        async with account(fake, mode="webhook", webhook_url=url, webhook_secret="s3cret") as ctx, running(ctx):
            contexts.append(ctx)
            (registered,) = fake.calls("setWebhook")
            assert registered.params["url"] == url
            assert registered.params["secret_token"] == "s3cret"
            assert list(ctx.webhooks.routes) == [AccountKey("telegram", "default")]
            assert fake.calls("deleteWebhook") == []

            fake.inject_message(TOKEN, "via webhook")
            assert (await first_inbound(ctx)).text == "via webhook"
            assert (await fake.wait_for_delivery(1))[0][2] == 200


async def test_webhook_rejects_wrong_or_missing_secrets(fake):
    contexts: list[RecordingContext] = []
    async with control_listener(contexts) as base:
        url = f"{base}/hooks/telegram/default/"
        async with account(fake, mode="webhook", webhook_url=url, webhook_secret="s3cret") as ctx, running(ctx):
            contexts.append(ctx)
            update = {"update_id": 1, "message": {"message_id": 1, "chat": {"id": 1, "type": "private"}, "text": "x"}}
            assert await post_update(url, update, "wrong") == 401
            assert ctx.status["webhook_rejected"] == 1
            assert await post_update(url, update, None) == 401
            assert ctx.status["webhook_rejected"] == 2
            assert ctx.inbound == []
            assert await post_update(url, update, "s3cret") == 200
            assert [m.text for m in ctx.inbound] == ["x"]


class FlakyInboxContext(RecordingContext):
    """The first emit fails, as if the inbox could not write."""

    failures = 1

    async def emit(self, message: InboundMessage) -> bool:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("inbox unavailable")
        return await super().emit(message)


async def test_webhook_answers_200_only_once_the_inbox_has_the_update(fake):
    contexts: list[RecordingContext] = []
    async with control_listener(contexts) as base:
        url = f"{base}/hooks/telegram/default/"
        async with account(fake, mode="webhook", webhook_url=url, webhook_secret="s3cret",
                           ctx_class=FlakyInboxContext) as ctx, running(ctx):
            contexts.append(ctx)
            update = fake.inject_message(TOKEN, "retried by telegram")
            deliveries = await fake.wait_for_delivery(2)
            assert [(d[1], d[2]) for d in deliveries] == [(update["update_id"], 500), (update["update_id"], 200)]
            assert [m.text for m in ctx.inbound] == ["retried by telegram"]


async def test_webhook_route_is_unmounted_when_the_account_stops(fake):
    contexts: list[RecordingContext] = []
    async with control_listener(contexts) as base:
        url = f"{base}/hooks/telegram/default/"
        async with account(fake, mode="webhook", webhook_url=url, webhook_secret="s3cret") as ctx:
            contexts.append(ctx)
            async with running(ctx):
                assert ctx.webhooks.routes
            assert ctx.webhooks.routes == {}
            assert await post_update(url, {"update_id": 5}, "s3cret") == 404


async def test_webhook_without_a_configured_secret_uses_a_random_one(fake):
    contexts: list[RecordingContext] = []
    async with control_listener(contexts) as base:
        url = f"{base}/hooks/telegram/default/"
        async with account(fake, mode="webhook", webhook_url=url) as ctx:
            contexts.append(ctx)
            async with running(ctx):
                secret = fake.calls("setWebhook")[0].params["secret_token"]
                assert len(secret) >= 32
                fake.inject_message(TOKEN, "signed by telegram")
                await first_inbound(ctx)
                assert await post_update(url, {"update_id": 9}, None) == 401


async def test_a_refused_webhook_url_is_a_config_error(fake):
    fake.fail_next("setWebhook", 400, "Bad Request: bad webhook: HTTPS url must be provided for webhook")
    async with account(fake, mode="webhook", webhook_url="http://example.invalid/hook") as ctx:
        with anyio.fail_after(5), pytest.raises(ConfigInvalid, match="bad webhook") as caught:
            await FAST.run_account(ctx)
        assert ctx.webhooks.routes == {}
    assert "hooks/telegram" in (caught.value.fix or "")


async def test_webhook_mode_without_a_tcp_listener_is_a_config_error(fake):
    async with account(fake, mode="webhook", webhook_url="https://bot.example/hooks/telegram/default/") as ctx:
        ctx.webhooks.base_url = None  # what the core's router says when gateway.control.listen is unset
        with anyio.fail_after(5), pytest.raises(ConfigInvalid, match="TCP control listener") as caught:
            await FAST.run_account(ctx)
    assert "gateway.control.listen" in (caught.value.fix or "")
    assert fake.calls("setWebhook") == []


@asynccontextmanager
async def control_listener(contexts: list[RecordingContext]) -> AsyncIterator[str]:
    """``control_listener`` over a list that the test fills once its context exists."""

    async def dispatch(request: web.Request) -> web.StreamResponse:
        key = AccountKey(request.match_info["provider"], request.match_info["account"])
        for ctx in contexts:
            handler = ctx.webhooks.routes.get(key)
            if handler is not None:
                return await handler(request)
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("*", "/hooks/{provider}/{account}/{tail:.*}", dispatch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
