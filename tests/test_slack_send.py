"""Slack outbound against the wire-level fake: text, threads, DMs, files v2, polls, errors."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
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
from gateway.plugin import (
    Chat,
    ChatType,
    InboundMessage,
    MediaKind,
    MediaPayload,
    Poll,
    Sender,
    SendOptions,
    Target,
)
from gateway.testing import RecordingContext, resolved_account
from providers.slack import plugin
from tests.fakes.slack_api import SlackFake

# Explicit: the conftest adds the anyio marker after parametrisation, which loses the params.
pytestmark = pytest.mark.anyio

TS = "1764064800.000100"
outbound = plugin.outbound
assert outbound is not None


@pytest.fixture
async def fake() -> AsyncIterator[SlackFake]:
    async with SlackFake() as server:
        yield server


@asynccontextmanager
async def send_context(fake: SlackFake, **keys: Any) -> AsyncIterator[RecordingContext]:
    """The context the core hands to the send path: an open client, no running monitor."""
    resolved = resolved_account(plugin, **{**fake.account_keys(), **keys})
    async with plugin.open_client(resolved) as client:
        yield RecordingContext(resolved, client)


CHANNEL = Target("channel", "C1")


async def test_send_text_posts_rendered_mrkdwn(fake: SlackFake) -> None:
    async with send_context(fake) as ctx:
        result = await outbound.send_text(ctx, CHANNEL, "**Done** & [docs](https://x.io/a?b=1&c=2)", SendOptions())
    [posted] = fake.messages
    assert posted["text"] == "*Done* &amp; <https://x.io/a?b=1&amp;c=2|docs>"
    assert (result.message_id, result.chat_id) == (posted["ts"], "C1")
    assert fake.calls_of("chat.postMessage")[0].token == fake.bot_token


@pytest.mark.parametrize("opts,target", [
    (SendOptions(thread=TS), CHANNEL),
    (SendOptions(reply_to=TS), CHANNEL),
    (SendOptions(reply_to=f"C1:{TS}"), CHANNEL),
    (SendOptions(), Target("channel", "C1", thread=TS)),
])
async def test_thread_and_reply_to_become_thread_ts(fake: SlackFake, opts: SendOptions, target: Target) -> None:
    async with send_context(fake) as ctx:
        await outbound.send_text(ctx, target, "in thread", opts)
    assert fake.messages[0]["thread_ts"] == TS


async def test_malformed_reply_reference_is_an_invalid_request(fake: SlackFake) -> None:
    async with send_context(fake) as ctx:
        with pytest.raises(InvalidRequest, match="message ts"):
            await outbound.send_text(ctx, CHANNEL, "x", SendOptions(reply_to="42"))
    assert fake.messages == []


async def test_user_target_opens_the_dm_once(fake: SlackFake) -> None:
    async with send_context(fake) as ctx:
        first = await outbound.send_text(ctx, Target("user", "U2"), "one", SendOptions())
        second = await outbound.send_text(ctx, Target("user", "U2"), "two", SendOptions())
    assert len(fake.calls_of("conversations.open")) == 1
    assert fake.calls_of("conversations.open")[0].params["users"] == "U2"
    assert [m["channel"] for m in fake.messages] == ["D2", "D2"]
    assert first.chat_id == second.chat_id == "D2"


async def test_unknown_user_is_target_not_found(fake: SlackFake) -> None:
    async with send_context(fake) as ctx:
        with pytest.raises(TargetNotFound, match="user_not_found"):
            await outbound.send_text(ctx, Target("user", "U404"), "hi", SendOptions())


async def test_file_upload_uses_the_three_v2_steps(fake: SlackFake) -> None:
    media = MediaPayload(data=b"\x89PNG fake bytes", mime="image/png", filename="cat.png", kind=MediaKind.IMAGE)
    async with send_context(fake) as ctx:
        result = await outbound.send_media(ctx, CHANNEL, media, "a **cat** & _dog_", SendOptions(thread=TS))
    steps = [c.method for c in fake.calls if c.method != "auth.test"]
    assert steps == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    get_url, upload, _ = (fake.calls_of(m)[0] for m in steps)
    assert (get_url.params["filename"], str(get_url.params["length"])) == ("cat.png", str(len(media.data)))
    assert upload.body == media.data
    assert upload.token is None  # the upload URL is pre-signed; the token is not sent there
    assert fake.shares == [{"files": [result.message_id], "channel_id": "C1", "thread_ts": TS,
                            "initial_comment": "a *cat* &amp; _dog_"}]
    assert result.chat_id == "C1"


async def test_file_upload_without_caption_sends_no_comment(fake: SlackFake) -> None:
    media = MediaPayload(data=b"x", mime="text/plain", filename="a.txt", kind=MediaKind.DOCUMENT)
    async with send_context(fake) as ctx:
        await outbound.send_media(ctx, CHANNEL, media, None, SendOptions())
    assert fake.shares[0]["initial_comment"] is None
    assert fake.shares[0]["thread_ts"] is None


async def test_failed_upload_step_is_transient(fake: SlackFake) -> None:
    fake.fail_next("upload", status=503)
    media = MediaPayload(data=b"x", mime="text/plain", filename="a.txt", kind=MediaKind.DOCUMENT)
    async with send_context(fake) as ctx:
        with pytest.raises(TransientSendError):
            await outbound.send_media(ctx, CHANNEL, media, None, SendOptions())
    assert fake.calls_of("files.completeUploadExternal") == []


async def test_poll_is_a_section_with_one_button_per_option(fake: SlackFake) -> None:
    poll = Poll(question="Lunch **today**?", options=("Pizza", "Sushi & rice", "x" * 100))
    async with send_context(fake) as ctx:
        result = await outbound.send_poll(ctx, CHANNEL, poll, SendOptions(thread=TS))
    [posted] = fake.messages
    poll_id = result.extra["poll_id"]
    section, actions = posted["blocks"]
    assert section["type"] == "section" and section["text"] == {"type": "mrkdwn", "text": "Lunch *today*?"}
    assert actions["type"] == "actions"
    assert [b["action_id"] for b in actions["elements"]] == [f"switchboard_poll:{poll_id}:{i}" for i in range(3)]
    assert [b["text"]["text"] for b in actions["elements"]][:2] == ["Pizza", "Sushi & rice"]
    assert len(actions["elements"][2]["text"]["text"]) == 75
    assert "Pizza" in posted["text"]  # the notification fallback lists the options
    assert posted["thread_ts"] == TS
    assert result.message_id == posted["ts"]


async def test_poll_vote_round_trip(fake: SlackFake) -> None:
    """A click on a button we sent comes back as a vote on that poll."""
    resolved = resolved_account(plugin, **fake.account_keys())
    async with plugin.open_client(resolved) as client:
        ctx = RecordingContext(resolved, client)
        async with anyio.create_task_group() as tg:
            tg.start_soon(plugin.gateway.run_account, ctx)
            with anyio.fail_after(5):
                await ctx.connected.wait()
            result = await outbound.send_poll(ctx, CHANNEL, Poll("Best?", ("A", "B")), SendOptions())
            button = fake.messages[0]["blocks"][1]["elements"][1]
            click = {"type": "block_actions", "user": {"id": "U2", "username": "bob"}, "channel": {"id": "C1"},
                     "message": {"ts": result.message_id},
                     "actions": [{**button, "block_id": "x", "action_ts": "1764064999.000001"}]}
            await fake.wait_for_ack(await fake.inject_interactive(click))
            tg.cancel_scope.cancel()
    [vote] = ctx.inbound
    assert (vote.type, vote.text, vote.raw["poll_id"], vote.raw["option_index"]) == (
        "poll_vote", "B", result.extra["poll_id"], 1)
    assert vote.reply_to == f"C1:{result.message_id}"


async def test_rate_limit_is_reported_with_retry_after_and_not_retried(fake: SlackFake) -> None:
    fake.fail_next("chat.postMessage", status=429, retry_after=7)
    async with send_context(fake) as ctx:
        with pytest.raises(RateLimited) as caught:
            await outbound.send_text(ctx, CHANNEL, "hi", SendOptions())
    assert caught.value.retry_after == 7
    assert len(fake.calls_of("chat.postMessage")) == 1
    assert fake.messages == []


@pytest.mark.parametrize("error,expected", [
    ("channel_not_found", TargetNotFound),
    ("not_in_channel", Forbidden),
    ("restricted_action", Forbidden),
    ("is_archived", Forbidden),
    ("invalid_auth", AuthFailed),
    ("not_authed", AuthFailed),
    ("token_revoked", AuthFailed),
    ("msg_too_long", PayloadTooLarge),
    ("invalid_blocks", InvalidRequest),
])
async def test_slack_errors_map_to_the_taxonomy(fake: SlackFake, error: str, expected: type) -> None:
    fake.fail_next("chat.postMessage", status=200, error=error)
    async with send_context(fake) as ctx:
        with pytest.raises(expected, match=error):
            await outbound.send_text(ctx, CHANNEL, "hi", SendOptions())


async def test_unknown_channel_is_target_not_found(fake: SlackFake) -> None:
    async with send_context(fake) as ctx:
        with pytest.raises(TargetNotFound):
            await outbound.send_text(ctx, Target("channel", "C404"), "hi", SendOptions())


async def test_server_error_is_transient(fake: SlackFake) -> None:
    fake.fail_next("chat.postMessage", status=503)
    async with send_context(fake) as ctx:
        with pytest.raises(TransientSendError):
            await outbound.send_text(ctx, CHANNEL, "hi", SendOptions())


async def test_network_error_is_transient() -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    resolved = resolved_account(plugin, bot_token="xoxb-a", app_token="xapp-b",
                                api_base_url=f"http://127.0.0.1:{port}/api/")
    async with plugin.open_client(resolved) as client:
        ctx = RecordingContext(resolved, client)
        with pytest.raises(TransientSendError, match="network"):
            await outbound.send_text(ctx, CHANNEL, "hi", SendOptions())


def test_outbound_limits() -> None:
    assert (outbound.text_chunk_limit, outbound.chunker, outbound.poll_max_options) == (4000, "markdown", 25)
    assert outbound.render("**a** < b") == "*a* &lt; b"
    assert outbound.resolve_target("#C1", plugin.config.model()) == CHANNEL


def _inbound(**fields: Any) -> InboundMessage:
    base: dict[str, Any] = {"provider": "slack", "account": "default", "id": f"C1:{TS}",
                            "chat": Chat("C1", ChatType.CHANNEL),
                            "sender": Sender("U2")}
    return InboundMessage(**{**base, **fields})


@pytest.mark.parametrize("message,expected", [
    (_inbound(), f"channel:C1:thread:{TS}"),
    (_inbound(thread="1764060000.000001"), "channel:C1:thread:1764060000.000001"),
    (_inbound(id=f"D2:{TS}", chat=Chat("D2", ChatType.DIRECT)), "channel:D2"),  # a DM is answered top-level
    (_inbound(id=f"D2:{TS}", chat=Chat("D2", ChatType.DIRECT), thread="1764060000.000001"),
     "channel:D2:thread:1764060000.000001"),
    (_inbound(id="C1:1.5:vote:U2:9.9", type="poll_vote", reply_to=f"C1:{TS}"), f"channel:C1:thread:{TS}"),
    (_inbound(id="odd"), "channel:C1"),
])
def test_reply_target_keeps_every_chunk_in_the_thread_except_top_level_dms(message: InboundMessage, expected: str) -> None:
    target = outbound.reply_target(message)
    assert target == expected
    assert str(outbound.resolve_target(target, plugin.config.model())) == expected


async def test_reply_to_in_a_direct_conversation_is_not_turned_into_a_thread() -> None:
    from providers.slack.send import _thread

    assert _thread(Target("channel", "D2"), SendOptions(reply_to=f"D2:{TS}")) == {}
    assert _thread(Target("channel", "C1"), SendOptions(reply_to=f"C1:{TS}")) == {"thread_ts": TS}
