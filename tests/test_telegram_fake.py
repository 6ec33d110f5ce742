"""The Bot API fake itself behaves like the parts of Telegram the provider relies on."""

from __future__ import annotations

from functools import partial

import aiohttp
import anyio
import pytest

from tests.fakes.telegram_api import HtmlError, TelegramFake, visible_text

TOKEN = "123456:ABC-fake"


@pytest.fixture
async def fake():
    async with TelegramFake() as fake:
        fake.add_bot(TOKEN, username="gw_bot")
        yield fake


async def call(fake: TelegramFake, method: str, token: str = TOKEN, **params):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.base_url}/bot{token}/{method}", json=params) as resp:
            return resp.status, await resp.json()


async def test_unknown_token_is_unauthorized(fake):
    status, body = await call(fake, "getMe", token="999:nope")
    assert status == 401
    assert body == {"ok": False, "error_code": 401, "description": "Unauthorized"}


async def test_get_updates_confirms_everything_below_the_offset(fake):
    first = fake.inject_message(TOKEN, "one")
    second = fake.inject_message(TOKEN, "two")
    _, body = await call(fake, "getUpdates")
    assert [u["update_id"] for u in body["result"]] == [first["update_id"], second["update_id"]]
    _, body = await call(fake, "getUpdates", offset=second["update_id"])
    assert [u["update_id"] for u in body["result"]] == [second["update_id"]]
    _, body = await call(fake, "getUpdates", offset=second["update_id"] + 1)
    assert body["result"] == []


async def test_long_poll_returns_as_soon_as_an_update_arrives(fake):
    async with anyio.create_task_group() as tg:
        results = []

        async def poll():
            results.append(await call(fake, "getUpdates", timeout=30))

        tg.start_soon(poll)
        (request,) = await fake.wait_for_request("getUpdates", 1)
        fake.inject_message(TOKEN, "late")
        with anyio.fail_after(5):
            await fake.wait_for_answer(request)
    assert results[0][1]["result"][0]["message"]["text"] == "late"


async def test_overlapping_get_updates_terminate_the_first_with_409(fake):
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(call, fake, "getUpdates", timeout=30))
        (first,) = await fake.wait_for_request("getUpdates", 1)
        status, _ = await call(fake, "getUpdates", timeout=0)
        await fake.wait_for_answer(first)
    assert first.status == 409
    assert "terminated by other getUpdates request" in first.result
    assert status == 200


async def test_fail_next_answers_the_armed_error_then_recovers(fake):
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    status, body = await call(fake, "sendMessage", chat_id=42, text="hi")
    assert status == 429
    assert body["parameters"] == {"retry_after": 3}
    status, _ = await call(fake, "sendMessage", chat_id=42, text="hi")
    assert status == 200


async def test_get_updates_is_refused_while_a_webhook_is_set(fake):
    await call(fake, "setWebhook", url="http://127.0.0.1:1/hook")
    status, body = await call(fake, "getUpdates")
    assert status == 409
    assert "webhook is active" in body["description"]
    await call(fake, "deleteWebhook")
    status, _ = await call(fake, "getUpdates")
    assert status == 200


async def test_send_message_checks_html_and_the_visible_length(fake):
    status, body = await call(fake, "sendMessage", chat_id=42, text="<b>open", parse_mode="HTML")
    assert (status, body["description"].startswith("Bad Request: can't parse entities")) == (400, True)
    status, body = await call(fake, "sendMessage", chat_id=42, text="<b>" + "x" * 4096 + "</b>", parse_mode="HTML")
    assert status == 200
    status, body = await call(fake, "sendMessage", chat_id=42, text="😀" * 2049)
    assert (status, body["description"]) == (400, "Bad Request: message is too long")


@pytest.mark.parametrize("html", ["<b>x</i>", "<b>x", "x</b>", "<script>x</script>", "a & b", "a > b", "<a"])
def test_visible_text_rejects_what_telegram_rejects(html):
    with pytest.raises(HtmlError):
        visible_text(html)


def test_visible_text_strips_tags_and_decodes_entities():
    assert visible_text('<b>a</b> <a href="https://x">&lt;b&gt; &amp; &quot;</a>') == 'a <b> & "'
