"""The real daemon (`switchboard run`) driven through the real CLI and its control socket."""

from __future__ import annotations

import json
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon, JsonLines, cli_env, run_cli

ACCOUNTS = """
    [providers.example.accounts.default]
    greeting = "hi"
    [providers.example.accounts.broken]
    behaviour = "crash"
    [providers.example.accounts.locked]
    behaviour = "auth"
    """


def write_config(tmp_path: Path, providers: str = ACCOUNTS, *, debounce_ms: int = 50) -> Path:
    path = tmp_path / "sb.toml"
    path.write_text(textwrap.dedent(f"""\
        # the test gateway
        [gateway]
        state_dir = "{tmp_path / 'state'}"   # socket and database
        [gateway.reload]
        debounce_ms = {debounce_ms}
        [gateway.restart]
        initial_ms = 200
        max_ms = 2000
        [handler]
        kind = "none"
        """) + textwrap.dedent(providers))
    return path


def cli_json(config: Path, *args: str) -> dict[str, Any]:
    result = run_cli(config, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(config: Path | None = None) -> Daemon:
        d = Daemon(config or write_config(tmp_path))
        started.append(d)
        d.wait_ready()
        return d

    yield start
    for d in started:
        d.stop()


class StatusWatch:
    """``switchboard status --watch --json``: a full report per line, pushed when the daemon's status changes."""

    def __init__(self, config: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "status", "--watch", "--json",
                                      "--config", str(config)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=cli_env())
        assert self.proc.stdout is not None
        self.reports: list[dict[str, Any]] = []
        self._output = JsonLines(self.proc.stdout)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        """The first report (from now on) that ``predicate`` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                report = self._output.next_object(deadline)
            except TimeoutError:
                raise AssertionError(f"no matching status report within {timeout} s; "
                                     f"the last: {self.reports[-1:]}") from None
            if report is None:
                assert self.proc.stderr is not None
                raise AssertionError(f"status --watch exited ({self.proc.wait()}): {self.proc.stderr.read()}")
            self.reports.append(report)
            if predicate(report):
                return report

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._output.join(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def states(report: dict[str, Any]) -> dict[str, str]:
    return {a["account"]: a["state"] for a in report["accounts"]}


def wait_for_states(config: Path, check: Callable[[dict[str, str]], bool], timeout: float = 20.0) -> None:
    """Wait until the accounts' states pass ``check`` (no log event marks an account reaching ``running``)."""
    watch = StatusWatch(config)
    try:
        watch.wait_for(lambda report: check(states(report)), timeout)
    finally:
        watch.close()


def account_failed(account: str) -> Callable[[dict[str, Any]], bool]:
    """The supervisor's ``account.failed`` log event for ``account`` (logged once its state is ``failed``)."""
    return lambda e: e.get("event") == "account.failed" and e.get("account") == account


def reload_done(action: str) -> Callable[[dict[str, Any]], bool]:
    """A ``reload.done`` log event whose actions include ``action`` (logged once the reload was applied)."""
    return lambda e: e.get("event") == "reload.done" and action in e.get("actions", [])


# --- status ------------------------------------------------------------------------------------------


def test_status_json_has_every_stable_key_and_the_socket_is_0600(daemon, tmp_path):
    d = daemon()
    d.wait_event(account_failed("locked"), timeout=20)
    report = cli_json(d.config, "status")
    assert d.socket is not None and stat.S_IMODE(d.socket.stat().st_mode) == 0o600
    assert set(report) == {"gateway", "accounts", "issues"}
    assert {"version", "pid", "started_at", "config_path", "reload"} <= set(report["gateway"])
    assert {"mode", "last_at", "last_ok", "last_error"} <= set(report["gateway"]["reload"])
    assert report["gateway"]["pid"] == d.proc.pid
    for account in report["accounts"]:
        assert {"provider", "account", "name", "state", "enabled", "configured", "connected", "restarts",
                "last_start_at", "last_error", "last_inbound_at", "last_outbound_at"} <= set(account)
    assert [i["account"] for i in report["issues"]] == ["locked"]
    assert set(report["issues"][0]) == {"provider", "account", "kind", "message", "fix"}


def test_status_table_shows_states_errors_and_warnings_with_fixes(daemon):
    d = daemon()
    d.wait_event(account_failed("locked"), timeout=20)
    result = run_cli(d.config, "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:4] == ["example", "default", "running", "yes"] for line in lines)
    assert any(line.split()[:3] == ["example", "locked", "failed"] and "AuthFailed" in line for line in lines)
    assert "Warnings" in lines
    assert "- example/locked (auth): the example token was rejected" in lines
    assert any(line.strip().startswith("fix: check the credentials") for line in lines)


def test_probe_through_the_cli_is_bounded_and_per_account(daemon, tmp_path):
    d = daemon(write_config(tmp_path, """
        [providers.example.accounts.fine]
        [providers.example.accounts.slow]
        probe_delay_s = 60
        [providers.example.accounts.down]
        probe_fail = true
        """))
    wait_for_states(d.config, lambda accounts: set(accounts.values()) == {"running"})
    started = time.monotonic()
    report = cli_json(d.config, "status", "--probe", "--timeout-ms", "500")
    assert time.monotonic() - started < 15
    probes = {a["account"]: a["probe"] for a in report["accounts"]}
    assert probes["fine"]["ok"] is True
    assert probes["slow"] == {**probes["slow"], "ok": False, "error": "timed out after 500 ms"}
    assert probes["down"]["ok"] is False and "AccountNotReady" in probes["down"]["error"]


def test_status_watch_prints_a_new_report_when_an_account_changes(daemon):
    d = daemon()
    watch = StatusWatch(d.config)
    try:
        first = watch.wait_for(lambda report: True)
        assert "accounts" in first
        assert run_cli(d.config, "accounts", "stop", "--provider", "example", "--account", "default").returncode == 0
        watch.wait_for(lambda report: states(report).get("default") == "stopped")  # within a few full reports
        watch.proc.send_signal(signal.SIGINT)
        assert watch.proc.wait(timeout=10) == 0
    finally:
        watch.close()


# --- one daemon per socket -------------------------------------------------------------------------


def test_a_second_run_on_the_same_state_dir_says_already_running_with_the_pid(daemon, tmp_path):
    d = daemon()
    second = run_cli(d.config, "run")
    assert second.returncode != 0
    assert second.stderr.strip().splitlines() == [
        f"error: switchboard is already running (pid {d.proc.pid}) on {d.socket}"]
    assert cli_json(d.config, "status")["gateway"]["pid"] == d.proc.pid  # the first one is untouched


def test_a_stale_socket_left_by_a_killed_daemon_is_replaced(daemon, tmp_path):
    first = daemon()
    first.proc.kill()
    first.proc.wait(timeout=10)
    assert first.socket is not None and first.socket.exists()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(str(first.socket))  # nobody answers on it
    second = daemon(first.config)
    assert cli_json(second.config, "status")["gateway"]["pid"] == second.proc.pid


# --- the daemon is not running ---------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("status",), ("status", "--json"), ("reload",), ("outbox", "list"),
    ("send", "--provider", "example", "--to", "chat:1", "--text", "hi"),
    ("poll", "--provider", "example", "--to", "chat:1", "--question", "?", "--option", "a", "--option", "b"),
    ("accounts", "restart", "--provider", "example", "--account", "default"),
])
def test_commands_that_need_the_daemon_say_it_is_not_running_in_one_line(tmp_path, args):
    config = write_config(tmp_path)
    result = run_cli(config, *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: switchboard is not running (no control socket at {tmp_path / 'state' / 'control.sock'}); "
        "start it with `switchboard run`"]


