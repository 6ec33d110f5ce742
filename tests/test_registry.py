"""Provider discovery, ordering, ids and aliases."""

from __future__ import annotations

import importlib.metadata

import pytest

from gateway.errors import PluginConflict, UnknownProvider
from gateway.registry import Registry
from tests.support import scripted_plugin


def test_example_plugin_is_discovered_through_its_entry_point():
    # The example plugin is a separate distribution installed into the venv by `make test`.
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="switchboard.providers")}
    assert "example" in eps and eps["example"].dist.name == "switchboard-example-provider"
    registry = Registry.discover(builtins=False)
    plugin = registry.get_plugin("example")
    assert plugin.meta.label == "Example"
    assert registry.distribution("example").startswith("switchboard-example-provider")
    assert registry.normalize_provider_id(" EX ") == "example"


def test_alias_collision_is_a_startup_error_naming_both_distributions():
    first, _ = scripted_plugin("alpha", aliases=("shared",))
    second, _ = scripted_plugin("beta", aliases=("shared",))
    with pytest.raises(PluginConflict) as err:
        Registry([(first, "alpha-dist 1.0"), (second, "beta-dist 2.0")])
    message = str(err.value)
    assert "'shared'" in message and "alpha-dist 1.0" in message and "beta-dist 2.0" in message


def test_id_collision_names_both_distributions():
    first, _ = scripted_plugin("dup")
    second, _ = scripted_plugin("dup")
    with pytest.raises(PluginConflict, match="one-dist.*two-dist"):
        Registry([(first, "one-dist"), (second, "two-dist")])


def test_normalize_trims_lowercases_and_maps_aliases():
    plugins = [scripted_plugin(pid)[0] for pid in ("telegram", "imessage", "msteams")]
    registry = Registry(plugins)
    assert registry.normalize_provider_id(" Teams ") == "msteams"
    assert registry.normalize_provider_id("IMSG") == "imessage"
    assert registry.normalize_provider_id("tg") == "telegram"
    assert registry.normalize_provider_id("Telegram") == "telegram"


def test_unknown_provider_error_lists_the_known_ids():
    registry = Registry([scripted_plugin("telegram")[0], scripted_plugin("slack")[0]])
    with pytest.raises(UnknownProvider) as err:
        registry.normalize_provider_id("web")
    assert "'web'" in str(err.value) and "telegram, slack" in str(err.value)


def test_listing_order_is_stable_meta_order_then_canonical_then_id():
    names = ["zeta", "slack", "telegram", "alpha", "webchat"]
    registry = Registry([scripted_plugin(n)[0] for n in names])
    assert registry.ids() == ("webchat", "telegram", "slack", "alpha", "zeta")


def test_a_plugin_that_fails_to_import_is_reported_and_others_still_load(monkeypatch, tmp_path):
    pkg = tmp_path / "broken_provider"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('missing native library libfoo.so')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(__import__("gateway.registry").registry.BUILTIN_MODULES, "broken", "broken_provider")
    registry = Registry.discover()
    assert "broken" in registry.failed_ids()
    (issue,) = [i for i in registry.issues() if i.provider == "broken"]
    assert issue.kind == "plugin" and "libfoo.so" in issue.message
    assert "example" in registry.ids()
