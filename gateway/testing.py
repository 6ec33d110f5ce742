"""Helpers for testing provider plugins without a running daemon.

:class:`RecordingContext` implements :class:`gateway.plugin.AccountContext` in memory: it
records status fields, issues and emitted inbound messages, and exposes ``connected`` (an
``anyio.Event`` set by ``started()``). Use it to drive ``run_account`` and the send
primitives against a wire-level fake. End-to-end behaviour is tested through the daemon.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import structlog

from gateway.plugin import (
    AccountConfig,
    AccountKey,
    InboundMessage,
    ResolvedAccount,
    StatusIssue,
    StatusIssueKind,
    WebhookHandler,
)


class MemoryStore:
    """In-memory :class:`gateway.plugin.KeyValueStore`."""

    def __init__(self, data: dict[str, Any] | None = None):
        self.data: dict[str, Any] = dict(data or {})

    async def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)


class RecordingWebhooks:
    def __init__(self) -> None:
        self.routes: dict[AccountKey, WebhookHandler] = {}
        self.paths: dict[str, WebhookHandler] = {}

    def mount(self, key: AccountKey, handler: WebhookHandler, *, methods: Sequence[str] = ("POST",)) -> str:
        self.routes[key] = handler
        return f"/hooks/{key.provider}/{key.account}/"

    def unmount(self, key: AccountKey) -> None:
        self.routes.pop(key, None)

    def mount_path(self, path: str, handler: WebhookHandler, *, methods: Sequence[str] = ("GET",)) -> str:
        self.paths[path] = handler
        return path

    def unmount_path(self, path: str) -> None:
        self.paths.pop(path, None)


class RecordingContext:
    """An :class:`~gateway.plugin.AccountContext` that records what the plugin does."""

    def __init__(self, resolved: ResolvedAccount, client: Any = None, *, store: MemoryStore | None = None):
        self.key: AccountKey = resolved.key
        self.resolved = resolved
        self.account: AccountConfig = resolved.config
        self.client = client
        self.log = structlog.get_logger().bind(provider=self.key.provider, account=self.key.account)
        self.store = store if store is not None else MemoryStore()
        self.webhooks = RecordingWebhooks()
        self.status: dict[str, Any] = {}
        self.issues: list[StatusIssue] = []
        self.inbound: list[InboundMessage] = []
        self.connected = anyio.Event()
        self._seen: set[str] = set()
        self._inbound_changed = anyio.Event()

    def set_status(self, **fields: Any) -> None:
        self.status.update(fields)

    def started(self) -> None:
        self.connected.set()

    async def emit(self, message: InboundMessage) -> bool:
        if message.id in self._seen:
            return False
        self._seen.add(message.id)
        self.inbound.append(message)
        self._inbound_changed.set()
        self._inbound_changed = anyio.Event()
        return True

    def add_issue(self, kind: StatusIssueKind, message: str, fix: str | None = None) -> None:
        self.issues.append(StatusIssue(self.key.provider, self.key.account, kind, message, fix))

    def clear_issues(self) -> None:
        self.issues.clear()

    async def wait_inbound(self, count: int, timeout: float = 5.0) -> list[InboundMessage]:
        """Wait until at least ``count`` messages were emitted."""
        with anyio.fail_after(timeout):
            while len(self.inbound) < count:
                await self._inbound_changed.wait()
        return list(self.inbound)


def resolved_account(plugin: Any, account: str = "default", **keys: Any) -> ResolvedAccount:
    """Build a :class:`ResolvedAccount` for ``plugin`` straight from keyword keys.

    Secrets given as plain strings are wrapped by the model (``SecretStr`` fields); this
    skips file/env lookup, which the config loader's own tests cover.
    """
    model = plugin.config.model.model_validate(keys)
    sources = {spec.field: ("config" if keys.get(spec.field) else "none") for spec in plugin.config.secrets}
    return ResolvedAccount(key=AccountKey(plugin.id, account), config=model,
                           secret_sources=sources, effective=dict(keys))


async def wait_for_status(status: Any, predicate: Any, timeout: float = 5.0) -> None:
    """Wait until ``predicate(status)`` is true, re-checking on every status change."""
    with anyio.fail_after(timeout):
        with status.subscribe() as changes:
            while not predicate(status):
                await changes.receive()
