"""Hot reload: restart exactly the accounts whose effective configuration changed.

Triggers (the file watcher, ``SIGHUP``, ``switchboard reload``, ``POST /v1/reload``) all go
through :meth:`Reloader.reload`. One reload runs at a time; a request that arrives during a
reload is applied right after it (never swallowed, unlike the original's sticky flag).

The plan compares the old and new *validated* configurations (see ``docs/reload.md``):
per account, the effective mapping (provider-level keys merged, secrets resolved to
fingerprints, so a changed ``*_file`` content is a change); changed keys that are all live
keys update in place, anything else restarts that account only.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from watchfiles import Change, awatch

from gateway.config import Config, load_config
from gateway.errors import ConfigError
from gateway.logging import set_level
from gateway.plugin import AccountKey, StatusIssue
from gateway.status import utcnow_iso

if TYPE_CHECKING:
    from gateway.app import Gateway

log = structlog.get_logger("gateway.reload")

#: Gateway paths applied without restarting anything.
LIVE_GATEWAY_PREFIXES = ("handler", "gateway.reload", "gateway.restart", "gateway.log_level",
                         "gateway.log_format", "gateway.outbox")
#: Gateway paths that need the whole gateway restarted in-process.
RESTART_GATEWAY_PREFIXES = ("gateway.state_dir", "gateway.control")


@dataclass(frozen=True)
class ReloadPlan:
    changed_paths: tuple[str, ...] = ()
    start: tuple[AccountKey, ...] = ()
    stop: tuple[AccountKey, ...] = ()
    restart: tuple[AccountKey, ...] = ()
    live: tuple[AccountKey, ...] = ()
    live_gateway: tuple[str, ...] = ()
    gateway_restart: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changed_paths

    def to_dict(self) -> dict[str, Any]:
        return {"changed_paths": list(self.changed_paths),
                "start": [str(k) for k in self.start], "stop": [str(k) for k in self.stop],
                "restart": [str(k) for k in self.restart], "live": [str(k) for k in self.live],
                "live_gateway": list(self.live_gateway), "gateway_restart": list(self.gateway_restart)}


@dataclass
class ReloadResult:
    trigger: str
    ok: bool
    at: str
    plan: ReloadPlan | None = None
    actions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "ok": self.ok, "at": self.at, "errors": self.errors,
                "actions": self.actions, "duration_ms": round(self.duration_ms, 2),
                "plan": self.plan.to_dict() if self.plan else None}


# --- the plan ---------------------------------------------------------------------------------


def diff_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths whose values differ. Lists compare by value (no identity false positives)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                out.append(path)
            else:
                out.extend(diff_paths(old[key], new[key], path))
        return out
    return [] if old == new else [prefix or "<root>"]


def build_plan(old: Config, new: Config, live_keys: Mapping[str, frozenset[str]],
               provider_prefixes: Mapping[str, tuple[str, ...]]) -> ReloadPlan:
    """Compare two validated configs; ``live_keys``/``provider_prefixes`` come from the plugins."""
    gateway_paths = diff_paths(old.gateway.model_dump(mode="json"), new.gateway.model_dump(mode="json"), "gateway")
    handler_paths = diff_paths(old.handler.model_dump(mode="json"), new.handler.model_dump(mode="json"), "handler")
    changed: list[str] = [*gateway_paths, *handler_paths]
    live_gateway = [p for p in changed if p.startswith(LIVE_GATEWAY_PREFIXES)]
    gateway_restart = [p for p in gateway_paths if p.startswith(RESTART_GATEWAY_PREFIXES)]

    start: list[AccountKey] = []
    stop: list[AccountKey] = []
    restart: list[AccountKey] = []
    live: list[AccountKey] = []
    for key in new.accounts.keys() - old.accounts.keys():
        start.append(key)
        changed.append(_account_path(key))
    for key in old.accounts.keys() - new.accounts.keys():
        stop.append(key)
        changed.append(_account_path(key))
    for key in new.accounts.keys() & old.accounts.keys():
        before, after = old.accounts[key], new.accounts[key]
        keys = [p.split(".", 1)[0] for p in diff_paths(before.effective, after.effective)]
        if before.enabled != after.enabled:
            keys.append("enabled")
        if not keys:
            continue
        changed.extend(f"{_account_path(key)}.{k}" for k in sorted(set(keys)))
        if set(keys) <= live_keys.get(key.provider, frozenset()):
            live.append(key)
        else:
            restart.append(key)

    # Plugin-declared prefixes outside providers.<id> restart every account of that provider.
    raw_paths = diff_paths(_without_providers(old.raw), _without_providers(new.raw))
    for provider, prefixes in provider_prefixes.items():
        if prefixes and any(p.startswith(prefixes) for p in raw_paths):
            for key in new.accounts:
                if key.provider == provider and key not in start and key not in restart:
                    restart.append(key)
                    if key in live:
                        live.remove(key)
            changed.extend(p for p in raw_paths if p.startswith(prefixes) and p not in changed)

    return ReloadPlan(changed_paths=tuple(changed), start=tuple(sorted(start)), stop=tuple(sorted(stop)),
                      restart=tuple(sorted(restart)), live=tuple(sorted(live)),
                      live_gateway=tuple(live_gateway), gateway_restart=tuple(gateway_restart))


def _account_path(key: AccountKey) -> str:
    return f"providers.{key.provider}.accounts.{key.account}"


def _without_providers(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k != "providers"}


# --- the reloader ---------------------------------------------------------------------------------


class Reloader:
    """Watches the config file and applies reloads, one at a time."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self._wake = anyio.Event()
        self._waiters: list[tuple[anyio.Event, list[ReloadResult]]] = []
        self._triggers: list[str] = []
        self._file_event = anyio.Event()
        self._last_file_event = 0.0
        self._stop_watch = anyio.Event()
        self._accepting = True
        self._debouncing = False
        self._busy = False
        self.last: ReloadResult | None = None
        self.count = 0
        #: Callbacks run after every reload (metrics, SSE).
        self.after_reload: list[Any] = []

    @property
    def path(self) -> Path | None:
        return self.gateway.config.path

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._worker)
            if self.path is not None:
                await tg.start(self._watch)
                tg.start_soon(self._debounce)
            task_status.started()

    def stop_accepting(self) -> None:
        """Shutdown: stop watching and refuse new reloads (an in-flight one finishes)."""
        self._accepting = False
        self._stop_watch.set()

    def request(self, trigger: str) -> None:
        """Ask for a reload without waiting for it (signal handlers, the watcher)."""
        if not self._accepting:
            return
        self._triggers.append(trigger)
        self._wake.set()

    async def reload(self, trigger: str) -> ReloadResult:
        """Ask for a reload and wait for the result of one that started after this call."""
        if not self._accepting:
            return ReloadResult(trigger, False, utcnow_iso(), errors=["the gateway is shutting down"])
        done, box = anyio.Event(), []
        self._waiters.append((done, box))
        self.request(trigger)
        await done.wait()
        return box[0]

    # --- watcher ---------------------------------------------------------------------------------

    async def _watch(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        assert self.path is not None
        path = self.path.resolve() if self.path.exists() else self.path.absolute()
        name = path.name

        def relevant(change: Change, changed: str) -> bool:
            return Path(changed).name == name

        # Small watchfiles debounce/step: our own debounce (debounce_ms) coalesces bursts and
        # re-reads the file, so an atomic save split across two batches is still one reload.
        watcher = awatch(path.parent, watch_filter=relevant, debounce=50, step=5, recursive=False,
                         stop_event=self._stop_watch)
        task_status.started()
        try:
            async for _ in watcher:
                self._last_file_event = time.monotonic()
                self._file_event.set()
        except Exception as exc:  # noqa: BLE001 - a broken watcher must not take the daemon down
            log.error("reload.watcher_failed", error=str(exc),
                      hint="reloads still work through SIGHUP and `switchboard reload`")

    @property
    def pending(self) -> bool:
        """True while a file change is being debounced or a reload is queued or running."""
        return self._file_event.is_set() or self._debouncing or self._wake.is_set() or self._busy

    async def _debounce(self) -> None:
        while True:
            await self._file_event.wait()
            self._file_event = anyio.Event()
            self._debouncing = True
            while True:
                wait = self._last_file_event + self.gateway.config.gateway.reload.debounce_ms / 1000 - time.monotonic()
                if wait <= 0:
                    break
                await anyio.sleep(wait)
            # Every event so far is covered by this reload (no await since the last check).
            self._file_event = anyio.Event()
            self._debouncing = False
            self.request("watch")

    # --- worker --------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            triggers, self._triggers = self._triggers, []
            waiters, self._waiters = self._waiters, []
            trigger = ",".join(dict.fromkeys(triggers)) or "request"
            self._busy = True
            try:
                result = await self._reload_once(trigger)
            finally:
                self._busy = False
            for done, box in waiters:
                box.append(result)
                done.set()

    async def _reload_once(self, trigger: str) -> ReloadResult:
        gw = self.gateway
        started = time.perf_counter()
        mode = gw.config.gateway.reload.mode
        result = ReloadResult(trigger, True, utcnow_iso())
        notifier = gw.notifier
        if notifier is not None:
            notifier.reloading()
        try:
            assert gw.config.path is not None, "no config file to reload"
            try:
                new = await anyio.to_thread.run_sync(
                    functools.partial(load_config, gw.config.path, gw.registry, previous=gw.config))
            except ConfigError as exc:
                result.ok = False
                result.errors = [str(p) for p in exc.problems]
                for problem in exc.problems:
                    log.error("config.invalid", path=problem.path or "<file>", problem=problem.message,
                              trigger=trigger)
                gw.status.set_global_issues("config", [StatusIssue(
                    "gateway", None, "config", f"config reload rejected: {p}",
                    "fix the file; the running configuration stays in force until it is valid")
                    for p in exc.problems])
                return result
            gw.status.set_global_issues("config", [])
            # The new file's mode decides: switching `off` back to `hybrid` applies what was pending.
            mode = new.gateway.reload.mode
            plan = build_plan(gw.config, new, {p.id: p.live_keys for p in gw.registry.list_plugins()},
                              {p.id: p.reload.prefixes for p in gw.registry.list_plugins()})
            result.plan = plan
            if plan.empty:
                result.actions.append("no changes")
                return result
            if mode == "off":
                result.actions.append("mode off: nothing applied")
                log.info("reload.skipped", mode=mode, changed=list(plan.changed_paths))
                return result  # the baseline is not advanced: a later reload still sees the change
            if mode == "restart" or (mode == "hybrid" and plan.gateway_restart):
                result.actions.append("gateway restart")
                gw.config = new
                gw.request_stop(restart=True)
                return result
            if plan.gateway_restart:  # hot mode
                log.warning("reload.ignored_paths", paths=list(plan.gateway_restart), mode=mode,
                            hint="these settings need a gateway restart (mode hybrid or restart)")
                result.actions.append(f"ignored (needs restart): {', '.join(plan.gateway_restart)}")
            await self._apply(plan, new, result)
            return result
        except Exception as exc:  # noqa: BLE001 - a failed reload is reported, never fatal
            result.ok = False
            result.errors.append(f"{type(exc).__name__}: {exc}")
            log.exception("reload.failed", trigger=trigger)
            return result
        finally:
            result.duration_ms = (time.perf_counter() - started) * 1000
            self.last = result
            self.count += 1
            gw.status.update_gateway(reload={
                "mode": mode, "last_at": result.at, "last_ok": result.ok,
                "last_error": "; ".join(result.errors) or None, "last_trigger": trigger,
                "last_actions": result.actions, "count": self.count})
            if notifier is not None:
                notifier.ready()
            log.info("reload.done", trigger=trigger, ok=result.ok, mode=mode,
                     changed=list(result.plan.changed_paths) if result.plan else [], actions=result.actions,
                     duration_ms=round(result.duration_ms, 2))
            for hook in self.after_reload:
                hook(result)

    async def _apply(self, plan: ReloadPlan, new: Config, result: ReloadResult) -> None:
        gw = self.gateway
        sup = gw.supervisor
        old_gateway = gw.config.gateway
        # Live gateway settings first: a restart below already uses the new backoff.
        if new.gateway.restart != old_gateway.restart:
            sup.restart_config = new.gateway.restart
        if new.gateway.log_level != old_gateway.log_level:
            set_level(new.gateway.log_level)
        if gw.config.gateway.state_dir != new.gateway.state_dir or gw.config.gateway.control != new.gateway.control:
            # Hot mode ignores these: keep the running values so status tells the truth.
            new = _keep_restart_only_settings(new, old_gateway)
        gw.config = new
        gw._register_secrets(new)  # noqa: SLF001 - the gateway owns its redactor
        for key in plan.live:
            sup.update_live(new.accounts[key])
        async with anyio.create_task_group() as tg:
            for key in plan.stop:
                tg.start_soon(_call, sup.stop_account(key, remove=True))
            for key in plan.restart:
                tg.start_soon(_call, sup.restart_account(key, new.accounts[key]))
            for key in plan.start:
                tg.start_soon(_call, sup.start_account(new.accounts[key]))
        for label, keys in (("stopped", plan.stop), ("restarted", plan.restart), ("started", plan.start),
                            ("updated live", plan.live)):
            if keys:
                result.actions.append(f"{label}: {', '.join(str(k) for k in keys)}")
        if plan.live_gateway:
            result.actions.append(f"applied live: {', '.join(plan.live_gateway)}")


async def _call(awaitable: Any) -> None:
    await awaitable


def _keep_restart_only_settings(new: Config, old_gateway: Any) -> Config:
    from dataclasses import replace

    gateway = new.gateway.model_copy(update={"state_dir": old_gateway.state_dir, "control": old_gateway.control})
    return replace(new, gateway=gateway)
