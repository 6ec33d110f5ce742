"""Configuration loading: dotted-path errors, merging, secrets, ids, env overlay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config, normalize_account_id, parse_config, resolve_config_path
from gateway.errors import ConfigError, ConfigNotFound
from gateway.plugin import AccountKey
from gateway.registry import Registry
from tests.support import scripted_plugin

REGISTRY = Registry([scripted_plugin("scripted", aliases=("sc",))[0]])


def problems(raw: dict, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(raw, REGISTRY, env=env or {})
    return [str(p) for p in err.value.problems]


def test_every_error_names_its_dotted_path():
    found = problems({
        "gateway": {"reload": {"mode": "sometimes", "debounce_ms": -5}, "restart": {"factor": 0.5}},
        "handler": {"kind": "webhook"},
        "providers": {"scripted": {"accounts": {"a": {"colour": "red", "endpoint": 3}}}, "nosuch": {}},
        "extra": 1,
    })
    paths = {p.split(":")[0] for p in found}
    assert paths == {
        "extra", "gateway.reload.mode", "gateway.reload.debounce_ms", "gateway.restart.factor", "handler",
        "providers.scripted.accounts.a.colour", "providers.scripted.accounts.a.endpoint", "providers.nosuch",
    }
    assert "providers.scripted.accounts.a.colour: unknown key" in found
    assert "handler: handler kind 'webhook' needs `url`" in found
    assert any(p.startswith("providers.nosuch: unknown provider; known providers: scripted") for p in found)


def test_provider_level_keys_are_defaults_and_account_keys_override():
    cfg = parse_config({"providers": {"scripted": {"color": "red", "endpoint": "e1", "accounts": {
        "a": {}, "b": {"color": "green"}}}}}, REGISTRY, env={})
    a, b = cfg.accounts[AccountKey("scripted", "a")], cfg.accounts[AccountKey("scripted", "b")]
    assert (a.config.color, a.config.endpoint) == ("red", "e1")
    assert (b.config.color, b.config.endpoint) == ("green", "e1")


def test_no_accounts_table_means_one_default_account_and_aliases_resolve():
    cfg = parse_config({"providers": {"sc": {"color": "red"}}}, REGISTRY, env={})
    assert list(cfg.accounts) == [AccountKey("scripted", "default")]


def test_provider_level_error_points_at_the_provider_table():
    assert problems({"providers": {"scripted": {"bogus": 1, "accounts": {"x": {}}}}}) == [
        "providers.scripted.bogus: unknown key"]


@pytest.mark.parametrize(("raw", "expected"), [
    ("Alerts", "alerts"), ("  work  ", "work"), ("My Bot!", "my-bot"), ("", "default"), ("___", "default"),
    ("a" * 80, "a" * 64), ("ok_id-1", "ok_id-1"),
])
def test_account_ids_are_normalised(raw, expected):
    assert normalize_account_id(raw) == expected


def test_two_account_ids_that_normalise_alike_are_an_error():
    found = problems({"providers": {"scripted": {"accounts": {"Work": {}, "work": {}}}}})
    assert found == ["providers.scripted.accounts.work: normalises to 'work', which account 'Work' already uses"]


def test_secret_sources_literal_file_and_env_for_default_only(tmp_path):
    (tmp_path / "tok").write_text("from-file\n")
    cfg = parse_config({"providers": {"scripted": {"accounts": {
        "default": {}, "lit": {"token": "literal"}, "filed": {"token_file": str(tmp_path / "tok")}, "other": {},
    }}}}, REGISTRY, env={"SCRIPTED_TOKEN": "from-env"})
    acc = {k.account: a for k, a in cfg.accounts.items()}
    assert acc["default"].config.token.get_secret_value() == "from-env"
    assert acc["lit"].config.token.get_secret_value() == "literal"
    assert acc["filed"].config.token.get_secret_value() == "from-file"
    assert acc["other"].config.token is None
    assert {k: a.secret_sources["token"] for k, a in acc.items()} == {
        "default": "env", "lit": "config", "filed": "file", "other": "none"}
    # The diff compares a fingerprint, never the secret itself.
    assert "literal" not in repr(acc["lit"].effective)


def test_required_secret_missing_and_unreadable_file_are_errors(tmp_path):
    plugin, _ = scripted_plugin("strict")
    from dataclasses import replace

    from gateway.plugin import SecretSpec

    plugin = replace(plugin, config=replace(plugin.config, secrets=(SecretSpec("token", env="STRICT_TOKEN"),)))
    registry = Registry([plugin])
    with pytest.raises(ConfigError) as err:
        parse_config({"providers": {"strict": {"accounts": {
            "alerts": {}, "gone": {"token_file": str(tmp_path / "missing")}, "off": {"enabled": False}}}}},
            registry, env={})
    assert [str(p) for p in err.value.problems] == [
        "providers.strict.accounts.alerts.token: required (or token_file, or $STRICT_TOKEN for the default account)",
        f"providers.strict.accounts.gone.token_file: cannot read secret file {tmp_path / 'missing'}: "
        "No such file or directory",
    ]


def test_gateway_settings_can_be_overridden_from_the_environment(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_GATEWAY__RELOAD__MODE", "hot")
    cfg = parse_config({"gateway": {"reload": {"mode": "off", "debounce_ms": 50}}}, REGISTRY, env={})
    assert (cfg.gateway.reload.mode, cfg.gateway.reload.debounce_ms) == ("hot", 50)


def test_config_path_resolution_order(tmp_path):
    assert resolve_config_path("/x.toml", {"SWITCHBOARD_CONFIG": "/y.toml"}) == Path("/x.toml")
    assert resolve_config_path(None, {"SWITCHBOARD_CONFIG": "/y.toml"}) == Path("/y.toml")
    assert resolve_config_path(None, {}) == Path("~/.config/switchboard/switchboard.toml").expanduser()


def test_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigNotFound, match="switchboard config init"):
        load_config(tmp_path / "nope.toml", REGISTRY)


def test_bad_toml_and_empty_file_are_rejected_with_the_reason(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\nstate_dir = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, REGISTRY)
    empty = tmp_path / "empty.toml"
    empty.write_text("  \n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(empty, REGISTRY)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60)


def test_config_check_prints_ok_or_every_error_one_per_line(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[providers.example.accounts.a]\ngreeting = "hi"\n')
    ok = _cli("config", "check", "--config", str(good))
    assert (ok.returncode, ok.stdout.strip()) == (0, "ok")
    bad = tmp_path / "bad.toml"
    bad.write_text('[gateway.reload]\nmode = "never"\n[providers.example.accounts.a]\ngreting = "hi"\n')
    result = _cli("config", "check", "--config", str(bad))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == ["gateway.reload.mode: Input should be 'off', 'restart', 'hot' or 'hybrid'",
                     "providers.example.accounts.a.greting: unknown key"]
    assert "Traceback" not in result.stderr


def test_run_with_a_missing_config_says_how_to_create_one(tmp_path):
    result = _cli("run", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode != 0
    assert "switchboard config init" in result.stderr and "Traceback" not in result.stderr
