"""Comment-preserving, validated, atomic edits of the config file (providers add/remove/enable/disable)."""

from __future__ import annotations

import stat
import textwrap
import tomllib
from pathlib import Path

import pytest
from switchboard_example import plugin as example

from gateway.config import load_config
from gateway.config.edit import EditRefused, add_account, parse_setting, remove_account, set_enabled, write_atomic
from gateway.plugin import AccountKey
from gateway.registry import Registry

REGISTRY = Registry([example])

CONFIG = """\
# Switchboard for the team
[gateway]
state_dir = "/tmp/unused"   # never touched by these tests

[handler]
kind = "none"

# the example accounts
[providers.example]
greeting = "hi"  # shared by every account

[providers.example.accounts.one]
# the first one
behaviour = "ok"
"""


def write(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "sb.toml"
    path.write_text(textwrap.dedent(text))
    path.chmod(0o644)
    return path


def accounts(path: Path) -> dict[str, bool]:
    """Account id -> enabled, as the real loader sees the file."""
    return {k.account: a.enabled for k, a in load_config(path, REGISTRY).accounts.items()}


def test_add_keeps_comments_and_order_and_validates_with_the_loader(tmp_path):
    path = write(tmp_path)
    result = add_account(path, REGISTRY, "ex", "Alerts", ["url=http://127.0.0.1:8081/send", "probe_delay_s=2.5"])
    text = path.read_text()
    assert result.message == 'Added Example account "alerts"'
    for line in ("# Switchboard for the team", "# never touched by these tests", "# the example accounts",
                 "# shared by every account", "# the first one"):
        assert line in text
    assert text.index("[providers.example.accounts.one]") < text.index("[providers.example.accounts.alerts]")
    config = load_config(path, REGISTRY)
    alerts = config.accounts[AccountKey("example", "alerts")].config
    assert alerts.url == "http://127.0.0.1:8081/send" and alerts.probe_delay_s == 2.5
    assert alerts.greeting == "hi"  # provider-level keys stay defaults


def test_the_file_is_written_0600_and_the_previous_version_kept_as_bak(tmp_path):
    path = write(tmp_path)
    before = path.read_text()
    result = add_account(path, REGISTRY, "example", "two")
    assert result.backup == tmp_path / "sb.toml.bak"
    assert result.backup.read_text() == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(result.backup.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_edit_that_would_make_the_file_invalid_is_refused_and_nothing_is_written(tmp_path):
    path = write(tmp_path)
    before = path.read_text()
    with pytest.raises(EditRefused) as caught:
        add_account(path, REGISTRY, "example", "bad", ["colour=red", "probe_delay_s=soon"])
    problems = {str(p) for p in caught.value.problems}
    assert "providers.example.accounts.bad.colour: unknown key" in problems
    assert any(p.startswith("providers.example.accounts.bad.probe_delay_s:") for p in problems)
    assert path.read_text() == before and not (tmp_path / "sb.toml.bak").exists()


def test_adding_a_second_account_keeps_the_implicit_default_account(tmp_path):
    path = write(tmp_path, """\
        [handler]
        kind = "none"
        [providers.example]
        greeting = "from the default"
        """)
    assert accounts(path) == {"default": True}
    add_account(path, REGISTRY, "example", "alerts")
    assert accounts(path) == {"default": True, "alerts": True}
    raw = tomllib.loads(path.read_text())["providers"]["example"]
    assert raw["greeting"] == "from the default" and set(raw["accounts"]) == {"default", "alerts"}


def test_adding_to_a_provider_not_in_the_file_creates_an_accounts_table(tmp_path):
    path = write(tmp_path, '[handler]\nkind = "none"\n')
    add_account(path, REGISTRY, "example", None, ["greeting=hello there"], name="Main")
    raw = tomllib.loads(path.read_text())
    assert raw["providers"]["example"]["accounts"]["default"] == {"greeting": "hello there", "name": "Main"}
    assert accounts(path) == {"default": True}


def test_adding_an_existing_account_updates_and_enables_it(tmp_path):
    path = write(tmp_path)
    set_enabled(path, REGISTRY, "example", "one", False)
    result = add_account(path, REGISTRY, "example", "one", ["greeting=bye"])
    assert result.message == 'Updated Example account "one"'
    assert accounts(path) == {"one": True}
    assert load_config(path, REGISTRY).accounts[AccountKey("example", "one")].config.greeting == "bye"


def test_adding_to_a_disabled_provider_enables_the_provider_and_says_so(tmp_path):
    path = write(tmp_path)
    set_enabled(path, REGISTRY, "example", None, False)
    result = add_account(path, REGISTRY, "example", "two")
    assert accounts(path) == {"one": True, "two": True}
    assert result.notes and "enabled now" in result.notes[0]


def test_remove_one_account_keeps_the_others(tmp_path):
    path = write(tmp_path)
    add_account(path, REGISTRY, "example", "two")
    result = remove_account(path, REGISTRY, "example", "one")
    assert result.message == 'Removed Example account "one"' and not result.notes
    assert accounts(path) == {"two": True}
    assert "# shared by every account" in path.read_text()


def test_removing_the_last_account_removes_the_provider_section(tmp_path):
    path = write(tmp_path)
    result = remove_account(path, REGISTRY, "example", None)  # the only account: no --account needed
    assert "providers" not in tomllib.loads(path.read_text())
    assert "[providers.example]" in result.notes[0]


def test_remove_without_account_when_there_are_several_is_refused(tmp_path):
    path = write(tmp_path)
    add_account(path, REGISTRY, "example", "two")
    with pytest.raises(EditRefused, match=r"several accounts \(one, two\); choose one with --account"):
        remove_account(path, REGISTRY, "example", None)


def test_remove_of_an_unknown_account_names_the_known_ones(tmp_path):
    path = write(tmp_path)
    with pytest.raises(EditRefused, match="example has no account 'ghost'; its accounts: one"):
        remove_account(path, REGISTRY, "example", "ghost")


def test_disable_and_enable_one_account(tmp_path):
    path = write(tmp_path)
    add_account(path, REGISTRY, "example", "two")
    set_enabled(path, REGISTRY, "example", "two", False)
    assert accounts(path) == {"one": True, "two": False}
    set_enabled(path, REGISTRY, "example", "two", True)
    assert accounts(path) == {"one": True, "two": True}
    assert "enabled" not in tomllib.loads(path.read_text())["providers"]["example"]["accounts"]["two"]


def test_disable_the_whole_provider_and_enabling_an_account_under_it_warns(tmp_path):
    path = write(tmp_path)
    set_enabled(path, REGISTRY, "ex", None, False)
    assert accounts(path) == {"one": False}
    result = set_enabled(path, REGISTRY, "example", "one", True)
    assert accounts(path) == {"one": False}
    assert "providers enable --provider example" in result.notes[0]


def test_enable_of_a_provider_missing_from_the_file_says_how_to_add_one(tmp_path):
    path = write(tmp_path, '[handler]\nkind = "none"\n')
    with pytest.raises(EditRefused, match="providers add --provider example --account NAME"):
        set_enabled(path, REGISTRY, "example", None, True)


def test_unknown_provider_is_an_error_that_lists_the_known_ones(tmp_path):
    from gateway.errors import UnknownProvider

    with pytest.raises(UnknownProvider, match="known providers: example"):
        add_account(write(tmp_path), REGISTRY, "fax", "one")


def test_a_missing_file_says_how_to_create_one(tmp_path):
    from gateway.errors import ConfigNotFound

    with pytest.raises(ConfigNotFound, match="switchboard config init"):
        add_account(tmp_path / "nope.toml", REGISTRY, "example", "one")


@pytest.mark.parametrize(("item", "expected"), [
    ("greeting=123", ("greeting", "123")),            # a str field stays a string
    ('greeting="quoted"', ("greeting", "quoted")),
    ("url=http://127.0.0.1:1/x?a=b", ("url", "http://127.0.0.1:1/x?a=b")),
    ("probe_delay_s=2", ("probe_delay_s", 2)),
    ("probe_fail=true", ("probe_fail", True)),
    ('allow_from=["1", "2"]', ("allow_from", ["1", "2"])),
    ("token_file=/run/secrets/x", ("token_file", "/run/secrets/x")),
])
def test_set_values_are_typed_by_the_account_model(item, expected):
    assert parse_setting(example, item) == expected


def test_set_without_equals_is_refused():
    with pytest.raises(EditRefused, match="--set expects key=value"):
        parse_setting(example, "greeting")


def test_enabled_cannot_be_set_through_set(tmp_path):
    with pytest.raises(EditRefused, match="providers enable"):
        add_account(write(tmp_path), REGISTRY, "example", "x", ["enabled=false"])


def test_write_atomic_replaces_the_file_in_one_step(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text("old\n")
    inode_before = path.stat().st_ino
    write_atomic(path, "new\n")
    assert path.read_text() == "new\n" and path.stat().st_ino != inode_before
    assert (tmp_path / "f.toml.bak").read_text() == "old\n"


def test_a_new_table_goes_between_and_the_next_sections_comment_stays_above_it(tmp_path):
    path = write(tmp_path, """\
        [handler]
        kind = "none"

        [providers.example.accounts.one]
        behaviour = "ok"
        # still about one

        # about the gateway
        [gateway]
        log_level = "info"
        """)
    add_account(path, REGISTRY, "example", "two", ["greeting=yo"])
    set_enabled(path, REGISTRY, "example", "one", False)
    assert path.read_text() == textwrap.dedent("""\
        [handler]
        kind = "none"

        [providers.example.accounts.one]
        behaviour = "ok"
        enabled = false
        # still about one

        [providers.example.accounts.two]
        greeting = "yo"

        # about the gateway
        [gateway]
        log_level = "info"
        """)
