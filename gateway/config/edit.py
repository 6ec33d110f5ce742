"""Editing the config file from the CLI (``switchboard providers add|remove|enable|disable``).

Edits go through tomlkit, so comments, order and formatting survive. The result is
validated with the real loader before anything is written; an edit that would make the
file invalid is refused with every problem. The write is atomic (temp file in the same
directory, fsync, rename), the file keeps mode 0600 and its owner, and the previous
version is kept next to it as ``<name>.bak``. A running daemon sees the rename through its
file watcher and applies the change like any other reload.

Where keys go (DESIGN.md §3): a provider without an ``accounts`` table has one account,
``default``, built from the provider-level keys. Adding another account to such a provider
first writes an empty ``[providers.<id>.accounts.default]`` table so the existing account
keeps existing (provider-level keys stay the defaults of every account).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import tomllib
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import SecretStr
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Table, Whitespace

from gateway.config.accounts import DEFAULT_ACCOUNT, normalize_account_id
from gateway.config.loader import parse_config
from gateway.errors import ConfigError, ConfigNotFound, ConfigProblem, SwitchboardError
from gateway.plugin import ProviderPlugin
from gateway.registry import Registry


class EditRefused(SwitchboardError):
    """The edit cannot be made (unknown account, would leave the file invalid, ...)."""

    code = "edit_refused"

    def __init__(self, message: str, problems: Iterable[ConfigProblem] = ()):
        self.problems = tuple(problems)
        super().__init__(message)


@dataclass(frozen=True)
class EditResult:
    path: Path
    message: str
    backup: Path | None
    notes: tuple[str, ...] = ()


Edit = Callable[[tomlkit.TOMLDocument], tuple[str, list[str]]]


# --- the public edits ----------------------------------------------------------------------------


def add_account(path: Path, registry: Registry, provider: str, account: str | None,
                settings: Iterable[str] = (), *, name: str | None = None) -> EditResult:
    """Add ``provider``/``account`` (or update its keys); ``settings`` are ``key=value`` strings."""
    plugin = registry.get_plugin(registry.normalize_provider_id(provider))
    account_id = normalize_account_id(account)
    values = dict(parse_setting(plugin, item) for item in settings)
    if name is not None:
        values["name"] = name
    for key in ("enabled", "accounts"):
        if key in values:
            raise EditRefused(f"--set {key}=... is not allowed here; use `switchboard providers enable|disable`"
                              if key == "enabled" else "--set accounts=... is not allowed; use --account")

    def edit(doc: tomlkit.TOMLDocument) -> tuple[str, list[str]]:
        notes: list[str] = []
        section = _provider_section(doc, registry, plugin.id, create=False)
        created = section is None
        if created:
            section = _provider_section(doc, registry, plugin.id, create=True)
        existed = not created and account_id in _account_ids(section)
        if section.get("enabled") is False:
            _set_key(section, "enabled", True)
            notes.append(f"provider {plugin.id} was disabled as a whole; it is enabled now")
        table = _account_table(section, account_id, implicit_default=not created)
        for key, value in values.items():
            _set_key(table, key, value)
        if table.get("enabled") is False:
            del table["enabled"]
        verb = "Updated" if existed else "Added"
        return f"{verb} {plugin.meta.label} account \"{account_id}\"", notes

    return apply_edit(path, registry, edit)


def remove_account(path: Path, registry: Registry, provider: str, account: str | None) -> EditResult:
    """Delete the account's table; removing the last account removes the provider section."""
    pid = registry.normalize_provider_id(provider)
    label = registry.get_plugin(pid).meta.label

    def edit(doc: tomlkit.TOMLDocument) -> tuple[str, list[str]]:
        section = _provider_section(doc, registry, pid, create=False)
        if section is None:
            raise EditRefused(f"{pid} has no section in the config file; nothing to remove")
        ids = _account_ids(section)
        account_id = _pick_account(pid, account, ids)
        accounts = section.get("accounts")
        if isinstance(accounts, dict):
            del accounts[_raw_account_key(accounts, account_id)]
            if accounts:
                return f"Removed {label} account \"{account_id}\"", []
        _delete_provider_section(doc, registry, pid)
        return (f"Removed {label} account \"{account_id}\"",
                [f"it was the last {pid} account, so [providers.{pid}] was removed too"])

    return apply_edit(path, registry, edit)


