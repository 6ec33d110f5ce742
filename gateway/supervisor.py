"""One supervised task per (provider, account).

Each account runs in its own cancel scope inside the supervisor's task group. The task opens
the plugin's client, runs ``run_account(ctx)`` and classifies how it ended:

* cancelled -> the account was stopped on purpose;
* :class:`AuthFailed` / :class:`ConfigInvalid` -> ``failed`` with a status issue, no retry
  until the configuration changes or an operator restarts it;
* anything else (including returning) -> ``backoff``: exponential with jitter, at least the
  ``retry_after`` of :class:`RateLimited`, reset after ``stable_after_s`` of running.

Start, stop and restart of one account are serialised by that account's lock, so two
concurrent restarts never run two copies. Stop is bounded by ``stop_timeout_s``; an account
that ignores cancellation is named in a warning and left behind (see ``shutdown``).
Every account parks on its own primitives: cancelling many waiters of one shared event is
quadratic (DESIGN.md §4).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from gateway.backoff import Backoff
from gateway.config.model import RestartConfig
from gateway.errors import AccountNotReady, AuthFailed, ConfigInvalid, RateLimited, UnknownAccount
from gateway.plugin import (
    AccountConfig,
    AccountKey,
    AccountState,
    InboundMessage,
    KeyValueStore,
    ProviderPlugin,
    ResolvedAccount,
    StatusIssue,
    StatusIssueKind,
    WebhookMount,
)
from gateway.registry import Registry
from gateway.secrets import redact_account
from gateway.status import StatusStore, utcnow_iso

log = structlog.get_logger("gateway.supervisor")


@dataclass(frozen=True)
class AccountServices:
    """What the core lends every account: the inbound pipeline, its store, webhook routes."""

    emit: Callable[[InboundMessage], Awaitable[bool]]
    store_for: Callable[[AccountKey], KeyValueStore]
    webhooks: WebhookMount


class RuntimeContext:
    """The :class:`gateway.plugin.AccountContext` of one running account."""

    def __init__(self, supervisor: Supervisor, runner: AccountRunner, client: Any):
        self._supervisor = supervisor
        self._runner = runner
        self.key = runner.key
        self.client = client
        self.store = supervisor.services.store_for(runner.key)
        self.webhooks = supervisor.services.webhooks
        self._log: Any = None

    @property
    def log(self) -> Any:
        # Bound lazily: most accounts never log, and binding costs a few microseconds each.
        if self._log is None:
            self._log = log.bind(provider=self.key.provider, account=self.key.account)
        return self._log

    @property
    def resolved(self) -> ResolvedAccount:
        # Read through the runner so live-key updates apply without a restart.
        return self._runner.resolved

    @property
    def account(self) -> AccountConfig:
        return self._runner.resolved.config

    def set_status(self, **fields: Any) -> None:
        self._supervisor.status.update(self.key, **fields)

    def started(self) -> None:
        self._runner.mark_connected(self._supervisor.status)

    async def emit(self, message: InboundMessage) -> bool:
        accepted = await self._supervisor.services.emit(message)
        self._supervisor.status.touch(self.key, "last_inbound_at")
        return accepted

    def add_issue(self, kind: StatusIssueKind, message: str, fix: str | None = None) -> None:
        self._supervisor.status.add_account_issue(
            self.key, StatusIssue(self.key.provider, self.key.account, kind, message, fix))

    def clear_issues(self) -> None:
        self._supervisor.status.set_account_issues(self.key, [])


class AccountRunner:
    """Book-keeping for one account: its lock, scope, completion event and live context."""

    __slots__ = ("key", "plugin", "resolved", "_lock", "scope", "done", "ctx", "connected_at", "_running", "removed")

    def __init__(self, plugin: ProviderPlugin, resolved: ResolvedAccount):
        self.key = resolved.key
        self.plugin = plugin
        self.resolved = resolved
        self._lock: anyio.Lock | None = None
        self.scope: anyio.CancelScope | None = None
        self.done: anyio.Event | None = None
        self.ctx: RuntimeContext | None = None
        self.connected_at: float | None = None
        self._running: anyio.Event | None = None
        self.removed = False

    @property
    def lock(self) -> anyio.Lock:
        # Created on first use: startup and shutdown need no lock per account.
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    @property
    def locked(self) -> bool:
        return self._lock is not None and self._lock.locked()

    @property
    def active(self) -> bool:
        return self.done is not None and not self.done.is_set()

    def mark_connected(self, status: StatusStore) -> None:
        if self.connected_at is not None:
            return
        self.connected_at = time.monotonic()
        status.update(self.key, state=AccountState.RUNNING, connected=True, last_connected_at=utcnow_iso(),
                      next_retry_at=None)
        if self._running is not None:
            self._running.set()

    def mark_disconnected(self) -> None:
        self.connected_at = None
        if self._running is not None and self._running.is_set():
            self._running = None

    def mark_removed(self) -> None:
        self.removed = True
        if self._running is not None:
            self._running.set()

    async def wait_running(self) -> RuntimeContext:
        while True:
            if self.removed:
                raise UnknownAccount(f"account {self.key} was removed from the configuration")
            if self.connected_at is not None and self.ctx is not None:
                return self.ctx
            if self._running is None:
                self._running = anyio.Event()
            await self._running.wait()


class Supervisor:
    """Runs, restarts and stops accounts; the single owner of account tasks."""

    def __init__(self, registry: Registry, status: StatusStore, restart: RestartConfig, services: AccountServices):
        self.registry = registry
        self.status = status
        self.restart_config = restart
        self.services = services
        self._runners: dict[AccountKey, AccountRunner] = {}
        self._tg: TaskGroup | None = None
        self._closing = False

    # --- lifecycle of the supervisor itself ---------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the account task group until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    @property
    def backoff(self) -> Backoff:
        rc = self.restart_config
        return Backoff(rc.initial_ms / 1000, rc.max_ms / 1000, rc.factor, rc.jitter)

    # --- queries --------------------------------------------------------------------------------

    def keys(self) -> list[AccountKey]:
        return list(self._runners)

    def resolved(self, key: AccountKey) -> ResolvedAccount | None:
        runner = self._runners.get(key)
        return runner.resolved if runner else None

    def context(self, key: AccountKey) -> RuntimeContext | None:
        """The live context of a connected account, else ``None``."""
        runner = self._runners.get(key)
        if runner is None or runner.connected_at is None:
            return None
        return runner.ctx

    async def wait_running(self, key: AccountKey) -> RuntimeContext:
        """Wait (unbounded: wrap in a timeout) until ``key`` is connected.

        Raises :class:`~gateway.errors.UnknownAccount` if the account is removed meanwhile.
        """
        runner = self._runners.get(key)
        if runner is None:
            raise KeyError(str(key))
        return await runner.wait_running()

    # --- commands ---------------------------------------------------------------------------------

    async def start_account(self, resolved: ResolvedAccount) -> None:
        runner = self._runner_for(resolved)
        async with runner.lock:
            runner.resolved = resolved
            self._start_locked(runner)

    def start_many(self, accounts: Iterable[ResolvedAccount]) -> None:
        """Start accounts that have no task yet (startup: no lock contention is possible)."""
        for resolved in accounts:
            runner = self._runner_for(resolved)
            if not runner.locked:
                runner.resolved = resolved
                self._start_locked(runner)

    async def stop_account(self, key: AccountKey, *, remove: bool = False) -> bool:
        """Stop ``key``; ``False`` if it did not stop within ``stop_timeout_s``."""
        runner = self._runners.get(key)
        if runner is None:
            return True
        async with runner.lock:
            stopped = await self._stop_locked(runner)
            if remove and self._runners.get(key) is runner:
                del self._runners[key]
                runner.mark_removed()
                self.status.remove(key)
        return stopped

    async def restart_account(self, key: AccountKey, resolved: ResolvedAccount | None = None) -> bool:
        """Stop then start under the account's lock; ``resolved`` swaps the configuration."""
        runner = self._runners.get(key)
        if runner is None:
            if resolved is None:
                raise KeyError(str(key))
            await self.start_account(resolved)
            return True
        async with runner.lock:
            stopped = await self._stop_locked(runner)
            if resolved is not None:
                runner.resolved = resolved
            if not stopped:
                # Never run two copies: the old task still holds the account.
                self.status.update(key, last_error="previous run did not stop; restart deferred until it exits")
                self._spawn(self._start_when_done, runner)
                return False
            self._start_locked(runner)
        return True

    def update_live(self, resolved: ResolvedAccount) -> None:
        """Swap in a configuration whose changes are all live keys (no restart)."""
        runner = self._runners.get(resolved.key)
        if runner is not None:
            runner.resolved = resolved
            self.status.update(resolved.key, name=resolved.config.name, **_describe(runner.plugin, resolved))

    async def shutdown(self, timeout: float | None = None) -> list[AccountKey]:
        """Stop every account at once; return the stragglers (named in a warning).

        One pass cancels every scope, then one deadline bounds the wait for all of them:
        no task, lock or timeout scope per account, so ten thousand accounts stop quickly.
        """
        self._closing = True
        limit = self.restart_config.stop_timeout_s if timeout is None else timeout
        active = [r for r in self._runners.values() if r.active]
        for runner in active:
            self.status.update(runner.key, state=AccountState.STOPPING)
            assert runner.scope is not None
            runner.scope.cancel()
        with anyio.move_on_after(limit):
            for runner in active:
                assert runner.done is not None
                if not runner.done.is_set():
                    await runner.done.wait()
        stragglers = [r.key for r in active if r.done is not None and not r.done.is_set()]
        now = utcnow_iso()
        for runner in self._runners.values():
            if runner.key not in stragglers:
                self.status.update(runner.key, state=AccountState.STOPPED, connected=False, next_retry_at=None,
                                   last_stop_at=now)
        for key in stragglers:
            log.warning("account.stop_straggler", provider=key.provider, account=key.account, stop_timeout_s=limit)
        if stragglers:
            log.warning("supervisor.stragglers", accounts=[str(k) for k in stragglers], count=len(stragglers))
        return stragglers

    # --- internals ----------------------------------------------------------------------------------

    def _runner_for(self, resolved: ResolvedAccount) -> AccountRunner:
        runner = self._runners.get(resolved.key)
        if runner is None:
            plugin = self.registry.get_plugin(resolved.key.provider)
            runner = self._runners[resolved.key] = AccountRunner(plugin, resolved)
            self.status.ensure(resolved.key)
        return runner

    def _spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._tg is None:
            raise RuntimeError("the supervisor is not running")
        self._tg.start_soon(fn, *args)

    def _start_locked(self, runner: AccountRunner) -> None:
        if runner.active or self._closing:
            return
        resolved = runner.resolved
        sources = {k: v for k, v in resolved.secret_sources.items()}
        base = dict(name=resolved.config.name, enabled=resolved.enabled, last_error=None, last_error_kind=None,
                    token_source=_token_source(sources))
        if not resolved.enabled:
            self.status.update(runner.key, state=AccountState.DISABLED, configured=True, connected=False,
                               **{**base, "last_error": resolved.disabled_reason})
            return
        configured, reason = _is_configured(runner.plugin, resolved)
        if not configured:
            self.status.update(runner.key, state=AccountState.UNCONFIGURED, configured=False, connected=False,
                               **{**base, "last_error": reason or "not configured"})
            return
        self.status.update(runner.key, configured=True, **{**_describe(runner.plugin, resolved), **base})
        runner.scope = anyio.CancelScope()
        runner.done = anyio.Event()
        self._spawn(self._account_main, runner, runner.scope, runner.done)

    async def _stop_locked(self, runner: AccountRunner) -> bool:
        if not runner.active:
            if self.status.state(runner.key) in (AccountState.BACKOFF, AccountState.FAILED, AccountState.RUNNING):
                self.status.update(runner.key, state=AccountState.STOPPED, connected=False, last_stop_at=utcnow_iso())
            return True
        assert runner.scope is not None and runner.done is not None
        self.status.update(runner.key, state=AccountState.STOPPING)
        runner.scope.cancel()
        with anyio.move_on_after(self.restart_config.stop_timeout_s):
            await runner.done.wait()
        if not runner.done.is_set():
            log.warning("account.stop_straggler", provider=runner.key.provider, account=runner.key.account,
                        stop_timeout_s=self.restart_config.stop_timeout_s)
            return False
        self.status.update(runner.key, state=AccountState.STOPPED, connected=False, next_retry_at=None,
                           last_stop_at=utcnow_iso())
        return True

    async def _start_when_done(self, runner: AccountRunner) -> None:
        done = runner.done
        if done is not None:
            await done.wait()
        async with runner.lock:
            if self._runners.get(runner.key) is runner:
                self._start_locked(runner)

    async def _account_main(self, runner: AccountRunner, scope: anyio.CancelScope, done: anyio.Event) -> None:
        key = runner.key
        status = self.status
        try:
            with scope:
                attempt = 0
                while True:
                    status.update(key, state=AccountState.STARTING, last_start_at=utcnow_iso(), next_retry_at=None,
                                  starts=(status.get_field(key, "starts") or 0) + 1)
                    status.set_account_issues(key, [])
                    try:
                        await self._run_once(runner)
                        error: BaseException = AccountNotReady("run_account returned without being cancelled")
                    except anyio.get_cancelled_exc_class():
                        raise
                    except Exception as exc:  # noqa: BLE001 - every failure is classified below
                        error = exc
                    ran_for = time.monotonic() - runner.connected_at if runner.connected_at else 0.0
                    runner.mark_disconnected()
                    message = redact_account(f"{type(error).__name__}: {error}", runner.resolved)
                    if isinstance(error, (AuthFailed, ConfigInvalid)):
                        self._park(runner, error, message)
                        return
                    if ran_for >= self.restart_config.stable_after_s:
                        attempt = 0
                    attempt += 1
                    delay = self.backoff.delay(attempt, random.random())
                    if isinstance(error, RateLimited):
                        delay = max(delay, error.retry_after)
                    status.update(key, state=AccountState.BACKOFF, connected=False, last_error=message,
                                  last_error_kind=_error_kind(error),
                                  next_retry_at=utcnow_iso(time.time() + delay))
                    status.increment(key, "restarts")
                    log.warning("account.crashed", provider=key.provider, account=key.account, error=message,
                                attempt=attempt, retry_in_s=round(delay, 3))
                    await anyio.sleep(delay)
        finally:
            runner.ctx = None
            runner.mark_disconnected()
            done.set()

    async def _run_once(self, runner: AccountRunner) -> None:
        factory = runner.plugin.open_client
        manager: AbstractAsyncContextManager[Any] = factory(runner.resolved) if factory else nullcontext(None)
        async with manager as client:
            ctx = RuntimeContext(self, runner, client)
            runner.ctx = ctx
            try:
                await runner.plugin.gateway.run_account(ctx)
            finally:
                runner.ctx = None

    def _park(self, runner: AccountRunner, error: BaseException, message: str) -> None:
        kind: StatusIssueKind = "auth" if isinstance(error, AuthFailed) else "config"
        fix = getattr(error, "fix", None) or (
            "check the credentials, then restart the account or edit its configuration" if kind == "auth"
            else "fix the account's configuration; it restarts on reload")
        self.status.update(runner.key, state=AccountState.FAILED, connected=False, last_error=message,
                           last_error_kind=kind, next_retry_at=None, last_stop_at=utcnow_iso())
        if not self.status.account_issues(runner.key):  # the plugin may have raised a more specific one
            self.status.add_account_issue(runner.key, StatusIssue(runner.key.provider, runner.key.account, kind,
                                                                  redact_account(str(error), runner.resolved), fix))
        log.error("account.failed", provider=runner.key.provider, account=runner.key.account, kind=kind,
                  error=message)


def _is_configured(plugin: ProviderPlugin, resolved: ResolvedAccount) -> tuple[bool, str | None]:
    check = plugin.config.is_configured
    if check is None:
        return True, None
    try:
        return check(resolved)
    except Exception as exc:  # noqa: BLE001 - a broken hook must not take the supervisor down
        return False, f"is_configured failed: {type(exc).__name__}"


def _describe(plugin: ProviderPlugin, resolved: ResolvedAccount) -> dict[str, Any]:
    """The plugin's safe summary, merged into the snapshot (refreshed on live updates)."""
    describe = plugin.config.describe_account
    if describe is None:
        return {}
    try:
        summary = dict(describe(resolved))
    except Exception:  # noqa: BLE001 - a broken hook must not take the supervisor down
        return {}
    reserved = {"provider", "account", "state", "enabled", "configured", "connected", "restarts", "starts"}
    return {k: v for k, v in summary.items() if k not in reserved}


def _token_source(sources: Mapping[str, str]) -> str | None:
    if not sources:
        return None
    values = set(sources.values())
    return values.pop() if len(values) == 1 else ",".join(f"{k}={v}" for k, v in sources.items())


def _error_kind(error: BaseException) -> str:
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, AccountNotReady):
        return "not_ready"
    return "crash"