# --- providers edits reach the running daemon ------------------------------------------------------


def test_providers_add_is_listed_keeps_comments_and_the_running_daemon_starts_it(daemon):
    d = daemon()
    added = run_cli(d.config, "providers", "add", "--provider", "ex", "--account", "Alerts", "--set", "greeting=yo")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith('Added Example account "alerts"')
    text = d.config.read_text()
    assert "# the test gateway" in text and "# socket and database" in text
    assert stat.S_IMODE(d.config.stat().st_mode) == 0o600
    listing = cli_json(d.config, "providers", "list")
    example = next(p for p in listing["providers"] if p["id"] == "example")
    assert "alerts" in [a["account"] for a in example["accounts"]]
    table = run_cli(d.config, "providers", "list").stdout
    assert any(line.split()[:3] == ["example", "(ex)", "alerts"] for line in table.splitlines())
    d.wait_event(reload_done("started: example/alerts"), timeout=20)
    wait_for_states(d.config, lambda accounts: accounts.get("alerts") == "running")


def test_providers_disable_stops_the_account_in_the_running_daemon(daemon):
    d = daemon()
    result = run_cli(d.config, "providers", "disable", "--provider", "example", "--account", "broken")
    assert result.returncode == 0, result.stderr
    d.wait_event(reload_done("restarted: example/broken"), timeout=20)
    assert states(cli_json(d.config, "status"))["broken"] == "disabled"


