"""The Discord outbound adapter and REST client against the wire-level fake."""

from __future__ import annotations

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
    TargetError,
    TargetNotFound,
    TransientSendError,
)
from gateway.outbound.chunking import chunk_markdown
from gateway.plugin import MediaKind, MediaPayload, Poll, SendOptions, Target
from gateway.testing import RecordingContext, resolved_account
from providers.discord import plugin
from tests.fakes.discord_api import DiscordFake

WAIT = 5.0
MESSAGES = "/channels/300/messages"
outbound = plugin.outbound
assert outbound is not None


@asynccontextmanager
async def account(fake: DiscordFake, **keys: Any) -> AsyncIterator[RecordingContext]:
    """A context whose client is open, as the core shares it with the send path."""
    resolved = resolved_account(plugin, token=fake.token, api_base_url=fake.api_base_url, **keys)
    assert plugin.open_client is not None
    async with plugin.open_client(resolved) as client:
        yield RecordingContext(resolved, client)


def target(raw: str) -> Target:
    return outbound.resolve_target(raw, plugin.config.model())


# --- targets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("channel:300", Target("channel", "300")),
    ("user:500", Target("user", "500")),
    ("<@500>", Target("user", "500")),
    ("<@!500>", Target("user", "500")),
    ("<#300>", Target("channel", "300")),
    ("discord:channel:300", Target("channel", "300")),
    ("discord:user:500", Target("user", "500")),
    ("  Channel:300 ", Target("channel", "300")),
    ("channel:300:thread:310", Target("channel", "300", thread="310")),
    ("thread:310", Target("channel", "310")),
])
def test_target_formats(raw: str, expected: Target) -> None:
    assert target(raw) == expected


def test_target_round_trips_through_str() -> None:
    parsed = target("channel:300:thread:310")
    assert target(str(parsed)) == parsed


@pytest.mark.parametrize("raw", ["300", "discord:300", " 123456789012345678 "])
def test_bare_number_is_rejected_as_ambiguous_with_the_fix(raw: str) -> None:
    with pytest.raises(TargetError) as caught:
        target(raw)
    message = str(caught.value)
    assert message.startswith("Discord target must be channel:<id> or user:<id> (a bare number is ambiguous")
    number = raw.strip().removeprefix("discord:")
    assert f"user:{number}" in message and f"channel:{number}" in message


@pytest.mark.parametrize("raw", ["", "general", "channel:abc", "<@abc>"])
def test_invalid_targets_list_the_formats(raw: str) -> None:
    with pytest.raises(TargetError, match="channel:<id>"):
        target(raw)


def test_a_dm_has_no_threads() -> None:
    with pytest.raises(TargetError, match="use user:500"):
        target("user:500:thread:1")


# --- text ------------------------------------------------------------------------------------


async def test_text_goes_to_the_channel_with_safe_allowed_mentions() -> None:
    async with DiscordFake() as fake, account(fake) as ctx:
        result = await outbound.send_text(ctx, target("channel:300"), "hi @everyone", SendOptions())
    [request] = fake.requests_to("POST", MESSAGES)
    assert request.headers["Authorization"] == "Bot test-token"
    assert request.body["content"] == "hi @everyone"
    mentions = request.body["allowed_mentions"]
    assert "everyone" not in mentions["parse"] and "roles" not in mentions["parse"]
    assert "message_reference" not in request.body
    assert result.message_id == fake.messages[0]["id"] and result.chat_id == "300"


async def test_user_target_opens_a_dm_channel_once() -> None:
    async with DiscordFake() as fake, account(fake) as ctx:
        first = await outbound.send_text(ctx, target("user:500"), "one", SendOptions())
        second = await outbound.send_text(ctx, target("<@500>"), "two", SendOptions())
    [open_dm] = fake.requests_to("POST", "/users/@me/channels")
    assert open_dm.body == {"recipient_id": "500"}
    assert first.chat_id == second.chat_id == fake.messages[0]["channel_id"]
    assert [m["content"] for m in fake.messages] == ["one", "two"]


async def test_thread_option_posts_into_the_thread() -> None:
    async with DiscordFake() as fake, account(fake) as ctx:
        await outbound.send_text(ctx, target("channel:300"), "in thread", SendOptions(thread="310"))
        await outbound.send_text(ctx, target("channel:300:thread:310"), "again", SendOptions())
    assert [m["channel_id"] for m in fake.messages] == ["310", "310"]