def set_enabled(path: Path, registry: Registry, provider: str, account: str | None, enabled: bool) -> EditResult:
    """``enabled = true|false`` on one account, or on the whole provider when ``account`` is None."""
    pid = registry.normalize_provider_id(provider)
    label = registry.get_plugin(pid).meta.label
    verb = "Enabled" if enabled else "Disabled"

    def edit(doc: tomlkit.TOMLDocument) -> tuple[str, list[str]]:
        section = _provider_section(doc, registry, pid, create=False)
        if section is None:
            raise EditRefused(f"{pid} has no section in the config file; add an account with "
                              f"`switchboard providers add --provider {pid} --account NAME`")
        if account is None:
            _set_flag(section, enabled)
            return f"{verb} {label} (all its accounts)", []
        account_id = _pick_account(pid, account, _account_ids(section))
        accounts = section.get("accounts")
        table = accounts[_raw_account_key(accounts, account_id)] if isinstance(accounts, dict) else section
        _set_flag(table, enabled)
        notes = []
        if enabled and section.get("enabled") is False and table is not section:
            notes.append(f"the provider {pid} is disabled as a whole, so this account stays off; run "
                         f"`switchboard providers enable --provider {pid}`")
        return f"{verb} {label} account \"{account_id}\"", notes

    return apply_edit(path, registry, edit)