def test_an_invalid_add_is_refused_with_the_problems_and_the_file_is_untouched(tmp_path):
    config = write_config(tmp_path)
    before = config.read_text()
    result = run_cli(config, "providers", "add", "--provider", "example", "--account", "x", "--set", "colour=red")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: not written: {config} would be invalid after this change:",
        "  providers.example.accounts.x.colour: unknown key"]
    assert config.read_text() == before


# --- send, poll, reload, outbox, accounts ------------------------------------------------------------


def test_send_and_poll_with_wait_report_delivery(daemon):
    d = daemon()
    wait_for_states(d.config, lambda accounts: accounts.get("default") == "running")
    sent = cli_json(d.config, "send", "--provider", "ex", "--to", "chat:42", "--text", "hello", "--wait")
    assert sent["message"]["state"] == "delivered" and sent["message"]["account"] == "default"
    polled = cli_json(d.config, "poll", "--provider", "example", "--to", "chat:42", "--question", "Lunch?",
                      "--option", "pizza", "--option", "sushi", "--multi", "--wait")
    assert polled["message"]["state"] == "delivered"
    human = run_cli(d.config, "send", "--provider", "example", "--to", "chat:42", "--text", "hi", "--wait")
    assert human.returncode == 0 and human.stdout.startswith("delivered ")
    status = cli_json(d.config, "status")
    assert next(a for a in status["accounts"] if a["account"] == "default")["last_outbound_at"]


def test_send_problems_are_one_line_errors(daemon):
    d = daemon()
    bad_target = run_cli(d.config, "send", "--provider", "example", "--to", "fax:1", "--text", "x")
    assert bad_target.returncode == 1
    assert bad_target.stderr.splitlines() == ["error: Example target must be chat:<id> or user:<id>, got 'fax:1'"]
    no_text = run_cli(d.config, "send", "--provider", "example", "--to", "chat:1")
    assert no_text.returncode == 1 and no_text.stderr.startswith("error: nothing to send")
    one_option = run_cli(d.config, "poll", "--provider", "example", "--to", "chat:1", "--question", "?",
                         "--option", "a")
    assert one_option.returncode == 1 and "at least two" in one_option.stderr


def test_reload_prints_what_changed_and_what_was_done(daemon, tmp_path):
    d = daemon(write_config(tmp_path, debounce_ms=60_000))  # only this command reloads
    d.config.write_text(d.config.read_text() + "[providers.example.accounts.extra]\n")
    result = run_cli(d.config, "reload")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("reload ok")
    assert lines[1:] == ["  changed: providers.example.accounts.extra", "  started: example/extra"]


def test_a_rejected_reload_exits_1_with_the_problems(daemon, tmp_path):
    d = daemon(write_config(tmp_path, debounce_ms=60_000))
    d.config.write_text(d.config.read_text() + "[providers.example.accounts.extra]\ncolour = 1\n")
    result = run_cli(d.config, "reload")
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("reload failed")
    assert result.stderr.splitlines() == ["  error: providers.example.accounts.extra.colour: unknown key"]
    report = cli_json(d.config, "status")
    assert report["gateway"]["reload"]["last_ok"] is False


def test_accounts_restart_shows_the_new_state(daemon):
    d = daemon()
    d.wait_event(account_failed("locked"), timeout=20)
    result = run_cli(d.config, "accounts", "restart", "--provider", "example", "--account", "locked")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "example/locked: failed (AuthFailed: the example token was rejected)"


def test_outbox_list_and_drop(daemon, tmp_path):
    d = daemon(write_config(tmp_path, """
        [providers.example.accounts.default]
        url = "http://127.0.0.1:9/unreachable"
        """))
    queued = cli_json(d.config, "send", "--provider", "example", "--to", "chat:1", "--text", "x")["message"]
    listing = cli_json(d.config, "outbox", "list")
    assert queued["id"] in [m["id"] for m in listing["messages"]]
    dropped = run_cli(d.config, "outbox", "drop", queued["id"])
    assert dropped.returncode == 0 and dropped.stdout.strip() == f"dropped {queued['id']}"
    missing = run_cli(d.config, "outbox", "retry", queued["id"])
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: no outbox message {queued['id']}; see `switchboard outbox list`"