async def test_long_text_arrives_as_ordered_chunks_with_the_reply_on_the_first_only() -> None:
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 9 for i in range(20)]
    text = "\n\n".join(paragraphs)[:5000]
    assert len(text) == 5000
    # What the core does: chunk with the provider's limits, reply_to only on the first call.
    chunks = chunk_markdown(text, outbound.text_chunk_limit, max_lines=getattr(outbound, "chunk_max_lines"))
    assert len(chunks) >= 3
    async with DiscordFake() as fake, account(fake) as ctx:
        for i, chunk in enumerate(chunks):
            await outbound.send_text(ctx, target("channel:300"), chunk,
                                     SendOptions(reply_to="2001" if i == 0 else None))
    requests = fake.requests_to("POST", MESSAGES)
    assert [r.body["content"] for r in requests] == chunks
    assert all(len(r.body["content"]) <= 2000 and r.body["content"].count("\n") < 17 for r in requests)
    assert requests[0].body["message_reference"] == {"message_id": "2001", "fail_if_not_exists": False}
    assert all("message_reference" not in r.body for r in requests[1:])
    assert [m["type"] for m in fake.messages] == [19] + [0] * (len(chunks) - 1)


async def test_text_over_the_limit_is_refused_before_sending() -> None:
    async with DiscordFake() as fake, account(fake) as ctx:
        with pytest.raises(InvalidRequest, match="2000"):
            await outbound.send_text(ctx, target("channel:300"), "x" * 2001, SendOptions())
    assert fake.requests_to("POST", MESSAGES) == []


# --- media and polls ---------------------------------------------------------------------------


async def test_attachment_is_sent_as_multipart_with_payload_json() -> None:
    media = MediaPayload(data=b"\x89PNG fake image", mime="image/png", filename="cat.png", kind=MediaKind.IMAGE)
    async with DiscordFake() as fake, account(fake) as ctx:
        result = await outbound.send_media(ctx, target("channel:300"), media, "a cat", SendOptions(reply_to="2001"))
    [request] = fake.requests_to("POST", MESSAGES)
    assert request.multipart
    assert request.body["content"] == "a cat"
    assert request.body["attachments"] == [{"id": 0, "filename": "cat.png"}]
    assert request.body["message_reference"]["message_id"] == "2001"
    assert "allowed_mentions" in request.body
    [upload] = request.files
    assert (upload.field, upload.filename, upload.content_type, upload.data) == (
        "files[0]", "cat.png", "image/png", b"\x89PNG fake image")
    assert fake.messages[0]["attachments"][0]["filename"] == "cat.png"
    assert result.message_id == fake.messages[0]["id"]


async def test_media_limit_is_ten_mib_and_an_oversized_upload_is_payload_too_large() -> None:
    assert outbound.media_max_bytes[MediaKind.IMAGE] == 10 * 1024 * 1024
    media = MediaPayload(data=b"x" * 2048, mime="application/pdf", filename="big.pdf", kind=MediaKind.DOCUMENT)
    async with DiscordFake(upload_limit=1024) as fake, account(fake) as ctx:
        with pytest.raises(PayloadTooLarge):
            await outbound.send_media(ctx, target("channel:300"), media, None, SendOptions())


async def test_native_poll_payload() -> None:
    poll = Poll(question="Lunch?", options=("Pizza", "Sushi"), max_selections=2, duration_hours=2000)
    async with DiscordFake() as fake, account(fake) as ctx:
        await outbound.send_poll(ctx, target("channel:300"), poll, SendOptions())
    [request] = fake.requests_to("POST", MESSAGES)
    assert request.body["poll"] == {
        "question": {"text": "Lunch?"},
        "answers": [{"poll_media": {"text": "Pizza"}}, {"poll_media": {"text": "Sushi"}}],
        "duration": 768,  # clamped to Discord's 32 days
        "allow_multiselect": True,
        "layout_type": 1,
    }
    assert request.body["allowed_mentions"]["parse"] == ["users"]


async def test_poll_defaults_to_one_day_single_choice_and_caps_answers() -> None:
    assert outbound.poll_max_options == 10
    async with DiscordFake() as fake, account(fake) as ctx:
        await outbound.send_poll(ctx, target("channel:300"), Poll("Q?", ("a", "b")), SendOptions())
        with pytest.raises(InvalidRequest, match="10"):
            await outbound.send_poll(ctx, target("channel:300"), Poll("Q?", tuple("abcdefghijk")), SendOptions())
    [request] = fake.requests_to("POST", MESSAGES)
    assert request.body["poll"]["duration"] == 24 and request.body["poll"]["allow_multiselect"] is False


# --- rate limits ------------------------------------------------------------------------------


async def test_empty_bucket_delays_the_next_send_until_reset() -> None:
    async with DiscordFake() as fake, account(fake) as ctx:
        bucket = fake.set_bucket(f"POST {MESSAGES}", remaining=0, reset_after=0.3)
        await outbound.send_text(ctx, target("channel:300"), "first", SendOptions())
        await outbound.send_text(ctx, target("channel:300"), "second", SendOptions())
    first, second = fake.requests_to("POST", MESSAGES)
    assert second.at >= bucket.resets[0]  # waited for the window to end...
    assert bucket.rejected == 0  # ...instead of running into a 429
    assert [first.status, second.status] == [200, 200]