def parse_setting(plugin: ProviderPlugin, item: str) -> tuple[str, Any]:
    """``key=value`` -> ``(key, value)``. String fields stay strings; others are read as TOML."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise EditRefused(f"--set expects key=value, got {item!r}")
    raw = raw.strip()
    if _takes_string(plugin, key):
        return key, _unquote(raw)
    try:
        return key, tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return key, raw


# --- writing -----------------------------------------------------------------------------------------


def apply_edit(path: Path, registry: Registry, edit: Edit) -> EditResult:
    """Read, edit, validate with the real loader, write atomically (keeping ``.bak``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigNotFound(f"config file {path} does not exist; create one with "
                             f"`switchboard config init --config {path}`", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}", source=str(path)) from None
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", source=str(path)) from None
    message, notes = edit(doc)
    new_text = tomlkit.dumps(doc).rstrip("\n") + "\n"
    try:
        parse_config(tomllib.loads(new_text), registry, path=path)
    except (ConfigError, tomllib.TOMLDecodeError) as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else (ConfigProblem("", str(exc)),)
        raise EditRefused(f"not written: {path} would be invalid after this change", problems) from None
    backup = write_atomic(path, new_text)
    return EditResult(path, message, backup, tuple(notes))


def write_atomic(path: Path, text: str) -> Path | None:
    """Replace ``path`` with ``text`` atomically, mode 0600; the old file becomes ``<name>.bak``."""
    backup: Path | None = None
    old = path.stat() if path.exists() else None
    if old is not None:
        backup = path.with_name(path.name + ".bak")
        _copy_private(path, backup)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        if old is not None:
            with contextlib.suppress(PermissionError):  # only root can give the file back to its owner
                os.chown(tmp, old.st_uid, old.st_gid)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return backup


def _copy_private(source: Path, target: Path) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        shutil.copyfileobj(src, out)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(target, 0o600)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- document helpers -----------------------------------------------------------------------------


def _provider_section(doc: tomlkit.TOMLDocument, registry: Registry, pid: str, *, create: bool) -> Any:
    providers = doc.get("providers")
    if isinstance(providers, dict):
        for raw_id, section in providers.items():
            if _same_provider(registry, str(raw_id), pid) and isinstance(section, dict):
                return section
    if not create:
        return None
    if not isinstance(providers, dict):
        providers = tomlkit.table(is_super_table=True)
        doc["providers"] = providers
    section = tomlkit.table(is_super_table=True)
    providers[pid] = section
    return providers[pid]


def _delete_provider_section(doc: tomlkit.TOMLDocument, registry: Registry, pid: str) -> None:
    providers = doc["providers"]
    for raw_id in list(providers):
        if _same_provider(registry, str(raw_id), pid):
            del providers[raw_id]
    if not providers:
        del doc["providers"]


def _same_provider(registry: Registry, raw_id: str, pid: str) -> bool:
    try:
        return registry.normalize_provider_id(raw_id) == pid
    except LookupError:
        return False


def _account_ids(section: Any) -> list[str]:
    accounts = section.get("accounts")
    if isinstance(accounts, dict):
        return [normalize_account_id(raw) for raw in accounts]
    return [DEFAULT_ACCOUNT]


def _raw_account_key(accounts: Any, account_id: str) -> str:
    return next(str(raw) for raw in accounts if normalize_account_id(raw) == account_id)


def _pick_account(pid: str, account: str | None, ids: list[str]) -> str:
    if account is None:
        if len(ids) == 1:
            return ids[0]
        raise EditRefused(f"{pid} has several accounts ({', '.join(ids)}); choose one with --account")
    account_id = normalize_account_id(account)
    if account_id not in ids:
        raise EditRefused(f"{pid} has no account {account_id!r}; its accounts: {', '.join(ids)}")
    return account_id


def _account_table(section: Any, account_id: str, *, implicit_default: bool) -> Any:
    """The table where ``account_id``'s own keys live (creating it as DESIGN.md §3 says).

    ``implicit_default``: the section existed before, so without an ``accounts`` table it
    already defines the ``default`` account.
    """
    accounts = section.get("accounts")
    if not isinstance(accounts, dict):
        if account_id == DEFAULT_ACCOUNT and implicit_default:
            return section  # the provider-level keys are the default account's
        moved = _split_trailing_trivia(section)
        accounts = tomlkit.table(is_super_table=True)
        if implicit_default:
            kept = tomlkit.table()
            kept.add(tomlkit.comment("the account built from the provider-level keys above"))
            kept.add(tomlkit.nl())
            accounts[DEFAULT_ACCOUNT] = kept
        section["accounts"] = accounts
        accounts = section["accounts"]
        accounts[account_id] = _table_followed_by(moved)
        return accounts[account_id]
    for raw in accounts:
        if normalize_account_id(raw) == account_id:
            return accounts[raw]
    previous = list(accounts.values())[-1] if accounts else None
    moved = _split_trailing_trivia(previous) if isinstance(previous, Table) else []
    accounts[account_id] = _table_followed_by(moved)
    return accounts[account_id]


def _table_followed_by(trivia: list[Any]) -> Table:
    table = tomlkit.table()
    table.add(tomlkit.nl())
    for item in trivia:
        table.add(item)
    return table


def _split_trailing_trivia(table: Table) -> list[Any]:
    """Remove and return the comments at the end of ``table`` that introduce what follows it.

    tomlkit files the comment above a ``[header]`` under the table before it; a table
    inserted in between must take those lines along, or they would describe the wrong table.
    Lines that hug the table's last key stay; from the first blank line on, they move.
    """
    body = table.value.body
    if any(isinstance(item, (Table, AoT)) for _, item in body):
        return []
    last_key = max((i for i, (key, _) in enumerate(body) if key is not None), default=-1)
    if last_key < 0:
        return []
    blank = next((i for i in range(last_key + 1, len(body)) if isinstance(body[i][1], Whitespace)), None)
    if blank is None:
        table.add(tomlkit.nl())  # a blank line before the next header
        return []
    moved = [item for _, item in body[blank + 1:]]
    del body[blank + 1:]  # only unkeyed items: the key index stays valid
    return moved


def _set_key(table: Any, key: str, value: Any) -> None:
    """Set ``key``; a new key goes right after the table's last key, not after trailing comments."""
    if key in table or not isinstance(table, Table):
        table[key] = value
        return
    body = table.value.body
    keys = [k.key for k, item in body if k is not None and not isinstance(item, (Table, AoT))]
    if keys:
        table.value._insert_after(keys[-1], key, value)  # noqa: SLF001 - tomlkit has no public insert
    elif body and not isinstance(body[0][1], (Table, AoT)):
        table.value._insert_at(0, key, value)  # noqa: SLF001 - before the blank line and moved comments
    else:
        table[key] = value


def _set_flag(table: Any, enabled: bool) -> None:
    if enabled and "enabled" in table:
        del table["enabled"]  # true is the default: keep the file small
    elif not enabled:
        _set_key(table, "enabled", False)


def _takes_string(plugin: ProviderPlugin, key: str) -> bool:
    field = plugin.config.model.model_fields.get(key)
    if field is None:
        return False
    return _is_stringish(field.annotation)


def _is_stringish(annotation: Any) -> bool:
    if annotation in (str, SecretStr):
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(_is_stringish(a) for a in args)
    if typing.get_origin(annotation) is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    return False


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        try:
            return str(tomllib.loads(f"v = {raw}")["v"])
        except tomllib.TOMLDecodeError:
            return raw[1:-1]
    return raw
