"""The supervisor: one task per account, classified failures, bounded stop, serialised restarts."""

from __future__ import annotations

import time
from datetime import datetime

import anyio

from gateway.plugin import AccountState
from gateway.registry import Registry
from gateway.testing import wait_for_status
from tests.support import key, running_gateway, scripted_plugin, write_config


def _state(gw, account: str) -> str | None:  # noqa: ANN001
    snap = gw.status.get(key("scripted", account))
    return snap["state"] if snap else None


async def test_crashing_account_restarts_with_growing_delays_while_siblings_keep_running(tmp_path):
    plugin, scripted = scripted_plugin()
    path = write_config(tmp_path, """
        [providers.scripted.accounts.bad]
        mode = "crash"
        [providers.scripted.accounts.good]
        """, restart="jitter = 0.0\nfactor = 2.0")
    async with running_gateway(path, Registry([plugin])) as gw:
        bad = key("scripted", "bad")
        retry_gaps: list[float] = []

        def record(status) -> bool:  # noqa: ANN001
            snap = status.get(bad)
            if snap["state"] == "backoff" and snap["next_retry_at"]:
                started = datetime.fromisoformat(snap["last_start_at"].replace("Z", "+00:00"))
                retry = datetime.fromisoformat(snap["next_retry_at"].replace("Z", "+00:00"))
                gap = (retry - started).total_seconds()
                if not retry_gaps or abs(retry_gaps[-1] - gap) > 1e-6:
                    retry_gaps.append(gap)
            return snap["restarts"] >= 4

        await wait_for_status(gw.status, record, timeout=10)
        assert _state(gw, "good") == "running"
        assert scripted.starts["good"] == 1, "the healthy sibling was never restarted"
        snap = gw.status.get(bad)
        assert snap["last_error"].startswith("RuntimeError: boom")
        assert snap["last_error_kind"] == "crash"
        # 50 ms, 100 ms, 200 ms, 400 ms (capped): each delay at least the one before.
        assert len(retry_gaps) >= 3
        assert all(b >= a * 1.5 for a, b in zip(retry_gaps[:3], retry_gaps[1:3], strict=False))


async def test_auth_failed_parks_the_account_with_an_auth_issue_and_no_retries(tmp_path):
    plugin, scripted = scripted_plugin()
    path = write_config(tmp_path, """
        [providers.scripted.accounts.locked]
        mode = "auth"
        [providers.scripted.accounts.fine]
        """)
    async with running_gateway(path, Registry([plugin])) as gw:
        locked = key("scripted", "locked")
        await wait_for_status(gw.status, lambda s: s.get(locked)["state"] == "failed")
        await wait_for_status(gw.status, lambda s: _state(gw, "fine") == "running")
        issues = gw.status.account_issues(locked)
        assert [(i.kind, i.message) for i in issues] == [("auth", "token rejected")]
        assert issues[0].fix
        snap = gw.status.get(locked)
        assert snap["restarts"] == 0 and snap["next_retry_at"] is None
        # Time passes well beyond the backoff: still exactly one attempt.
        with anyio.move_on_after(0.3):
            await wait_for_status(gw.status, lambda s: scripted.starts["locked"] > 1, timeout=1)
        assert scripted.starts["locked"] == 1
        # An operator restart tries again (and clears the issue while it runs).
        await gw.supervisor.restart_account(locked)
        await wait_for_status(gw.status, lambda s: scripted.starts["locked"] == 2)


async def test_config_invalid_parks_with_a_config_issue_and_its_fix(tmp_path):
    plugin, _ = scripted_plugin()
    path = write_config(tmp_path, """
        [providers.scripted]
        mode = "config"
        """)
    async with running_gateway(path, Registry([plugin])) as gw:
        await wait_for_status(gw.status, lambda s: _state(gw, "default") == "failed")
        (issue,) = gw.status.account_issues(key("scripted", "default"))
        assert (issue.kind, issue.message, issue.fix) == ("config", "intent missing", "enable the intent")


async def test_rate_limited_waits_at_least_retry_after(tmp_path):
    plugin, _ = scripted_plugin()
    path = write_config(tmp_path, """
        [providers.scripted]
        mode = "ratelimit"
        retry_after = 30
        """)
    async with running_gateway(path, Registry([plugin])) as gw:
        acct = key("scripted", "default")
        await wait_for_status(gw.status, lambda s: s.get(acct)["state"] == "backoff")
        snap = gw.status.get(acct)
        started = datetime.fromisoformat(snap["last_start_at"].replace("Z", "+00:00"))
        retry = datetime.fromisoformat(snap["next_retry_at"].replace("Z", "+00:00"))
        assert (retry - started).total_seconds() >= 29.9
        assert snap["last_error_kind"] == "rate_limited"