async def test_bucket_of_one_channel_does_not_delay_another() -> None:
    async with DiscordFake() as fake, account(fake) as ctx:
        fake.add_channel("301")
        bucket = fake.set_bucket(f"POST {MESSAGES}", remaining=0, reset_after=30)
        await outbound.send_text(ctx, target("channel:300"), "first", SendOptions())
        with anyio.fail_after(WAIT):
            await outbound.send_text(ctx, target("channel:301"), "other channel", SendOptions())
        with pytest.raises(RateLimited) as caught:  # 30 s is for the outbox to wait, not the client
            await outbound.send_text(ctx, target("channel:300"), "second", SendOptions())
    assert 25 < caught.value.retry_after <= 30
    assert bucket.rejected == 0 and len(fake.requests_to("POST", MESSAGES)) == 1


async def test_short_global_429_is_retried_after_waiting() -> None:
    async with DiscordFake() as fake, account(fake) as ctx:
        fake.rate_limit_next(f"POST {MESSAGES}", 0.2, is_global=True)
        await outbound.send_text(ctx, target("channel:300"), "eventually", SendOptions())
    limited, delivered = fake.requests_to("POST", MESSAGES)
    assert (limited.status, delivered.status) == (429, 200)
    assert delivered.at - limited.at >= 0.2
    assert [m["content"] for m in fake.messages] == ["eventually"]


async def test_global_429_holds_back_every_route() -> None:
    async with DiscordFake() as fake, account(fake) as ctx:
        fake.rate_limit_next(f"POST {MESSAGES}", 60, is_global=True)
        with pytest.raises(RateLimited):
            await outbound.send_text(ctx, target("channel:300"), "hi", SendOptions())
        with pytest.raises(RateLimited) as caught:
            await outbound.send_text(ctx, target("user:500"), "other route", SendOptions())
    assert caught.value.retry_after > 55
    assert len(fake.requests) == 1  # the second send never reached Discord


async def test_long_429_raises_rate_limited_for_the_outbox() -> None:
    async with DiscordFake() as fake, account(fake) as ctx:
        fake.rate_limit_next(f"POST {MESSAGES}", 42.5)
        with pytest.raises(RateLimited) as caught:
            await outbound.send_text(ctx, target("channel:300"), "later", SendOptions())
    assert caught.value.retry_after == pytest.approx(42.5)
    assert fake.messages == []


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.anyio  # explicit: the conftest's late auto-marking does not mix with parametrize
@pytest.mark.parametrize(("status", "body", "error"), [
    (404, {"message": "Unknown Channel", "code": 10003}, TargetNotFound),
    (403, {"message": "Missing Permissions", "code": 50013}, Forbidden),
    (413, {"message": "Request entity too large", "code": 40005}, PayloadTooLarge),
    (400, {"message": "Request entity too large", "code": 40005}, PayloadTooLarge),
    (401, {"message": "401: Unauthorized", "code": 0}, AuthFailed),
    (502, {"message": "Bad Gateway", "code": 0}, TransientSendError),
    (400, {"message": "Invalid Form Body", "code": 50035}, InvalidRequest),
])
async def test_http_errors_map_to_switchboard_errors(status: int, body: dict[str, Any], error: type) -> None:
    async with DiscordFake() as fake, account(fake) as ctx:
        fake.fail_next(f"POST {MESSAGES}", status, body)
        with pytest.raises(error) as caught:
            await outbound.send_text(ctx, target("channel:300"), "hi", SendOptions())
    assert "Discord POST /channels/{id}/messages failed" in str(caught.value)


async def test_unknown_channel_is_target_not_found() -> None:
    async with DiscordFake() as fake, account(fake) as ctx:
        with pytest.raises(TargetNotFound, match="Unknown Channel"):
            await outbound.send_text(ctx, target("channel:999"), "hi", SendOptions())


async def test_missing_permission_says_how_to_fix_it() -> None:
    async with DiscordFake() as fake, account(fake) as ctx:
        fake.channels["300"]["deny_send"] = True
        with pytest.raises(Forbidden, match="Send Messages"):
            await outbound.send_text(ctx, target("channel:300"), "hi", SendOptions())


async def test_network_failure_is_transient() -> None:
    async with DiscordFake() as fake:
        url = fake.api_base_url
    ctx_resolved = resolved_account(plugin, token="t", api_base_url=url)  # the fake is gone now
    assert plugin.open_client is not None
    async with plugin.open_client(ctx_resolved) as client:
        ctx = RecordingContext(ctx_resolved, client)
        with pytest.raises(TransientSendError):
            await outbound.send_text(ctx, target("channel:300"), "hi", SendOptions())
