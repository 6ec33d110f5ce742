"""The status report of ``GET /v1/status`` and ``switchboard status --json``.

Shape (stable, DESIGN.md §8)::

    {"gateway": {"version", "pid", "started_at", "config_path",
                 "reload": {"mode", "last_at", "last_ok", "last_error", ...}, ...},
     "accounts": [{"provider", "account", "name", "state", "enabled", "configured", "connected",
                   "restarts", "last_start_at", "last_error", "last_inbound_at",
                   "last_outbound_at", ...}],
     "issues": [{"provider", "account", "kind", "message", "fix"}]}

Probes run concurrently, each bounded by its own timeout: a slow or failing probe marks
that account only (the original ran them one after another, and one exception failed the
whole request).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from gateway.plugin import AccountKey, AccountState, StatusIssue
from gateway.secrets import REDACTED, SECRET_KEY, redact_account
from gateway.status import utcnow_iso

if TYPE_CHECKING:
    from gateway.app import Gateway

log = structlog.get_logger("gateway.control")

#: Keys a client can rely on in the ``gateway`` object.
GATEWAY_KEYS = ("version", "pid", "started_at", "config_path", "reload")
RELOAD_KEYS = ("mode", "last_at", "last_ok", "last_error")


def gateway_info(gateway: Gateway) -> dict[str, Any]:
    info = {key: None for key in GATEWAY_KEYS}
    info.update(gateway.status.gateway)
    if info["config_path"]:
        info["config_path"] = os.path.abspath(info["config_path"])  # relative to the daemon, not the caller
    reload = {key: None for key in RELOAD_KEYS}
    reload.update(info.get("reload") or {})
    info["reload"] = reload
    return info


def public_snapshot(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """A snapshot safe to show: plugin extras with secret-looking names are blanked."""
    return {k: (REDACTED if v not in (None, "") and _secret_name(k) else v) for k, v in snapshot.items()}


@functools.lru_cache(maxsize=1024)
def _secret_name(name: str) -> bool:
    return SECRET_KEY.search(name) is not None


def account_snapshots(gateway: Gateway) -> list[dict[str, Any]]:
    order = {pid: i for i, pid in enumerate(gateway.registry.ids())}
    snaps = [public_snapshot(s) for s in gateway.status.snapshot()]
    snaps.sort(key=lambda s: (order.get(s["provider"], len(order)), s["provider"], s["account"]))
    return snaps


def collect_issues(gateway: Gateway, snapshots: Sequence[Mapping[str, Any]]) -> list[StatusIssue]:
    """The store's issues plus every plugin's ``collect_issues``; a failing plugin is an issue itself."""
    issues = list(gateway.status.issues())
    by_provider: dict[str, list[Mapping[str, Any]]] = {}
    for snap in snapshots:
        by_provider.setdefault(snap["provider"], []).append(snap)
    for provider, snaps in by_provider.items():
        try:
            plugin = gateway.registry.get_plugin(provider)
        except LookupError:
            continue
        if plugin.status is None or not hasattr(plugin.status, "collect_issues"):
            continue
        try:
            found = list(plugin.status.collect_issues(snaps))
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not fail the status request
            log.exception("control.collect_issues_failed", provider=provider)
            found = [StatusIssue(provider, None, "plugin", f"the {provider} plugin failed to check its accounts: "
                                 f"{type(exc).__name__}", "report this to the plugin's author")]
        issues.extend(i for i in found if isinstance(i, StatusIssue) and i not in issues)
    return issues


def status_report(gateway: Gateway) -> dict[str, Any]:
    accounts = account_snapshots(gateway)
    return {"gateway": gateway_info(gateway), "accounts": accounts,
            "issues": [issue.to_dict() for issue in collect_issues(gateway, accounts)]}


def readiness(gateway: Gateway, *, accepting: bool) -> list[str]:
    """Why the gateway is not ready (empty when it is)."""
    reasons = []
    if not accepting or not gateway.running:
        reasons.append("the gateway is starting or shutting down")
    for snap in gateway.status.snapshot():
        if snap["state"] == AccountState.FAILED.value:
            reasons.append(f"{snap['provider']}/{snap['account']} is failed: {snap.get('last_error') or 'no reason'}")
    return reasons


# --- probes --------------------------------------------------------------------------------------


async def run_probes(gateway: Gateway, timeout: float) -> None:
    """Probe every enabled, configured account concurrently; results land in its snapshot."""
    async with anyio.create_task_group() as tg:
        for key in gateway.status.keys():
            snap = gateway.status.get(key)
            if snap is None or snap["state"] in (AccountState.DISABLED.value, AccountState.UNCONFIGURED.value):
                continue
            tg.start_soon(_probe_one, gateway, key, timeout)


async def _probe_one(gateway: Gateway, key: AccountKey, timeout: float) -> None:
    try:
        plugin = gateway.registry.get_plugin(key.provider)
    except LookupError:
        return
    resolved = gateway.supervisor.resolved(key) or gateway.config.accounts.get(key)
    adapter = plugin.status
    if resolved is None or adapter is None or not hasattr(adapter, "probe"):
        return
    started = time.perf_counter()
    result: dict[str, Any]
    with anyio.move_on_after(timeout) as scope:
        try:
            raw = await adapter.probe(gateway.supervisor.context(key), resolved, timeout)
            result = {"ok": True, **_json_safe(raw)}
        except Exception as exc:  # noqa: BLE001 - a failing probe marks this account only
            result = {"ok": False, "error": redact_account(f"{type(exc).__name__}: {exc}", resolved)}
    if scope.cancelled_caught:
        result = {"ok": False, "error": f"timed out after {round(timeout * 1000)} ms"}
    else:
        result = json.loads(redact_account(json.dumps(result), resolved))
    result["at"] = utcnow_iso()
    result["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
    if gateway.status.get(key) is not None:  # not removed by a reload meanwhile
        gateway.status.update(key, probe=result)


def _json_safe(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        return {"result": str(value)}
    return json.loads(json.dumps(dict(value), default=str))
