"""Provider discovery: built-in plugins plus the ``switchboard.providers`` entry points.

A :class:`Registry` is a plain value built once at startup (tests build their own with
explicit plugins). Lookups are by canonical id; :meth:`Registry.normalize_provider_id` maps
user input (``" Teams "``, ``tg``) to a canonical id or raises a clear error.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from gateway.errors import PluginConflict, UnknownProvider
from gateway.plugin import ProviderPlugin, StatusIssue

log = structlog.get_logger("gateway.registry")

ENTRY_POINT_GROUP = "switchboard.providers"

#: The canonical listing order (plugins may override with ``meta.order``).
CANONICAL_ORDER = ("webchat", "telegram", "whatsapp", "discord", "slack", "signal", "imessage", "msteams")

#: Aliases every installation understands, whichever plugin provides the id.
CANONICAL_ALIASES = {"imsg": "imessage", "teams": "msteams", "tg": "telegram"}

#: Built-in provider packages shipped with Switchboard.
BUILTIN_MODULES = {
    "webchat": "providers.webchat",
    "telegram": "providers.telegram",
    "discord": "providers.discord",
    "slack": "providers.slack",
}

BUILTIN_DIST = "switchboard (built-in)"


@dataclass(frozen=True)
class PluginLoadFailure:
    """A plugin that could not be imported. The other providers still run."""

    id: str
    source: str
    error: str

    def issue(self) -> StatusIssue:
        return StatusIssue(self.id, None, "plugin", f"provider plugin failed to load from {self.source}: {self.error}",
                           "reinstall the plugin or remove its section from the config")


@dataclass(frozen=True)
class _Entry:
    plugin: ProviderPlugin
    dist: str


class Registry:
    """The installed provider plugins, ordered and indexed by id and alias."""

    def __init__(self, plugins: Iterable[ProviderPlugin | tuple[ProviderPlugin, str]] = (),
                 failures: Iterable[PluginLoadFailure] = ()):
        self._entries: dict[str, _Entry] = {}
        self._aliases: dict[str, str] = {}
        self.failures: tuple[PluginLoadFailure, ...] = tuple(failures)
        for item in plugins:
            plugin, dist = item if isinstance(item, tuple) else (item, BUILTIN_DIST)
            self._add(plugin, dist)
        for alias, target in CANONICAL_ALIASES.items():
            if target in self._entries and alias not in self._aliases and alias not in self._entries:
                self._aliases[alias] = target
        self._ordered = tuple(sorted(self._entries.values(), key=_sort_key))

    def _add(self, plugin: ProviderPlugin, dist: str) -> None:
        pid = plugin.id.strip().lower()
        if pid != plugin.id or not pid:
            raise PluginConflict(f"provider id {plugin.id!r} from {dist} must be non-empty, trimmed and lower-case")
        for name in (pid, *(a.strip().lower() for a in plugin.meta.aliases)):
            owner = self._owner_of(name)
            if owner is not None:
                raise PluginConflict(
                    f"provider id or alias {name!r} is claimed by both {owner.dist} (provider {owner.plugin.id!r}) "
                    f"and {dist} (provider {pid!r}); uninstall one of them")
        self._entries[pid] = _Entry(plugin, dist)
        for alias in plugin.meta.aliases:
            self._aliases[alias.strip().lower()] = pid

    def _owner_of(self, name: str) -> _Entry | None:
        if name in self._entries:
            return self._entries[name]
        if name in self._aliases:
            return self._entries[self._aliases[name]]
        return None

    @classmethod
    def discover(cls, *, builtins: bool = True, entry_points: bool = True) -> Registry:
        """Load built-ins and entry-point plugins; import failures are recorded, not raised."""
        found: list[tuple[ProviderPlugin, str]] = []
        failures: list[PluginLoadFailure] = []
        if builtins:
            for pid, module in BUILTIN_MODULES.items():
                try:
                    found.append((_load_object(f"{module}:plugin"), BUILTIN_DIST))
                except ModuleNotFoundError as exc:
                    if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
                        continue  # not shipped in this build
                    failures.append(_failure(pid, module, exc))
                except Exception as exc:  # noqa: BLE001 - any import error is reported, never fatal
                    failures.append(_failure(pid, module, exc))
        if entry_points:
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.value
                try:
                    plugin = ep.load()
                    if not isinstance(plugin, ProviderPlugin):
                        raise TypeError(f"{ep.value} is {type(plugin).__name__}, not a ProviderPlugin")
                    found.append((plugin, dist))
                except Exception as exc:  # noqa: BLE001
                    failures.append(_failure(ep.name, dist, exc))
        for failure in failures:
            log.error("plugin.load_failed", provider=failure.id, source=failure.source, error=failure.error)
        return cls(found, failures)

    def list_plugins(self) -> tuple[ProviderPlugin, ...]:
        """Every plugin in a stable order: ``meta.order``, then canonical order, then id."""
        return tuple(e.plugin for e in self._ordered)

    def ids(self) -> tuple[str, ...]:
        return tuple(e.plugin.id for e in self._ordered)

    def get_plugin(self, provider_id: str) -> ProviderPlugin:
        entry = self._entries.get(provider_id)
        if entry is None:
            raise UnknownProvider(provider_id, self.ids())
        return entry.plugin

    def distribution(self, provider_id: str) -> str:
        return self._entries[provider_id].dist

    def normalize_provider_id(self, raw: str | None) -> str:
        """Trim, lower-case and resolve aliases; unknown ids raise :class:`UnknownProvider`."""
        value = (raw or "").strip().lower()
        pid = self._aliases.get(value, value)
        if pid not in self._entries:
            raise UnknownProvider(raw or "", self.ids())
        return pid

    def failed_ids(self) -> frozenset[str]:
        return frozenset(f.id for f in self.failures)

    def issues(self) -> list[StatusIssue]:
        return [f.issue() for f in self.failures]


def _sort_key(entry: _Entry) -> tuple[int, int, str]:
    pid = entry.plugin.id
    canonical = CANONICAL_ORDER.index(pid) if pid in CANONICAL_ORDER else 999
    order = entry.plugin.meta.order
    return (order if order is not None else canonical, canonical, pid)


def _load_object(spec: str) -> ProviderPlugin:
    module_name, _, attr = spec.partition(":")
    plugin = getattr(importlib.import_module(module_name), attr)
    if not isinstance(plugin, ProviderPlugin):
        raise TypeError(f"{spec} is {type(plugin).__name__}, not a ProviderPlugin")
    return plugin


def _failure(pid: str, source: str, exc: BaseException) -> PluginLoadFailure:
    return PluginLoadFailure(pid, source, f"{type(exc).__name__}: {exc}")