async def test_straggler_is_named_and_shutdown_completes_within_stop_timeout(tmp_path):
    plugin, scripted = scripted_plugin()
    path = write_config(tmp_path, """
        [providers.scripted.accounts.stubborn]
        mode = "hang"
        [providers.scripted.accounts.polite]
        """)
    from structlog.testing import capture_logs

    async with running_gateway(path, Registry([plugin])) as gw:
        await wait_for_status(gw.status, lambda s: _state(gw, "stubborn") == "running" and _state(gw, "polite") == "running")
        begun = time.monotonic()
        with capture_logs() as logs:
            stragglers = await gw.supervisor.shutdown()
        elapsed = time.monotonic() - begun
        assert stragglers == [key("scripted", "stubborn")]
        assert elapsed < gw.config.gateway.restart.stop_timeout_s + 1.0
        assert _state(gw, "polite") == "stopped"
        warnings = [e for e in logs if e["event"] == "account.stop_straggler"]
        assert [(w["provider"], w["account"]) for w in warnings] == [("scripted", "stubborn")]
        scripted.release_hang.set()  # let the test's task group finish


async def test_two_concurrent_restarts_never_run_two_copies(tmp_path):
    plugin, scripted = scripted_plugin()
    path = write_config(tmp_path, """
        [providers.scripted.accounts.solo]
        """)
    async with running_gateway(path, Registry([plugin])) as gw:
        solo = key("scripted", "solo")
        await wait_for_status(gw.status, lambda s: _state(gw, "solo") == "running")
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(gw.supervisor.restart_account, solo)
        await wait_for_status(gw.status, lambda s: _state(gw, "solo") == "running")
        assert scripted.starts["solo"] == 6
        assert scripted.max_active["solo"] == 1
        assert scripted.active["solo"] == 1


async def test_running_means_connected_not_task_exists(tmp_path):
    plugin, _ = scripted_plugin()
    path = write_config(tmp_path, "[providers.scripted.accounts.a]\n")
    async with running_gateway(path, Registry([plugin])) as gw:
        await wait_for_status(gw.status, lambda s: _state(gw, "a") == "running")
        snap = gw.status.get(key("scripted", "a"))
        assert snap["connected"] is True and snap["last_connected_at"] is not None
        assert gw.supervisor.context(key("scripted", "a")) is not None


async def test_disabled_accounts_are_not_started(tmp_path):
    plugin, scripted = scripted_plugin()
    path = write_config(tmp_path, """
        [providers.scripted.accounts.on]
        [providers.scripted.accounts.off]
        enabled = false
        """)
    async with running_gateway(path, Registry([plugin])) as gw:
        await wait_for_status(gw.status, lambda s: _state(gw, "on") == "running")
        assert _state(gw, "off") == AccountState.DISABLED.value
        assert gw.status.get(key("scripted", "off"))["last_error"] == "account disabled"
        assert scripted.starts["off"] == 0


async def test_secrets_never_reach_logs_or_snapshots(tmp_path):
    plugin, _ = scripted_plugin()
    secret = "s3cr3t-token-value-4242"
    (tmp_path / "tok").write_text(secret + "\n")
    path = write_config(tmp_path, f"""
        [providers.scripted.accounts.leaky]
        mode = "crash"
        token = "{secret}"
        [providers.scripted.accounts.filed]
        token_file = "{tmp_path / 'tok'}"
        mode = "auth"
        """)
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        async with running_gateway(path, Registry([plugin])) as gw:
            await wait_for_status(gw.status, lambda s: (s.get(key("scripted", "leaky"))["restarts"] >= 1
                                                        and _state(gw, "filed") == "failed"))
            snapshots = repr(gw.status.snapshot()) + repr([i.to_dict() for i in gw.status.issues()])
            token_sources = {s["account"]: s["token_source"] for s in gw.status.snapshot()}
    assert secret not in snapshots
    assert secret not in repr(logs)
    assert "***" in gw.status.get(key("scripted", "leaky"))["last_error"]
    assert token_sources == {"leaky": "config", "filed": "file"}


async def test_waiting_for_an_account_that_is_removed_raises_instead_of_hanging(tmp_path):
    from gateway.errors import UnknownAccount

    plugin, _ = scripted_plugin()
    path = write_config(tmp_path, """
        [providers.scripted.accounts.gone]
        mode = "crash"
        """)
    async with running_gateway(path, Registry([plugin])) as gw:
        gone = key("scripted", "gone")
        outcome: list[BaseException] = []

        async def waiter() -> None:
            try:
                await gw.supervisor.wait_running(gone)
            except UnknownAccount as exc:
                outcome.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await wait_for_status(gw.status, lambda s: s.get(gone)["restarts"] >= 1)
                await gw.supervisor.stop_account(gone, remove=True)
        assert len(outcome) == 1 and "removed" in str(outcome[0])
