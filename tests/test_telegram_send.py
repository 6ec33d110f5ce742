"""The send primitives against the Bot API fake: what arrives, and how failures are classified."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gateway.errors import (
    AuthFailed,
    Forbidden,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    TargetNotFound,
    TransientSendError,
)
from gateway.outbound.chunking import chunk_markdown
from gateway.plugin import MediaKind, MediaPayload, Poll, SendOptions
from gateway.testing import MemoryStore, RecordingContext, resolved_account
from providers.telegram import plugin
from tests.fakes.telegram_api import TelegramFake, visible_text

TOKEN = "123456:ABC-send"
outbound = plugin.outbound
NO_OPTS = SendOptions()


@pytest.fixture
async def fake():
    async with TelegramFake() as fake:
        fake.add_bot(TOKEN, username="gw_bot")
        yield fake


@asynccontextmanager
async def account(fake: TelegramFake, *, store: MemoryStore | None = None, **keys: Any) -> AsyncIterator[RecordingContext]:
    resolved = resolved_account(plugin, bot_token=TOKEN, api_base_url=fake.base_url, **keys)
    async with plugin.open_client(resolved) as client:
        yield RecordingContext(resolved, client, store=store)


@pytest.fixture
async def ctx(fake):
    async with account(fake) as ctx:
        yield ctx


def target(raw: str):
    return outbound.resolve_target(raw, None)


# --- text -------------------------------------------------------------------------------------


async def test_markdown_goes_out_as_telegram_html(fake, ctx):
    result = await outbound.send_text(ctx, target("42"), "**Hi** <there> & `code`", NO_OPTS)
    (sent,) = fake.calls("sendMessage")
    assert sent.params == {"chat_id": 42, "text": "<b>Hi</b> &lt;there&gt; &amp; <code>code</code>",
                           "parse_mode": "HTML"}
    assert (result.message_id, result.chat_id) == ("1", "42")


async def test_reply_and_topic_are_addressed(fake, ctx):
    await outbound.send_text(ctx, target("tg:-100123:topic:7"), "in a topic", SendOptions(reply_to="-100123:55"))
    (sent,) = fake.calls("sendMessage")
    assert sent.params["chat_id"] == -100123
    assert sent.params["message_thread_id"] == 7
    assert sent.params["reply_parameters"] == {"message_id": 55, "allow_sending_without_reply": True}


async def test_thread_from_options_wins_over_the_target(fake, ctx):
    await outbound.send_text(ctx, target("-100123:topic:7"), "x", SendOptions(thread="9", reply_to="3"))
    (sent,) = fake.calls("sendMessage")
    assert (sent.params["message_thread_id"], sent.params["reply_parameters"]["message_id"]) == (9, 3)


@pytest.mark.parametrize(("reply_to", "expected"), [
    ("7", 7), ("-100123:55", 55), ("42:8:edit:1764064900", 8), ("poll_answer:77:42:105", None), ("", None),
])
async def test_reply_to_takes_the_message_id_from_inbound_ids(fake, ctx, reply_to, expected):
    await outbound.send_text(ctx, target("42"), "x", SendOptions(reply_to=reply_to))
    (sent,) = fake.calls("sendMessage")
    assert sent.params.get("reply_parameters", {}).get("message_id") == expected


async def test_a_thread_that_is_not_a_topic_id_is_refused(fake, ctx):
    with pytest.raises(InvalidRequest, match="forum topic id"):
        await outbound.send_text(ctx, target("42"), "x", SendOptions(thread="general"))
    assert fake.requests == []


def test_replies_to_a_topic_message_go_back_to_the_topic():
    from gateway.plugin import Chat, ChatType, InboundMessage, Sender

    def inbound(thread):
        return InboundMessage("telegram", "default", "-1001:5", Chat("-1001", ChatType.GROUP), Sender("42"),
                              thread=thread)

    assert target(outbound.reply_target(inbound("7"))) == target("-1001:topic:7")
    assert target(outbound.reply_target(inbound(None))) == target("-1001")


async def test_usernames_are_sent_as_usernames(fake, ctx):
    fake.add_chat(-1001500, username="team_chat")
    result = await outbound.send_text(ctx, target("t.me/team_chat"), "hi", NO_OPTS)
    assert fake.calls("sendMessage")[0].params["chat_id"] == "@team_chat"
    assert result.chat_id == "-1001500"


async def test_unparsable_html_is_resent_as_plain_text(fake, ctx):
    fake.fail_next("sendMessage", 400, "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0")
    await outbound.send_text(ctx, target("42"), "**bold** and _it_", NO_OPTS)
    first, second = fake.calls("sendMessage")
    assert first.params["parse_mode"] == "HTML"
    assert "parse_mode" not in second.params
    assert second.params["text"] == "**bold** and _it_"
    assert second.status == 200


async def test_empty_text_is_refused_before_any_request(fake, ctx):
    with pytest.raises(InvalidRequest, match="non-empty"):
        await outbound.send_text(ctx, target("42"), "  \n", NO_OPTS)
    assert fake.requests == []


async def test_a_migrated_group_is_followed_once(fake, ctx):
    fake.migrate_chat(-4242, -1004242)
    result = await outbound.send_text(ctx, target("-4242"), "hello supergroup", NO_OPTS)
    assert [r.params["chat_id"] for r in fake.calls("sendMessage")] == [-4242, -1004242]
    assert result.chat_id == "-1004242"


async def test_a_migration_loop_is_not_followed_twice(fake, ctx):
    fake.migrate_chat(-1, -2)
    fake.migrate_chat(-2, -3)
    with pytest.raises(InvalidRequest, match="upgraded to a supergroup"):
        await outbound.send_text(ctx, target("-1"), "x", NO_OPTS)
    assert len(fake.calls("sendMessage")) == 2


async def test_rate_limit_raises_rate_limited_with_retry_after(fake, ctx):
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    with pytest.raises(RateLimited) as caught:
        await outbound.send_text(ctx, target("42"), "x", NO_OPTS)
    assert caught.value.retry_after == 1


@pytest.mark.parametrize(("status", "description", "error"), [
    (400, "Bad Request: chat not found", TargetNotFound),
    (400, "Bad Request: message thread not found", TargetNotFound),
    (403, "Forbidden: bot was blocked by the user", Forbidden),
    (413, "Request Entity Too Large", PayloadTooLarge),
    (400, "Bad Request: file is too big", PayloadTooLarge),
    (401, "Unauthorized", AuthFailed),
    (500, "Internal Server Error", TransientSendError),
    (502, "Bad Gateway", TransientSendError),
    (400, "Bad Request: message to be replied not found", InvalidRequest),
])
async def test_api_errors_are_classified(fake, ctx, status, description, error):
    fake.fail_next("sendMessage", status, description)
    with pytest.raises(error):
        await outbound.send_text(ctx, target("42"), "x", NO_OPTS)


async def test_unknown_username_is_target_not_found(fake, ctx):
    with pytest.raises(TargetNotFound, match="chat not found"):
        await outbound.send_text(ctx, target("@nobody_here"), "x", NO_OPTS)


async def test_network_failure_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    resolved = resolved_account(plugin, bot_token=TOKEN, api_base_url=f"http://127.0.0.1:{port}")
    async with plugin.open_client(resolved) as client:
        with pytest.raises(TransientSendError) as caught:
            await outbound.send_text(RecordingContext(resolved, client), target("42"), "x", NO_OPTS)
    assert TOKEN not in str(caught.value)


async def test_send_without_an_open_client_says_the_account_is_unavailable(fake):
    from gateway.errors import AccountUnavailable

    ctx = RecordingContext(resolved_account(plugin, bot_token=TOKEN))
    with pytest.raises(AccountUnavailable):
        await outbound.send_text(ctx, target("42"), "x", NO_OPTS)


async def test_long_markdown_is_chunked_into_ordered_messages_within_the_limit(fake, ctx):
    paragraph = "Some **bold** text with `code` and <angle> & ampersands. "
    fence = "```python\n" + "print('x < y')\n" * 250 + "```\n"  # longer than one message once escaped
    markdown = ""
    while len(markdown) < 8_000:
        markdown += paragraph * 8 + "\n\n" + fence + "\n"
    markdown += "tail " * ((10_000 - len(markdown)) // 5)
    markdown += "." * (10_000 - len(markdown))
    assert len(markdown) == 10_000
    chunks = chunk_markdown(markdown, 4096, measure=lambda t: outbound.measure(outbound.render(t)))
    for chunk in chunks:
        await outbound.send_text(ctx, target("42"), chunk, NO_OPTS)
    sent = fake.calls("sendMessage")
    assert len(sent) == len(chunks) >= 3
    assert all(r.status == 200 and r.params["parse_mode"] == "HTML" for r in sent)
    assert all(outbound.measure(r.params["text"]) <= 4096 for r in sent)
    assert [r.result["message_id"] for r in sent] == sorted(r.result["message_id"] for r in sent)
    assert all(chunk.count("```") % 2 == 0 for chunk in chunks)
    assert any(chunk.startswith("```python\n") for chunk in chunks)  # a fence was split and reopened
    assert "".join(visible_text(r.params["text"]) for r in sent).count("print('x < y')") == markdown.count("print(")


# --- media ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mime", "method", "field"), [
    ("image/jpeg", "sendPhoto", "photo"),
    ("image/png", "sendPhoto", "photo"),
    ("image/gif", "sendAnimation", "animation"),
    ("video/mp4", "sendVideo", "video"),
    ("audio/ogg", "sendVoice", "voice"),
    ("audio/mpeg", "sendAudio", "audio"),
    ("application/pdf", "sendDocument", "document"),
    ("image/svg+xml", "sendDocument", "document"),
])
async def test_media_method_follows_the_mime_type(fake, ctx, mime, method, field):
    media = MediaPayload(data=b"bytes of " + mime.encode(), mime=mime, filename="file.bin",
                         kind=MediaKind.from_mime(mime))
    await outbound.send_media(ctx, target("42"), media, "a **caption**", NO_OPTS)
    (sent,) = fake.calls(method)
    assert sent.content_type == "multipart/form-data"
    assert sent.files[field].data == media.data
    assert sent.files[field].content_type == mime
    assert sent.params["caption"] == "a <b>caption</b>"
    assert sent.params["parse_mode"] == "HTML"
    assert sent.params["chat_id"] == "42"


async def test_media_without_caption_sends_no_caption(fake, ctx):
    media = MediaPayload(b"png", "image/png", "a.png", MediaKind.IMAGE)
    await outbound.send_media(ctx, target("42"), media, None, SendOptions(reply_to="42:3"))
    (sent,) = fake.calls("sendPhoto")
    assert "caption" not in sent.params and "parse_mode" not in sent.params
    assert sent.params["reply_parameters"] == {"message_id": 3, "allow_sending_without_reply": True}


async def test_photos_above_ten_megabytes_go_as_documents(fake, ctx):
    media = MediaPayload(b"\0" * (10 * 1024 * 1024 + 1), "image/jpeg", "big.jpg", MediaKind.IMAGE)
    await outbound.send_media(ctx, target("42"), media, None, NO_OPTS)
    assert [r.method for r in fake.requests] == ["sendDocument"]


async def test_unparsable_caption_is_resent_as_plain_text(fake, ctx):
    fake.fail_next("sendPhoto", 400, "Bad Request: can't parse entities: oops")
    media = MediaPayload(b"png", "image/png", "a.png", MediaKind.IMAGE)
    await outbound.send_media(ctx, target("42"), media, "_cap_", NO_OPTS)
    first, second = fake.calls("sendPhoto")
    assert (second.params["caption"], "parse_mode" in second.params) == ("_cap_", False)
    assert second.files["photo"].data == b"png"


# --- polls ------------------------------------------------------------------------------------


async def test_native_poll_is_sent_and_remembered_for_votes(fake):
    store = MemoryStore()
    async with account(fake, store=store) as ctx:
        result = await outbound.send_poll(ctx, target("-1001234567890"), Poll("Lunch?", ("Pizza", "Sushi"), max_selections=2),
                                          NO_OPTS)
    (sent,) = fake.calls("sendPoll")
    assert sent.params["options"] == [{"text": "Pizza"}, {"text": "Sushi"}]
    assert sent.params["is_anonymous"] is False
    assert sent.params["allows_multiple_answers"] is True
    assert "open_period" not in sent.params
    poll_id = result.extra["poll_id"]
    assert store.data[f"poll:{poll_id}"] == {"chat_id": "-1001234567890", "chat_type": "supergroup",
                                             "message_id": result.message_id, "options": ["Pizza", "Sushi"]}


async def test_single_choice_poll_with_a_long_duration_has_no_open_period(fake, ctx):
    await outbound.send_poll(ctx, target("42"), Poll("Q?", ("a", "b"), duration_hours=24), NO_OPTS)
    (sent,) = fake.calls("sendPoll")
    assert sent.params["allows_multiple_answers"] is False
    assert "open_period" not in sent.params


async def test_polls_in_channels_fall_back_to_anonymous(fake, ctx):
    fake.add_chat(-1009999, chat_type="channel")
    await outbound.send_poll(ctx, target("-1009999"), Poll("Q?", ("a", "b")), NO_OPTS)
    first, second = fake.calls("sendPoll")
    assert (first.status, second.params["is_anonymous"], second.status) == (400, True, 200)


@pytest.mark.parametrize("poll", [
    Poll("Too many?", tuple(str(i) for i in range(13))),
    Poll("x" * 301, ("a", "b")),
    Poll("Long option?", ("a", "b" * 101)),
], ids=["13_options", "long_question", "long_option"])
async def test_invalid_polls_are_refused_before_any_request(fake, ctx, poll):
    with pytest.raises(InvalidRequest):
        await outbound.send_poll(ctx, target("42"), poll, NO_OPTS)
    assert fake.requests == []
