"""The inbound pipeline in process: policy, dedupe, ordering, retries, durability, replies."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import anyio

from gateway.inbound import InboundPipeline
from gateway.plugin import AccountKey, ChatType
from tests.test_inbound_fakes import (
    DirectOutbox,
    Recorder,
    RecordingOutbox,
    chat_plugin,
    config_file,
    message,
    pipeline_gateway,
    recorder,  # noqa: F401 - fixture
)

KEY = AccountKey("chat", "default")


async def settle(pipeline: InboundPipeline) -> None:
    """Wait until every accepted message was handled or parked."""
    with anyio.fail_after(10):
        await pipeline.wait_settled()


# --- access policy ---------------------------------------------------------------------------------


async def test_allowlisted_sender_reaches_the_handler_and_a_stranger_does_not(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "allowlist"\nallow_from = ["alice-id"]\n')
    outbox = RecordingOutbox()
    async with pipeline_gateway(path, outbox) as (gw, pipeline):
        assert await gw.emit(message("from a stranger", sender="mallory-id", username="mallory")) is False
        assert await gw.emit(message("from alice")) is True
        await recorder.calls.wait_for(1)
        await settle(pipeline)
    assert recorder.texts() == ["from alice"]
    assert len(outbox.requests) == 0  # allowlist: no pairing code for strangers


async def test_allow_from_matches_usernames_with_or_without_at(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "allowlist"\nallow_from = ["@Bob", "carol"]\n')
    async with pipeline_gateway(path) as (gw, _pipeline):
        assert await gw.emit(message("b", sender="1", username="bob"))
        assert await gw.emit(message("c", sender="2", username="@carol"))
        assert not await gw.emit(message("d", sender="3", username="dave"))
        await recorder.calls.wait_for(2)


async def test_wildcard_allow_from_lets_anyone_in(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "allowlist"\nallow_from = ["*"]\n')
    async with pipeline_gateway(path) as (gw, _pipeline):
        assert await gw.emit(message(sender="anyone", username=None))


async def test_dm_policy_disabled_denies_even_allowlisted_senders(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "disabled"\nallow_from = ["alice-id"]\n')
    async with pipeline_gateway(path) as (gw, _pipeline):
        assert await gw.emit(message()) is False
        sample = gw.metrics.inbound.labels("chat", "default", "denied")._value.get()
    assert sample == 1 and len(recorder.calls) == 0


async def test_groups_need_a_mention_by_default(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "open"\n')
    async with pipeline_gateway(path) as (gw, pipeline):
        assert not await gw.emit(message("no mention", chat="g1", chat_type=ChatType.GROUP))
        assert await gw.emit(message("@bot hi", chat="g1", chat_type=ChatType.GROUP, mentioned=True))
        await settle(pipeline)
    assert recorder.texts() == ["@bot hi"]


async def test_group_allowlist_admits_listed_senders_or_groups(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ngroup_policy = "allowlist"\n'
                                 'group_allow_from = ["alice-id", "g-ok"]\nrequire_mention = false\n')
    async with pipeline_gateway(path) as (gw, _pipeline):
        assert await gw.emit(message("alice in g1", chat="g1", chat_type=ChatType.GROUP))
        assert await gw.emit(message("bob in g-ok", sender="bob", chat="g-ok", chat_type=ChatType.GROUP))
        assert not await gw.emit(message("bob in g1", sender="bob", chat="g1", chat_type=ChatType.GROUP))


async def test_group_policy_disabled_drops_group_messages(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ngroup_policy = "disabled"\n')
    async with pipeline_gateway(path) as (gw, _pipeline):
        assert not await gw.emit(message(chat="g1", chat_type=ChatType.GROUP, mentioned=True))


async def test_policy_keys_apply_live_without_a_restart(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "allowlist"\n')
    async with pipeline_gateway(path) as (gw, _pipeline):
        assert not await gw.emit(message("before"))
        resolved = gw.supervisor.resolved(KEY)
        assert resolved is not None
        new = replace(resolved, config=resolved.config.model_copy(update={"allow_from": ("alice-id",)}))
        gw.supervisor.update_live(new)
        assert await gw.emit(message("after"))
        await recorder.calls.wait_for(1)
    assert recorder.texts() == ["after"]


# --- pairing ------------------------------------------------------------------------------------------


async def test_pairing_stranger_gets_exactly_one_code_after_three_messages(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, "[providers.chat]\n")  # dm_policy defaults to pairing
    outbox = RecordingOutbox()
    async with pipeline_gateway(path, outbox) as (gw, pipeline):
        for n in range(3):
            assert await gw.emit(message(f"hello {n}", sender="mallory-id", username="mallory")) is False
        [request] = pipeline.pairing.pending()
    [notice] = outbox.requests.items
    assert request.sender_id == "mallory-id" and len(request.code) == 8
    assert request.code in notice.text and f"switchboard pairing approve chat {request.code}" in notice.text
    assert notice.to == "room:mallory-id" and notice.provider == "chat" and notice.account == "default"
    assert len(recorder.calls) == 0


async def test_approval_lets_the_next_message_through_without_a_restart(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, "[providers.chat]\n")
    outbox = RecordingOutbox()
    async with pipeline_gateway(path, outbox) as (gw, pipeline):
        assert not await gw.emit(message("let me in", sender="mallory-id"))
        [request] = pipeline.pairing.pending()
        assert pipeline.approve("chat", request.code.lower()) is not None
        assert await gw.emit(message("thanks", sender="mallory-id"))
        await recorder.calls.wait_for(1)
        await outbox.requests.wait_for(2)  # the code, then "you are approved"
        assert pipeline.pairing.pending() == []
    assert recorder.texts() == ["thanks"]
    assert "approved" in outbox.texts()[1]


async def test_denied_sender_gets_no_new_code_within_the_hour(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, "[providers.chat]\n")
    outbox = RecordingOutbox()
    async with pipeline_gateway(path, outbox) as (gw, pipeline):
        await gw.emit(message(sender="mallory-id"))
        [request] = pipeline.pairing.pending()
        assert pipeline.deny("chat", request.code) is not None
        assert not await gw.emit(message(sender="mallory-id"))
        assert pipeline.approve("chat", request.code) is None
    assert len(outbox.requests) == 1


async def test_approvals_survive_a_restart(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, "[providers.chat]\n")
    async with pipeline_gateway(path) as (gw, pipeline):
        await gw.emit(message(sender="mallory-id"))
        pipeline.approve("chat", pipeline.pairing.pending()[0].code)
    async with pipeline_gateway(path) as (gw, _pipeline):
        assert await gw.emit(message("again", sender="mallory-id"))


# --- dedupe, ordering ---------------------------------------------------------------------------------


async def test_duplicates_are_delivered_to_the_handler_once(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "open"\n')
    async with pipeline_gateway(path) as (gw, pipeline):
        results = []

        async def emit() -> None:
            results.append(await gw.emit(message("once", id="dup-1")))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(emit)
        await settle(pipeline)
        assert sorted(results) == [False, False, False, False, True]
    # The dedupe record is durable: a restarted gateway still knows the id.
    async with pipeline_gateway(path) as (gw, pipeline):
        assert await gw.emit(message("once", id="dup-1")) is False
        await settle(pipeline)
    assert recorder.texts() == ["once"]


async def test_handler_sees_per_chat_order_under_concurrency(tmp_path: Path, recorder: Recorder):
    handler = config_file(tmp_path, '[providers.chat]\ndm_policy = "open"\n').read_text()
    path = tmp_path / "switchboard.toml"
    path.write_text(handler.replace("retry_initial_ms = 1", "retry_initial_ms = 1\nconcurrency = 4"))
    chats, per_chat = 20, 25
    active, peak = 0, 0

    async def behaviour(envelope: dict) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        for _ in range(random.randint(0, 3)):
            await anyio.sleep(random.random() / 1000)  # interleave, not synchronise
        active -= 1

    recorder.behaviour = behaviour
    async with pipeline_gateway(path) as (gw, _pipeline):
        emitted = [(c, n) for n in range(per_chat) for c in range(chats)]
        for chat, n in emitted:
            assert await gw.emit(message(f"{chat}:{n}", sender=f"user{chat}", id=f"c{chat}-{n}"))
        await recorder.calls.wait_for(chats * per_chat, timeout=30)
    seen: dict[str, list[int]] = {}
    for text in recorder.texts():
        chat, n = text.split(":")
        seen.setdefault(chat, []).append(int(n))
    assert all(order == list(range(per_chat)) for order in seen.values()) and len(seen) == chats
    assert 1 < peak <= 4


async def test_a_failing_chat_does_not_hold_up_other_chats(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "open"\n')
    release = anyio.Event()

    async def behaviour(envelope: dict) -> None:
        if envelope["message"]["chat"]["id"] == "stuck":
            await release.wait()

    recorder.behaviour = behaviour
    async with pipeline_gateway(path) as (gw, _pipeline):
        await gw.emit(message("first", sender="stuck"))
        await gw.emit(message("second", sender="stuck"))
        await gw.emit(message("other", sender="free"))
        calls = await recorder.calls.wait_for(2)
        assert [c["message"]["text"] for c in calls] == ["first", "other"]
        release.set()
        await recorder.calls.wait_for(3)
    assert recorder.texts()[-1] == "second"


# --- failures -------------------------------------------------------------------------------------------


async def test_failing_handler_is_retried_then_parked_and_shown_in_status(tmp_path: Path, recorder: Recorder):
    body = config_file(tmp_path, '[providers.chat]\ndm_policy = "open"\n').read_text()
    path = tmp_path / "switchboard.toml"
    path.write_text(body.replace("retry_initial_ms = 1", "retry_initial_ms = 1\nmax_attempts = 3"))
    broken = True

    async def behaviour(envelope: dict) -> str:
        if broken:
            raise RuntimeError("database is down")
        return "fixed"

    recorder.behaviour = behaviour
    outbox = RecordingOutbox()
    async with pipeline_gateway(path, outbox) as (gw, pipeline):
        await gw.emit(message("will fail"))
        await recorder.calls.wait_for(3)
        await settle(pipeline)
        [parked] = pipeline.inbox.list("failed")
        assert parked.attempts == 3 and "database is down" in (parked.last_error or "")
        [issue] = [i for i in gw.status.issues() if i.kind == "runtime"]
        assert issue.message.startswith("handler failing: ") and "database is down" in issue.message
        assert gw.metrics.handler_failures.labels("python")._value.get() == 3
        broken = False
        assert pipeline.retry(parked.seq) is not None
        await outbox.requests.wait_for(1)
        await settle(pipeline)
        assert pipeline.inbox.counts()["failed"] == 0
        assert not [i for i in gw.status.issues() if i.kind == "runtime"]
    assert outbox.texts() == ["fixed"]


async def test_message_stored_before_a_crash_is_handled_after_restart(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "open"\n[gateway.outbox]\nflush_timeout_s = 0.1\n')
    never = anyio.Event()

    async def hang(envelope: dict) -> None:
        await never.wait()

    recorder.behaviour = hang
    async with pipeline_gateway(path) as (gw, _pipeline):
        assert await gw.emit(message("survives"))
        await recorder.calls.wait_for(1)  # handling began; the gateway goes away mid-call
    recorder.behaviour = None
    outbox = RecordingOutbox()
    async with pipeline_gateway(path, outbox) as (_gw, pipeline):
        await recorder.calls.wait_for(2)
        await settle(pipeline)
        assert pipeline.inbox.counts() == {"pending": 0, "done": 1, "failed": 0}


# --- replies -----------------------------------------------------------------------------------------------


async def test_replies_go_to_the_same_chat_and_thread_once(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "open"\n')
    outbox = DirectOutbox()

    async def behaviour(envelope: dict) -> list:
        return ["one", {"text": "two", "media": ["/tmp/x.png"]}]

    recorder.behaviour = behaviour
    plugin = chat_plugin()
    async with pipeline_gateway(path, outbox, plugins=[plugin]) as (gw, pipeline):
        await gw.emit(message("hi", id="m-42", chat="room-7", thread="t-1"))
        sent = await plugin.outbound.sent.wait_for(2)  # type: ignore[union-attr]
    first, second = outbox.requests.items
    assert [(r.to, r.reply_to, r.thread) for r in (first, second)] == [("room:room-7", "m-42", "t-1")] * 2
    assert [r.idempotency_key for r in (first, second)] == ["reply:chat:default:m-42:0", "reply:chat:default:m-42:1"]
    assert second.media == ("/tmp/x.png",)
    assert [(chat, text) for chat, text, _ in sent] == [("room-7", "one"), ("room-7", "two")]


async def test_echo_handler_replies_with_the_text(tmp_path: Path):
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "open"\n', handler='[handler]\nkind = "echo"\n')
    outbox = RecordingOutbox()
    async with pipeline_gateway(path, outbox) as (gw, _pipeline):
        await gw.emit(message("ping"))
        await outbox.requests.wait_for(1)
    assert outbox.texts() == ["ping"]


async def test_poll_votes_reach_the_handler_as_poll_vote(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "open"\n')
    async with pipeline_gateway(path) as (gw, _pipeline):
        await gw.emit(message("Blue", id="vote:1", type="poll_vote", reply_to="poll-9"))
        [call] = await recorder.calls.wait_for(1)
    assert call["type"] == "poll_vote" and call["message"]["text"] == "Blue"


async def test_handler_kind_change_applies_to_the_next_message(tmp_path: Path, recorder: Recorder):
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "open"\n')
    outbox = RecordingOutbox()
    async with pipeline_gateway(path, outbox) as (gw, pipeline):
        await gw.emit(message("to python"))
        await recorder.calls.wait_for(1)
        await settle(pipeline)
        gw.config = replace(gw.config, handler=gw.config.handler.model_copy(update={"kind": "echo"}))
        await gw.emit(message("to echo"))
        await outbox.requests.wait_for(1)
    assert recorder.texts() == ["to python"] and outbox.texts() == ["to echo"]
