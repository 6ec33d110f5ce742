"""Hot reload restarts exactly the accounts whose effective configuration changed."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from gateway.registry import Registry
from gateway.reload import Reloader, build_plan, diff_paths
from gateway.testing import wait_for_status
from tests.support import key, running_gateway, scripted_plugin, write_config

THREE_ACCOUNTS = """
    [providers.scripted]
    endpoint = "shared"
    [providers.scripted.accounts.a]
    [providers.scripted.accounts.b]
    [providers.scripted.accounts.c]
    endpoint = "own"
    """


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in config"
    path.write_text(text.replace(old, new, 1))


def all_running(gw, *accounts: str) -> bool:  # noqa: ANN001
    return all((s := gw.status.get(key("scripted", a))) and s["state"] == "running" for a in accounts)


async def start(tmp_path: Path, body: str, **kw):  # noqa: ANN003, ANN201
    plugin, scripted = scripted_plugin()
    path = write_config(tmp_path, body, **kw)
    return path, Registry([plugin]), scripted


async def test_editing_one_account_restarts_only_that_account(tmp_path):
    path, registry, scripted = await start(tmp_path, THREE_ACCOUNTS)
    async with running_gateway(path, registry, services=[Reloader]) as gw:
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c"))
        contexts_before = dict(scripted.contexts)
        edit(path, 'endpoint = "own"', 'endpoint = "own-2"')
        result = await gw.service(Reloader).reload("test")
        assert result.ok and result.plan.restart == (key("scripted", "c"),)
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c"))
        assert dict(scripted.starts) == {"a": 1, "b": 1, "c": 2}
        assert scripted.contexts["a"] is contexts_before["a"] and scripted.contexts["b"] is contexts_before["b"]
        assert gw.status.get(key("scripted", "c"))["starts"] == 2
        assert scripted.contexts["c"].account.endpoint == "own-2"


async def test_provider_level_change_restarts_only_accounts_whose_effective_config_changed(tmp_path):
    path, registry, scripted = await start(tmp_path, THREE_ACCOUNTS)
    async with running_gateway(path, registry, services=[Reloader]) as gw:
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c"))
        edit(path, 'endpoint = "shared"', 'endpoint = "moved"')
        result = await gw.service(Reloader).reload("test")
        assert result.plan.restart == (key("scripted", "a"), key("scripted", "b"))
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c"))
        assert dict(scripted.starts) == {"a": 2, "b": 2, "c": 1}


async def test_adding_and_removing_accounts(tmp_path):
    path, registry, scripted = await start(tmp_path, THREE_ACCOUNTS)
    async with running_gateway(path, registry, services=[Reloader]) as gw:
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c"))
        edit(path, "[providers.scripted.accounts.b]\n", "[providers.scripted.accounts.d]\n")
        result = await gw.service(Reloader).reload("test")
        assert (result.plan.start, result.plan.stop, result.plan.restart) == (
            (key("scripted", "d"),), (key("scripted", "b"),), ())
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "c", "d"))
        assert gw.status.get(key("scripted", "b")) is None
        assert key("scripted", "b") not in gw.supervisor.keys()
        assert dict(scripted.starts) == {"a": 1, "b": 1, "c": 1, "d": 1}


async def test_live_key_change_applies_without_restart(tmp_path):
    path, registry, scripted = await start(tmp_path, THREE_ACCOUNTS)
    async with running_gateway(path, registry, services=[Reloader]) as gw:
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c"))
        edit(path, "[providers.scripted.accounts.a]\n", '[providers.scripted.accounts.a]\ncolor = "red"\n')
        result = await gw.service(Reloader).reload("test")
        assert result.plan.live == (key("scripted", "a"),) and result.plan.restart == ()
        assert scripted.contexts["a"].account.color == "red"
        assert dict(scripted.starts) == {"a": 1, "b": 1, "c": 1}


async def test_invalid_file_changes_nothing_and_raises_an_issue_until_fixed(tmp_path):
    path, registry, scripted = await start(tmp_path, THREE_ACCOUNTS)
    async with running_gateway(path, registry, services=[Reloader]) as gw:
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c"))
        good = path.read_text()
        path.write_text(good + "\n[providers.scripted.accounts.c\n")
        result = await gw.service(Reloader).reload("test")
        assert not result.ok and "not valid TOML" in result.errors[0]
        (issue,) = gw.status.issues()
        assert issue.kind == "config" and "not valid TOML" in issue.message
        assert gw.status.gateway["reload"]["last_ok"] is False
        path.write_text(good.replace('endpoint = "own"', 'endpoint = 5\nbogus = 1'))
        result = await gw.service(Reloader).reload("test")
        assert sorted(result.errors) == ["providers.scripted.accounts.c.bogus: unknown key",
                                         "providers.scripted.accounts.c.endpoint: Input should be a valid string"]
        assert dict(scripted.starts) == {"a": 1, "b": 1, "c": 1}
        path.write_text(good.replace('endpoint = "own"', 'endpoint = "fixed"'))
        result = await gw.service(Reloader).reload("test")
        assert result.ok and gw.status.issues() == []
        assert gw.status.gateway["reload"]["last_ok"] is True


async def test_secret_file_content_change_counts_as_a_change(tmp_path):
    (tmp_path / "tok").write_text("first")
    path, registry, scripted = await start(tmp_path, f"""
        [providers.scripted.accounts.a]
        token_file = "{tmp_path / 'tok'}"
        [providers.scripted.accounts.b]
        """)
    async with running_gateway(path, registry, services=[Reloader]) as gw:
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b"))
        (tmp_path / "tok").write_text("second")
        result = await gw.service(Reloader).reload("test")
        assert result.plan.restart == (key("scripted", "a"),)
        assert "second" not in repr(result.to_dict()) and "first" not in repr(result.to_dict())


async def test_mode_off_applies_nothing_then_hybrid_applies_the_pending_change(tmp_path):
    path, registry, scripted = await start(tmp_path, THREE_ACCOUNTS)
    async with running_gateway(path, registry, services=[Reloader]) as gw:
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c"))
        text = path.read_text()
        path.write_text(text.replace('endpoint = "own"', 'endpoint = "later"') + '\n[gateway.reload]\nmode = "off"\n')
        result = await gw.service(Reloader).reload("test")
        assert result.actions == ["mode off: nothing applied"]
        assert dict(scripted.starts) == {"a": 1, "b": 1, "c": 1}
        assert gw.config.accounts[key("scripted", "c")].config.endpoint == "own"  # baseline not advanced
        path.write_text(path.read_text().replace('mode = "off"', 'mode = "hybrid"'))
        result = await gw.service(Reloader).reload("test")
        assert result.plan.restart == (key("scripted", "c"),)
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c") and scripted.starts["c"] == 2)


async def test_control_change_restarts_the_gateway_in_hybrid_and_is_ignored_in_hot(tmp_path):
    path, registry, _ = await start(tmp_path, THREE_ACCOUNTS)
    async with running_gateway(path, registry, services=[Reloader]) as gw:
        path.write_text(path.read_text() + '\n[gateway.control]\nsocket = "other.sock"\n[gateway.reload]\nmode = "hot"\n')
        result = await gw.service(Reloader).reload("test")
        assert result.plan.gateway_restart == ("gateway.control.socket",)
        assert any(a.startswith("ignored (needs restart)") for a in result.actions)
        assert not gw.restart_requested and gw.config.gateway.control.socket == "control.sock"
        path.write_text(path.read_text().replace('mode = "hot"', 'mode = "hybrid"'))
        result = await gw.service(Reloader).reload("test")
        assert result.actions == ["gateway restart"] and gw.restart_requested


async def test_live_gateway_settings_apply_without_restarts(tmp_path):
    path, registry, scripted = await start(tmp_path, THREE_ACCOUNTS)
    async with running_gateway(path, registry, services=[Reloader]) as gw:
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c"))
        edit(path, "initial_ms = 50", "initial_ms = 70")
        path.write_text(path.read_text() + '\n[handler]\nkind = "none"\n')
        result = await gw.service(Reloader).reload("test")
        assert set(result.plan.live_gateway) == {"gateway.restart.initial_ms", "handler.kind"}
        assert gw.supervisor.restart_config.initial_ms == 70 and gw.config.handler.kind == "none"
        assert dict(scripted.starts) == {"a": 1, "b": 1, "c": 1}


async def test_a_burst_of_writes_within_the_debounce_window_is_one_reload(tmp_path):
    path, registry, scripted = await start(tmp_path, THREE_ACCOUNTS + "\n[gateway.reload]\ndebounce_ms = 400\n")
    async with running_gateway(path, registry, services=[Reloader]) as gw:
        reloader = gw.service(Reloader)
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c"))
        base = path.read_text()
        for i in range(20):
            path.write_text(base.replace('endpoint = "own"', f'endpoint = "own-{i}"'))
        await wait_for_status(gw.status, lambda s: reloader.count >= 1 and not reloader.pending, timeout=10)
        assert reloader.count == 1 and reloader.last.trigger == "watch"
        assert reloader.last.plan.restart == (key("scripted", "c"),)
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c"))
        assert scripted.contexts["c"].account.endpoint == "own-19"
        assert dict(scripted.starts) == {"a": 1, "b": 1, "c": 2}


async def test_an_atomic_rename_save_is_detected(tmp_path):
    path, registry, scripted = await start(tmp_path, THREE_ACCOUNTS + "\n[gateway.reload]\ndebounce_ms = 50\n")
    async with running_gateway(path, registry, services=[Reloader]) as gw:
        reloader = gw.service(Reloader)
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c"))
        tmp = path.with_name(".switchboard.toml.swp")
        tmp.write_text(path.read_text().replace('endpoint = "own"', 'endpoint = "renamed"'))
        os.replace(tmp, path)
        await wait_for_status(gw.status, lambda s: reloader.count >= 1 and not reloader.pending, timeout=10)
        assert reloader.last.ok and reloader.last.plan.restart == (key("scripted", "c"),)


async def test_a_request_during_a_reload_is_applied_right_after_it(tmp_path):
    path, registry, scripted = await start(tmp_path, THREE_ACCOUNTS)
    async with running_gateway(path, registry, services=[Reloader]) as gw:
        reloader = gw.service(Reloader)
        await wait_for_status(gw.status, lambda s: all_running(gw, "a", "b", "c"))
        edit(path, 'endpoint = "own"', 'endpoint = "one"')
        results = []
        async with anyio.create_task_group() as tg:
            async def first() -> None:
                results.append(await reloader.reload("first"))
            tg.start_soon(first)
            await wait_for_status(gw.status, lambda s: reloader.pending)
            edit(path, 'endpoint = "one"', 'endpoint = "two"')
            results.append(await reloader.reload("second"))
        assert scripted.contexts["c"].account.endpoint == "two"
        assert results[-1].trigger == "second" and results[-1].ok


def test_diff_paths_compares_lists_by_value():
    assert diff_paths({"a": [{"x": 1}], "b": 1}, {"a": [{"x": 1}], "b": 1}) == []
    assert diff_paths({"a": [1, 2]}, {"a": [1, 3], "c": 1}) == ["a", "c"]


@pytest.mark.parametrize("mode", ["hybrid", "hot"])
def test_build_plan_ignores_untouched_accounts(mode, tmp_path):
    from gateway.config import parse_config

    plugin, _ = scripted_plugin()
    registry = Registry([plugin])
    old = parse_config({"gateway": {"reload": {"mode": mode}}, "providers": {"scripted": {"accounts": {
        "a": {}, "b": {"color": "x"}}}}}, registry, env={})
    new = parse_config({"gateway": {"reload": {"mode": mode}}, "providers": {"scripted": {"accounts": {
        "a": {}, "b": {"color": "y"}}}}}, registry, env={})
    plan = build_plan(old, new, {"scripted": plugin.live_keys}, {})
    assert plan.live == (key("scripted", "b"),) and not plan.restart and not plan.start and not plan.stop


async def test_a_live_change_refreshes_the_plugins_summary_in_the_snapshot(tmp_path):
    from dataclasses import replace

    plugin, scripted = scripted_plugin()
    plugin = replace(plugin, config=replace(plugin.config, describe_account=lambda r: {"color": r.config.color}))
    path = write_config(tmp_path, "[providers.scripted.accounts.a]\n")
    async with running_gateway(path, Registry([plugin]), services=[Reloader]) as gw:
        await wait_for_status(gw.status, lambda s: all_running(gw, "a"))
        assert gw.status.get(key("scripted", "a"))["color"] == "blue"
        edit(path, "[providers.scripted.accounts.a]\n", '[providers.scripted.accounts.a]\ncolor = "red"\n')
        await gw.service(Reloader).reload("test")
        assert gw.status.get(key("scripted", "a"))["color"] == "red"
        assert scripted.starts["a"] == 1
