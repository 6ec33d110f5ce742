"""The durable outbox: ordering, rate limits, retries, dead letters, idempotency, restarts."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import anyio
import pytest

from gateway.errors import Forbidden, RateLimited, TargetNotFound, TransientSendError
from gateway.outbound import DeliveryRecord, DeliveryRequest, Outbox
from gateway.plugin import AccountKey
from tests.test_outbound_support import Sent, fake_config, fake_plugin, key, outbox_gateway, wait_state


async def test_text_is_delivered_and_its_result_recorded(tmp_path: Path) -> None:
    plugin = fake_plugin()
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (gateway, outbox):
        accepted = await outbox.deliver(DeliveryRequest("fake", "chat:7", "hello"))
        assert accepted.provider == "fake" and accepted.target == "chat:7"
        record = await wait_state(outbox, accepted.id, "delivered")
        assert gateway.status.get(key())["last_outbound_at"] is not None
    assert record.results == [{"message_id": "1", "chat_id": "7"}]
    assert record.attempts == 1 and record.last_error is None
    assert [s.text for s in plugin.outbound.sent] == ["hello"]


async def test_rate_limit_waits_retry_after_then_delivers_exactly_once(tmp_path: Path) -> None:
    plugin = fake_plugin()
    plugin.outbound.fail_next("7", RateLimited(0.3))
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (gateway, outbox):
        started = anyio.current_time()
        record = await outbox.deliver(DeliveryRequest("fake", "chat:7", "hi"), wait=True, timeout=5)
        elapsed = anyio.current_time() - started
        waits = gateway.metrics.rate_limit_waits.labels("fake", "default")._value.get()
    assert record.state == "delivered" and record.attempts == 1  # the wait is not a failed attempt
    assert elapsed >= 0.3
    assert [s.text for s in plugin.outbound.sent] == ["hi"]
    assert waits == 1


async def test_rate_limit_pauses_every_target_of_the_account(tmp_path: Path) -> None:
    plugin = fake_plugin()
    limited = anyio.Event()

    async def note(sent: Sent) -> None:
        if sent.target == "1":
            limited.set()  # the queued RateLimited is raised right after this

    plugin.outbound.before_send = note
    plugin.outbound.fail_next("1", RateLimited(0.3))
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        await outbox.deliver(DeliveryRequest("fake", "chat:1", "first"))
        with anyio.fail_after(5):
            await limited.wait()
        started = anyio.current_time()
        other = await outbox.deliver(DeliveryRequest("fake", "chat:2", "second"), wait=True, timeout=5)
        waited = anyio.current_time() - started
        await outbox.join()
    assert other.state == "delivered"
    assert waited >= 0.25  # chat:2 waited for the account's pause too
    assert sorted(s.text for s in plugin.outbound.sent) == ["first", "second"]


async def test_permanent_error_dead_letters_with_its_reason_and_code(tmp_path: Path) -> None:
    plugin = fake_plugin()
    plugin.outbound.fail_next("404", TargetNotFound("chat 404 does not exist"))
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (gateway, outbox):
        with pytest.raises(TargetNotFound, match="chat 404 does not exist") as excinfo:
            await outbox.deliver(DeliveryRequest("fake", "chat:404", "hi"), wait=True, timeout=5)
        dead = outbox.list("dead")
        assert outbox.counts() == (0, 1)
        dead_total = gateway.metrics.outbound.labels("fake", "default", "dead")._value.get()
    record = excinfo.value.record  # type: ignore[attr-defined]
    assert (record.state, record.error_code, record.last_error, record.attempts) == (
        "dead", "target_not_found", "chat 404 does not exist", 1)
    assert [r.id for r in dead] == [record.id]
    assert dead_total == 1


async def test_transient_errors_are_retried_with_backoff(tmp_path: Path) -> None:
    plugin = fake_plugin()
    plugin.outbound.fail_next("7", TransientSendError("HTTP 502"), ConnectionResetError("reset by peer"))
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (gateway, outbox):
        record = await outbox.deliver(DeliveryRequest("fake", "chat:7", "hi"), wait=True, timeout=5)
        retried = gateway.metrics.outbound.labels("fake", "default", "retried")._value.get()
    assert record.state == "delivered" and record.attempts == 3
    assert retried == 2
    assert [s.text for s in plugin.outbound.sent] == ["hi"]


async def test_transient_errors_dead_letter_after_max_attempts(tmp_path: Path) -> None:
    plugin = fake_plugin()
    plugin.outbound.fail_next("7", *[TransientSendError("HTTP 503")] * 10)
    raw = fake_config(tmp_path / "state", outbox={"max_attempts": 3})
    async with outbox_gateway(raw, plugin) as (_, outbox):
        with pytest.raises(TransientSendError) as excinfo:
            await outbox.deliver(DeliveryRequest("fake", "chat:7", "hi"), wait=True, timeout=5)
    record = excinfo.value.record  # type: ignore[attr-defined]
    assert (record.state, record.attempts, record.error_code) == ("dead", 3, "transient")
    assert record.last_error == "gave up after 3 attempts: HTTP 503"


async def test_unexpected_exceptions_are_retried_like_transient_errors(tmp_path: Path) -> None:
    plugin = fake_plugin()
    plugin.outbound.fail_next("7", RuntimeError("bug in the provider"))
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        record = await outbox.deliver(DeliveryRequest("fake", "chat:7", "hi"), wait=True, timeout=5)
    assert record.state == "delivered" and record.attempts == 2


async def test_repeated_idempotency_key_returns_the_first_record_and_sends_nothing(tmp_path: Path) -> None:
    plugin = fake_plugin()
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        first = await outbox.deliver(DeliveryRequest("fake", "chat:7", "hi", idempotency_key="k1"), wait=True,
                                     timeout=5)
        again = await outbox.deliver(DeliveryRequest("fake", "chat:7", "different text", idempotency_key="k1"))
        waited = await outbox.deliver(DeliveryRequest("fake", "chat:7", "hi", idempotency_key="k1"), wait=True)
        concurrent: list[DeliveryRecord] = []

        async def deliver_once() -> None:
            concurrent.append(await outbox.deliver(DeliveryRequest("fake", "chat:8", "once", idempotency_key="k2")))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(deliver_once)
        await outbox.join()
    assert again.id == waited.id == first.id and again.state == "delivered"
    assert again.results == first.results
    assert len({r.id for r in concurrent}) == 1
    assert [s.text for s in plugin.outbound.sent] == ["hi", "once"]


async def test_idempotency_key_is_forgotten_after_its_ttl(tmp_path: Path) -> None:
    plugin = fake_plugin()
    async with outbox_gateway(fake_config(tmp_path / "state", outbox={"idempotency_ttl_s": 60}), plugin) as (gw, outbox):
        first = await outbox.deliver(DeliveryRequest("fake", "chat:7", "hi", idempotency_key="k"), wait=True, timeout=5)
        gw.db.execute("UPDATE outbox SET created_at = created_at - 61 WHERE id=?", (first.id,))
        second = await outbox.deliver(DeliveryRequest("fake", "chat:7", "hi again", idempotency_key="k"), wait=True,
                                      timeout=5)
        assert outbox.get(first.id).idempotency_key is None  # type: ignore[union-attr]
    assert second.id != first.id and second.idempotency_key == "k"
    assert [s.text for s in plugin.outbound.sent] == ["hi", "hi again"]


async def test_fifo_per_target_under_concurrency(tmp_path: Path) -> None:
    plugin = fake_plugin()
    rng = random.Random(4)

    async def jitter(sent: Sent) -> None:
        await anyio.sleep(rng.random() * 0.002)  # sends complete out of order across targets

    plugin.outbound.before_send = jitter
    plugin.outbound.fail_next("b", TransientSendError("flaky"), TransientSendError("flaky"))
    plugin.outbound.fail_next("c", RateLimited(0.05))
    accepted: dict[str, list[str]] = defaultdict(list)

    async def producer(n: int) -> None:
        for i in range(12):
            target = "abc"[(n + i) % 3]
            record = await outbox.deliver(DeliveryRequest("fake", f"chat:{target}", f"{n}-{i}"))
            accepted[target].append(record.id)  # no await since deliver() enqueued it: acceptance order

    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(producer, n)
        with anyio.fail_after(10):
            await outbox.join()
    seen: dict[str, list[str]] = defaultdict(list)
    for sent in plugin.outbound.sent:
        seen[sent.target].append(sent.opts.delivery_id.rsplit(":", 1)[0])  # type: ignore[union-attr]
    assert sum(len(v) for v in accepted.values()) == 240
    assert seen == accepted  # every message once, in acceptance order per target


async def test_targets_are_sent_in_parallel(tmp_path: Path) -> None:
    plugin = fake_plugin()
    in_flight, peak = 0, 0
    release = anyio.Event()

    async def hold(sent: Sent) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if peak >= 3:
            release.set()
        with anyio.fail_after(5):
            await release.wait()
        in_flight -= 1

    plugin.outbound.before_send = hold
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        for target in ("a", "b", "c", "a"):
            await outbox.deliver(DeliveryRequest("fake", f"chat:{target}", "x"))
        await outbox.join()
    assert peak == 3  # one per target, never two for chat:a


async def test_dead_letter_can_be_retried_and_then_delivers(tmp_path: Path) -> None:
    plugin = fake_plugin()
    plugin.outbound.fail_next("7", Forbidden("bot was kicked"))
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        with pytest.raises(Forbidden):
            await outbox.deliver(DeliveryRequest("fake", "chat:7", "hi"), wait=True, timeout=5)
        [dead] = outbox.list("dead")
        retried = await outbox.retry(dead.id)
        assert retried.state in ("pending", "sending") and retried.attempts == 0
        record = await wait_state(outbox, dead.id, "delivered")
        assert outbox.counts() == (0, 0)
        with pytest.raises(KeyError):
            await outbox.retry("no-such-id")
    assert record.attempts == 1 and record.last_error is None
    assert [s.text for s in plugin.outbound.sent] == ["hi"]


async def test_dead_letter_can_be_dropped(tmp_path: Path) -> None:
    plugin = fake_plugin()
    plugin.outbound.fail_next("7", Forbidden("no"))
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (_, outbox):
        with pytest.raises(Forbidden):
            await outbox.deliver(DeliveryRequest("fake", "chat:7", "hi"), wait=True, timeout=5)
        [dead] = outbox.list("dead")
        assert await outbox.drop(dead.id) is True
        assert await outbox.drop(dead.id) is False
        assert outbox.get(dead.id) is None and outbox.counts() == (0, 0)


async def test_messages_wait_for_their_account_to_connect(tmp_path: Path) -> None:
    plugin = fake_plugin()
    plugin.gateway.hold = anyio.Event()  # type: ignore[attr-defined]
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin, wait_accounts=False) as (gateway, outbox):
        record = await outbox.deliver(DeliveryRequest("fake", "chat:7", "queued"))
        assert outbox.counts() == (1, 0) and plugin.outbound.sent == []
        plugin.gateway.hold.set()  # type: ignore[attr-defined]
        delivered = await wait_state(outbox, record.id, "delivered")
    assert delivered.attempts == 1 and [s.text for s in plugin.outbound.sent] == ["queued"]


async def test_messages_of_a_removed_account_are_dead_lettered(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    import gateway.outbound.lanes as outbox_module

    monkeypatch.setattr(outbox_module, "ACCOUNT_RECHECK_S", 0.05)
    plugin = fake_plugin()
    plugin.gateway.hold = anyio.Event()  # type: ignore[attr-defined]
    raw = fake_config(tmp_path / "state", accounts={"default": {}, "old": {}})
    async with outbox_gateway(raw, plugin, wait_accounts=False) as (gateway, outbox):
        record = await outbox.deliver(DeliveryRequest("fake", "chat:7", "hi", account="old"))
        # What a reload that deletes the account does: new config, then the account stops.
        old = AccountKey("fake", "old")
        gateway.config = replace(gateway.config, accounts={k: v for k, v in gateway.config.accounts.items() if k != old})
        await gateway.supervisor.stop_account(old, remove=True)
        dead = await wait_state(outbox, record.id, "dead")
    assert dead.error_code == "account_removed"
    assert dead.last_error == "account fake/old was removed from the configuration"


async def test_restart_resumes_pending_messages_and_skips_delivered_parts(tmp_path: Path) -> None:
    # The retry delay is long: the failed message is still pending when the gateway stops.
    raw = fake_config(tmp_path / "state", outbox={"retry_initial_ms": 60_000, "retry_max_ms": 60_000})
    text = " ".join(f"part{i}" for i in range(12))
    first = fake_plugin()
    first.outbound.text_chunk_limit = 20
    calls = 0
    failed = anyio.Event()

    async def fail_third(sent: Sent) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            failed.set()
            raise TransientSendError("connection lost")

    first.outbound.before_send = fail_third
    async with outbox_gateway(raw, first) as (_, outbox):
        record = await outbox.deliver(DeliveryRequest("fake", "chat:7", text))
        queued = await outbox.deliver(DeliveryRequest("fake", "chat:7", "after"))
        with anyio.fail_after(5):
            await failed.wait()
        partial = outbox.get(record.id)
    assert partial is not None and partial.state == "pending" and len(partial.results) == 2
    assert partial.last_error == "connection lost"

    second = fake_plugin()
    second.outbound.text_chunk_limit = 20
    async with outbox_gateway(raw, second) as (_, outbox):
        with anyio.fail_after(5):
            await outbox.join()
        done, after = outbox.get(record.id), outbox.get(queued.id)
    sent_before = [s.text for s in first.outbound.sent]
    sent_after = [s.text for s in second.outbound.sent]
    assert len(sent_before) == 2  # delivered before the failure, not sent again
    assert " ".join(sent_before + sent_after[:-1]) == text and sent_after[-1] == "after"  # FIFO kept
    assert done is not None and done.state == "delivered" and done.attempts == 2
    assert len(done.results) == len(sent_before) + len(sent_after) - 1
    assert after is not None and after.state == "delivered"


async def test_shutdown_keeps_unsent_messages_for_the_next_start(tmp_path: Path) -> None:
    raw = fake_config(tmp_path / "state")
    first = fake_plugin()
    first.gateway.hold = anyio.Event()  # type: ignore[attr-defined]
    async with outbox_gateway(raw, first, wait_accounts=False) as (_, outbox):
        ids = [(await outbox.deliver(DeliveryRequest("fake", f"chat:{i % 2}", f"m{i}"))).id for i in range(5)]
    second = fake_plugin()
    async with outbox_gateway(raw, second) as (_, outbox):
        with anyio.fail_after(5):
            await outbox.join()
        states = {outbox.get(i).state for i in ids}  # type: ignore[union-attr]
    assert states == {"delivered"}
    assert sorted(s.text for s in second.outbound.sent) == [f"m{i}" for i in range(5)]


async def test_graceful_shutdown_lets_the_send_in_flight_finish(tmp_path: Path) -> None:
    raw = fake_config(tmp_path / "state")
    first = fake_plugin()
    in_flight = anyio.Event()

    async def slow_provider(sent: Sent) -> None:
        in_flight.set()
        await anyio.sleep(0.2)  # the provider takes its time to answer

    first.outbound.before_send = slow_provider
    async with outbox_gateway(raw, first) as (gateway, outbox):
        sending = await outbox.deliver(DeliveryRequest("fake", "chat:7", "in flight"))
        waiting = await outbox.deliver(DeliveryRequest("fake", "chat:7", "queued behind it"))
        with anyio.fail_after(5):
            await in_flight.wait()
        gateway.request_stop()
    second = fake_plugin()
    async with outbox_gateway(raw, second) as (_, outbox):
        with anyio.fail_after(5):
            await outbox.join()
        records = outbox.get(sending.id), outbox.get(waiting.id)
    assert [s.text for s in first.outbound.sent] == ["in flight"]  # finished before the accounts stopped
    assert [s.text for s in second.outbound.sent] == ["queued behind it"]  # nothing sent twice
    assert [r.state for r in records] == ["delivered", "delivered"]  # type: ignore[union-attr]


async def test_vanished_media_file_dead_letters_with_a_clear_reason(tmp_path: Path) -> None:
    raw = fake_config(tmp_path / "state")
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    first = fake_plugin()
    first.gateway.hold = anyio.Event()  # type: ignore[attr-defined]
    async with outbox_gateway(raw, first, wait_accounts=False) as (_, outbox):
        record = await outbox.deliver(DeliveryRequest("fake", "chat:7", "a cat", media=(str(image),)))
    image.unlink()
    async with outbox_gateway(raw, fake_plugin()) as (_, outbox):
        dead = await wait_state(outbox, record.id, "dead")
    assert dead.error_code == "invalid_request"
    assert dead.last_error == f"media file {image} does not exist (it was readable when the message was accepted)"


async def test_events_and_metrics_report_outcomes(tmp_path: Path) -> None:
    plugin = fake_plugin()
    plugin.outbound.fail_next("x", Forbidden("no"))
    async with outbox_gateway(fake_config(tmp_path / "state"), plugin) as (gateway, outbox):
        with gateway.events.subscribe() as events:
            ok = await outbox.deliver(DeliveryRequest("fake", "chat:7", "hi"))
            bad = await outbox.deliver(DeliveryRequest("fake", "chat:x", "hi"))
            seen = {}
            with anyio.fail_after(5):
                async for event in events:
                    seen[event.data["id"]] = event.data["state"]
                    if len(seen) == 2:
                        break
        metrics = gateway.metrics.render().decode()
    assert seen == {ok.id: "delivered", bad.id: "dead"}
    assert 'switchboard_outbound_messages_total{account="default",provider="fake",result="delivered"} 1.0' in metrics
    assert "switchboard_dead_letters 1.0" in metrics and "switchboard_outbox_depth 0.0" in metrics
    assert "switchboard_delivery_latency_seconds_count 1.0" in metrics


def test_latency_histogram_exposition_is_cumulative_with_inclusive_bounds() -> None:
    from gateway.metrics import Metrics
    from gateway.status import StatusStore

    metrics = Metrics(StatusStore())
    for seconds in (0.001, 0.005, 0.0051, 0.3, 100.0):  # 0.005 sits on a bound: counted in le="0.005"
        metrics.delivery_latency.observe(seconds)
    lines = dict(line.rsplit(" ", 1) for line in metrics.render().decode().splitlines()
                 if line.startswith("switchboard_delivery_latency_seconds"))
    bucket = "switchboard_delivery_latency_seconds_bucket"
    assert lines[f'{bucket}{{le="0.005"}}'] == "2.0"
    assert lines[f'{bucket}{{le="0.01"}}'] == "3.0"
    assert lines[f'{bucket}{{le="0.5"}}'] == "4.0"
    assert lines[f'{bucket}{{le="60.0"}}'] == "4.0"
    assert lines[f'{bucket}{{le="+Inf"}}'] == "5.0"
    assert lines["switchboard_delivery_latency_seconds_count"] == "5.0"
    assert abs(float(lines["switchboard_delivery_latency_seconds_sum"]) - 100.3111) < 1e-9


async def test_outbox_is_a_default_service() -> None:
    from gateway.app import default_services

    services = default_services()
    assert Outbox in services and services[-1].__name__ == "Reloader"


async def test_listing_an_unknown_state_is_an_error(tmp_path: Path) -> None:
    from gateway.errors import InvalidRequest

    async with outbox_gateway(fake_config(tmp_path / "state"), fake_plugin()) as (_, outbox):
        with pytest.raises(InvalidRequest, match="unknown outbox state 'lost'"):
            outbox.list("lost")
