"""The `switchboard` command line without a daemon: usage errors, secrets, stable flags, listings."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from switchboard_example import plugin as example

from gateway.cli import app
from gateway.cli.client import DaemonNotRunning, control_request, socket_path
from gateway.registry import PluginLoadFailure, Registry

BIN = Path(sys.executable).parent / "switchboard"
SWITCHBOARD = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "gateway"]
SECRET = "sekret-0123456789-abcdef"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "COLUMNS": "200", **(env or {})}
    full.pop("SWITCHBOARD_CONFIG", None)
    return subprocess.run([*SWITCHBOARD, *args], capture_output=True, text=True, timeout=60, env=full,
                          stdin=subprocess.DEVNULL)


def write_config(tmp_path: Path, body: str = "") -> Path:
    path = tmp_path / "sb.toml"
    path.write_text(textwrap.dedent(f"""\
        [gateway]
        state_dir = "{tmp_path / 'state'}"
        [handler]
        kind = "none"
        """) + textwrap.dedent(body))
    return path


def assert_one_clean_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "╭" not in stderr and "│" not in stderr
    return lines[0]


# --- usage errors ------------------------------------------------------------------------------------


def test_an_unknown_flag_is_one_usage_line(tmp_path):
    result = run("status", "--bogus")
    assert result.returncode == 2
    assert assert_one_clean_line(result.stderr) == "error: No such option: --bogus; see `switchboard status --help`"


def test_a_missing_required_flag_is_one_usage_line():
    result = run("send", "--to", "chat:1", "--text", "hi")
    assert result.returncode == 2
    assert assert_one_clean_line(result.stderr) == (
        "error: Missing option '--provider'; see `switchboard send --help`")


def test_a_bad_flag_value_is_one_usage_line():
    result = run("status", "--timeout-ms", "soon")
    assert result.returncode == 2
    line = assert_one_clean_line(result.stderr)
    assert line.startswith("error: Invalid value for '--timeout-ms'")


def test_help_still_works():
    result = run("send", "--help")
    assert result.returncode == 0 and "--idempotency-key" in result.stdout


# --- stable interfaces ---------------------------------------------------------------------------------


def options_of(*path: str) -> set[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def test_send_has_exactly_the_stable_flags():
    assert options_of("send") == {"--provider", "--account", "--to", "--text", "--text-file", "--media",
                                  "--reply-to", "--thread", "--idempotency-key", "--wait", "--json", "--config"}


def test_poll_has_exactly_the_stable_flags():
    assert options_of("poll") == {"--provider", "--account", "--to", "--question", "--option", "--multi",
                                  "--duration-hours", "--wait", "--json", "--config"}


def test_status_has_probe_json_and_watch():
    assert {"--probe", "--json", "--watch", "--config"} <= options_of("status")


@pytest.mark.parametrize("path", [("status",), ("providers", "list"), ("outbox", "list"), ("reload",),
                                  ("accounts", "restart")])
def test_every_read_command_has_json(path):
    assert "--json" in options_of(*path)


# --- secrets --------------------------------------------------------------------------------------------


def test_config_show_never_prints_a_secret(tmp_path):
    config = write_config(tmp_path, f"""
        [providers.example]
        token = "{SECRET}"
        [providers.example.accounts.one]
        [providers.example.accounts.two]
        token = "{SECRET}-two"
        """)
    config.write_text(config.read_text().replace('kind = "none"', f'kind = "webhook"\nurl = "http://127.0.0.1:1/"\n'
                                                                   f'secret = "{SECRET}-hmac"'))
    for args in (("config", "show"), ("config", "show", "--json"), ("providers", "list"),
                 ("providers", "list", "--json")):
        result = run(*args, "--config", str(config))
        assert result.returncode == 0, result.stderr
        assert SECRET not in result.stdout + result.stderr, args
    shown = json.loads(run("config", "show", "--json", "--config", str(config)).stdout)
    assert shown["providers"]["example"]["token"] == "***"


# --- providers list (no daemon) ---------------------------------------------------------------------


def test_providers_list_works_without_the_daemon(tmp_path):
    config = write_config(tmp_path, """
        [providers.example.accounts.one]
        [providers.example.accounts.off]
        enabled = false
        """)
    listing = json.loads(run("providers", "list", "--json", "--config", str(config)).stdout)
    example_entry = next(p for p in listing["providers"] if p["id"] == "example")
    assert example_entry["aliases"] == ["ex"]
    rows = {a["account"]: a for a in example_entry["accounts"]}
    assert rows["one"]["enabled"] is True and rows["one"]["configured"] is True
    assert rows["one"]["secret_sources"] == {"token": "none"}
    assert rows["off"]["enabled"] is False and rows["off"]["disabled_reason"] == "account disabled"
    text = run("providers", "list", "--config", str(config)).stdout
    assert any(line.split()[:4] == ["example", "(ex)", "off", "no"] for line in text.splitlines())


def test_providers_list_without_a_config_file_lists_installed_providers(tmp_path):
    result = run("providers", "list", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 0
    assert "example" in result.stdout and "switchboard config init" in result.stdout


def test_providers_list_shows_plugins_that_failed_to_load(tmp_path, monkeypatch):
    import gateway.cli.control_cmds as cmds

    failure = PluginLoadFailure("broken", "broken-plugin 1.0", "ImportError: no module named 'x'")
    monkeypatch.setattr(cmds, "quiet_registry", lambda: Registry([example], [failure]))
    listing = cmds.provider_listing(write_config(tmp_path))
    assert listing["failed"] == [{"id": "broken", "source": "broken-plugin 1.0",
                                  "error": "ImportError: no module named 'x'"}]
    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(cmds.providers_renderable(listing))
    text = console.export_text()
    assert "Failed to load" in text and "- broken from broken-plugin 1.0: ImportError" in text


def test_providers_remove_needs_no_prompt(tmp_path):
    config = write_config(tmp_path, "[providers.example.accounts.one]\n[providers.example.accounts.two]\n")
    result = run("providers", "remove", "--provider", "ex", "--account", "two", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('Removed Example account "two"')
    assert "[providers.example.accounts.two]" not in config.read_text()


def test_providers_add_with_an_unknown_provider_is_one_line(tmp_path):
    result = run("providers", "add", "--provider", "fax", "--account", "x", "--config", str(write_config(tmp_path)))
    assert result.returncode == 1
    assert assert_one_clean_line(result.stderr).startswith("error: unknown provider 'fax'; known providers:")


# --- the client --------------------------------------------------------------------------------------


def test_the_socket_path_comes_from_the_gateway_table_and_the_environment(tmp_path, monkeypatch):
    config = write_config(tmp_path, "[providers.example]\nbogus_key = 1\n")  # providers are not read
    assert socket_path(config) == tmp_path / "state" / "control.sock"
    monkeypatch.setenv("SWITCHBOARD_GATEWAY__CONTROL__SOCKET", "/run/sb/ctl.sock")
    assert socket_path(config) == Path("/run/sb/ctl.sock")


def test_a_socket_nobody_listens_on_means_not_running(tmp_path):
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "state" / "control.sock"))
    stale.close()
    with pytest.raises(DaemonNotRunning, match=r"switchboard is not running \(nothing listens on .*control.sock\)"):
        control_request(config, "GET", "/v1/status")
