"""deliver(): resolution, validation, chunking, media and polls, against a fake provider."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from aiohttp import web

from gateway.errors import InvalidRequest, PayloadTooLarge, TargetError, UnknownAccount, UnknownProvider
from gateway.outbound import DeliveryRequest, PollRequest, poll_text
from gateway.outbound.media import sniff_mime
from gateway.plugin import MediaKind, Poll, PollSupport
from tests.test_outbound_support import (
    FakeOutbound,
    NativePollOutbound,
    fake_config,
    fake_plugin,
    outbox_gateway,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100


# --- resolution ----------------------------------------------------------------------------------


async def test_default_account_and_provider_alias_are_resolved(tmp_path: Path) -> None:
    plugin = fake_plugin()
    raw = fake_config(tmp_path / "state", accounts={"work": {}, "default": {}})
    async with outbox_gateway(raw, plugin) as (_, outbox):
        record = await outbox.deliver(DeliveryRequest(" FK ", "chat:1", "hi"), wait=True, timeout=5)
    assert (record.provider, record.account, record.state) == ("fake", "default", "delivered")


async def test_the_only_account_is_the_default_when_none_is_called_default(tmp_path: Path) -> None:
    plugin = fake_plugin()
    raw = fake_config(tmp_path / "state", accounts={"Alerts Bot": {}})
    async with outbox_gateway(raw, plugin) as (_, outbox):
        record = await outbox.deliver(DeliveryRequest("fake", "chat:1", "hi"), wait=True, timeout=5)
        named = await outbox.deliver(DeliveryRequest("fake", "chat:1", "hi", account="ALERTS bot"), wait=True,
                                     timeout=5)
    assert record.account == named.account == "alerts-bot"


async def test_unknown_account_names_the_configured_ones(tmp_path: Path) -> None:
    async with outbox_gateway(fake_config(tmp_path / "state", accounts={"work": {}}), fake_plugin()) as (_, outbox):
        with pytest.raises(UnknownAccount, match=r"unknown account 'home' for provider 'fake'; configured accounts: work"):
            await outbox.deliver(DeliveryRequest("fake", "chat:1", "hi", account="home"))
        assert outbox.list() == []


async def test_unknown_provider_lists_the_known_ones(tmp_path: Path) -> None:
    async with outbox_gateway(fake_config(tmp_path / "state"), fake_plugin()) as (_, outbox):
        with pytest.raises(UnknownProvider, match="known providers: fake"):
            await outbox.deliver(DeliveryRequest("telegarm", "chat:1", "hi"))


async def test_bad_target_shows_the_accepted_format(tmp_path: Path) -> None:
    async with outbox_gateway(fake_config(tmp_path / "state"), fake_plugin()) as (_, outbox):
        with pytest.raises(TargetError, match=r"Fake target must be chat:<id>, got 'room:7'"):
            await outbox.deliver(DeliveryRequest("fake", "room:7", "hi"))
        assert outbox.list() == []


async def test_empty_message_is_refused_before_it_is_stored(tmp_path: Path) -> None:
    async with outbox_gateway(fake_config(tmp_path / "state"), fake_plugin()) as (_, outbox):
        with pytest.raises(InvalidRequest, match="nothing to send"):
            await outbox.deliver(DeliveryRequest("fake", "chat:1", "  \n "))
        assert outbox.list() == []


# --- chunking ---------------------------------------------------------------------------------


async def test_long_text_is_chunked_in_order_and_every_part_recorded(tmp_path: Path) -> None:
    plugin = fake_plugin()
    text = " ".join(f"word{i}" for i in range(60))
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        record = await outbox.deliver(DeliveryRequest("fake", "chat:1", text, reply_to="99"), wait=True, timeout=5)
    sent = plugin.outbound.sent
    assert len(sent) > 1 and all(len(s.text) <= FakeOutbound.text_chunk_limit for s in sent)
    assert " ".join(s.text for s in sent) == text
    assert [s.opts.delivery_id for s in sent] == [f"{record.id}:{i}" for i in range(len(sent))]
    assert [s.opts.reply_to for s in sent] == ["99"] + [None] * (len(sent) - 1)  # the first part replies
    assert [r["message_id"] for r in record.results] == [str(i) for i in range(1, len(sent) + 1)]


async def test_chunks_are_measured_after_rendering(tmp_path: Path) -> None:
    # "&" renders as "&amp;": 40 characters of markdown can be 200 on the wire.
    outbound = FakeOutbound(render_html=True)
    plugin = fake_plugin(outbound=outbound)
    text = "& " * 100
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        await outbox.deliver(DeliveryRequest("fake", "chat:1", text), wait=True, timeout=5)
    assert all(len(outbound.render(s.text)) <= FakeOutbound.text_chunk_limit for s in outbound.sent)
    assert "".join(s.text for s in outbound.sent).replace(" ", "") == "&" * 100


async def test_account_text_chunk_limit_overrides_the_provider_limit(tmp_path: Path) -> None:
    plugin = fake_plugin()
    raw = fake_config(tmp_path / "state", provider={"text_chunk_limit": 10})
    async with outbox_gateway(raw, plugin) as (_, outbox):
        await outbox.deliver(DeliveryRequest("fake", "chat:1", "aaaa bbbb cccc dddd"), wait=True, timeout=5)
    assert [s.text for s in plugin.outbound.sent] == ["aaaa bbbb", "cccc dddd"]


# --- media ------------------------------------------------------------------------------------------


async def test_media_over_the_limit_names_both_sizes(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(JPEG + b"\x00" * 3000)  # 3,104 bytes; account cap 0.002 MB = 2,097 bytes
    raw = fake_config(tmp_path / "state", provider={"media_max_mb": 0.002})
    async with outbox_gateway(raw, fake_plugin()) as (_, outbox):
        with pytest.raises(PayloadTooLarge) as excinfo:
            await outbox.deliver(DeliveryRequest("fake", "chat:1", "look", media=(str(photo),)))
        assert outbox.list() == []
    assert str(excinfo.value) == "photo.jpg is 3,104 bytes; the limit for fake/default images is 2,097 bytes"


def test_size_error_reads_in_megabytes_when_the_sizes_differ() -> None:
    from gateway.outbound.media import MB, MediaLimits, too_large

    limits = MediaLimits({kind: 10 * MB for kind in MediaKind}, "telegram/default")
    message = str(too_large("photo.jpg", 12 * MB, limits, MediaKind.IMAGE))
    assert message == "photo.jpg is 12.0 MB; the limit for telegram/default images is 10.0 MB"


async def test_provider_media_cap_applies_per_kind(tmp_path: Path) -> None:
    outbound = FakeOutbound()
    outbound.media_max_bytes = {MediaKind.IMAGE: 50, MediaKind.DOCUMENT: 4096}
    doc = tmp_path / "notes.pdf"
    doc.write_bytes(b"%PDF-1.7" + b"\x00" * 200)
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    async with outbox_gateway(fake_config(tmp_path / "state"), fake_plugin(outbound=outbound)) as (_, outbox):
        await outbox.deliver(DeliveryRequest("fake", "chat:1", media=(str(doc),)), wait=True, timeout=5)
        with pytest.raises(PayloadTooLarge, match="cat.png is 108 bytes; the limit for fake/default images is 50 bytes"):
            await outbox.deliver(DeliveryRequest("fake", "chat:1", media=(str(image),)))
    assert outbound.sent[0].media is not None and outbound.sent[0].media.kind == MediaKind.DOCUMENT


async def test_mime_is_sniffed_from_content_not_the_name(tmp_path: Path) -> None:
    plugin = fake_plugin()
    misnamed = tmp_path / "upload.bin"
    misnamed.write_bytes(PNG)
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        await outbox.deliver(DeliveryRequest("fake", "chat:1", media=(f"file://{misnamed}",)), wait=True, timeout=5)
    media = plugin.outbound.sent[0].media
    assert media is not None and (media.mime, media.kind, media.filename) == ("image/png", MediaKind.IMAGE, "upload.bin")


@pytest.mark.parametrize(("head", "name", "mime"), [
    (b"GIF89a....", None, "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", None, "image/webp"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", None, "audio/wav"),
    (b"\x00\x00\x00\x18ftypmp42", None, "video/mp4"),
    (b"\x00\x00\x00\x18ftypM4A ", None, "audio/mp4"),
    (b"OggS\x00\x02", None, "audio/ogg"),
    (b"ID3\x04\x00", None, "audio/mpeg"),
    (b"\xff\xfb\x90\x00", None, "audio/mpeg"),
    (b"PK\x03\x04\x14\x00", None, "application/zip"),
    (b"PK\x03\x04\x14\x00", "report.docx",
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (b"plain words", "notes.txt", "text/plain"),
    (b"\x00\x01\x02", None, "application/octet-stream"),
])
def test_sniffing_table(head: bytes, name: str | None, mime: str) -> None:
    assert sniff_mime(head, name) == mime


async def test_missing_media_file_fails_before_anything_is_stored(tmp_path: Path) -> None:
    async with outbox_gateway(fake_config(tmp_path / "state"), fake_plugin()) as (_, outbox):
        with pytest.raises(InvalidRequest, match=r"media file .*nope\.png does not exist"):
            await outbox.deliver(DeliveryRequest("fake", "chat:1", "hi", media=(str(tmp_path / "nope.png"),)))
        assert outbox.list() == [] and outbox.counts() == (0, 0)


async def test_data_uri_media_is_decoded(tmp_path: Path) -> None:
    plugin = fake_plugin()
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        await outbox.deliver(DeliveryRequest("fake", "chat:1", media=(uri,)), wait=True, timeout=5)
        with pytest.raises(InvalidRequest, match="not valid base64"):
            await outbox.deliver(DeliveryRequest("fake", "chat:1", media=("data:image/png;base64,@@@",)))
    media = plugin.outbound.sent[0].media
    assert media is not None and media.data == PNG and media.filename == "file.png"


async def test_unsupported_media_scheme_is_refused(tmp_path: Path) -> None:
    async with outbox_gateway(fake_config(tmp_path / "state"), fake_plugin()) as (_, outbox):
        with pytest.raises(InvalidRequest, match="unsupported scheme 'ftp'"):
            await outbox.deliver(DeliveryRequest("fake", "chat:1", media=("ftp://example.com/a.png",)))


async def test_provider_without_media_refuses_media(tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    async with outbox_gateway(fake_config(tmp_path / "state"), fake_plugin(media=False)) as (_, outbox):
        with pytest.raises(InvalidRequest, match="cannot send media"):
            await outbox.deliver(DeliveryRequest("fake", "chat:1", media=(str(image),)))


async def test_http_media_is_fetched_and_an_oversized_download_is_cut_short(tmp_path: Path) -> None:
    async def image(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        size = int(request.query.get("size", "100"))
        chunk = JPEG + b"\x00" * 1000
        sent = 0
        try:
            while sent < size:  # no Content-Length: the client must stop reading by itself
                await resp.write(chunk[: size - sent])
                sent += min(len(chunk), size - sent)
        except ConnectionResetError:
            pass
        return resp

    app = web.Application()
    app.router.add_get("/cat", image)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    plugin = fake_plugin()
    try:
        async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
            await outbox.deliver(DeliveryRequest("fake", "chat:1", "a cat", media=(f"http://127.0.0.1:{port}/cat",)),
                                 wait=True, timeout=5)
            with pytest.raises(PayloadTooLarge, match=r"^cat is more than 4,096 bytes; the limit for fake/default "
                                                      r"images is 4,096 bytes$"):
                await outbox.deliver(DeliveryRequest("fake", "chat:1", media=(
                    f"http://127.0.0.1:{port}/cat?size=10000000",)))
    finally:
        await runner.cleanup()
    media = plugin.outbound.sent[0].media
    assert media is not None and media.mime == "image/jpeg" and plugin.outbound.sent[0].text == "a cat"


# --- captions -------------------------------------------------------------------------------------


async def test_first_media_carries_the_caption_and_the_rest_none(tmp_path: Path) -> None:
    plugin = fake_plugin()
    one, two = tmp_path / "1.png", tmp_path / "2.png"
    one.write_bytes(PNG)
    two.write_bytes(PNG)
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        record = await outbox.deliver(DeliveryRequest("fake", "chat:1", "two cats", media=(str(one), str(two))),
                                      wait=True, timeout=5)
    assert [(s.kind, s.text) for s in plugin.outbound.sent] == [("media", "two cats"), ("media", None)]
    assert len(record.results) == 2


async def test_caption_longer_than_the_caption_limit_goes_first_as_text(tmp_path: Path) -> None:
    plugin = fake_plugin()
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    caption = "this caption is longer than twenty characters"
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        await outbox.deliver(DeliveryRequest("fake", "chat:1", caption, media=(str(image),)), wait=True, timeout=5)
    sent = plugin.outbound.sent
    assert [s.kind for s in sent] == ["text", "text", "media"]
    assert " ".join(s.text for s in sent[:2]) == caption and sent[2].text is None


# --- polls ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("poll", "message"), [
    (PollRequest("  ", ("a", "b")), "poll question is required"),
    (PollRequest("Lunch?", ("pizza",)), "at least 2 options, got 1"),
    (PollRequest("Lunch?", ("a", "b", "c", "d", "e")), "at most 4 options, got 5"),
    (PollRequest("Lunch?", ("pizza", " ")), "poll option 2 is empty"),
    (PollRequest("Lunch?", ("Pizza", "pizza ")), "must be unique: option 2 \\('pizza'\\) repeats option 1"),
    (PollRequest("Lunch?", ("a", "b"), max_selections=3), "max_selections must be between 1 and .* got 3"),
    (PollRequest("Lunch?", ("a", "b"), max_selections=0), "max_selections must be between 1"),
    (PollRequest("Lunch?", ("a", "b"), duration_hours=0), "duration_hours must be a whole number from 1 to 768"),
    (PollRequest("Lunch?", ("a", "b"), duration_hours=769), "from 1 to 768, got 769"),
])
async def test_poll_validation_errors(tmp_path: Path, poll: PollRequest, message: str) -> None:
    async with outbox_gateway(fake_config(tmp_path / "state"), fake_plugin()) as (_, outbox):
        with pytest.raises(InvalidRequest, match=message):
            await outbox.deliver(DeliveryRequest("fake", "chat:1", poll=poll))
        assert outbox.list() == []


async def test_native_poll_goes_through_send_poll(tmp_path: Path) -> None:
    outbound = NativePollOutbound()
    plugin = fake_plugin(outbound=outbound, polls=PollSupport.NATIVE)
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        await outbox.deliver(DeliveryRequest("fake", "chat:1", poll=PollRequest(
            " Lunch? ", (" pizza", "sushi "), max_selections=2, duration_hours=24)), wait=True, timeout=5)
    assert [s.kind for s in outbound.sent] == ["poll"]
    assert outbound.sent[0].poll == Poll("Lunch?", ("pizza", "sushi"), 2, 24)


async def test_plugin_that_emulates_polls_itself_gets_send_poll(tmp_path: Path) -> None:
    outbound = NativePollOutbound()
    plugin = fake_plugin(outbound=outbound, polls=PollSupport.EMULATED)
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        await outbox.deliver(DeliveryRequest("fake", "chat:1", poll=PollRequest("Lunch?", ("a", "b"))), wait=True,
                             timeout=5)
    assert [s.kind for s in outbound.sent] == ["poll"]


async def test_poll_without_native_support_is_sent_as_numbered_text(tmp_path: Path) -> None:
    outbound = FakeOutbound()
    outbound.text_chunk_limit = 500
    plugin = fake_plugin(outbound=outbound, polls=PollSupport.NONE)
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        await outbox.deliver(DeliveryRequest("fake", "chat:1", poll=PollRequest("Lunch?", ("pizza", "sushi"))),
                             wait=True, timeout=5)
    assert [s.text for s in outbound.sent] == ["📊 Lunch?\n1. pizza\n2. sushi\nReply with a number"]


def test_poll_text_for_several_choices_and_a_duration() -> None:
    assert poll_text(Poll("Days?", ("mon", "tue", "wed"), 2, 48)) == (
        "📊 Days?\n1. mon\n2. tue\n3. wed\nReply with up to 2 numbers, separated by commas\n(open for 48 h)")


async def test_poll_refuses_media(tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    async with outbox_gateway(fake_config(tmp_path / "state"), fake_plugin()) as (_, outbox):
        with pytest.raises(InvalidRequest, match="a poll cannot carry media"):
            await outbox.deliver(DeliveryRequest("fake", "chat:1", media=(str(image),),
                                                 poll=PollRequest("Q?", ("a", "b"))))


async def test_deliver_after_shutdown_is_refused(tmp_path: Path) -> None:
    from gateway.outbound import OutboxClosed

    async with outbox_gateway(fake_config(tmp_path / "state"), fake_plugin()) as (_, outbox):
        pass  # leaving the block waits for the gateway to stop
    with pytest.raises(OutboxClosed):
        await outbox.deliver(DeliveryRequest("fake", "chat:1", "late"))


async def test_text_with_an_unpaired_surrogate_is_refused(tmp_path: Path) -> None:
    async with outbox_gateway(fake_config(tmp_path / "state"), fake_plugin()) as (_, outbox):
        with pytest.raises(InvalidRequest, match="not valid Unicode: an unpaired surrogate at character 3"):
            await outbox.deliver(DeliveryRequest("fake", "chat:1", "abc\ud800"))
